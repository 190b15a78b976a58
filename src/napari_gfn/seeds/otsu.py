"""Otsu seed: threshold photos with plain backgrounds and score how plain they are."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu

from napari_gfn.config import describe_seed, describe_setting, setting_flag

__all__ = ["OtsuResult", "otsu_mask"]


@dataclass(frozen=True)
class OtsuResult:
    """The object mask, Otsu's separability (between-class over total variance, 0..1), and the
    fraction of the image border the object covers (a plain-background photo's object barely touches it)."""

    mask: np.ndarray
    separability: float
    border_contact: float

    def is_simple(self, min_separability: float, max_border_contact: float) -> bool:
        return self.separability >= min_separability and self.border_contact <= max_border_contact


def _grey(image: np.ndarray) -> np.ndarray:
    return rgb2gray(image) if image.ndim == 3 else image.astype(float)


def _border(values: np.ndarray) -> np.ndarray:
    return np.concatenate([values[0], values[-1], values[1:-1, 0], values[1:-1, -1]])


def otsu_mask(image: np.ndarray) -> OtsuResult:
    """Otsu-threshold ``image``; the object is the class that touches the image border least."""
    grey = _grey(image)
    total_variance = grey.var()
    if total_variance == 0:
        return OtsuResult(np.zeros(grey.shape, dtype=bool), 0.0, 0.0)
    bright = grey > threshold_otsu(grey)
    weight = bright.mean()
    between = weight * (1 - weight) * (grey[bright].mean() - grey[~bright].mean()) ** 2
    # Fraction of each class's pixels lying on the border: the background owns the frame.
    border = _border(bright)
    bright_share = border.sum() / max(bright.sum(), 1)
    dark_share = (~border).sum() / max((~bright).sum(), 1)
    mask = bright if bright_share <= dark_share else ~bright
    return OtsuResult(mask, float(between / total_variance), float(_border(mask).mean()))


def _score_photos(working, cancel, phase: str):
    """Otsu result for every photo of a working set, skipping (and naming) photos that fail to load."""
    from napari_gfn.engine.working import read_each

    return (yield from read_each(lambda stem: otsu_mask(working.get(stem)), working.stems, cancel, phase))


def otsu_seed(context):
    """Simple-to-complex seed: Otsu masks of the simple photos train the first GFN (iteration 0).

    Simple photos come from ``config.simple``: a folder, or "auto" to take
    every photo whose Otsu separability reaches ``config.simple_threshold``.
    """
    from napari_gfn.engine.events import LabellingError, Notice
    from napari_gfn.engine.images import ImageReadError, ImageSet
    from napari_gfn.engine.refine import SeedOutput
    from napari_gfn.engine.working import WorkingImages

    config = context.config
    if config.simple == "auto":
        working = context.working
        scored = yield from _score_photos(working, context.cancel, "seed: rank photos")
        simple = {
            stem: r.mask for stem, r in scored.items() if r.is_simple(config.simple_threshold, config.simple_max_border)
        }
        if not simple:
            best = max(scored.items(), key=lambda item: item[1].separability, default=None)
            detail = (
                f" (the most separable photo, {best[0]}, reaches {best[1].separability:.2f} and its object covers "
                f"{best[1].border_contact:.0%} of the border)"
                if best
                else ""
            )
            raise LabellingError(
                f"no photo qualifies as simple: none reaches Otsu separability {config.simple_threshold:.2f} "
                f"with its object covering at most {config.simple_max_border:.0%} of the border{detail}. "
                f"Lower the {describe_setting('simple_threshold')}, raise the {describe_setting('simple_max_border')}, "
                f"give a folder of plain-background photos as the simple photos ({setting_flag('simple')} DIR), or "
                f"use another seed: {describe_seed('grabcut')} for one object away from the border, "
                f"{describe_seed('ridge')} for thin line-like structures such as branches, "
                f"{describe_seed('transfer')} or {describe_seed('cam')}."
            )
    else:
        try:
            simple_set = ImageSet.from_folder(config.simple)
        except ImageReadError as error:
            raise LabellingError(f"simple photos: {error}") from None
        working = WorkingImages(simple_set, config.image_size, context.store.cache_dir / "simple")
        scored = yield from _score_photos(working, context.cancel, "seed: threshold simple photos")
        simple = {stem: r.mask for stem, r in scored.items()}
        if not simple:
            raise LabellingError(f"simple photos: none of the photos in {config.simple} could be read")
    yield Notice(f"Otsu seed: training on {len(simple)} simple photos", level="info")
    model = yield from context.new_model()
    yield from context.train(model, working, simple, "seed: train", config.seed_epochs)
    return SeedOutput(model=model)

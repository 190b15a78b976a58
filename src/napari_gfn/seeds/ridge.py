"""Ridge seed: the largest connected web of thin, line-like structures, a prior for trees and branches."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.filters import sato
from skimage.measure import label

from napari_gfn.config import THIN_OBJECT_SETTINGS, describe_setting, settings_in_words
from napari_gfn.engine.events import Notice
from napari_gfn.engine.refine import SeedContext, SeedOutput

__all__ = ["RidgeSettings", "largest_web", "ridge_mask", "ridge_response", "ridge_salience", "ridge_seed"]


@dataclass(frozen=True)
class RidgeSettings:
    """How the ridge seed finds a tree; lengths are fractions of the photo's long side unless said otherwise.

    The defaults were chosen on the even-numbered photos of cherry-dev at the working size (long
    side 320 px) and are reported on the odd ones (benchmarks/ridge_search.py; docs/results.md).
    """

    sigmas: tuple[float, ...] = (2, 3, 4)  # line half-widths looked for, in working-size pixels
    # Each pixel's response is divided by the mean response around it (this window) plus ``floor`` times the
    # photo's mean response; None: not divided. The orchard behind a tree is a dense texture of alike lines,
    # while the tree's own trunk and branches stand out from their surroundings. The floor keeps faint
    # responses in plain sky from standing out against nothing.
    window: float | None = 61 / 320
    floor: float = 0.25
    # Photographers centre their subject: the response is weighted by a Gaussian across the width, with this
    # standard deviation as a fraction of the width; None: no weighting.
    centre: float | None = 0.3
    share: float = 0.25  # the strongest quarter of the weighted response is line
    widening: float = 5 / 320  # the web is widened by this much


def ridge_response(photo: np.ndarray, sigmas: tuple[float, ...] = RidgeSettings.sigmas) -> np.ndarray:
    """How line-like each pixel of an H x W x 3 photo is, for dark lines (branches on sky) and light ones (bark)."""
    grey = photo.astype(np.float32).mean(axis=-1) / 255.0
    dark = sato(grey, sigmas=sigmas, black_ridges=True)
    light = sato(grey, sigmas=sigmas, black_ridges=False)
    return np.maximum(dark, light)


def ridge_salience(response: np.ndarray, settings: RidgeSettings = RidgeSettings()) -> np.ndarray:
    """The ridge response weighted as ``settings`` say: against its surroundings, and towards the centre."""
    salience = response
    if settings.window is not None:
        side = 2 * round(settings.window * max(response.shape) / 2) + 1  # odd, so the window is centred
        surroundings = cv2.blur(response, (side, side))
        salience = response / (surroundings + settings.floor * response.mean() + 1e-12)
    if settings.centre is not None:
        width = response.shape[1]
        offset = (np.arange(width) + 0.5) / width - 0.5
        salience = salience * np.exp(-(offset**2) / (2 * settings.centre**2))[None, :]
    return salience


def ridge_mask(photo: np.ndarray, settings: RidgeSettings = RidgeSettings()) -> np.ndarray:
    """The object of an H x W x 3 uint8 photo: its most salient ridges' largest connected web, widened."""
    salience = ridge_salience(ridge_response(photo, settings.sigmas), settings)
    return largest_web(salience, settings.share, settings.widening)


def largest_web(response: np.ndarray, share: float, widening: float) -> np.ndarray:
    """The largest connected part of the ``share`` most line-like pixels, widened by ``widening`` of the long side."""
    lines = response > np.quantile(response, 1.0 - share)
    # A tree is one connected web of trunk and branches; the trees behind it break up into small pieces.
    parts = label(lines, connectivity=2)
    if parts.max() == 0:
        return lines
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    web = parts == sizes.argmax()
    width = round(widening * max(response.shape))
    if width < 2:
        return web
    return cv2.dilate(web.astype(np.uint8), np.ones((width, width), np.uint8)) > 0


def ridge_seed(context: SeedContext) -> Generator[Notice, None, SeedOutput]:
    """Iteration 0 is every photo's ridge mask; no training and no labels are needed."""
    yield Notice(
        "Ridge seed: each photo's object is its largest connected web of thin lines (trunk and branches)",
        level="info",
    )
    config = context.config
    if config.iterations > 0 and any(getattr(config, name) != value for name, value in THIN_OBJECT_SETTINGS.items()):
        wanted = ", ".join(describe_setting(name, value) for name, value in THIN_OBJECT_SETTINGS.items())
        current = settings_in_words({name: getattr(config, name) for name in THIN_OBJECT_SETTINGS})
        yield Notice(
            f"Refinement after a ridge seed wants the settings for thin objects such as branches, {wanted}, "
            f"with which each round improved on the seed on cherry-dev (docs/results.md); this run has {current}",
            level="info",
        )
    return SeedOutput(mask_of=lambda stem, small: ridge_mask(small))

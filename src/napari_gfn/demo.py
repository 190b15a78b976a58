"""The demo: the main labelling job on synthetic sample data, with or without a window."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_gfn.sample_data import make_sample_set
from napari_gfn.seeds import otsu_mask

DEMO_KIND = "branch"
DEMO_COUNT = 12
DEMO_SIZE = 256


@dataclass
class DemoResult:
    out: Path
    images: list[np.ndarray]
    truth: list[np.ndarray]
    seeds: list[np.ndarray]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def run_demo(out: Path, quiet: bool = True) -> DemoResult:
    """Write the sample photos, their true masks and Otsu seed masks under ``out``."""
    sample = make_sample_set(DEMO_KIND, DEMO_COUNT, DEMO_SIZE, simple_fraction=0.5, seed=0)
    for folder in ("images", "masks", "seed"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    seeds = []
    for index, (image, mask) in enumerate(zip(sample.images, sample.masks, strict=False)):
        stem = f"{DEMO_KIND}_{index:03d}"
        seed = otsu_mask(image).mask
        seeds.append(seed)
        iio.imwrite(out / "images" / f"{stem}.png", image)
        iio.imwrite(out / "masks" / f"{stem}.png", mask.astype(np.uint8) * 255)
        iio.imwrite(out / "seed" / f"{stem}.png", seed.astype(np.uint8) * 255)
    if not quiet:
        for label, wanted in (("simple", True), ("complex", False)):
            scores = [
                _iou(s, m)
                for s, m, simple in zip(seeds, sample.masks, sample.simple, strict=False)
                if simple == wanted
            ]
            print(f"Otsu seed foreground IoU on {label} images: {np.mean(scores):.3f}")
    return DemoResult(out, sample.images, sample.masks, seeds)


def show_demo(result: DemoResult) -> None:
    """Open napari on the demo's photos, truth and seeds (blocks until the window closes)."""
    import napari

    viewer = napari.Viewer(title="napari-gfn demo")
    viewer.add_image(np.stack(result.images), name="photos", rgb=True)
    viewer.add_labels(np.stack(result.truth).astype(np.uint8), name="ground truth", visible=False)
    viewer.add_labels(np.stack(result.seeds).astype(np.uint8), name="seed · iter 0", opacity=0.5)
    napari.run()

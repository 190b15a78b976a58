"""The demo: the whole labelling path on synthetic sample data, with or without a window."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_gfn.config import RunConfig
from napari_gfn.engine import run_labelling
from napari_gfn.sample_data import make_sample_set
from napari_gfn.store import RunFolder

__all__ = ["DEMO_CONFIG", "run_demo", "show_demo", "write_sample_folder"]

# Small enough to finish in a couple of minutes on two CPU cores.
DEMO_CONFIG = RunConfig(iterations=2, image_size=160, seed_epochs=8, epochs=4, min_steps=60, area_min=0.05)


def write_sample_folder(
    folder: Path,
    kind: str = "branch",
    n: int = 16,
    size: int = 160,
    seed: int = 0,
    simple_fraction: float = 0.5,
    style: int = 0,
) -> Path:
    """Write a synthetic set as ``folder/images`` and ``folder/masks`` (0/255 PNG, same stems)."""
    sample = make_sample_set(kind, n, size, simple_fraction=simple_fraction, seed=seed, style=style)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for index, (image, mask) in enumerate(zip(sample.images, sample.masks, strict=True)):
        stem = f"{kind}_{index:03d}"
        iio.imwrite(folder / "images" / f"{stem}.png", image)
        iio.imwrite(folder / "masks" / f"{stem}.png", np.where(mask, 255, 0).astype(np.uint8))
    return folder


def run_demo(out: Path, report: Callable[[Iterable], object] = list) -> Path:
    """Label a fresh synthetic branch set under ``out``; returns the run folder."""
    data = write_sample_folder(out / "sample")
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    config = DEMO_CONFIG.updated(images=str(data / "images"), out=str(run_dir), gt=str(data / "masks"))
    report(run_labelling(config))
    return run_dir


def show_demo(run_dir: Path) -> None:
    """Open napari on the demo's photos and every iteration's masks (blocks until the window closes)."""
    import napari

    store = RunFolder(run_dir)
    config = store.read_config()
    photos = sorted(Path(config.images).glob("*.png"))
    viewer = napari.Viewer(title="napari-gfn demo")
    viewer.add_image(np.stack([iio.imread(p) for p in photos]), name="photos", rgb=True)
    for iteration in store.finished_iterations():
        masks = np.stack([store.read_mask(iteration, p.stem) for p in photos]).astype(np.uint8)
        viewer.add_labels(masks, name=f"photos · iter {iteration}", opacity=0.5)
    napari.run()

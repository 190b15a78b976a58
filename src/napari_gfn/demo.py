"""The demo: synthetic sample data labelled headless, or opened in napari with the Auto-label dock ready."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import imageio.v3 as iio
import numpy as np

from napari_gfn.config import DEMO_CONFIG, RunConfig
from napari_gfn.engine import run_labelling
from napari_gfn.sample_data import make_sample_set
from napari_gfn.store import RunFolder, RunFolderError

if TYPE_CHECKING:
    import napari

    from napari_gfn.widgets import AutoLabelWidget

__all__ = ["open_demo", "run_demo", "show_demo", "write_sample_folder"]


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


def _clear_an_earlier_demo_run(run_dir: Path, photos: Path) -> None:
    """Remove the run an earlier demo left in ``run_dir``, and nothing else: ``--out`` may name a user's project."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    try:
        earlier_photos = Path(RunFolder(run_dir).read_config().images)
    except RunFolderError:
        earlier_photos = None
    if earlier_photos is None or earlier_photos.resolve() != photos.resolve():
        raise ValueError(f"{run_dir} holds something other than an earlier demo run: choose another --out folder")
    shutil.rmtree(run_dir)


def _demo_config(out: Path, iterations: int) -> RunConfig:
    """Write a fresh synthetic branch set under ``out``; the demo's settings for it (ground truth included)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder: choose a folder for the demo's photos and run")
    data = write_sample_folder(out / "sample")
    run_dir = out / "run"
    _clear_an_earlier_demo_run(run_dir, data / "images")
    return DEMO_CONFIG.updated(
        images=str(data / "images"), out=str(run_dir), gt=str(data / "masks"), iterations=iterations
    )


def run_demo(out: Path, report: Callable[[Iterable], object] = list, iterations: int = DEMO_CONFIG.iterations) -> Path:
    """Label a fresh synthetic branch set under ``out`` without a window, with ``iterations`` refinement rounds
    after the seed; returns the run folder."""
    config = _demo_config(out, iterations)
    report(run_labelling(config))
    return Path(config.out)


def open_demo(viewer: napari.Viewer, out: Path, iterations: int = DEMO_CONFIG.iterations) -> AutoLabelWidget:
    """Open the sample photos as Image layers and the Auto-label dock, set up for them and ready to start."""
    return _open_sample(viewer, _demo_config(out, iterations))


def _open_sample(viewer: napari.Viewer, config: RunConfig) -> AutoLabelWidget:
    for path in sorted(Path(config.images).glob("*.png")):
        viewer.add_image(iio.imread(path), name=path.stem, rgb=True)
    _, dock = viewer.window.add_plugin_dock_widget("napari-gfn", "Auto-label")
    dock.load_settings(config.updated(images=None))  # the photos come from the layers just opened
    return dock


def show_demo(out: Path, iterations: int = DEMO_CONFIG.iterations) -> None:
    """The demo in a window: napari with the sample photos and the Auto-label dock (blocks until closed)."""
    import napari

    config = _demo_config(out, iterations)  # first: an --out it refuses opens no window
    _open_sample(napari.Viewer(title="napari-gfn demo"), config)
    napari.run()

"""Pictures of a run's masks beside the photo and its ground truth, for docs/results.md.

One row per photo: the photo, the true mask, then the mask of each chosen
iteration, all drawn as red overlays on the photo.

    python benchmarks/figures.py RUN DATASET_DIR --stems 000 010 [--iterations 0 1] --out docs/images/NAME.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_gfn.engine.images import ImageRecord, image_files, read_object_mask
from napari_gfn.engine.working import resize_image, resize_mask
from napari_gfn.store import RunFolder
from quality import dataset_folder

_HEIGHT = 240  # every panel is scaled to this height


def overlay(photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    tinted = photo.astype(np.float32)
    tinted[mask] = 0.45 * tinted[mask] + 0.55 * np.array([230, 20, 20])
    return tinted.astype(np.uint8)


def row(store: RunFolder, dataset: dict[str, dict[str, Path]], stem: str, iterations: list[int]) -> np.ndarray:
    """``dataset``: the photo and true-mask files by stem, under "images" and "masks"."""
    photo = ImageRecord(stem, path=dataset["images"][stem]).load()
    truth = read_object_mask(dataset["masks"][stem], photo.shape[:2])
    masks = [truth] + [store.read_mask(iteration, stem) for iteration in iterations]
    shape = (_HEIGHT, round(photo.shape[1] * _HEIGHT / photo.shape[0]))
    small = resize_image(photo, shape)
    panels = [small] + [overlay(small, resize_mask(mask, shape)) for mask in masks]
    gap = np.full((shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("dataset", type=dataset_folder)
    parser.add_argument("--stems", nargs="+", required=True)
    parser.add_argument("--iterations", type=int, nargs="+", default=None, help="default: every finished one")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    store = RunFolder(args.run)
    iterations = args.iterations or store.finished_iterations()
    dataset = {part: image_files(args.dataset / part) for part in ("images", "masks")}
    if unknown := [stem for stem in args.stems if any(stem not in files for files in dataset.values())]:
        parser.error(f"{args.dataset} has no photo and true mask of {', '.join(unknown)}")
    rows = [row(store, dataset, stem, iterations) for stem in args.stems]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, np.concatenate(rows, axis=0))
    print(f"{args.out}: photo | truth | iterations {iterations}")


if __name__ == "__main__":
    main()

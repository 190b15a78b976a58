"""Panoramas and strips among ordinary photos: each group's fg IoU after an Otsu-seed run's iteration 0.

Writes synthetic branch photos with exact true masks: 12 of 400 x 300, 3 panoramas of 1500 x 150
and 3 strips of 80 x 1600, half of each simple (plain background). Labels them together with the
defaults (iteration 0: the Otsu seed's model predicting every photo), once per random seed, and
reports the mean fg IoU of each group's cluttered photos and of all its photos.

    python benchmarks/panoramas.py [--random-seeds 0 1] [--iterations 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np

# (group, count, (height, width), drawing seed)
GROUPS = (("ordinary", 12, (300, 400), 1), ("panorama 10:1", 3, (150, 1500), 2), ("strip 20:1", 3, (1600, 80), 3))


def write_set(folder: Path) -> dict[str, tuple[str, bool]]:
    """Photos in ``folder/images``, true masks in ``folder/masks``; each stem's group and whether it is simple."""
    from napari_gfn.sample_data import make_sample_set

    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True)
    groups = {}
    for group, count, shape, seed in GROUPS:
        drawn = make_sample_set("branch", count, shape, simple_fraction=0.5, seed=seed)
        for index, (photo, mask, simple) in enumerate(zip(drawn.images, drawn.masks, drawn.simple, strict=True)):
            stem = f"{group.split()[0]}_{index}"
            iio.imwrite(folder / "images" / f"{stem}.png", photo)
            iio.imwrite(folder / "masks" / f"{stem}.png", (mask > 0).astype(np.uint8) * 255)
            groups[stem] = (group, simple)
    return groups


def label(folder: Path, run: Path, random_seed: int, iterations: int) -> None:
    from napari_gfn.config import RunConfig
    from napari_gfn.engine import run_labelling

    config = RunConfig(
        images=str(folder / "images"),
        out=str(run),
        gt=str(folder / "masks"),
        iterations=iterations,
        random_seed=random_seed,
        device="cpu",
    )
    for _ in run_labelling(config):
        pass


def fg_iou_by_group(folder: Path, run: Path, iteration: int, groups: dict[str, tuple[str, bool]]) -> dict:
    from napari_gfn.engine.metrics import score_mask
    from napari_gfn.store import RunFolder

    store = RunFolder(run)
    scores: dict[str, dict[str, list[float]]] = {}
    for stem, (group, simple) in groups.items():
        truth = iio.imread(folder / "masks" / f"{stem}.png") > 127
        fg_iou = score_mask(store.read_mask(iteration, stem), truth).fg_iou
        by_kind = scores.setdefault(group, {"cluttered": [], "all": []})
        by_kind["all"].append(fg_iou)
        if not simple:
            by_kind["cluttered"].append(fg_iou)
    return {group: {kind: float(np.mean(values)) for kind, values in kinds.items()} for group, kinds in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--iterations", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        groups = write_set(folder / "set")
        for random_seed in args.random_seeds:
            run = folder / f"run_{random_seed}"
            label(folder / "set", run, random_seed, args.iterations)
            results[random_seed] = fg_iou_by_group(folder / "set", run, args.iterations, groups)
            for group, figures in results[random_seed].items():
                print(
                    f"random seed {random_seed}, {group}: fg IoU {figures['cluttered']:.3f} cluttered, "
                    f"{figures['all']:.3f} all",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

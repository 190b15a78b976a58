"""Label quality on real photographs: Otsu seed (auto-selected simple photos), then GFN refinement.

For each dataset folder (``images/``, ``masks/``, optional ``ignore/``) it runs
the whole labelling path and reports, per iteration, foreground IoU and mIoU
with plain Otsu's figure alongside (Otsu on grey, minority class = object, as
in the project's anchor figures) and the time per iteration.

    python benchmarks/quality.py ../shared/datasets/flowers17 ../shared/datasets/horses \\
        [--iterations 3] [--image-size 320] [--out benchmarks/results/quality] [--SETTING VALUE ...]

No ground truth is used to train or to choose anything: masks are read only to score.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu

from napari_gfn.config import RunConfig
from napari_gfn.engine import GroundTruth, ImageSet, IterationResult, Notice
from napari_gfn.engine.metrics import mean_scores
from napari_gfn.engine.refine import run_labelling


def plain_otsu(image: np.ndarray) -> np.ndarray:
    grey = rgb2gray(image[..., :3]) if image.ndim == 3 else image.astype(float)
    bright = grey > threshold_otsu(grey)
    return ~bright if bright.mean() > 0.5 else bright


def plain_otsu_scores(dataset: Path, truth: GroundTruth) -> dict:
    scores = []
    for record in ImageSet.from_folder(dataset / "images"):
        image = record.load()
        scores.append(truth.score(record.stem, plain_otsu(image)))
    return mean_scores(scores)


def run_dataset(dataset: Path, out: Path, overrides: dict) -> dict:
    ignore = dataset / "ignore"
    truth = GroundTruth(dataset / "masks", ignore if ignore.is_dir() else None)
    shutil.rmtree(out, ignore_errors=True)
    config = RunConfig(
        images=str(dataset / "images"),
        out=str(out),
        gt=str(dataset / "masks"),
        ignore=str(ignore) if ignore.is_dir() else None,
        **overrides,
    )
    started = time.perf_counter()
    iterations = []
    for event in run_labelling(config):
        if isinstance(event, Notice):
            print(f"  {event.level}: {event.message}", flush=True)
        elif isinstance(event, IterationResult):
            row = {k: event.metrics.get(k) for k in ("iteration", "fg_iou", "miou", "trusted", "elapsed_s")}
            iterations.append(row)
            print(f"  {row}", flush=True)
    return {
        "dataset": dataset.name,
        "config": config.to_dict(),
        "plain_otsu": plain_otsu_scores(dataset, truth),
        "iterations": iterations,
        "total_s": time.perf_counter() - started,
    }


def print_table(result: dict) -> None:
    otsu = result["plain_otsu"]
    print(f"\n### {result['dataset']}  (plain Otsu: fg IoU {otsu['fg_iou']:.3f}, mIoU {otsu['miou']:.3f})")
    print("| iteration | fg IoU | mIoU | trusted | seconds |")
    print("|---|---|---|---|---|")
    for row in result["iterations"]:
        cells = f"{row['fg_iou']:.3f} | {row['miou']:.3f} | {row['trusted']} | {row['elapsed_s']:.0f}"
        print(f"| {row['iteration']} | {cells} |")
    if result["iterations"]:
        gain = result["iterations"][-1]["fg_iou"] - otsu["fg_iou"]
        print(f"final minus plain Otsu (fg IoU): {gain:+.3f} (goal >= +0.15)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quality"))
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=RunConfig.image_size)
    parser.add_argument("--simple-threshold", type=float, default=RunConfig.simple_threshold)
    parser.add_argument("--simple-max-border", type=float, default=RunConfig.simple_max_border)
    parser.add_argument("--epochs", type=int, default=RunConfig.epochs)
    parser.add_argument("--seed-epochs", type=int, default=RunConfig.seed_epochs)
    parser.add_argument("--random-seed", type=int, default=0)
    args = parser.parse_args()
    overrides = {
        "iterations": args.iterations,
        "image_size": args.image_size,
        "simple_threshold": args.simple_threshold,
        "simple_max_border": args.simple_max_border,
        "epochs": args.epochs,
        "seed_epochs": args.seed_epochs,
        "random_seed": args.random_seed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets:
        print(f"== {dataset}", flush=True)
        result = run_dataset(dataset, args.out / dataset.name, overrides)
        print_table(result)
        (args.out / f"{dataset.name}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Set means and per-photo paired differences from the per-photo CSVs that ``quality.py`` writes.

A CSV has the columns photo, iteration, fg_iou, miou. Photos sorted by name split into the
validation half (even positions) and the test half (odd positions), the split docs/results.md uses.
``ablation.py``'s CSVs (columns variant, random_seed, photo, ...) are read too: ``--variant``
picks one variant's rows, and its random seeds stand where a run's iterations do. Several CSVs
given together are read as one, for example the two halves of ``ablation.py --train-half``.

    python benchmarks/paired_scores.py docs/results/grabcut-seed-horses-five-iterations.csv
    python benchmarks/paired_scores.py NEW.csv --against OLD.csv --iteration 2
    python benchmarks/paired_scores.py ABLATION.csv --variant gfn --against OTHER.csv --against-variant manual
    python benchmarks/paired_scores.py EVEN.csv ODD.csv --variant gfn --iteration 0 \
        --against RUN.csv --against-iteration 3

It prints each iteration's mean fg IoU / mIoU on all photos and on each half; each iteration's
per-photo gain over the one before and the last iteration's over the seed (mean ± standard
error, share of photos better). With ``--against``, it prints instead the gain of ``--iteration``
of the first CSV over the same iteration of the second (or over ``--against-iteration``), photo by photo.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from napari_gfn.engine.metrics import MaskScore

PhotoScores = dict[str, np.ndarray]  # photo -> (fg IoU, mIoU)
Scores = dict[int, PhotoScores]  # iteration (or random seed) -> photo -> (fg IoU, mIoU)


def score_pair(score: MaskScore) -> np.ndarray:
    """A mask's (fg IoU, mIoU), the pair every per-photo table of these scripts holds."""
    return np.array([score.fg_iou, score.miou])


def mean_pair(scores: PhotoScores, photos: list[str]) -> np.ndarray:
    """Mean (fg IoU, mIoU) over ``photos``."""
    return np.mean([scores[photo] for photo in photos], axis=0)


def read_scores(paths: list[Path], variant: str | None = None) -> Scores:
    """Runs' scores by iteration, or with ``variant`` ablations' scores of it by random seed."""
    scores: Scores = defaultdict(dict)
    for path in paths:
        with path.open(newline="") as stream:
            for row in csv.DictReader(stream):
                if "variant" not in row:
                    key = int(row["iteration"])
                elif row["variant"] == variant:
                    key = int(row["random_seed"])
                else:
                    continue
                scores[key][row["photo"]] = np.array([float(row["fg_iou"]), float(row["miou"])])
    if not scores:
        which = f" of variant {variant!r}" if variant else " of a run (an ablation.py CSV needs --variant)"
        raise SystemExit(f"{', '.join(map(str, paths))}: no rows{which}")
    return dict(scores)


def halves(photos: list[str]) -> dict[str, list[str]]:
    photos = sorted(photos)
    return {"all": photos, "validation": photos[0::2], "test": photos[1::2]}


def paired_gain(new: PhotoScores, old: PhotoScores, photos: list[str]) -> str:
    gains = np.array([new[photo] - old[photo] for photo in photos])
    error = gains.std(axis=0, ddof=1) / np.sqrt(len(gains))
    better = np.mean(gains[:, 0] > 0)
    return (
        f"fg IoU {gains[:, 0].mean():+.4f} ± {error[0]:.4f} (better {better:.0%}), "
        f"mIoU {gains[:, 1].mean():+.4f} ± {error[1]:.4f}"
    )


def print_run(scores: Scores, unit: str) -> None:
    parts = halves(list(scores[min(scores)]))
    for iteration, by_photo in sorted(scores.items()):
        means = {name: mean_pair(by_photo, photos) for name, photos in parts.items()}
        print(f"{unit} {iteration}: " + ", ".join(f"{name} {m[0]:.3f} / {m[1]:.3f}" for name, m in means.items()))
    iterations = sorted(scores)
    steps = [*zip(iterations[1:], iterations[:-1], strict=True)]
    if len(iterations) > 2:
        steps.append((iterations[-1], iterations[0]))
    for new, old in steps:
        for name in ("all", "test"):
            print(f"{new} - {old}, {name}: {paired_gain(scores[new], scores[old], parts[name])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path, nargs="+", help="per-photo CSV of a scored run (several: read as one)")
    parser.add_argument("--against", type=Path, help="a second run's per-photo CSV, on the same photos")
    parser.add_argument(
        "--iteration", type=int, help="with --against: the iteration (or random seed) to compare (default: the last)"
    )
    parser.add_argument(
        "--against-iteration", type=int, help="the iteration (or random seed) of --against (default: --iteration)"
    )
    parser.add_argument("--variant", help="an ablation CSV's variant to read (its random seeds as iterations)")
    parser.add_argument("--against-variant", help="the variant to read from --against (default: --variant)")
    args = parser.parse_args()
    scores = read_scores(args.csv, args.variant)
    unit = "iteration" if args.variant is None else "random seed"
    if args.against is None:
        print_run(scores, unit)
        return
    other = read_scores([args.against], args.against_variant or args.variant)
    iteration = max(scores) if args.iteration is None else args.iteration
    against = iteration if args.against_iteration is None else args.against_iteration
    for name, photos in halves(list(scores[iteration])).items():
        print(f"{unit} {iteration}, {name}: {paired_gain(scores[iteration], other[against], photos)}")


if __name__ == "__main__":
    main()

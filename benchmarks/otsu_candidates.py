"""Would the Otsu seed work on a set? Every photo's Otsu mask, how plain the photo looks, and how right the mask is.

The Otsu seed trains on the photos it judges simple: Otsu separability at least ``--simple-threshold``
and an object covering at most ``--simple-max-border`` of the image border (the run's defaults). This
lists, for every photo of DATASET, those two numbers beside the Otsu mask's fg IoU and mIoU against
the true mask, so one sees whether any photo qualifies and whether loosening the rule would give the
seed good masks to learn from. Otsu runs at the working size, as in the seed; masks are scored at full
resolution (nearest-neighbour enlargement).

    python benchmarks/otsu_candidates.py ../shared/datasets/cherry-dev [--csv FILE]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from skimage.transform import resize

from napari_gfn.config import RunConfig
from napari_gfn.seeds.otsu import otsu_mask
from quality import dataset_folder, ground_truth
from upsample_search import photos_at_both_sizes


def candidate_rows(dataset: Path, image_size: int) -> list[dict]:
    truth = ground_truth(dataset)
    rows = []
    for stem, full, small in photos_at_both_sizes(dataset, image_size):
        result = otsu_mask(small)
        mask = resize(result.mask, full.shape[:2], order=0, anti_aliasing=False).astype(bool)
        score = truth.score(stem, mask)
        rows.append(
            {
                "stem": stem,
                "separability": result.separability,
                "border_contact": result.border_contact,
                "area": float(mask.mean()),
                "fg_iou": score.fg_iou,
                "miou": score.miou,
            }
        )
    return sorted(rows, key=lambda row: -row["separability"])


def main() -> None:
    defaults = RunConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=dataset_folder)
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--simple-threshold", type=float, default=defaults.simple_threshold)
    parser.add_argument("--simple-max-border", type=float, default=defaults.simple_max_border)
    parser.add_argument("--csv", type=Path, help="write the per-photo rows here")
    args = parser.parse_args()

    rows = candidate_rows(args.dataset, args.image_size)
    print(f"{'photo':>12} {'separability':>12} {'border':>7} {'area':>5} {'fg IoU':>7} {'mIoU':>6}  simple")
    for row in rows:
        simple = row["separability"] >= args.simple_threshold and row["border_contact"] <= args.simple_max_border
        print(
            f"{row['stem']:>12} {row['separability']:12.2f} {row['border_contact']:7.2f} {row['area']:5.2f} "
            f"{row['fg_iou']:7.3f} {row['miou']:6.3f}  {'yes' if simple else ''}"
        )
    fg = np.array([row["fg_iou"] for row in rows])
    print(f"all {len(rows)} photos: mean fg IoU {fg.mean():.3f}, best {fg.max():.3f}")
    print(f"lowest border contact: {min(row['border_contact'] for row in rows):.2f}")
    if args.csv:
        with args.csv.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()

"""How soon the dock's "check first" order reaches a run's worst masks, measured with ground truth.

    python benchmarks/check_first.py RUN DATASET [--iteration N] [--worst 0.1]

RUN is a run folder whose iterations recorded ``mask_stats.csv`` (since 5 December 2026);
DATASET a folder with ``masks/`` and optional ``ignore/``. The last iteration's masks (or
``--iteration``'s) are scored, and the worst tenth by foreground IoU (``--worst``) are the masks a
person checking them would want to find. For three orders of the photos it reports how many of
those masks the first 10% and 20% of photos hold, and the mean fg IoU of the first 10%:

- check first: the least certain masks first, as the dock orders them;
- area filter: the masks the area filter would not trust first, then by name;
- by name: the order of the files, about as good as chance.

It also gives Spearman's rank correlation between the uncertain share and fg IoU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from napari_gfn.review import MaskStats, check_first
from napari_gfn.store import RunFolder
from quality import ground_truth, truth_folder


def orders(stats: dict[str, MaskStats], area_min: float, area_max: float) -> dict[str, list[str]]:
    by_name = sorted(stats)
    area_only = {stem: MaskStats(entry.area) for stem, entry in stats.items()}  # no uncertainty: the seed's rule
    return {
        "check first": check_first(stats, area_min, area_max),
        "area filter": check_first(area_only, area_min, area_max),
        "by name": by_name,
    }


def worst_masks(fg_iou: dict[str, float], share: float) -> set[str]:
    """The ``share`` of photos whose masks score lowest: those a person checking the masks wants to find."""
    return set(sorted(fg_iou, key=fg_iou.get)[: round(share * len(fg_iou))])


def found_first(order: list[str], worst: set[str], share: float) -> int:
    """How many of the ``worst`` masks the first ``share`` of ``order`` holds."""
    return len(worst.intersection(order[: round(share * len(order))]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("dataset", type=truth_folder, help="folder with masks/ and optional ignore/")
    parser.add_argument("--iteration", type=int, help="default: the last finished one")
    parser.add_argument("--worst", type=float, default=0.1, help="the share of masks that counts as the worst")
    args = parser.parse_args()

    store = RunFolder(args.run)
    config = store.read_config()
    iteration = store.finished_iterations()[-1] if args.iteration is None else args.iteration
    stats = store.mask_stats(iteration)
    if not stats:
        parser.error(f"{store.mask_stats_path(iteration)} is missing: the run was made before masks had figures")
    truth = ground_truth(args.dataset)
    fg_iou = {stem: truth.score(stem, store.read_mask(iteration, stem)).fg_iou for stem in stats}
    worst = worst_masks(fg_iou, args.worst)
    worst_count = len(worst)
    uncertain = [stats[stem].uncertain for stem in stats]
    mean = np.mean(list(fg_iou.values()))
    print(f"{args.run.name}, iteration {iteration}: {len(stats)} photos, mean fg IoU {mean:.3f}")
    print(f"the worst {worst_count} masks: fg IoU below {min(fg_iou[s] for s in stats if s not in worst):.3f}")
    if None not in uncertain:
        rho = spearmanr(uncertain, [fg_iou[stem] for stem in stats]).statistic
        print(f"Spearman's rank correlation, uncertain share against fg IoU: {rho:+.3f}")
    print("| order | worst masks in the first 10% | in the first 20% | mean fg IoU of the first 10% |")
    print("|---|---|---|---|")
    for name, order in orders(stats, config.area_min, config.area_max).items():
        found = {share: found_first(order, worst, share) for share in (0.1, 0.2)}
        mean_first = np.mean([fg_iou[stem] for stem in order[: round(0.1 * len(order))]])
        print(f"| {name} | {found[0.1]} of {worst_count} | {found[0.2]} of {worst_count} | {mean_first:.3f} |")


if __name__ == "__main__":
    main()

"""Choose the GrabCut seed's rectangle inset and rounds on a validation split; report on a test split.

Every photo's GrabCut mask is computed at the working size for every setting, then sharpened to full
resolution with the run defaults, exactly as the engine writes a seed's iteration 0. The photos of
DATASET, sorted by stem, are split in two: even positions validate (the setting with the best mean
fg IoU there is chosen), odd positions test. Per-photo fg IoU goes to a CSV, one column per setting.

    python benchmarks/grabcut_search.py ../shared/datasets/horses [--insets 0.02 0.05 0.1] [--rounds 5 10]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from pathlib import Path

from napari_gfn.config import RunConfig
from napari_gfn.engine.predict import sharpen_seed_mask
from napari_gfn.seeds.grabcut import GRABCUT_INSET, grabcut_mask
from quality import dataset_folder, ground_truth
from upsample_search import mean_over, photos_at_both_sizes

Setting = tuple[float, int]  # (inset, rounds)


def score_photos(dataset: Path, settings: list[Setting]) -> dict[Setting, dict[str, tuple[float, float]]]:
    """{setting: {stem: (fg IoU, mIoU)}} of every photo's sharpened GrabCut mask."""
    defaults = RunConfig()
    truth = ground_truth(dataset)
    scores = {setting: {} for setting in settings}
    for stem, full, small in photos_at_both_sizes(dataset, defaults.image_size):
        for inset, rounds in settings:
            seed = grabcut_mask(small, inset, rounds)
            mask = sharpen_seed_mask(seed, small, full, defaults.upsample_radius, defaults.upsample_eps)
            score = truth.score(stem, mask)
            scores[inset, rounds][stem] = (score.fg_iou, score.miou)
    return scores


def write_csv(path: Path, scores: dict[Setting, dict[str, tuple[float, float]]]) -> None:
    settings = list(scores)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", *(f"inset {inset:g} rounds {rounds}" for inset, rounds in settings)])
        for stem in sorted(scores[settings[0]]):
            writer.writerow([stem, *(f"{scores[setting][stem][0]:.4f}" for setting in settings)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=dataset_folder)
    parser.add_argument("--insets", nargs="+", type=float, default=[0.02, GRABCUT_INSET, 0.1])
    parser.add_argument("--rounds", nargs="+", type=int, default=[5])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/grabcut_search"))
    args = parser.parse_args()
    settings = list(itertools.product(args.insets, args.rounds))
    scores = score_photos(args.dataset, settings)
    stems = sorted(scores[settings[0]])
    validation, test = stems[0::2], stems[1::2]

    def mean(setting: Setting, stems: list[str], which: int) -> float:
        return mean_over({stem: pair[which] for stem, pair in scores[setting].items()}, stems)

    print("| inset | rounds | validation fg IoU | test fg IoU / mIoU | all photos fg IoU / mIoU |")
    print("|---|---|---|---|---|")
    for setting in sorted(settings, key=lambda setting: mean(setting, validation, 0)):
        print(
            f"| {setting[0]:g} | {setting[1]} | {mean(setting, validation, 0):.3f} | "
            f"{mean(setting, test, 0):.3f} / {mean(setting, test, 1):.3f} | "
            f"{mean(setting, stems, 0):.3f} / {mean(setting, stems, 1):.3f} |"
        )
    chosen = max(settings, key=lambda setting: mean(setting, validation, 0))
    summary = {
        "dataset": str(args.dataset),
        "validation_photos": len(validation),
        "test_photos": len(test),
        "chosen": {"inset": chosen[0], "rounds": chosen[1]},
        "chosen_test": {"fg_iou": mean(chosen, test, 0), "miou": mean(chosen, test, 1)},
    }
    print(json.dumps(summary, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.dataset.name}.json").write_text(json.dumps(summary, indent=2))
    write_csv(args.out / f"{args.dataset.name}.csv", scores)


if __name__ == "__main__":
    main()

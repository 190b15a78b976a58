"""Choose the ridge seed's settings on a validation split; report on a test split.

Every photo's ridge mask is computed at the working size for every setting, then sharpened to full
resolution with the run defaults, exactly as the engine writes a seed's iteration 0. The photos
of DATASET, sorted by stem, are split in two: even positions validate (the setting with the best
mean fg IoU there is chosen), odd positions test.

Lengths are in pixels of a 320-px long side (the working size); a window or centre of 0 turns that
weighting off (see ``RidgeSettings``). ``--bands`` also scores a trivial prior for comparison: a
vertical band of that fraction of the width down the middle of every photo, at full resolution.

    python benchmarks/ridge_search.py ../shared/datasets/cherry-dev [--sigma-sets 2,3,4 1,2,3,4,6] \\
        [--windows 0 31 61 121] [--floors 0.25 0.5 1] [--centres 0 0.2 0.3 0.4] [--shares 0.2 0.25 0.3] \\
        [--widths 3 5] [--bands 0.2 0.3]
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from napari_gfn.config import RunConfig
from napari_gfn.engine.predict import sharpen_seed_mask
from napari_gfn.seeds.ridge import RidgeSettings, largest_web, ridge_response, ridge_salience
from quality import dataset_folder, ground_truth
from upsample_search import mean_over, photos_at_both_sizes

Scores = dict[str, tuple[float, float]]  # {stem: (fg IoU, mIoU)}


def central_band(shape: tuple[int, ...], fraction: float) -> np.ndarray:
    """A vertical band ``fraction`` of the width wide, down the middle."""
    band = np.zeros(shape[:2], dtype=bool)
    width = shape[1]
    band[:, round(width * (1 - fraction) / 2) : round(width * (1 + fraction) / 2)] = True
    return band


def score_photos(
    dataset: Path, settings: list[RidgeSettings], fractions: list[float]
) -> tuple[dict[RidgeSettings, Scores], dict[float, Scores]]:
    """Every photo's sharpened ridge mask scored for every setting, and its central band for every fraction."""
    defaults = RunConfig()
    truth = ground_truth(dataset)
    ridge_scores = {setting: {} for setting in settings}
    band_scores = {fraction: {} for fraction in fractions}
    for stem, full, small in photos_at_both_sizes(dataset, defaults.image_size):
        responses = {sigmas: ridge_response(small, sigmas) for sigmas in {setting.sigmas for setting in settings}}
        for setting in settings:
            web = largest_web(ridge_salience(responses[setting.sigmas], setting), setting.share, setting.widening)
            mask = sharpen_seed_mask(web, small, full, defaults.upsample_radius, defaults.upsample_eps)
            score = truth.score(stem, mask)
            ridge_scores[setting][stem] = (score.fg_iou, score.miou)
        for fraction in fractions:
            score = truth.score(stem, central_band(full.shape, fraction))
            band_scores[fraction][stem] = (score.fg_iou, score.miou)
    return ridge_scores, band_scores


def grid(args: argparse.Namespace) -> list[RidgeSettings]:
    """Every combination of the command line's values; a floor only matters with a window."""
    settings = []
    for sigmas, window, floor, centre, share, width in itertools.product(
        args.sigma_sets, args.windows, args.floors, args.centres, args.shares, args.widths
    ):
        if window == 0 and floor != args.floors[0]:
            continue
        settings.append(
            RidgeSettings(sigmas, window / 320 if window else None, floor, centre or None, share, width / 320)
        )
    return settings


def describe(setting: RidgeSettings) -> str:
    window = f"{setting.window * 320:.0f}" if setting.window else "off"
    floor = f"{setting.floor:g}" if setting.window else "–"
    centre = f"{setting.centre:g}" if setting.centre else "off"
    sigmas = ",".join(f"{sigma:g}" for sigma in setting.sigmas)
    return f"{sigmas} | {window} | {floor} | {centre} | {setting.share:g} | {setting.widening * 320:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=dataset_folder)
    parser.add_argument(
        "--sigma-sets",
        nargs="+",
        type=lambda text: tuple(float(sigma) for sigma in text.split(",")),
        default=[(2.0, 3.0, 4.0)],
        help="comma-separated line half-widths in working-size pixels, one set per argument",
    )
    parser.add_argument("--windows", nargs="+", type=int, default=[0, 31, 61, 121])
    parser.add_argument("--floors", nargs="+", type=float, default=[0.25, 0.5, 1.0])
    parser.add_argument("--centres", nargs="+", type=float, default=[0, 0.2, 0.3, 0.4])
    parser.add_argument("--shares", nargs="+", type=float, default=[0.2, 0.25, 0.3])
    parser.add_argument("--widths", nargs="+", type=int, default=[3, 5])
    parser.add_argument("--bands", nargs="*", type=float, default=[0.2, 0.3])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ridge_search"))
    args = parser.parse_args()
    settings = grid(args)
    scores, band_scores = score_photos(args.dataset, settings, args.bands)
    stems = sorted(next(iter(scores.values())))
    validation, test = stems[0::2], stems[1::2]

    def fg(setting: RidgeSettings, stems: list[str]) -> float:
        return mean_over({stem: pair[0] for stem, pair in scores[setting].items()}, stems)

    def miou(setting: RidgeSettings, stems: list[str]) -> float:
        return mean_over({stem: pair[1] for stem, pair in scores[setting].items()}, stems)

    def both(setting: RidgeSettings, stems: list[str]) -> str:
        return f"{fg(setting, stems):.3f} / {miou(setting, stems):.3f}"

    print("| sigmas | window | floor | centre | share | width | validation fg IoU | test fg IoU / mIoU | all |")
    print("|---|---|---|---|---|---|---|---|---|")
    for setting in sorted(settings, key=lambda setting: fg(setting, validation)):
        print(
            f"| {describe(setting)} | {fg(setting, validation):.3f} | {both(setting, test)} | {both(setting, stems)} |"
        )
    chosen = max(settings, key=lambda setting: fg(setting, validation))
    summary = {
        "dataset": str(args.dataset),
        "validation_photos": len(validation),
        "test_photos": len(test),
        "chosen": asdict(chosen),
        "chosen_test": {"fg_iou": fg(chosen, test), "miou": miou(chosen, test)},
        "chosen_all": {"fg_iou": fg(chosen, stems), "miou": miou(chosen, stems)},
    }
    for fraction, band in band_scores.items():
        fg_iou, miou_ = np.mean(list(band.values()), axis=0)
        print(f"central band {fraction:g} of the width, all photos: fg IoU {fg_iou:.3f} / mIoU {miou_:.3f}")
        summary[f"central_band_{fraction:g}"] = {"fg_iou": float(fg_iou), "miou": float(miou_)}
    print(json.dumps(summary, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.dataset.name}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

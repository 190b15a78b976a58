"""Choose test-time scales, the sharpening radius and eps, and the mask threshold on a validation split.

A finished labelling run's last model (or that of ``--iteration``) predicts every photo at working
resolution, once per scale (the object probabilities of a scale set are averaged, as
``MaskPredictor(scales=...)`` does); the probability is then sharpened to the photo's full
resolution with every (radius, eps) pair and cut at every threshold.
The photos of DATASET, sorted by stem, are split in two: even positions validate (the setting with
the best mean fg IoU there is chosen), odd positions test (the chosen setting and the run's own
are both reported there, so the choice is never scored on the photos that made it).

    python benchmarks/upsample_search.py RUN ../shared/datasets/horses [--radii 1 2 4 8] [--eps 1e-4 1e-3 1e-2] \\
        [--scale-sets 1 0.75,1,1.25] [--thresholds 0.4 0.5] [--iteration N]
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from napari_gfn.engine import ImageSet, resolve_device
from napari_gfn.engine.predict import MaskPredictor, sharpen_to_full_resolution
from napari_gfn.engine.working import WorkingImages
from napari_gfn.network import load_model
from napari_gfn.store import RunFolder
from quality import dataset_folder, ground_truth

Setting = tuple[tuple[float, ...], int, float, float]  # (scales, radius, eps, threshold)


def photos_at_both_sizes(dataset: Path, image_size: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, full-resolution photo, working-size photo) for every photo of DATASET/images, read once each."""
    photos = ImageSet.from_folder(dataset / "images")
    working = WorkingImages(photos, image_size)
    for stem in photos.stems:
        full = working.full(stem)
        yield stem, full, working.get(stem, full)


def scores_by_setting(
    store: RunFolder, dataset: Path, settings: list[Setting], iteration: int
) -> dict[Setting, dict[str, float]]:
    """{(scales, radius, eps, threshold): {stem: fg IoU}} for every photo of the run, with the iteration's model."""
    config = store.read_config()
    device = resolve_device("auto")
    model = load_model(store.model_path(iteration), map_location=device)
    all_scales = sorted({scale for scales, *_ in settings for scale in scales})
    predictor = MaskPredictor(model, device, config.upsample_radius, config.upsample_eps)
    truth = ground_truth(dataset)
    scores = {setting: {} for setting in settings}
    for stem, full, small in photos_at_both_sizes(dataset, config.image_size):
        by_scale = {scale: predictor.probability_at(small, scale) for scale in all_scales}
        for scales, radius, eps, threshold in settings:
            probability = sum(by_scale[scale] for scale in scales) / len(scales)
            mask = sharpen_to_full_resolution(probability, small, full, radius, eps, threshold)
            scores[scales, radius, eps, threshold][stem] = truth.score(stem, mask).fg_iou
    return scores


def mean_over(scores: dict[str, float], stems: list[str]) -> float:
    return float(np.mean([scores[stem] for stem in stems]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("dataset", type=dataset_folder)
    parser.add_argument("--radii", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--eps", nargs="+", type=float, default=[1e-4, 1e-3, 1e-2])
    parser.add_argument(
        "--scale-sets",
        nargs="+",
        type=lambda text: tuple(float(scale) for scale in text.split(",")),
        default=[(1.0,)],
        help="comma-separated scales, one set per argument (default: 1)",
    )
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.5], help="mask thresholds (default: 0.5)")
    parser.add_argument("--iteration", type=int, help="whose model predicts (default: the run's last)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/upsample_search"))
    args = parser.parse_args()
    store = RunFolder(args.run)
    config = store.read_config()
    own = (config.predict_scales, config.upsample_radius, config.upsample_eps, config.mask_threshold)
    settings = sorted(set(itertools.product(args.scale_sets, args.radii, args.eps, args.thresholds)) | {own})
    iteration = store.finished_iterations()[-1] if args.iteration is None else args.iteration
    scores = scores_by_setting(store, args.dataset, settings, iteration)
    stems = sorted(next(iter(scores.values())))
    validation, test = stems[0::2], stems[1::2]
    print("| scales | radius | eps | threshold | validation fg IoU | test fg IoU |")
    print("|---|---|---|---|---|---|")
    for setting in settings:
        scales, radius, eps, threshold = setting
        setting_scores = scores[setting]
        print(
            f"| {','.join(f'{scale:g}' for scale in scales)} | {radius} | {eps:g} | {threshold:g} "
            f"| {mean_over(setting_scores, validation):.4f} | {mean_over(setting_scores, test):.4f} |"
        )
    chosen = max(settings, key=lambda setting: mean_over(scores[setting], validation))
    summary = {
        "run": str(args.run),
        "iteration": iteration,
        "validation_photos": len(validation),
        "test_photos": len(test),
        "chosen": chosen,
        "chosen_test_fg_iou": mean_over(scores[chosen], test),
        "run_setting": own,
        "run_setting_test_fg_iou": mean_over(scores[own], test),
    }
    print(json.dumps(summary, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.dataset.name}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

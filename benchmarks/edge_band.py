"""The GrabCut edge band (``RunConfig.grabcut_edge_band``) on a finished run's model, band by band.

Each photo's object probability is computed once with the model of RUN/iter_NN and the run's own
settings; the masks are then made as a run makes them, once per band (band 0: as the run made
them), and scored against DATASET/masks (and DATASET/ignore when present). Scores are given on all
photos and on each half of the split docs/results.md uses (photos sorted by name; the band is
chosen on the even positions, the validation half, and reported on the odd ones, the test half).
This measures the band on one model's predictions; over a whole run it also changes the labels
that the next round trains on.

    python benchmarks/edge_band.py RUN DATASET_DIR [--iteration 2] [--bands 1 2 3 5] [--csv OUT]
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

import torch

from napari_gfn.engine import ImageSet, resolve_device
from napari_gfn.engine.metrics import MaskScore
from napari_gfn.engine.predict import MaskPredictor
from napari_gfn.engine.working import WorkingImages
from napari_gfn.network import load_model
from napari_gfn.store import RunFolder
from paired_scores import halves, mean_pair, paired_gain, score_pair
from quality import check_finished, dataset_folder, ground_truth

Scores = dict[int, dict[str, MaskScore]]  # band -> photo -> score


def score_bands(run: Path, dataset: Path, iteration: int, bands: list[int]) -> tuple[Scores, dict[int, float]]:
    """Per band, every photo's score and the mean seconds per photo of making its masks from the probability."""
    store = RunFolder(run)
    config = store.read_config()
    device = resolve_device(config.device)
    predictor = MaskPredictor.for_run(load_model(store.model_path(iteration)), device, config)
    by_band = {band: replace(predictor, edge_band=band) for band in [0, *bands]}
    photos = ImageSet.from_folder(dataset / "images")
    working = WorkingImages(photos, config.image_size)
    truth = ground_truth(dataset)
    scores: Scores = {band: {} for band in by_band}
    seconds = dict.fromkeys(by_band, 0.0)
    for index, stem in enumerate(photos.stems):
        full = working.full(stem)
        small = working.get(stem, full)
        with torch.inference_mode():
            probability = predictor.probability(small)
        for band, banded in by_band.items():
            started = time.perf_counter()
            full_mask = banded.masks(probability, small, full)[0]
            seconds[band] += time.perf_counter() - started
            scores[band][stem] = truth.score(stem, full_mask)
        if index % 50 == 0:
            print(f"{index}/{len(photos.stems)} photos", flush=True)
    return scores, {band: total / len(photos.stems) for band, total in seconds.items()}


def report(scores: Scores, seconds: dict[int, float]) -> None:
    """Each band's means, and its per-photo gain over the run's own masks, on all photos and on each half."""
    as_arrays = {band: {stem: score_pair(score) for stem, score in by_stem.items()} for band, by_stem in scores.items()}
    parts = halves(list(scores[0]))
    for band, by_stem in as_arrays.items():
        print(f"band {band} ({seconds[band]:.2f} s per photo):")
        for name, stems in parts.items():
            means = mean_pair(by_stem, stems)
            print(f"  {name}: {means[0]:.3f} / {means[1]:.3f}; {paired_gain(by_stem, as_arrays[0], stems)}")


def write_csv(scores: Scores, path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["band", "photo", "fg_iou", "miou"])
        for band, by_stem in scores.items():
            for stem, score in by_stem.items():
                writer.writerow([band, stem, f"{score.fg_iou:.4f}", f"{score.miou:.4f}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("dataset", type=dataset_folder)
    parser.add_argument("--iteration", type=int, default=2, help="whose model predicts (1 or later)")
    parser.add_argument("--bands", type=int, nargs="+", default=[1, 2, 3, 5], help="band widths, working pixels")
    parser.add_argument("--csv", type=Path, help="also write per-photo scores (band 0: as the run made them)")
    args = parser.parse_args()
    check_finished(parser, args.run, args.iteration)
    scores, seconds = score_bands(args.run, args.dataset, args.iteration, args.bands)
    report(scores, seconds)
    if args.csv:
        write_csv(scores, args.csv)


if __name__ == "__main__":
    main()

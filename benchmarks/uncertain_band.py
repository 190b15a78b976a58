"""How much the "check first" order depends on the probability band that counts as uncertain.

    python benchmarks/uncertain_band.py RUN DATASET [--iteration N] [--lows 0.05 0.1 0.2 0.3 0.4] [--csv OUT]

The run records each mask's uncertain share with the band 0.2-0.8 (``UNCERTAIN_BAND``), fixed
before anything was measured. This script recomputes every photo's object probability with the
model of RUN/iter_NN and the run's own settings, and counts the share again for each band
LOW-(1 - LOW). For each band it reports, as ``check_first.py`` does, how many of the worst tenth of
masks (by fg IoU against DATASET/masks) the first 10% and 20% of the "check first" order hold. The
masks scored are the run's own, so only the order changes. A band whose share reproduces the
recorded one is a check that the probabilities here are the run's. This is a sensitivity check on
the photos reported, not a search: choosing a band from it would tune on them.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import replace
from pathlib import Path

from scipy.stats import spearmanr

from check_first import found_first, worst_masks
from napari_gfn.engine import ImageSet, resolve_device
from napari_gfn.engine.predict import UNCERTAIN_BAND, MaskPredictor, uncertain_share
from napari_gfn.engine.working import WorkingImages
from napari_gfn.network import load_model
from napari_gfn.review import check_first
from napari_gfn.store import RunFolder
from quality import ground_truth, truth_folder


def shares_by_band(store: RunFolder, iteration: int, stems: list[str], bands: list[tuple[float, float]]):
    """Per band, every photo's uncertain share, from one prediction of each photo."""
    config = store.read_config()
    device = resolve_device(config.device)
    predictor = MaskPredictor.for_run(load_model(store.model_path(iteration), map_location=device), device, config)
    working = WorkingImages(ImageSet.from_folder(config.images).subset(stems), config.image_size)
    shares: dict[tuple[float, float], dict[str, float]] = {band: {} for band in bands}
    for index, stem in enumerate(stems):
        probability = predictor.probability(working.get(stem))
        for band in bands:
            shares[band][stem] = uncertain_share(probability, config.mask_threshold, band)
        if index % 50 == 0:
            print(f"{index}/{len(stems)} photos", flush=True)
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("dataset", type=truth_folder, help="folder with masks/ and optional ignore/")
    parser.add_argument("--iteration", type=int, help="default: the last finished one")
    parser.add_argument("--lows", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.4])
    parser.add_argument("--csv", type=Path, help="write every photo's share per band here")
    args = parser.parse_args()

    store = RunFolder(args.run)
    config = store.read_config()
    iteration = store.finished_iterations()[-1] if args.iteration is None else args.iteration
    recorded = store.mask_stats(iteration)
    if not recorded or iteration == 0:
        parser.error(f"iteration {iteration} of {args.run} has no network or no recorded figures")
    stems = sorted(recorded)
    bands = [(low, round(1 - low, 6)) for low in args.lows]
    shares = shares_by_band(store, iteration, stems, bands)
    if UNCERTAIN_BAND in shares:
        gap = max(abs(shares[UNCERTAIN_BAND][stem] - recorded[stem].uncertain) for stem in stems)
        print(f"band {UNCERTAIN_BAND}: largest difference from the recorded share {gap:.2g}")
    truth = ground_truth(args.dataset)
    fg_iou = {stem: truth.score(stem, store.read_mask(iteration, stem)).fg_iou for stem in stems}
    worst = worst_masks(fg_iou, 0.1)
    print(f"{args.run.name}, iteration {iteration}: {len(stems)} photos, the worst {len(worst)} masks by fg IoU")
    print("| uncertain band | worst masks in the first 10% | in the first 20% | Spearman, share vs fg IoU |")
    print("|---|---|---|---|")
    for band, by_stem in shares.items():
        stats = {stem: replace(recorded[stem], uncertain=share) for stem, share in by_stem.items()}
        order = check_first(stats, config.area_min, config.area_max)
        rho = spearmanr([by_stem[stem] for stem in stems], [fg_iou[stem] for stem in stems]).statistic
        found = [found_first(order, worst, share) for share in (0.1, 0.2)]
        print(f"| {band[0]:g}-{band[1]:g} | {found[0]} of {len(worst)} | {found[1]} of {len(worst)} | {rho:+.3f} |")
    if args.csv:
        with args.csv.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["photo", "fg_iou", *(f"uncertain_{low:g}_{high:g}" for low, high in bands)])
            for stem in stems:
                writer.writerow([stem, f"{fg_iou[stem]:.4f}", *(f"{shares[band][stem]:.4f}" for band in bands)])


if __name__ == "__main__":
    main()

"""What each GFN module earns, and how automatic labels compare with manual ones, on a train/test split.

The photos of DATASET, sorted by stem, are split in two: even positions train, odd positions test
(``--train-half odd`` swaps the halves, so the two runs together score every photo with a model that
did not train on it).
Every variant is trained from ImageNet weights with the same budget (``--epochs``) on the training
photos' labels, then scored on the test photos against their true masks:

    deeplab          DeepLabv3+: BG, HGL and GF off          (pseudo labels)
    gf, hgl, bg      DeepLabv3+ plus that one module          (pseudo labels)
    gfn              all three modules                        (pseudo labels)
    manual           all three modules                        (the training photos' true masks)

Each trained model is scored twice: as a labelling run predicts (the probability sharpened to the
photo's full resolution by the photo-guided filter), and as NAME-bilinear, the same probability
resized bilinearly to the photo's size, which is how DeepLabv3+ is published. The gain of GFN over
"deeplab-bilinear" is the paper's Table VIII comparison; the gain over "deeplab" is GFN against a
baseline that borrows napari-gfn's guided upsampling.

The pseudo labels are a folder of 0/255 masks, for example a labelling run's seed masks
(``RUN/iter_00/masks``) or its last iteration's. As in a labelling run, only pseudo labels whose
object covers 10-90% of the photo are trained on. No true mask of a test photo is used for training.

    python benchmarks/ablation.py ../shared/datasets/horses \\
        --pseudo benchmarks/results/quality/horses-grabcut/iter_00/masks \\
        [--variants deeplab gf hgl bg gfn manual] [--random-seeds 0 1] [--epochs 8] [--backbone NAME] \\
        [--upsample-radius R] [--tag NAME]
    python benchmarks/ablation.py --summarise benchmarks/results/ablation/*.json

It prints a table (mean and half-range over the random seeds), the ratio of each variant's test
mIoU to the manual-label model's, each variant's per-photo mIoU gain over DeepLabv3+ and over the
manual-label model (mean and standard error, paired by photo and random seed), and writes JSON
plus per-photo CSV to ``--out``.
``--summarise JSON ...`` prints the table again from earlier runs, pooled; they must share the
dataset, pseudo labels and settings.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_gfn.config import BULKY_OBJECT_SETTINGS, RunConfig
from napari_gfn.engine import GroundTruth, ImageSet, resolve_device, trusted_stems
from napari_gfn.engine.images import read_mask
from napari_gfn.engine.metrics import MaskScore, mean_scores
from napari_gfn.engine.predict import MaskPredictor
from napari_gfn.engine.source import LabelledSet, train_source_model
from napari_gfn.engine.training import new_model
from napari_gfn.engine.working import WorkingImages
from napari_gfn.network import BACKBONES
from quality import dataset_folder, ground_truth, report

# Runs that differ in any of these measure different things, so --summarise refuses to pool them.
# A record written before a setting was recorded reads it as the value it ran with, where that is known
# (SETTINGS_BEFORE_THEY_WERE_RECORDED), and as None otherwise.
POOLED_SETTINGS = (
    "dataset",
    "pseudo",
    "epochs",
    "image_size",
    "backbone",
    "colour_jitter",
    "upsample_radius",
    "grabcut_edge_band",
    "train_half",
)
SETTINGS_BEFORE_THEY_WERE_RECORDED = {"grabcut_edge_band": 0, "train_half": "even"}
ALL_ON = {"use_bg": True, "use_hgl": True, "use_gf": True}
ALL_OFF = dict.fromkeys(ALL_ON, False)
# variant: (modules, trained on the true masks?)
VARIANTS = {
    "deeplab": (ALL_OFF, False),
    "gf": ({**ALL_OFF, "use_gf": True}, False),
    "hgl": ({**ALL_OFF, "use_hgl": True}, False),
    "bg": ({**ALL_OFF, "use_bg": True}, False),
    "gfn": (ALL_ON, False),
    "manual": (ALL_ON, True),
}


def split(stems: list[str], train_half: str) -> tuple[list[str], list[str]]:
    """(training stems, test stems): the photos at even or odd positions by name train, the others test."""
    ordered = sorted(stems)
    even, odd = ordered[0::2], ordered[1::2]
    return (even, odd) if train_half == "even" else (odd, even)


def trusted_pseudo_labels(folder: Path, stems: list[str], config: RunConfig) -> list[str]:
    areas = {stem: float((read_mask(folder / f"{stem}.png") > 127).mean()) for stem in stems}
    return trusted_stems(areas, config.area_min, config.area_max)


def training_set(dataset: Path, labels: Path, stems: list[str]) -> LabelledSet:
    whole = LabelledSet.from_folders(dataset / "images", labels)
    name = f"{labels} ({len(stems)} photos)"
    return LabelledSet(name, whole.images.subset(stems), whole.label_paths, whole.read_target)


def train(labelled: LabelledSet, config: RunConfig, modules: dict, device: torch.device) -> torch.nn.Module:
    return report(train_source_model(labelled, config, device, model=new_model(config, device, **modules)))


def score_test_photos(
    model: torch.nn.Module, photos: ImageSet, truth: GroundTruth, config: RunConfig, device: torch.device
) -> dict[str, dict[str, MaskScore]]:
    """Test scores by upsampling: "guided" is the run's own prediction, sharpened to full resolution on the
    photo; "bilinear" resizes the same probability to the photo's size, as DeepLabv3+ is published."""
    predictor = MaskPredictor.for_run(model, device, config)
    working = WorkingImages(photos, config.image_size)
    scores = {"guided": {}, "bilinear": {}}
    for stem in photos.stems:
        full = working.full(stem)
        small = working.get(stem, full)
        probability = predictor.probability(small)
        guided, _ = predictor.masks(probability, small, full)
        resized = F.interpolate(probability[None, None], size=full.shape[:2], mode="bilinear", align_corners=False)
        scores["guided"][stem] = truth.score(stem, guided)
        scores["bilinear"][stem] = truth.score(stem, (resized[0, 0] >= predictor.threshold).cpu().numpy())
    return scores


def run_variant(
    name: str, dataset: Path, pseudo: Path, config: RunConfig, device: torch.device, train_half: str
) -> list[dict]:
    """One trained model of the variant, scored twice: as the run predicts, and as NAME-bilinear."""
    modules, manual = VARIANTS[name]
    photos = ImageSet.from_folder(dataset / "images")
    train_stems, test_stems = split(photos.stems, train_half)
    if not manual:
        train_stems = trusted_pseudo_labels(pseudo, train_stems, config)
    labelled = training_set(dataset, dataset / "masks" if manual else pseudo, train_stems)
    started = time.perf_counter()
    model = train(labelled, config, modules, device)
    trained = time.perf_counter()
    scores = score_test_photos(model, photos.subset(test_stems), ground_truth(dataset), config, device)
    common = {
        "random_seed": config.random_seed,
        "train_photos": len(train_stems),
        "test_photos": len(test_stems),
        "train_s": trained - started,
        "predict_s": time.perf_counter() - trained,
    }
    return [
        {
            "variant": name if upsampling == "guided" else f"{name}-bilinear",
            **common,
            **mean_scores(by_photo.values()),
            "per_photo": {stem: [score.fg_iou, score.miou] for stem, score in by_photo.items()},
        }
        for upsampling, by_photo in scores.items()
    ]


def summarise(results: list[dict]) -> dict[str, dict]:
    """Mean and half-range over random seeds, per variant."""
    summary = {}
    for name in dict.fromkeys(r["variant"] for r in results):
        rows = [r for r in results if r["variant"] == name]
        summary[name] = {"seeds": len(rows)}
        for key in ("fg_iou", "miou", "train_s"):
            values = np.array([r[key] for r in rows])
            summary[name][key] = float(values.mean())
            summary[name][f"{key}_spread"] = float(np.ptp(values) / 2)
    for reference in ("deeplab", "deeplab-bilinear", "manual"):  # whichever order the variants ran in
        if reference in summary:
            for name in summary.keys() - {reference, "manual"}:
                summary[name][reference] = paired_gain(results, name, reference)
    for name in summary:
        summary[name]["ratio_to_manual"] = ratio_to_manual(results, name)
    return summary


def ratio_to_manual(results: list[dict], name: str) -> float | None:
    """Mean test mIoU over the manual-label model's, both taken over the random seeds they share.

    Pooled runs may give the two different seeds; a ratio across seeds would mix in the seeds' spread.
    """
    manual = {r["random_seed"]: r["miou"] for r in results if r["variant"] == "manual"}
    shared = [r for r in results if r["variant"] == name and r["random_seed"] in manual]
    if not shared:
        return None
    return float(np.mean([r["miou"] for r in shared]) / np.mean([manual[r["random_seed"]] for r in shared]))


def paired_gain(results: list[dict], name: str, reference: str) -> dict[str, float]:
    """Per-photo mIoU gain over ``reference`` (same random seed, same photo): mean, standard error, share better."""
    gains = []
    for run in (r for r in results if r["variant"] == name):
        base = next((r for r in results if r["variant"] == reference and r["random_seed"] == run["random_seed"]), None)
        if base is not None:
            gains += [run["per_photo"][stem][1] - base["per_photo"][stem][1] for stem in run["per_photo"]]
    if len(gains) < 2:
        return {}
    gains = np.array(gains)
    standard_error = gains.std(ddof=1) / np.sqrt(len(gains))
    return {"gain": float(gains.mean()), "gain_se": float(standard_error), "better": float((gains > 0).mean())}


def print_table(summary: dict[str, dict]) -> None:
    print(
        "| variant | seeds | test fg IoU | test mIoU | mIoU / manual | mIoU gain over deeplab, per photo "
        "| over deeplab-bilinear | over manual | training s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def gain(row: dict, reference: str) -> str:
        paired = row.get(reference)
        if not paired:
            return "–"
        return f"{paired['gain']:+.4f} ± {paired['gain_se']:.4f} ({paired['better']:.0%} better)"

    for name, row in summary.items():
        ratio = "–" if row["ratio_to_manual"] is None else f"{row['ratio_to_manual']:.3f}"
        print(
            f"| {name} | {row['seeds']} | {row['fg_iou']:.3f} ± {row['fg_iou_spread']:.3f} "
            f"| {row['miou']:.3f} ± {row['miou_spread']:.3f} | {ratio} | {gain(row, 'deeplab')} "
            f"| {gain(row, 'deeplab-bilinear')} | {gain(row, 'manual')} | {row['train_s']:.0f} |"
        )


def write_per_photo(results: list[dict], path: Path) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["variant", "random_seed", "photo", "fg_iou", "miou"])
        for result in results:
            for stem, (fg_iou, miou) in sorted(result["per_photo"].items()):
                writer.writerow([result["variant"], result["random_seed"], stem, f"{fg_iou:.4f}", f"{miou:.4f}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=dataset_folder, nargs="?")
    parser.add_argument("--pseudo", type=Path, help="folder of 0/255 pseudo-label masks")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--random-seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=8, help="training budget, the same for every variant")
    parser.add_argument("--image-size", type=int, default=RunConfig.image_size)
    parser.add_argument("--backbone", default=RunConfig.backbone, choices=BACKBONES)
    parser.add_argument("--colour-jitter", type=float, default=RunConfig.colour_jitter)
    parser.add_argument(
        "--upsample-radius",
        type=int,
        default=BULKY_OBJECT_SETTINGS["upsample_radius"],
        help="sharpening radius of the guided rows",
    )
    parser.add_argument(
        "--grabcut-edge-band",
        type=int,
        default=BULKY_OBJECT_SETTINGS["grabcut_edge_band"],
        help="GrabCut edge band of the guided rows (0: off, as before it was the default)",
    )
    parser.add_argument(
        "--train-half", choices=("even", "odd"), default="even", help="photos at these positions by name train"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation"))
    parser.add_argument("--tag", default="")
    parser.add_argument("--summarise", nargs="+", type=Path, metavar="JSON", help="pool earlier runs' JSON files")
    args = parser.parse_args()
    if args.summarise:
        records = [json.loads(path.read_text()) for path in args.summarise]
        settings = [{**SETTINGS_BEFORE_THEY_WERE_RECORDED, **record} for record in records]
        if len({tuple(setting.get(key) for key in POOLED_SETTINGS) for setting in settings}) > 1:
            parser.error(f"--summarise pools runs only when these match: {', '.join(POOLED_SETTINGS)}")
        print_table(summarise([run for record in records for run in record["runs"]]))
        return
    if args.dataset is None or args.pseudo is None:
        parser.error("give DATASET and --pseudo DIR (or --summarise JSON ...)")
    device = resolve_device("auto")
    results = []
    for random_seed in args.random_seeds:
        config = RunConfig(
            epochs=args.epochs,
            image_size=args.image_size,
            backbone=args.backbone,
            colour_jitter=args.colour_jitter,
            upsample_radius=args.upsample_radius,
            grabcut_edge_band=args.grabcut_edge_band,
            random_seed=random_seed,
        )
        for name in args.variants:
            print(f"== {name}, random seed {random_seed}", flush=True)
            for result in run_variant(name, args.dataset, args.pseudo, config, device, args.train_half):
                scores = f"test fg IoU {result['fg_iou']:.3f}, mIoU {result['miou']:.3f}"
                print(f"   {result['variant']}: {scores}, {result['train_s']:.0f} s training", flush=True)
                results.append(result)
    summary = summarise(results)
    print_table(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{args.dataset.name}{args.tag}"
    record = {
        "dataset": str(args.dataset),
        "pseudo": str(args.pseudo),
        "epochs": args.epochs,
        "image_size": args.image_size,
        "backbone": args.backbone,
        "colour_jitter": args.colour_jitter,
        "upsample_radius": args.upsample_radius,
        "grabcut_edge_band": args.grabcut_edge_band,
        "train_half": args.train_half,
        "summary": summary,
    }
    (args.out / f"{name}.json").write_text(json.dumps({**record, "runs": results}, indent=2))
    write_per_photo(results, args.out / f"{name}.csv")


if __name__ == "__main__":
    main()

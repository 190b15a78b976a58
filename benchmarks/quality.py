"""Label quality on real photographs: a seed (Otsu, CAM or transfer), then GFN refinement.

For each dataset folder (``images/``, ``masks/``, optional ``ignore/``) it runs
the whole labelling path and reports, per iteration, foreground IoU and mIoU
with plain Otsu's figure alongside (Otsu on grey, minority class = object, as
in the project's anchor figures) and the time per iteration.

    python benchmarks/quality.py ../shared/datasets/flowers17 ../shared/datasets/horses \\
        [--iterations 3] [--image-size 320] [--out benchmarks/results/quality] [--SETTING VALUE ...] \\
        [--set upsample_radius=2 --set min_steps=300 ...]

Seeds:
    --seed otsu                       simple photos chosen automatically (default)
    --seed cam [--labels CSV]         image-level classes; default DATASET/labels.csv
    --seed transfer --source half     a source model trained on the masks of every other photo
                                      labels the remaining half (only that half is scored)
    --seed transfer --source DIR      a source model trained on another labelled set (images/, masks/)

No ground truth of the labelled photos is used to train or to choose anything:
their masks are read only to score.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu

from napari_gfn.config import CAM_REFINERS, SEED_METHODS, RunConfig
from napari_gfn.engine import GroundTruth, ImageSet, IterationResult, LabellingError, Notice, resolve_device
from napari_gfn.engine.metrics import mean_scores
from napari_gfn.engine.refine import run_labelling
from napari_gfn.engine.source import LabelledSet, train_source_model
from napari_gfn.network import save_model
from napari_gfn.seeds.cam import crf_available
from napari_gfn.store import RunFolder


def plain_otsu(image: np.ndarray) -> np.ndarray:
    grey = rgb2gray(image[..., :3]) if image.ndim == 3 else image.astype(float)
    bright = grey > threshold_otsu(grey)
    return ~bright if bright.mean() > 0.5 else bright


def plain_otsu_scores(images: ImageSet, truth: GroundTruth) -> dict:
    return mean_scores([truth.score(record.stem, plain_otsu(record.load())) for record in images])


def report(events, rows: list | None = None):
    """Print notices and iteration rows (collected in ``rows``); return the generator's return value."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        if isinstance(event, Notice):
            print(f"  {event.level}: {event.message}", flush=True)
        elif isinstance(event, IterationResult) and rows is not None:
            row = {k: event.metrics.get(k) for k in ("iteration", "fg_iou", "miou", "trusted", "elapsed_s")}
            rows.append(row)
            print(f"  {row}", flush=True)


def _train_source(labelled: LabelledSet, path: Path, overrides: dict, epochs: int) -> tuple[str, float]:
    config = RunConfig(**{**overrides, "epochs": epochs})
    started = time.perf_counter()
    model = report(train_source_model(labelled, config, resolve_device(config.device)))
    save_model(model, path, image_size=config.image_size, source=labelled.name)
    return str(path), time.perf_counter() - started


def _photos_and_source(dataset: Path, out: Path, args, overrides: dict) -> tuple[ImageSet, dict]:
    """The photos to label and, for the transfer seed, a freshly trained source model."""
    photos = ImageSet.from_folder(dataset / "images")
    if args.seed != "transfer":
        return photos, {}
    if args.source == "half":
        source_stems, photos = photos.stems[0::2], photos.subset(photos.stems[1::2])
        whole = LabelledSet.from_folders(dataset / "images", dataset / "masks")
        labelled = LabelledSet(
            f"{dataset.name} (every other photo)",
            whole.images.subset(source_stems),
            {stem: whole.label_paths[stem] for stem in source_stems},
            whole.read_target,
        )
    else:
        labelled = LabelledSet.from_folders(Path(args.source) / "images", Path(args.source) / "masks")
    out.parent.mkdir(parents=True, exist_ok=True)
    model, seconds = _train_source(labelled, out.parent / f"{out.name}.source.pt", overrides, args.source_epochs)
    print(f"  source model: {seconds:.0f} s on {len(labelled.images)} photos of {labelled.name}", flush=True)
    return photos, {"source_model": model, "source_seconds": seconds}


def dataset_folder(text: str) -> Path:
    """An argparse type: a dataset folder with its photos in images/ and true masks in masks/."""
    return _folder_holding(text, ("images", "masks"))


def truth_folder(text: str) -> Path:
    """An argparse type: a dataset folder with true masks in masks/ (and ignore masks in ignore/, if any)."""
    return _folder_holding(text, ("masks",))


def _folder_holding(text: str, parts: tuple[str, ...]) -> Path:
    """Refused at once, not minutes into a run: a path mistyped, or the images/ folder given for the dataset."""
    folder = Path(text)
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{folder}: no such folder")
    if missing := [f"{part}/" for part in parts if not (folder / part).is_dir()]:
        raise argparse.ArgumentTypeError(f"{folder} is not a dataset folder: it has no {' or '.join(missing)}")
    return folder


def check_finished(parser: argparse.ArgumentParser, run: Path, iteration: int) -> None:
    """A usage error, before any work, for an iteration ``run`` has not finished (a default 2 of a shorter run)."""
    if iteration not in (finished := RunFolder(run).finished_iterations()):
        parser.error(f"{run}: iteration {iteration} is not finished; finished: {finished}")


def ground_truth(dataset: Path) -> GroundTruth:
    ignore = dataset / "ignore"
    return GroundTruth(dataset / "masks", ignore if ignore.is_dir() else None)


def run_dataset(dataset: Path, out: Path, args, overrides: dict) -> dict:
    truth = ground_truth(dataset)
    ignore = dataset / "ignore"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    photos, source = _photos_and_source(dataset, out, args, overrides)
    labels = args.labels or (str(dataset / "labels.csv") if args.seed == "cam" else None)
    config = RunConfig(
        images=str(dataset / "images"),
        out=str(out),
        gt=str(dataset / "masks"),
        ignore=str(ignore) if ignore.is_dir() else None,
        seed=args.seed,
        labels=labels,
        source_model=source.get("source_model"),
        **overrides,
    )
    rows, stopped = [], None
    try:
        report(run_labelling(config, images=photos), rows)
    except LabellingError as error:  # the iterations before the stop are still worth reporting
        stopped = str(error)
        print(f"  run stopped: {stopped}", flush=True)
    return {
        "dataset": dataset.name,
        "seed": args.seed,
        "source": args.source,
        "crf": args.seed == "cam" and args.cam_refiner != "guided" and crf_available(),
        "photos": len(photos),
        "config": config.to_dict(),
        "plain_otsu": plain_otsu_scores(photos, truth),
        "iterations": rows,
        "stopped": stopped,
        "source_seconds": source.get("source_seconds"),
        "total_s": time.perf_counter() - started,
    }


def write_per_photo_scores(run: Path, truth: GroundTruth, path: Path) -> None:
    """One CSV row per photo and finished iteration: fg IoU and mIoU, to find failure cases."""
    store = RunFolder(run)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["photo", "iteration", "fg_iou", "miou"])
        for iteration in store.finished_iterations():
            for mask in store.masks_of(iteration):
                score = truth.score(mask.stem, store.read_mask(iteration, mask.stem))
                writer.writerow([mask.stem, iteration, f"{score.fg_iou:.4f}", f"{score.miou:.4f}"])


def print_table(result: dict) -> None:
    otsu = result["plain_otsu"]
    title = f"{result['dataset']}, {result['seed']} seed" + (f" from {result['source']}" if result["source"] else "")
    if result["crf"]:
        title += " (dense CRF)"
    print(
        f"\n### {title}, {result['photos']} photos  (plain Otsu: fg IoU {otsu['fg_iou']:.3f}, mIoU {otsu['miou']:.3f})"
    )
    print("| iteration | fg IoU | mIoU | trusted | seconds |")
    print("|---|---|---|---|---|")
    for row in result["iterations"]:
        cells = f"{row['fg_iou']:.3f} | {row['miou']:.3f} | {row['trusted']} | {row['elapsed_s']:.0f}"
        print(f"| {row['iteration']} | {cells} |")
    if result["iterations"]:
        gain = result["iterations"][-1]["fg_iou"] - otsu["fg_iou"]
        print(f"final minus plain Otsu (fg IoU): {gain:+.3f} (goal >= +0.15)")
    if result["stopped"]:
        print(f"stopped early: {result['stopped']}")


def run_setting(text: str) -> tuple[str, object]:
    """``name=value`` of a RunConfig setting; the value is read as JSON when it parses, else kept as text."""
    name, _, value = text.partition("=")
    if name not in {field.name for field in fields(RunConfig)}:
        raise argparse.ArgumentTypeError(f"{name!r} is not a RunConfig setting")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", type=dataset_folder)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quality"))
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=RunConfig.image_size)
    parser.add_argument("--simple-threshold", type=float, default=RunConfig.simple_threshold)
    parser.add_argument("--simple-max-border", type=float, default=RunConfig.simple_max_border)
    parser.add_argument("--epochs", type=int, default=RunConfig.epochs)
    parser.add_argument("--seed-epochs", type=int, default=RunConfig.seed_epochs)
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--seed", choices=SEED_METHODS, default="otsu")
    parser.add_argument("--labels", help="--seed cam: image-level labels (default DATASET/labels.csv)")
    parser.add_argument("--cam-threshold", type=float, default=RunConfig.cam_threshold)
    parser.add_argument("--cam-refiner", choices=CAM_REFINERS, default=RunConfig.cam_refiner)
    parser.add_argument("--source", help="--seed transfer: 'half' or a labelled dataset folder")
    parser.add_argument("--source-epochs", type=int, default=8, help="epochs for the transfer source model")
    parser.add_argument("--tag", default="", help="suffix for the result names (to keep several runs)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=run_setting,
        metavar="SETTING=VALUE",
        help="any other RunConfig setting (value in JSON), e.g. --set upsample_radius=2; may repeat",
    )
    args = parser.parse_args()
    if args.seed == "transfer" and not args.source:
        parser.error("--seed transfer needs --source half or --source DATASET_DIR")
    overrides = {
        "iterations": args.iterations,
        "image_size": args.image_size,
        "simple_threshold": args.simple_threshold,
        "simple_max_border": args.simple_max_border,
        "epochs": args.epochs,
        "seed_epochs": args.seed_epochs,
        "random_seed": args.random_seed,
        "cam_threshold": args.cam_threshold,
        "cam_refiner": args.cam_refiner,
        **dict(args.set),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets:
        print(f"== {dataset}", flush=True)
        name = f"{dataset.name}-{args.seed}{args.tag}"
        result = run_dataset(dataset, args.out / name, args, overrides)
        write_per_photo_scores(args.out / name, ground_truth(dataset), args.out / f"{name}.csv")
        print_table(result)
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Per-iteration label quality, plotted as in the paper's Fig. 6, with the reference tools as lines.

Reads labelling runs scored against ground truth and draws, for each dataset, foreground IoU and
mIoU against the iteration: one line per run, and dashed lines for the tools a biologist could use
instead (plain Otsu, GrabCut with an inset rectangle, ISNet; their figures are the ones measured in
issue 7). A run is either a run folder that was given ground truth (as ``quality.py`` leaves it) or
the per-photo CSV that ``quality.py`` writes beside it (photo, iteration, fg_iou, miou), whose name
contains the dataset's name. The CSVs kept in ``docs/results/`` let the plot be redrawn without the
run folders.

    python benchmarks/iteration_plots.py benchmarks/results/quality/*/ --out docs/images/results-iterations.png
    python benchmarks/iteration_plots.py docs/results/grabcut-seed-*.csv --out iterations.png
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, even on a headless server
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from napari_gfn.engine.metrics import MaskScore, mean_scores
from napari_gfn.store import RunFolder

# (fg IoU, mIoU) of the reference tools on each set, from issue 7's table.
REFERENCES = {
    "flowers17": {"plain Otsu": (0.531, 0.617), "GrabCut": (0.906, 0.934), "ISNet": (0.823, 0.879)},
    "horses": {"plain Otsu": (0.347, 0.484), "GrabCut": (0.682, 0.774), "ISNet": (0.906, 0.936)},
    "cherry-dev": {"plain Otsu": (0.158, 0.327), "GrabCut": (0.210, 0.435), "ISNet": (0.238, 0.536)},
}
REFERENCE_COLOURS = {"plain Otsu": "0.55", "GrabCut": "tab:olive", "ISNet": "tab:purple"}
METRICS = (("fg_iou", "foreground IoU"), ("miou", "mIoU"))


def read_run(path: Path) -> dict:
    """A run folder's or a per-photo CSV's dataset, label and scored iterations."""
    return read_scores_csv(path) if path.suffix == ".csv" else read_run_folder(path)


def read_scores_csv(path: Path) -> dict:
    """Per-photo scores averaged per iteration, as the run's own metrics average them."""
    dataset = next((name for name in REFERENCES if name in path.stem), None)
    if dataset is None:
        raise SystemExit(f"{path}: the file name names none of the sets {', '.join(REFERENCES)}")
    scores = defaultdict(list)
    with path.open(newline="") as stream:
        for row in csv.DictReader(stream):
            scores[int(row["iteration"])].append(MaskScore(float(row["fg_iou"]), float(row["miou"])))
    iterations = [{"iteration": iteration, **mean_scores(photos)} for iteration, photos in sorted(scores.items())]
    return {"dataset": dataset, "label": path.stem.replace(f"-{dataset}", ""), "iterations": iterations}


def read_run_folder(folder: Path) -> dict:
    """The dataset name (the folder above the photos), the run's label and its scored iterations."""
    store = RunFolder(folder)
    config = store.read_config()
    scales = ",".join(f"{scale:g}" for scale in config.predict_scales)
    return {
        "dataset": Path(config.images).parent.name,
        "label": f"{config.seed} seed, random seed {config.random_seed}, radius {config.upsample_radius}, "
        f"scales {scales}, jitter {config.colour_jitter:g}",
        "iterations": [point for point in store.metrics() if point.get("fg_iou") is not None],
    }


def draw(results: list[dict], out: Path) -> None:
    found = {result["dataset"] for result in results}
    datasets = [name for name in REFERENCES if name in found] + sorted(found - set(REFERENCES))
    results = sorted(results, key=lambda result: result["label"])
    figure, axes = plt.subplots(
        len(METRICS), len(datasets), figsize=(4.2 * len(datasets), 6.4), squeeze=False, sharex=True
    )
    for column, dataset in enumerate(datasets):
        for row, (key, title) in enumerate(METRICS):
            axis = axes[row][column]
            for result in (r for r in results if r["dataset"] == dataset and r["iterations"]):
                iterations = [point["iteration"] for point in result["iterations"]]
                axis.plot(iterations, [point[key] for point in result["iterations"]], "o-", label=result["label"])
            for name, figures in REFERENCES.get(dataset, {}).items():
                axis.axhline(figures[row], ls="--", lw=1, color=REFERENCE_COLOURS[name], label=name)
            axis.set_title(f"{dataset}: {title}", fontsize=10)
            axis.set_ylim(0, 1)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.grid(alpha=0.3)
            axis.set_xlabel("iteration" if row == len(METRICS) - 1 else "")
        # One legend per set, below its column, so it never hides a curve.
        axes[-1][column].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28))
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders or per-photo CSVs, scored against ground truth")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    draw([read_run(path) for path in args.runs], args.out)


if __name__ == "__main__":
    main()

"""Per-iteration label quality, plotted as in the paper's Fig. 6, with the reference tools as lines.

Reads labelling run folders that were given ground truth (as ``quality.py`` makes them) and draws,
for each dataset, foreground IoU and mIoU against the iteration: one line per run (seed method and
random seed), and dashed lines for
the tools a biologist could use instead (plain Otsu, GrabCut with an inset rectangle, ISNet; their
figures are the ones measured in issue 7).

    python benchmarks/iteration_plots.py benchmarks/results/quality/*/ --out docs/images/results-iterations.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, even on a headless server
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from napari_gfn.store import RunFolder

# (fg IoU, mIoU) of the reference tools on each set, from issue 7's table.
REFERENCES = {
    "flowers17": {"plain Otsu": (0.531, 0.617), "GrabCut": (0.906, 0.934), "ISNet": (0.823, 0.879)},
    "horses": {"plain Otsu": (0.347, 0.484), "GrabCut": (0.682, 0.774), "ISNet": (0.906, 0.936)},
    "cherry-dev": {"plain Otsu": (0.158, 0.327), "GrabCut": (0.210, 0.435), "ISNet": (0.238, 0.536)},
}
REFERENCE_COLOURS = {"plain Otsu": "0.55", "GrabCut": "tab:olive", "ISNet": "tab:purple"}
METRICS = (("fg_iou", "foreground IoU"), ("miou", "mIoU"))


def read_run(folder: Path) -> dict:
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
    parser.add_argument("runs", nargs="+", type=Path, help="run folders scored against ground truth")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    draw([read_run(folder) for folder in args.runs], args.out)


if __name__ == "__main__":
    main()

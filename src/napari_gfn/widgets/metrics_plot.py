"""The per-iteration metrics plot inside the Auto-label dock."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["MetricsPlot"]

# metrics.jsonl key -> legend label; IoU lines appear only when the run has ground truth.
CURVES = {
    "change_iou": "mask change (IoU with previous)",
    "fg_iou": "foreground IoU",
    "miou": "mIoU",
}


class MetricsPlot(FigureCanvasQTAgg):
    """One line per metric against the iteration number; redrawn from the run's metrics rows."""

    def __init__(self) -> None:
        # Constrained layout: fixed margins clipped the axis label at the dock's smallest height.
        figure = Figure(figsize=(3.2, 2.2), layout="constrained")
        super().__init__(figure)
        self.axes = figure.add_subplot()
        self.setMinimumHeight(180)
        self.show_metrics([])

    def show_metrics(self, rows: list[dict]) -> None:
        self.axes.clear()
        for key, label in CURVES.items():
            points = [(row["iteration"], row[key]) for row in rows if row.get(key) is not None]
            if points:
                iterations, values = zip(*points, strict=True)
                # Unclipped and above the frame: a point at 1 (masks no longer changing) sits on its edge.
                self.axes.plot(iterations, values, marker="o", label=label, clip_on=False, zorder=3)
        self.axes.set_xlabel("iteration")
        self.axes.set_ylim(0, 1.02)
        self.axes.grid(alpha=0.3)
        if rows:  # every iteration of the run, even one with no point yet: a lone point would get fractional ticks
            iterations = [row["iteration"] for row in rows]
            self.axes.set_xlim(min(iterations) - 0.25, max(iterations) + 0.25)
            self.axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if self.axes.lines:
            self.axes.legend(fontsize="small", loc="lower right")
        else:  # an empty frame would look broken: say when figures will come
            self.axes.text(0.5, 0.5, _why_no_curve(rows), ha="center", va="center", transform=self.axes.transAxes)
        self.draw_idle()

    def plotted(self) -> dict[str, list[float]]:
        """What the plot shows, by legend label (for tests and screenshots' captions)."""
        return {line.get_label(): list(line.get_ydata()) for line in self.axes.lines}

    def note(self) -> str:
        """The words shown in place of curves, when there are none."""
        return "\n".join(text.get_text() for text in self.axes.texts)


def _why_no_curve(rows: list[dict]) -> str:
    if not rows:
        return "no iteration has finished yet"
    return "mask change is plotted from iteration 1;\nIoU when the run has ground truth"

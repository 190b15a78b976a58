"""Take the user guide's screenshots from a real napari viewer: the dock, iterations side by side, the plot.

Labels the demo's synthetic sample photos headless (a few minutes on two
cores), then opens the run with the Auto-label dock's "Open run" and saves
``docs/images/*.png``. Needs a display; on a server use ``xvfb-run -a``.

    xvfb-run -a python docs/make_screenshots.py [--run RUN]   # reuse a finished run folder
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_gfn.demo import run_demo

IMAGES = Path(__file__).parent / "images"


def settle(seconds: float = 1.0) -> None:
    """Let Qt lay out and paint the window before it is grabbed."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        QApplication.processEvents()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished run folder (default: label the demo's photos first)")
    args = parser.parse_args()
    run = args.run or run_demo(Path(tempfile.mkdtemp()))
    IMAGES.mkdir(exist_ok=True)

    viewer = napari.Viewer(title="napari-gfn")
    viewer.window.resize(1500, 950)
    _, dock = viewer.window.add_plugin_dock_widget("napari-gfn", "Auto-label")
    dock.open_run(run)
    dock.browser.step(+3)  # a cluttered photo shows the refinement better than the first, plain one
    settle()
    viewer.screenshot(str(IMAGES / "auto_label_dock.png"), canvas_only=False)

    (viewer.canvas if hasattr(viewer, "canvas") else viewer).grid.enabled = True  # napari 0.9 moved the grid
    viewer.reset_view()
    settle()
    viewer.screenshot(str(IMAGES / "iterations_side_by_side.png"), canvas_only=True)
    dock.plot.grab().save(str(IMAGES / "metrics_plot.png"))
    print(f"wrote {sorted(path.name for path in IMAGES.glob('*.png'))} from run {run}")
    viewer.close()


if __name__ == "__main__":
    main()

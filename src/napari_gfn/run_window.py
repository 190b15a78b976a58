"""napari opened on a run folder from the command line (`napari-gfn open RUN`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

    from napari_gfn.widgets import AutoLabelWidget

__all__ = ["open_run_window", "show_run"]


def open_run_window(viewer: napari.Viewer, run: Path) -> AutoLabelWidget:
    """The Auto-label dock in ``viewer``, showing ``run``: its settings, metrics plot and first photo's masks."""
    _, dock = viewer.window.add_plugin_dock_widget("napari-gfn", "Auto-label")
    dock.open_run(run)
    return dock


def show_run(run: Path) -> None:
    """napari on ``run``, for browsing, comparing and correcting its iterations (blocks until closed)."""
    import napari

    open_run_window(napari.Viewer(title=f"napari-gfn: {run.name}"), run)
    napari.run()

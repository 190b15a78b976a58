"""A run folder shown in napari: read and checked (for the dock and `napari-gfn open RUN`), then opened in a window."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from napari_gfn.config import RunConfig
from napari_gfn.engine import ImageReadError, ImageSet
from napari_gfn.store import RunFolder, RunFolderError

if TYPE_CHECKING:
    import napari

    from napari_gfn.widgets import AutoLabelWidget

__all__ = ["open_run_window", "read_run", "show_run"]


def read_run(run: Path) -> tuple[RunFolder, RunConfig, ImageSet]:
    """``run``'s folder, settings and photos, or a RunFolderError saying which of them cannot be read."""
    store = RunFolder(run)
    config = store.read_config()
    try:
        photos = ImageSet.from_folder(config.images)
    except ImageReadError as error:
        raise RunFolderError(
            f"cannot show run {run}: its photos cannot be read ({error}); photos moved together with "
            "the run are found again when they keep their place relative to the run folder"
        ) from None
    return store, config, photos


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

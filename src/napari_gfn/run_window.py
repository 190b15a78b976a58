"""A run folder shown in napari: read and checked (for the dock and `napari-gfn open RUN`), then opened in a window."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from napari_gfn.config import RunConfig
from napari_gfn.engine import ImageSet
from napari_gfn.engine.run_photos import find_run_photos
from napari_gfn.store import RunFolder, RunFolderError

if TYPE_CHECKING:
    import napari

    from napari_gfn.widgets import AutoLabelWidget

__all__ = ["open_run_window", "read_run", "show_run"]


# How a run finds photos that moved: said where a run cannot find its photos.
PHOTOS_MOVED = (
    "photos moved together with the run are found when they keep their place relative to the run folder; "
    "photos elsewhere are read from the folder given (napari-gfn open RUN --photos DIR, or the Auto-label "
    "dock's Photo folder)"
)


def read_run(run: Path, photos_now: Path | None = None) -> tuple[RunFolder, RunConfig, ImageSet]:
    """``run``'s folder, settings and photos, or a RunFolderError saying which of them cannot be read.

    Photos found neither where they were nor in their place relative to the run are read from ``photos_now``.
    """
    store = RunFolder(run)
    config = store.read_config()
    try:
        folder, photos = find_run_photos(store, config.images, str(photos_now) if photos_now else None)
    except RunFolderError as error:
        raise RunFolderError(f"cannot show run {run}: its photos cannot be read ({error}); {PHOTOS_MOVED}") from None
    return store, config.updated(images=folder), photos


def open_run_window(viewer: napari.Viewer, run: Path, photos_now: Path | None = None) -> AutoLabelWidget:
    """The Auto-label dock in ``viewer``, showing ``run``: its settings, metrics plot and first photo's masks."""
    _, dock = viewer.window.add_plugin_dock_widget("napari-gfn", "Auto-label")
    dock.open_run(run, photos_now)
    return dock


def show_run(run: Path, photos_now: Path | None = None) -> None:
    """napari on ``run``, for browsing, comparing and correcting its iterations (blocks until closed)."""
    import napari

    open_run_window(napari.Viewer(title=f"napari-gfn: {run.name}"), run, photos_now)
    napari.run()

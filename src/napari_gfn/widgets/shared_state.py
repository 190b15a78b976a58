"""What the napari-gfn docks of one viewer share: the chosen source model and the run on screen (and its photos)."""

from __future__ import annotations

import weakref
from pathlib import Path

import napari
from psygnal import Signal

__all__ = ["SharedState", "shared_state"]


class SharedState:
    """Evented state: the Source model dock sets the model, the Auto-label dock the run; others listen."""

    source_model_changed = Signal(object)
    run_changed = Signal(object)

    def __init__(self) -> None:
        self.source_model: Path | None = None
        self.run: Path | None = None
        self.run_photos: Path | None = None

    def choose_source_model(self, path: Path | None) -> None:
        self.source_model = path
        self.source_model_changed.emit(path)

    def show_run(self, path: Path | None, photos: Path | None = None) -> None:
        """The run on screen changed, or gained an iteration; ``photos``: the folder its photos are read from."""
        self.run, self.run_photos = path, photos
        self.run_changed.emit(path)


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def shared_state(viewer: napari.Viewer) -> SharedState:
    # napari hands each dock its own proxy of the viewer; the docks must share the viewer itself.
    viewer = getattr(viewer, "__wrapped__", viewer)
    if viewer not in _STATES:
        _STATES[viewer] = SharedState()
    return _STATES[viewer]

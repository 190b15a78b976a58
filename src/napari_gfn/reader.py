"""napari's reader for phones' HEIC and AVIF photos, which napari's own readers do not open: upright, as photos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from napari_gfn.engine.images import HEIF_SUFFIXES, ImageRecord

if TYPE_CHECKING:
    from napari.types import LayerDataTuple

__all__ = ["get_phone_photo_reader"]

# napari's own readers open every other photo type napari-gfn reads; taking no more spares the user napari's
# question of which reader to use.
SUFFIXES_NAPARI_DOES_NOT_OPEN = (*HEIF_SUFFIXES, ".avif")


def get_phone_photo_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerDataTuple]] | None:
    """napari's reader hook: the reader when every path is a HEIC or AVIF photo, else None (another reader's turn)."""
    paths = _as_paths(path)
    if not paths or any(each.suffix.lower() not in SUFFIXES_NAPARI_DOES_NOT_OPEN for each in paths):
        return None
    return read_photos


def read_photos(path: str | list[str]) -> list[LayerDataTuple]:
    """An Image layer per photo, named after its file as the dock names masks; a bad file raises naming it."""
    paths = _as_paths(path)
    return [(ImageRecord(each.stem, path=each).load(), {"name": each.stem, "rgb": True}, "image") for each in paths]


def _as_paths(path: str | list[str]) -> list[Path]:
    """napari hands a reader one path or a list of them."""
    return [Path(path)] if isinstance(path, str) else [Path(each) for each in path]

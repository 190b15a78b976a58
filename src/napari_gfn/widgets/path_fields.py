"""Paths typed, pasted or chosen in a dock's file fields, read as the user meant them."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import FileEdit

__all__ = ["chosen_path"]


def chosen_path(field: FileEdit, what: str) -> Path:
    """The field's path, with ``~`` expanded and the spaces and quotes a pasted path may bring removed.

    An empty field raises ValueError asking for ``what``: magicgui would read it as ".",
    the folder napari happened to start in.
    """
    text = field.line_edit.value.strip().strip("\"'").strip()
    if not text:
        raise ValueError(f"choose {what}")
    return Path(text).expanduser()

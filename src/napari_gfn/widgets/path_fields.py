"""Paths typed, pasted or chosen in a dock's file fields, read as the user meant them."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import FileEdit

__all__ = ["chosen_path", "given_path"]


def given_path(field: FileEdit) -> Path | None:
    """The field's path, with ``~`` expanded and the spaces and quotes a pasted path may bring removed.

    None for an empty field: magicgui would read it as ".", the folder napari happened to start in.
    """
    text = field.line_edit.value.strip().strip("\"'").strip()
    return Path(text).expanduser() if text else None


def chosen_path(field: FileEdit, what: str) -> Path:
    """The field's path (see ``given_path``); an empty field raises ValueError asking for ``what``."""
    path = given_path(field)
    if path is None:
        raise ValueError(f"choose {what}")
    return path

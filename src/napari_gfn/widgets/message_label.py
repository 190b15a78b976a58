"""A dock's line of text that wraps to the dock's width instead of widening the dock."""

from __future__ import annotations

from magicgui.widgets import Label
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSizePolicy

__all__ = ["message_label"]


def message_label(value: str) -> Label:
    """A Label for a status or a note, which can be long (a run folder's path, an error): one line of it
    widened the dock to the whole text, and napari's canvas shrank to make room."""
    label = Label(value=value)
    label.native.setWordWrap(True)
    # Ignored: the dock's width decides the label's, never the reverse; a path too long for a line is cut.
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.native.setTextInteractionFlags(
        label.native.textInteractionFlags() | Qt.TextInteractionFlag.TextSelectableByMouse
    )
    return label

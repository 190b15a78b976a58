"""A run's log.txt in a read-only window, opened from the notification that says the log holds problems."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import QDialog, QPlainTextEdit, QVBoxLayout, QWidget

__all__ = ["show_log"]


def show_log(path: Path, parent: QWidget | None = None) -> QDialog:
    """Open a window with the log's text, scrolled to its end, where a run's last start and its error are."""
    window = QDialog(parent)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)  # a window per click: closed ones must not pile up
    window.setWindowTitle(str(path))
    text = QPlainTextEdit(window)
    text.setReadOnly(True)
    text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)  # one notice per line, as in the file
    text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    try:
        text.setPlainText(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as error:  # deleted or moved since the run was opened
        text.setPlainText(f"{path}: cannot be read: {error.strerror or error}")
    text.verticalScrollBar().setValue(text.verticalScrollBar().maximum())
    QVBoxLayout(window).addWidget(text)
    window.resize(900, 400)
    window.show()
    return window

"""A run's log.txt in a read-only window, opened from the notification that says the log holds problems."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import QDialog, QPlainTextEdit, QVBoxLayout, QWidget

__all__ = ["show_log"]


def show_log(path: Path, parent: QWidget | None = None) -> QDialog:
    """Open a window with the log's text, scrolled to its end, where a run's last start and its error are."""
    window = QDialog(parent)
    window.setWindowTitle(str(path))
    text = QPlainTextEdit(window)
    text.setReadOnly(True)
    text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)  # one notice per line, as in the file
    text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    text.setPlainText(path.read_text(encoding="utf-8", errors="replace"))
    text.verticalScrollBar().setValue(text.verticalScrollBar().maximum())
    QVBoxLayout(window).addWidget(text)
    window.resize(900, 400)
    window.show()
    return window

"""A run's log.txt in a read-only window, opened from the notification that says the log holds problems."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import QDialog, QPlainTextEdit, QVBoxLayout, QWidget

__all__ = ["LOG_REREAD_MS", "show_log"]

# A run still working (followed from a server) keeps logging; one file check each second while the window is open.
LOG_REREAD_MS = 1000


def show_log(path: Path, parent: QWidget | None = None) -> QDialog:
    """Open a window with the log's text, scrolled to its end, where a run's last start and its error are.

    The window reads the log again when it changes; one scrolled to the end stays at the end.
    """
    window = QDialog(parent)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)  # a window per click: closed ones must not pile up
    window.setWindowTitle(str(path))
    text = QPlainTextEdit(window)
    text.setReadOnly(True)
    text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)  # one notice per line, as in the file
    text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    read = _LogReader(path, text)
    read()
    reread = QTimer(window)  # a child: it stops when the window is closed and deleted
    reread.timeout.connect(read)
    reread.start(LOG_REREAD_MS)
    QVBoxLayout(window).addWidget(text)
    window.resize(900, 400)
    window.show()
    return window


class _LogReader:
    """Puts the log's text in the window when the file has changed since it was last read."""

    def __init__(self, path: Path, text: QPlainTextEdit) -> None:
        self.path, self.text = path, text
        self._read_as: tuple | None = ()  # no file state is (): the first call reads

    def __call__(self) -> None:
        state = self._file_state()
        if state == self._read_as:
            return
        self._read_as = state
        scroll = self.text.verticalScrollBar()
        at_end = scroll.value() == scroll.maximum()
        self.text.setPlainText(self._contents())
        if at_end:
            scroll.setValue(scroll.maximum())

    def _file_state(self) -> tuple | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _contents(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:  # deleted or moved since the run was opened
            return f"{self.path}: cannot be read: {error.strerror or error}"

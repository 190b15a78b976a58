"""GUI-thread work done one step per turn of Qt's event loop, so that napari answers between the steps."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from qtpy.QtCore import QObject, QTimer

__all__ = ["StepwiseWork"]


class StepwiseWork:
    """Runs steps queued in the GUI thread one at a time, in order, with a turn of Qt's event loop between two.

    A step that raises is reported as any Qt callback's error is, and the steps after it still run.
    """

    def __init__(self, parent: QObject) -> None:
        self._steps: deque[Callable[[], object]] = deque()
        self._timer = QTimer(parent)  # a child: no step runs once the dock is deleted
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)  # fires once the events waiting (clicks, redraws) are handled
        self._timer.timeout.connect(self._take_one)

    @property
    def busy(self) -> bool:
        """Whether a step is still to run."""
        return bool(self._steps)

    def add(self, steps: Iterable[Callable[[], object]]) -> None:
        self._steps.extend(steps)
        if self._steps and not self._timer.isActive():
            self._timer.start()

    def _take_one(self) -> None:
        step = self._steps.popleft()
        try:
            step()
        finally:
            if self._steps:
                self._timer.start()

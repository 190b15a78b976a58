"""What a labelling run reports while it works: progress, notices, finished iterations; and how to stop it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from napari_gfn.config import describe_setting

__all__ = [
    "CancelToken",
    "IterationResult",
    "LabellingError",
    "Notice",
    "PhaseBars",
    "Progress",
    "RunCancelled",
    "describe_error",
    "out_of_memory",
]


class LabellingError(RuntimeError):
    """A run cannot go on (no simple photos, no trusted masks, ...); the message says why and what to do."""


def describe_error(error: Exception) -> str:
    """An error's words for a person: a message written for them (a run that cannot go on, a bad file, a full
    disk) stands alone; a bug's ("division by zero") gets its type too, so it can be reported and found."""
    if isinstance(error, LabellingError | ValueError | OSError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def out_of_memory(error: BaseException) -> MemoryError | None:
    """torch's error for memory it could not have (a GPU's taken by other processes, say), in words for a person:
    what ran out, and what needs less. None for any other error."""
    torch = sys.modules.get("torch")  # loaded, if it raised
    if torch is None or not isinstance(error, torch.cuda.OutOfMemoryError):
        return None
    less = (
        f"a smaller {describe_setting('image_size')}; on a GPU that other processes share, "
        f"{describe_setting('device', 'cpu')} or another GPU (cuda:1, say)"
    )
    return MemoryError(f"out of memory: {str(error).rstrip('.')}. To need less memory: {less}")


class RunCancelled(Exception):
    """Raised inside a run when its cancel token is set; finished iterations stay on disk."""


class CancelToken:
    """Thread-safe flag a GUI or signal handler sets and the run checks at least once per batch."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise RunCancelled


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` steps of one phase ("seed: train", "iter 2 of 3: predict", ...), and the seconds the
    whole run has left if every round runs, once a refinement round is under way and paced (None before)."""

    phase: str
    done: int
    total: int
    run_left_s: float | None = None


@dataclass(frozen=True)
class Notice:
    """Something the user should read: a skipped file, a fallback, a stop."""

    message: str
    level: str = "warning"


@dataclass(frozen=True)
class IterationResult:
    """One finished iteration; its masks are on disk at ``mask_paths`` (stem -> PNG)."""

    iteration: int
    mask_paths: dict[str, Path]
    metrics: dict
    checkpoint: Path | None
    elapsed_s: float
    is_best: bool = False
    stems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for a terminal or the run's log: masks, trusted, change, scores, time."""
        metrics = self.metrics
        parts = [f"iteration {self.iteration}: {metrics['images']} masks", f"{metrics['trusted']} trusted"]
        if metrics.get("change_iou") is not None:
            parts.append(f"change IoU {metrics['change_iou']:.3f}")
        if metrics.get("fg_iou") is not None:
            parts.append(f"fg IoU {metrics['fg_iou']:.3f}, mIoU {metrics['miou']:.3f}")
        parts.append(f"{self.elapsed_s:.0f} s")
        return ", ".join(parts) + (" (best so far)" if self.is_best else "")


Event = Progress | Notice | IterationResult


class PhaseBars:
    """Shows :class:`Progress` events as one progress bar per phase, so each phase gets its own ETA; the whole
    run's, once known, follows it.

    ``new_bar(phase, total, postfix)`` makes a tqdm-like bar: tqdm in a terminal, napari's
    ``progress`` in the viewer.
    """

    def __init__(self, new_bar: Callable[[str, int], Any]) -> None:
        self.new_bar = new_bar
        self.bar = None
        self.phase: str | None = None
        self._asked: list[Progress | None] = []  # the latest report (None: close) asked for as a bar was drawn
        self._drawing = False

    def show(self, event: Progress) -> None:
        self._ask(event)

    def close(self) -> None:
        self._ask(None)

    def _ask(self, event: Progress | None) -> None:
        # napari's activity dock lets Qt events in as it draws a bar, and with them the job's next reports or its
        # end: each is drawn once the bar is, the latest alone, or a phase would get a bar per report left open.
        self._asked = [event]
        if self._drawing:
            return
        self._drawing = True
        try:
            while self._asked:
                self._draw(self._asked.pop())
        finally:
            self._drawing = False

    def _draw(self, event: Progress | None) -> None:
        if self.bar is not None and (event is None or event.phase != self.phase):
            self.bar.close()
            self.bar, self.phase = None, None
        if event is None:
            return
        postfix = None if event.run_left_s is None else f"whole run {tqdm.format_interval(event.run_left_s)} left"
        if self.bar is None:
            # Given as it is made: a bar written to a log file writes its first line then.
            self.bar, self.phase = self.new_bar(event.phase, event.total, postfix), event.phase
        elif postfix is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.total = event.total
        self.bar.update(event.done - self.bar.n)

"""Keeps a second process from writing a run folder while one is: the second would discard the first's round."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from napari_gfn._atomic import atomic_write_text

__all__ = ["RunLock", "RunLockedError"]

# A process that looks at a run (napari following it) holds the lock for a moment; a writer starting
# then waits this long rather than taking it for another writer.
WAIT_S = 2.0


class RunLockedError(ValueError):
    """Another process is writing the run."""


class RunLock:
    """The lock ``RUN/writer.lock``, which the process writing a run holds, and ``RUN/writer.json``, which names
    that process.

    The operating system lets the lock go when its process ends in any way, a kill included, so a run stopped
    outright never stays locked. A lock taken on one machine may not reach another over a network disk; the
    lock is then only as good as the disk makes it, and the run as safe as it was without one.
    """

    def __init__(self, root: Path) -> None:
        self.holder_path = root / "writer.json"
        # Not thread-local: a run's generator may be closed by another thread than the one that started it.
        self._lock = FileLock(root / "writer.lock", thread_local=False)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block; a RunLockedError naming the process that holds it otherwise."""
        try:
            self._lock.acquire(timeout=WAIT_S)
            locked = True
        except Timeout:
            raise RunLockedError(self._refusal()) from None
        except (OSError, NotImplementedError):  # a disk without locks: write as runs did before they had one
            locked = False
        try:
            if locked:
                atomic_write_text(self.holder_path, json.dumps(_this_process()))
            yield
        finally:
            if locked:
                self._lock.release()

    def refuse_if_held(self) -> None:
        """A RunLockedError naming the process that writes the run, if one does."""
        if self.holder_path.is_file() and self._is_held():  # never locked: no lock file made in a folder to look
            raise RunLockedError(self._refusal())

    def holder_is_gone(self) -> bool:
        """Whether the process that last wrote the run has surely ended: it ran on this machine, where its
        lock is reliable, and the lock is free. False when that cannot be told."""
        holder = self._holder()
        return holder is not None and holder.get("host") == socket.gethostname() and self._is_held() is False

    def _is_held(self) -> bool | None:
        """Whether a process holds the lock; None when it cannot be tried (a read-only run folder, say)."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return True
        except (OSError, NotImplementedError):
            return None
        self._lock.release()
        return False

    def describe_holder(self) -> str:
        holder = self._holder()
        if holder is None:
            return "another process"
        return f"process {holder.get('pid')} on {holder.get('host')} (since {holder.get('since')})"

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.holder_path.read_text())
        except (OSError, ValueError):  # none yet (a run made before runs had a lock), or half copied
            return None

    def _refusal(self) -> str:
        return (
            f"{self.holder_path.parent} is being written by {self.describe_holder()}: two processes must not "
            "write one run. Wait until it ends, or stop it, then continue the run."
        )


def _this_process() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}

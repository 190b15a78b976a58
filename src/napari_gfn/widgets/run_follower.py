"""Follows a run that another process is writing (on a GPU server, say, over a shared disk) until it ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from qtpy.QtCore import QObject, QTimer

from napari_gfn.run_lock import RunLock
from napari_gfn.store import RunFolder

__all__ = ["FOLLOW_MS", "RunFollower"]

# A round takes minutes; looking for a new one every few seconds costs two file checks and, for a run
# written on this machine, a try of its writer's lock.
FOLLOW_MS = 5000
# A run that has written nothing for this many of its longest refinement rounds, and for this long at least,
# has likely stopped without a word: killed for lack of memory, say, or its machine lost power.
QUIET_ROUNDS = 3
QUIET_MIN_S = 600.0


class RunFollower:
    """Looks at a run folder every few seconds while its log shows no end.

    ``on_change`` is called when the run writes a finished iteration or a log entry, ``on_status`` with a
    line to show: what has finished so far, and when the run last wrote, so that a run killed outright
    (which never logs its end) on another machine shows as one that stopped writing, and after long quiet
    as one that has likely stopped. One killed on this machine ends the following, as its lock tells.
    ``on_end`` gets how the run ended.
    """

    def __init__(
        self,
        parent: QObject,
        on_change: Callable[[], None],
        on_status: Callable[[str], None],
        on_end: Callable[[str], None],
    ) -> None:
        self.on_change = on_change
        self.on_status = on_status
        self.on_end = on_end
        self.store: RunFolder | None = None
        self._start_refused = False
        self._written: tuple = ()
        self._planned = self._finished = 0
        self._longest_round = 0.0
        self._ends_about: float | None = None
        self._timer = QTimer(parent)
        self._timer.setInterval(FOLLOW_MS)
        self._timer.timeout.connect(self._look)

    @property
    def following(self) -> bool:
        return self._timer.isActive()

    def refuses_start(self, run: Path) -> bool:
        """Whether a Start on ``run`` is to be refused: the first while it is followed, as a resume would discard
        the round another process is writing. The next is the user's word that the process was stopped."""
        refused = self.following and not self._start_refused and self.store.root.resolve() == run.resolve()
        self._start_refused |= refused
        return refused

    @property
    def last_written_at(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self._last_write))

    @property
    def _last_write(self) -> float:
        return max(when for when, _ in self._written)

    def follow(self, store: RunFolder) -> None:
        """Follow ``store`` while it may still be running; otherwise stop following any run."""
        self.stop()
        self.store, self._start_refused = store, False
        if store.how_it_ended() is not None:
            return
        if gone := self._writer_gone():  # killed before it was opened: say so, as the log cannot
            self.on_status(f"{store.root.name}: {gone}")
            return
        self._written = self._last_written()
        self._planned = store.read_config().iterations + 1  # the seed, then the rounds
        self._timer.start()
        self._note_progress()

    def stop(self) -> None:
        self._timer.stop()

    def _last_written(self) -> tuple:
        """When and how much the run last wrote: its finished iterations' list and its log."""
        files = (self.store.metrics_path, self.store.log_path)
        return tuple((stat.st_mtime, stat.st_size) for stat in (path.stat() for path in files if path.is_file()))

    def _look(self) -> None:
        if not self.store.is_run():  # not the end of a run: its files would read as "no run"
            self._stop_following("its folder no longer holds the run (moved, deleted, or its disk unmounted)")
            return
        try:
            written = self._last_written()
            if written == self._written:
                ended = self._writer_gone()
                if ended is None:
                    self._say_if_quiet()
                    return
            else:
                self.on_change()
                ended = self.store.how_it_ended()
        except OSError as error:  # a network disk that stopped answering, say
            self._stop_following(str(error))
            return
        except ValueError:  # a file caught half copied (by rsync, say): read it again at the next look
            return
        self._written = written
        if ended is None:
            self._note_progress()
        else:
            self.stop()
            self.on_status(f"{self.store.root.name}: {ended}")
            self.on_end(ended)

    def _writer_gone(self) -> str | None:
        """Why a run whose log shows no end will write no more: the process writing it, on this machine, ended."""
        lock = RunLock(self.store.root)
        if not lock.holder_is_gone():
            return None
        return (
            f"stopped without logging how it ended: {lock.describe_holder()}, which was writing it, has ended "
            "(killed, or crashed); Start continues the run"
        )

    def _stop_following(self, why: str) -> None:
        self.stop()
        self.on_status(f"stopped following {self.store.root}: {why}")

    def _note_progress(self) -> None:
        """Read what the run has finished, and say so."""
        metrics = self.store.metrics()
        self._finished = len(metrics)
        # Rounds, not the seed: a seed that trains on a few simple photos, or none, is over far sooner.
        rounds = [entry.get("elapsed_s") or 0.0 for entry in metrics if entry["iteration"] >= 1]
        self._longest_round = max(rounds, default=0.0)
        self._ends_about = None
        if rounds and self._finished < self._planned:  # each round left as long as the last, from its end
            rounds_left = self._planned - self._finished
            self._ends_about = self.store.metrics_path.stat().st_mtime + rounds_left * rounds[-1]
        self._say_following()

    def _say_if_quiet(self) -> None:
        if self._quiet_for() is not None:  # a run quiet for long: the line says for how long, as time passes
            self._say_following()

    def _quiet_for(self) -> float | None:
        """How long the run has written nothing, once that is long enough to say it has likely stopped. Never
        before a round has finished: a seed on hundreds of photos can take half an hour on a CPU without a word."""
        quiet = time.time() - self._last_write
        long_enough = self._longest_round and quiet > max(QUIET_MIN_S, QUIET_ROUNDS * self._longest_round)
        return quiet if long_enough else None

    def _say_following(self) -> None:
        line = (
            f"following {self.store.root.name}, which may still be running: {self._finished} of {self._planned} "
            f"iterations finished; last written at {self.last_written_at}"
        )
        if (quiet := self._quiet_for()) is not None:
            line += (
                f", {_how_long(quiet)} ago, over {QUIET_ROUNDS} times its longest round: it has likely stopped "
                "without a word (killed?)"
            )
        elif self._ends_about is not None:
            ends = time.strftime("%H:%M", time.localtime(self._ends_about))
            line += f"; at its last round's pace, it ends about {ends}"
        self.on_status(line)


def _how_long(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = round(seconds / 3600)
    return f"{hours} h" if hours < 48 else f"{round(hours / 24)} days"

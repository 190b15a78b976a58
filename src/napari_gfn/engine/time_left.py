"""The time a whole run has left, said with each refinement round's progress after the phase's own ETA."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import TypeVar

from napari_gfn.engine.events import Event, Progress

Returned = TypeVar("Returned")


@dataclass
class _PhasePace:
    """One phase's steps done and the time, at its first progress report and at its latest."""

    total: int
    first_done: int
    first_s: float
    latest_done: int
    latest_s: float

    @property
    def known(self) -> bool:
        # A phase reports first as it starts (training) or as its first photo is done (prediction): its pace is
        # known once it reports a step done after that.
        return self.latest_done > self.first_done

    def seconds(self, steps: int) -> float:
        return (self.latest_s - self.first_s) / (self.latest_done - self.first_done) * steps


@dataclass
class _Round:
    timed_s: float | None
    rounds_after: int
    started: float


class RunTimeLeft:
    """Adds to each :class:`Progress` of a refinement round the seconds the whole run has left, if every round
    runs and each round after this one takes as long as this one: rounds of one run train and predict alike.

    A round's length is the last round's, once one has been timed. Round 1 (or a resumed run's first round)
    is not: its length is its time so far, the rest of its phase at the phase's own pace (known from its second
    report on), and, as it trains, a prediction as long as the seed's (the same network predicting the same
    photos). The seed's training is no guide to round 1's: in napari, round 1 trained at half the seed's pace.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._prediction: _PhasePace | None = None  # the latest prediction with a pace
        self._phase: tuple[str, _PhasePace] | None = None
        self._round: _Round | None = None

    def start_round(self, timed_s: float | None, rounds_after: int) -> None:
        """A refinement round starts: the last round took ``timed_s`` (None before one is timed)."""
        self._round = _Round(timed_s, rounds_after, self._clock())

    def said_by(self, events: Generator[Event, None, Returned]) -> Generator[Event, None, Returned]:
        """``events``, each :class:`Progress` with the whole run's time left once a round has started."""
        try:
            while True:
                try:
                    event = next(events)
                except StopIteration as finished:
                    return finished.value
                if isinstance(event, Progress):
                    self._paced(event)
                    event = replace(event, run_left_s=self._seconds())
                yield event
        finally:
            events.close()

    def _seconds(self) -> float | None:
        if self._round is None:
            return None
        elapsed = self._clock() - self._round.started
        round_s = self._round.timed_s if self._round.timed_s is not None else self._untimed_round_s(elapsed)
        if round_s is None:
            return None
        return max(round_s - elapsed, 0.0) + self._round.rounds_after * round_s

    def _paced(self, event: Progress) -> None:
        now = self._clock()
        if self._phase is None or self._phase[0] != event.phase:
            self._phase = (event.phase, _PhasePace(event.total, event.done, now, event.done, now))
        pace = self._phase[1]
        pace.total, pace.latest_done, pace.latest_s = event.total, event.done, now
        if pace.known and _kind(event.phase) == "predict":
            self._prediction = pace

    def _untimed_round_s(self, elapsed: float) -> float | None:
        if self._phase is None:
            return None
        phase, pace = self._phase
        kind = _kind(phase)
        if not pace.known or kind not in ("train", "predict"):
            return None
        round_s = elapsed + pace.seconds(pace.total - pace.latest_done)
        if kind == "predict":
            return round_s
        prediction = self._prediction
        return round_s + prediction.seconds(prediction.total) if prediction else None


def _kind(phase: str) -> str:
    """A phase's kind: "train" of "iter 1 of 3: train" and of "seed: train"."""
    return phase.rsplit(": ", 1)[-1]

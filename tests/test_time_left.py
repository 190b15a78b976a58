"""The whole run's time left, against figures worked out by hand on a run whose clock the test sets."""

import pytest

from napari_gfn.engine.events import Notice, Progress
from napari_gfn.engine.time_left import RunTimeLeft


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def reported(clock: Clock, timeline: list[tuple[float, str, int, int]]):
    """Progress of a phase as a run reports it: (time, phase, done, total); returns "done" as a round does."""
    for now, phase, done, total in timeline:
        clock.now = now
        yield Progress(phase, done, total)
    yield Notice("not progress: passed on as it is")
    return "done"


def said(time_left: RunTimeLeft, clock: Clock, timeline) -> tuple[list, str]:
    events = time_left.said_by(reported(clock, timeline))
    figures = []
    while True:
        try:
            event = next(events)
        except StopIteration as finished:
            return figures, finished.value
        figures.append(event.run_left_s if isinstance(event, Progress) else event)


def seed_with_a_network(clock: Clock, time_left: RunTimeLeft) -> list:
    # Training, 10 steps of 1 s; then its network predicts 8 photos, 0.5 s each (the first reported when done).
    training = [(float(done), "seed: train", done, 10) for done in range(11)]
    prediction = [(10 + 0.5 * done, "iter 0 of 3: predict", done, 8) for done in range(1, 9)]
    figures, _ = said(time_left, clock, training + prediction)
    return figures


def test_round_one_is_timed_by_its_own_pace_and_the_seeds_prediction_then_each_round_by_the_last():
    clock = Clock()
    time_left = RunTimeLeft(clock)
    assert set(seed_with_a_network(clock, time_left)[:-1]) == {None}  # no round has started

    clock.now = 15.0
    time_left.start_round(None, rounds_after=2)
    round_one = [
        (16.0, "iter 1 of 3: train", 0, 20),  # no pace yet: the seed's is no guide
        (26.0, "iter 1 of 3: train", 5, 20),  # 2 s a step, and the seed's prediction, 0.5 s a photo
        (57.0, "iter 1 of 3: predict", 1, 8),  # no pace yet
        (59.0, "iter 1 of 3: predict", 3, 8),  # 1 s a photo
    ]
    figures, returned = said(time_left, clock, round_one)
    # Round so far + phase left + prediction = round; its rest + 2 rounds after.
    by_hand = [None, (15 * 2 + 8 * 0.5) + 2 * (11 + 15 * 2 + 8 * 0.5), None, 5 * 1 + 2 * (44 + 5 * 1)]
    assert figures[:-1] == pytest.approx(by_hand)
    assert isinstance(figures[-1], Notice)
    assert returned == "done"

    clock.now = 62.0
    time_left.start_round(50.0, rounds_after=1)
    figures, _ = said(time_left, clock, [(63.0, "iter 2 of 3: train", 0, 20), (120.0, "iter 2 of 3: train", 19, 20)])
    assert figures[:-1] == [(50 - 1) + 50, 0 + 50]  # round 2 overran its 50 s: nothing left of it, one round after


def test_round_one_after_a_seed_without_a_network_is_timed_once_its_prediction_is_paced():
    clock = Clock()
    time_left = RunTimeLeft(clock)
    said(time_left, clock, [(0.0, "seed: train classifier", 0, 4), (4.0, "seed: train classifier", 4, 4)])
    said(time_left, clock, [(5.0, "iter 0 of 2: seed masks", 1, 8), (6.0, "iter 0 of 2: seed masks", 8, 8)])
    time_left.start_round(None, rounds_after=1)
    figures, _ = said(
        time_left,
        clock,
        [
            (7.0, "iter 1 of 2: train", 0, 10),
            (17.0, "iter 1 of 2: train", 10, 10),  # paced, but how long its prediction will take is not known
            (18.0, "iter 1 of 2: predict", 1, 8),
            (22.0, "iter 1 of 2: predict", 5, 8),
        ],
    )
    assert figures[:-1] == [None, None, None, 3 * 1 + 1 * (16 + 3 * 1)]

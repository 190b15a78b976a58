"""Timing and memory helpers shared by the benchmark scripts."""

import resource
import statistics
import time
from pathlib import Path


def median_seconds(function, repeats: int) -> float:
    """Median wall time of ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_ratio(numerator, denominator, repeats: int) -> float:
    """Median over ``repeats`` back-to-back pairs of time(numerator) / time(denominator).

    Alternating the two calls exposes both to the same machine load, which
    matters on a shared 2-core box where load drifts by several percent.
    """
    numerator()
    denominator()
    ratios = []
    for _ in range(repeats):
        start = time.perf_counter()
        numerator()
        middle = time.perf_counter()
        denominator()
        ratios.append((middle - start) / (time.perf_counter() - middle))
    return statistics.median(ratios)


def current_rss_mb() -> float:
    """This process's resident memory now, in MiB (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20

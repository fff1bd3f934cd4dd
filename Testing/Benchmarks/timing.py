"""What the benchmarks share: the median wall time of repeated calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(function: Callable[[], object], repeats: int, warm_up: bool = False) -> float:
    """The median of ``repeats`` timed calls of ``function`` (after one untimed call with ``warm_up``)."""
    if warm_up:
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)

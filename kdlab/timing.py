"""Wall-clock timing for the benchmarks: the median of repeated runs, taken round-robin."""
from __future__ import annotations

import statistics
import time


def median_seconds(runs, repeats):
    """Median wall time of each callable in `runs` ({name: callable}), timed round-robin after one warm-up each."""
    times = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}

"""Compiled kernels over seeds on threads: the chunks of seeds of one nogil kernel call run on a small pool
beside the calling thread (the gmm engine's fits and measures, the detector's logistic fits). Each seed's
numbers depend on its own rows only, so the results are the same whatever the threads and their timing.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

PARALLEL_WORK = 2_000_000  # point x component x d^2 operations (~0.5 ms) below which threads lose
CHUNKS_PER_THREAD = 4  # a descheduled thread's chunks go to the others
HELPER = "seed-helper"
_pool: list[ThreadPoolExecutor] = []


def _helpers() -> ThreadPoolExecutor:
    """The threads beside the caller's (NUMBA_NUM_THREADS - 1, at least one), started at first use."""
    import numba

    if not _pool:
        _pool.append(ThreadPoolExecutor(max(numba.config.NUMBA_NUM_THREADS - 1, 1), thread_name_prefix=HELPER))
    return _pool[0]


def over_seeds(kernel: Callable[..., Any], work: int, seeds: int, *args: Any) -> list[Any]:
    """Run a nogil kernel on chunks of the seeds in threads (NUMBA_NUM_THREADS, default all cores), in
    one call when the work is small; the arrays in args with `seeds` rows are cut, the rest shared.
    The calling thread takes chunks too, so one thread fewer has to wake (on a virtual machine a wake
    costs ~0.1 ms). Returns each chunk's result in order. Each seed's numbers depend on its own rows only."""
    return start_over_seeds(kernel, work, seeds, *args)()


def start_over_seeds(kernel: Callable[..., Any], work: int, seeds: int, *args: Any) -> Callable[[], list[Any]]:
    """over_seeds begun: the helper threads start on the chunks now; the returned function has the
    calling thread take the chunks still left, waits for the helpers and returns the results."""
    if work < PARALLEL_WORK or threading.current_thread().name.startswith(HELPER):
        return lambda: [kernel(*args)]  # a helper's own call in one piece: its chunks would wait behind it
    import numba  # (after the test: a small numpy problem starts no numba)

    threads = min(numba.config.NUMBA_NUM_THREADS, seeds)
    if threads < 2:
        return lambda: [kernel(*args)]
    bounds = np.linspace(0, seeds, min(seeds, threads * CHUNKS_PER_THREAD) + 1).astype(int)
    spans = list(zip(bounds, bounds[1:]))
    results: list[Any] = [None] * len(spans)
    claim = itertools.count()  # next() on it is atomic under the GIL

    def cut(a: Any, lo: int, hi: int) -> Any:
        return a[lo:hi] if isinstance(a, np.ndarray) and a.ndim and a.shape[0] == seeds else a

    def take_chunks() -> None:
        while (i := next(claim)) < len(spans):
            results[i] = kernel(*(cut(a, *spans[i]) for a in args))

    helpers = [_helpers().submit(take_chunks) for _ in range(threads - 1)]

    def finish() -> list[Any]:
        take_chunks()
        for f in helpers:
            f.result()
        return results

    return finish

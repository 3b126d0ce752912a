"""Self-BLEU's clipped counts compiled (numba): engines/cross_prompt.py's inner loop over hypotheses and
references, which in numpy calls took a quarter of a second per seed at 612 continuations."""

from __future__ import annotations

import numpy as np
from numba import njit

from . import numba_cache  # noqa: F401 (numba's cache in collapse-tui's folder)


@njit(cache=True, nogil=True, error_model="numpy")
def clipped_matches(ids: np.ndarray, hyps: np.ndarray, refs: np.ndarray) -> int:
    """BLEU's clipped count summed over the hypotheses: each distinct gram of continuation hyps[i] counts
    min(its count there, its most in one of the continuations refs[i]); ids (k, runs) gram ids, each row
    sorted (the caller sorts them with numpy). Plain loops: np.sort and fancy indexing here made numba's
    first compile 4.9 s of CPU (every new machine, every test session's worker), these 1.0 s; also 1.5x
    faster to run."""
    k, runs = ids.shape
    top = 0
    for a in range(k):
        for j in range(runs):
            top = max(top, ids[a, j])
    slot = np.empty(top + 1, np.int64)  # a gram's place among the hypothesis' distinct grams, -1: none
    for x in range(top + 1):
        slot[x] = -1
    distinct, counts = np.empty(runs, np.int64), np.empty(runs, np.int64)
    in_ref, most = np.empty(runs, np.int64), np.empty(runs, np.int64)
    total = 0
    for i in range(hyps.shape[0]):
        grams = ids[hyps[i]]
        g = -1
        for j in range(runs):  # the hypothesis' distinct grams, ascending, with their counts
            if j == 0 or grams[j] != grams[j - 1]:
                g += 1
                distinct[g], counts[g] = grams[j], 0
            counts[g] += 1
        g += 1
        for j in range(g):
            slot[distinct[j]] = j
            most[j] = 0
        for r in range(refs.shape[1]):
            in_ref[:g] = 0
            row = refs[i, r]
            for c in range(runs):
                at = slot[ids[row, c]]
                if at >= 0:
                    in_ref[at] += 1
            for j in range(g):
                most[j] = max(most[j], in_ref[j])
        for j in range(g):
            total += min(counts[j], most[j])
            slot[distinct[j]] = -1
    return total

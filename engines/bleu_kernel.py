"""Self-BLEU's clipped counts compiled (numba): engines/cross_prompt.py's inner loop over hypotheses and
references, which in numpy calls took a quarter of a second per seed at 612 continuations."""

from __future__ import annotations

import numpy as np
from numba import njit

from . import numba_cache  # noqa: F401 (numba's cache in collapse-tui's folder)


@njit(cache=True, nogil=True, error_model="numpy")
def clipped_matches(ids: np.ndarray, hyps: np.ndarray, refs: np.ndarray) -> int:
    """BLEU's clipped count summed over the hypotheses: each distinct gram of continuation hyps[i] counts
    min(its count there, its most in one of the continuations refs[i]); ids (k, runs) gram ids."""
    runs = ids.shape[1]
    slot = np.full(ids.max() + 1, -1, np.int64)  # a gram's place among the hypothesis' distinct grams
    in_ref = np.zeros(runs, np.int64)
    most = np.zeros(runs, np.int64)
    total = 0
    for i in range(len(hyps)):
        grams = np.sort(ids[hyps[i]])
        distinct = np.empty(runs, np.int64)
        counts = np.zeros(runs, np.int64)
        g = 0
        for j in range(runs):  # the hypothesis' distinct grams, ascending, with their counts
            if j > 0 and grams[j] != grams[j - 1]:
                g += 1
            distinct[g] = grams[j]
            counts[g] += 1
        g += 1
        slot[distinct[:g]] = np.arange(g)
        most[:g] = 0
        for r in refs[i]:
            in_ref[:g] = 0
            for x in ids[r]:
                if slot[x] >= 0:
                    in_ref[slot[x]] += 1
            for j in range(g):
                most[j] = max(most[j], in_ref[j])
        for j in range(g):
            total += min(counts[j], most[j])
        slot[distinct[:g]] = -1
    return total

"""What generation n+1 trains on: the data modes of the paper and of the mitigations after it.

Arrays hold the seeds on axis 0 and examples on axis 1; each seed draws with its own RNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

# the modes whose training sets hold real examples after generation 0, first (next_data's layout)
WEIGHABLE = ("keep", "fresh", "accumulate")


def subset(x: np.ndarray, k: int, rngs: list[np.random.Generator]) -> np.ndarray:
    """k examples per seed, drawn without replacement."""
    idx = np.stack([rng.permutation(x.shape[1])[:k] for rng in rngs])
    return np.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def next_data(
    mode: str,
    *,
    prev: np.ndarray,
    pool: np.ndarray,
    real: np.ndarray,
    samples: np.ndarray,
    rngs: list[np.random.Generator],
    keep_fraction: float,
    fresh_fraction: float,
    draw_fresh: Callable[[int], np.ndarray],
    size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(training data, accumulated pool) for the next generation.

    replace: the samples alone. keep: keep_fraction of the real examples, redrawn every generation,
    the rest samples. accumulate: everything so far. accumulate-subsample: everything so far, then
    the original size drawn from it. fresh: fresh_fraction newly drawn real examples, the rest samples.
    size: the training set's size when it is not the real set's (seeds pooling samples: mixing.py).
    Every mode puts the real examples first (real_count says how many): example_weights relies on it.
    """
    n = size or real.shape[1]
    if mode == "replace":
        return samples[:, :n], pool
    if mode == "keep":
        k = round(keep_fraction * n)
        return np.concatenate([subset(real, k, rngs), subset(samples, n - k, rngs)], axis=1), pool
    if mode == "accumulate":
        data = np.concatenate([prev, samples], axis=1)
        return data, data
    if mode == "accumulate-subsample":
        pool = np.concatenate([pool, samples], axis=1)
        return subset(pool, n, rngs), pool
    if mode == "fresh":
        k = round(fresh_fraction * n)
        return np.concatenate([draw_fresh(k), subset(samples, n - k, rngs)], axis=1), pool
    raise ValueError(f"unknown data mode {mode!r}")


def real_count(mode: str, prev: int, n: int, keep_fraction: float, fresh_fraction: float) -> int:
    """How many of the first examples of the training set of n that next_data makes are real, when prev of
    the previous training set's were: keep and fresh their round(fraction * n), accumulate prev (the
    previous set comes first), replace none, accumulate-subsample none it can tell (its draw mixes them)."""
    if mode == "accumulate":
        return prev
    if mode in ("keep", "fresh"):
        return round((keep_fraction if mode == "keep" else fresh_fraction) * n)
    return 0


def example_weights(share: float, k: int, n: int, seeds: int) -> np.ndarray | None:
    """Per-example fit weights (seeds, n) that give the first k (real) examples the share of the fit and
    the others the rest, whatever their counts: share / k and (1 - share) / (n - k) each, scaled to mean 1
    (so a weight is a count: weights of 1 are the unweighted fit). None where there is nothing to weigh
    (no real or no synthetic example) or the share is the real examples' own by count (to the last bits):
    the unweighted fit, exactly."""
    if k in (0, n) or math.isclose(share * n, k, rel_tol=1e-12):
        return None
    w = np.full(n, (1.0 - share) * n / (n - k))
    w[:k] = share * n / k
    return np.broadcast_to(w, (seeds, n))

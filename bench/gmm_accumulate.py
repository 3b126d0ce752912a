"""Benchmark: the gmm engine at accumulate's scale. Generation n of `gmm-accumulate` fits all (n + 1) x 1000
points gathered so far, so the run's cost grows with the pool. Prints

1. the EM fit's cost per point and EM iteration (k-means included) at pool sizes 1000 (the replace
   run's) and larger ones, measured in this run: the ratio shows whether the per-point cost holds;
2. a short accumulate run (fit, sample, pool grows), its EM iterations per fit, and from both the
   estimated cost of a 2000-generation accumulate run (fits only; the rest is per generation).

    .venv/bin/python bench/gmm_accumulate.py            # pools up to 100,000, 60 accumulate generations
    .venv/bin/python bench/gmm_accumulate.py --quick    # pools up to 20,000, 20 generations
"""

from __future__ import annotations

import argparse
import os
import time

import machine
import numpy as np
from gmm_em import engine_module

M = 1000  # points added per generation, as the preset
SEEDS = 8  # gmm-accumulate's


def per_point_iteration(pool: int, repeats: int) -> tuple[float, float]:
    """Seconds per point per EM iteration of fitting SEEDS x pool real points, and the mean iterations."""
    gmm = engine_module()
    rngs = [np.random.default_rng(s) for s in range(SEEDS)]
    data = np.stack([r.standard_normal((pool, 2)) for r in rngs])
    best, iters = np.inf, 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        _, info = gmm.fit_mixtures(data, rngs, 2)
        seconds = time.perf_counter() - start
        # k-means and the final E-step count as one more pass each
        passes = (info[:, 0] + info[:, 3] + 1).sum()
        best, iters = min(best, seconds / (passes * pool)), info[:, 0].mean()
    return best, iters


def accumulate_run(generations: int) -> tuple[np.ndarray, float]:
    """EM iterations per generation (mean over seeds) of an accumulate run, and its fit seconds."""
    gmm = engine_module()
    eng = gmm.GMMEngine()
    rngs = [np.random.default_rng(s) for s in range(SEEDS)]
    pool = eng.real_data(rngs)
    iters, fit_s = [], 0.0
    for _ in range(generations):
        start = time.perf_counter()
        model = eng.fit(pool, rngs, lambda *_: None).model
        fit_s += time.perf_counter() - start
        iters.append(eng.last_info[:, 0].mean())
        pool = np.concatenate([pool, eng.sample(model, M, rngs, lambda *_: None).samples], axis=1)
    return np.array(iters), fit_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    pools = (1000, 10_000, 20_000) if args.quick else (1000, 10_000, 100_000)
    generations = 20 if args.quick else 60
    print(f"machine: {machine.cpu()}")
    per_point_iteration(1000, 1)  # compile or load the kernels

    base, _ = per_point_iteration(pools[0], 20)
    print(f"EM fit, {SEEDS} seeds, cost per point and pass (EM iteration or k-means pass), best of repeats:")
    for pool in pools:
        cost, iters = (base, None) if pool == pools[0] else per_point_iteration(pool, 3 if pool > 20_000 else 8)
        note = "" if iters is None else f", mean EM iterations {iters:.0f}"
        print(f"  pool {pool:>7}: {cost * 1e9:6.1f} ns  ({cost / base:.2f}x the pool of {pools[0]}{note})")

    iters, fit_s = accumulate_run(generations)
    print(f"\naccumulate run, {SEEDS} seeds x {generations} generations: fits {fit_s:.1f} s")
    late = iters[generations // 2 :].mean()
    print(f"EM iterations per fit: generation 0 {iters[0]:.0f}, mean of the second half {late:.0f}")
    # generation n fits (n + 1) * M points per seed; at the measured cost per point and pass, with the
    # second half's iterations (+1 k-means pass, +1 final E-step, as counted above)
    big, _ = per_point_iteration(pools[-1], 1)
    points = sum((n + 1) * M for n in range(2000))
    estimate = SEEDS * points * (late + 2) * big
    print(f"estimated fits of a 2000-generation gmm-accumulate run ({SEEDS} seeds, pool up to 2M points):")
    print(f"  {SEEDS} x {points:.3g} points x {late + 2:.0f} passes x {big * 1e9:.1f} ns = {estimate / 60:.0f} min")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

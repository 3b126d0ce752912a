"""Benchmark: how far the gmm engine's EM pass (K = 2, d = 2, full covariance: `_e_m_pass_k2d2`) is from
this machine's limits, all measured in this run on one thread:

1. the machine: peak float64 arithmetic of one core, as numpy's BLAS dgemm reaches it (1000 x 1000, FMA
   counted as 2 flops), and what a compiled elementwise loop of the EM's kind reaches without fastmath (a
   multiply and an add per element of an L1-resident array, vectorized, no FMA contraction, loads and
   stores included); memory bandwidth (a 400 MB copy);
2. the EM pass: ns per point and iteration at 1,000 points (the replace run's, L1-resident) and 1,000,000
   (from memory), the flops it does per point (FLOPS_PER_POINT, counted from the code below), and the
   ratios: measured against the arithmetic peak and against the bytes it reads at the measured bandwidth.

    OMP_NUM_THREADS=1 .venv/bin/python bench/gmm_em_limit.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core's peak: before numpy loads its BLAS

import machine
import numpy as np
from numba import njit

# Flops per point of one _e_m_pass_k2d2 iteration (adds, multiplies, divides, max/min, compares; the
# exponent's integer bit work not counted), from engines/gmm_kernels.py:
#   _block_terms_k2d2      4 deviations, 2 x (1 + 3) Cholesky-factor products, 2 x 5 for the two log
#                          terms, 1 for -|l1 - l0|                                                     23
#   _exp_nonpositive       max, a log2(e) + 0.5, floor, 4 for the reduction, 13 Horner steps x 2, the
#                          last multiply-add, the scale                                                 36
#   _responsibilities_k2d2 1 + e, 1 / norm, e r_top, the compare, the max                                5
#   the sums               4 deviations again, the log sum and product 2, 2 responsibility sums,
#                          2 x (2 products + 2 sums + 3 x 2 second moments)                             28
FLOPS_PER_POINT = 23 + 36 + 5 + 28
BYTES_PER_POINT = 16  # the two coordinates read (the block's temporaries stay in L1)


def best_of(fn, repeats: int = 7) -> float:  # noqa: ANN001
    fn()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def dgemm_gflops() -> float:
    a, b = np.random.default_rng(0).random((2, 1000, 1000))
    return 2e9 / best_of(lambda: a @ b) / 1e9


@njit(error_model="numpy")
def _mul_add_loop(x: np.ndarray, reps: int) -> float:
    """reps passes of a multiply and an add on each of x's elements (16 KB: in L1), each element's chain
    independent of the others: a loop LLVM vectorizes without fastmath, as the EM's block loops."""
    for _ in range(reps):
        for i in range(x.shape[0]):
            x[i] = x[i] * 0.999999 + 1e-6
    return x[0]


def loop_gflops() -> float:
    x, reps = np.ones(2048), 20_000
    return 2 * x.shape[0] * reps / best_of(lambda: _mul_add_loop(x, reps)) / 1e9


def bandwidth_gbs() -> float:
    src = np.ones(50_000_000)
    dst = np.empty_like(src)
    return 2 * src.nbytes / best_of(lambda: np.copyto(dst, src), 5) / 1e9


def em_ns_per_point(n: int, iterations: int) -> float:
    """One _e_m_pass_k2d2 over n points of N(0, I) under a two-component mixture, best of repeats."""
    from collapse_tui.engines import gmm_kernels as gk

    rng = np.random.default_rng(1)
    xs, ys = rng.standard_normal(n), rng.standard_normal(n)
    means = np.array([[-0.5, 0.0], [0.5, 0.0]])
    weights, covs = np.full(2, 0.5), np.tile(np.eye(2) * 0.8, (2, 1, 1))
    linv, const = np.zeros((2, 2, 2)), np.empty(2)
    gk._precompute(weights, covs, linv, const)
    sr, s1, s2 = np.empty(2), np.empty((2, 2)), np.empty((2, 2, 2))

    def passes() -> None:
        for _ in range(iterations):
            gk._e_m_pass_k2d2(xs, ys, means, linv, const, sr, s1, s2, None)

    return best_of(passes) / (iterations * n) * 1e9


def main() -> None:
    print(f"machine: {machine.cpu()}, one thread")
    blas, loop, bw = dgemm_gflops(), loop_gflops(), bandwidth_gbs()
    print(f"peak: numpy dgemm {blas:.1f} GFLOP/s; compiled multiply-add loop (no FMA) {loop:.1f} GFLOP/s")
    print(f"memory bandwidth (copy, read + write): {bw:.1f} GB/s")
    print(f"EM pass (K = 2, d = 2): {FLOPS_PER_POINT} flops and {BYTES_PER_POINT} bytes read per point")
    for n, iterations in ((1000, 2000), (1_000_000, 5)):
        ns = em_ns_per_point(n, iterations)
        gflops = FLOPS_PER_POINT / ns
        print(
            f"  {n:>9} points: {ns:.2f} ns per point = {gflops:.1f} GFLOP/s: {blas / gflops:.1f}x from dgemm's"
            f" peak, {loop / gflops:.1f}x from the loop's; memory floor {BYTES_PER_POINT / bw:.2f} ns per point"
        )
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

"""The detector's logistic regression compiled (numba): per seed, the features standardised, then Newton's
method with step halving on scikit-learn's objective (collapse_tui/detector.py gives it), the logits of
held-out examples and the AUC's merge. numpy's batched version spent ~20 ms of CPU a generation of the gmm
preset (64 fits of 500 examples, 5 features) in numpy calls, log1p alone (a libm call per element) 3 ms;
these take ~2 ms.

Without fastmath (the same bits compiled fresh and loaded from the cache, as gmm_kernels): the exp by
gmm_kernels._exp_nonpositive and log1p by a series, both in loops LLVM vectorizes, and each sum over the
examples in LANES interleaved partial sums, added in a fixed order. The numbers differ from numpy's in the
last bits (BLAS sums in its own order): the logits by ~1e-15; the AUCs and every row of the gmm, gmm-quick,
gaussian-quick and ngram-quick presets (the filter and reweight by the detector too) are the same.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

from . import numba_cache  # noqa: F401 (numba's cache in collapse-tui's folder)
from .gmm_kernels import _exp_nonpositive

LANES = 8  # partial sums per sum over examples


@njit(cache=True, error_model="numpy")
def _log1p_unit(e: np.ndarray, n: int, out: np.ndarray) -> None:
    """out[:n] = log(1 + e) for e in [0, 1], to a few ulp, in a loop LLVM vectorizes: 2 atanh(s) with
    s = e / (2 + e) <= 1/3, by its series to s^35 (the next term < 1e-18)."""
    for i in range(n):
        s = e[i] / (2.0 + e[i])
        s2 = s * s
        p = 1.0 / 35.0
        for k in range(33, 1, -2):  # Horner's rule on 1/3, 1/5, ..., 1/35 (unrolled by LLVM)
            p = p * s2 + 1.0 / k
        out[i] = 2.0 * s * (p * s2 + 1.0)


@njit(cache=True, error_model="numpy")
def _dot(u: np.ndarray, v: np.ndarray, n: int) -> float:
    """sum u[:n] v[:n] in LANES interleaved partial sums, added in pairs at the end: a fixed order, and
    LANES independent adds in flight (one sum waits on each add)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    for lo in range(0, n - n % LANES, LANES):
        s0 += u[lo] * v[lo]
        s1 += u[lo + 1] * v[lo + 1]
        s2 += u[lo + 2] * v[lo + 2]
        s3 += u[lo + 3] * v[lo + 3]
        s4 += u[lo + 4] * v[lo + 4]
        s5 += u[lo + 5] * v[lo + 5]
        s6 += u[lo + 6] * v[lo + 6]
        s7 += u[lo + 7] * v[lo + 7]
    for i in range(n - n % LANES, n):
        s0 += u[i] * v[i]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True, error_model="numpy")
def _loss(
    xt: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: np.ndarray, beta: np.ndarray, z: np.ndarray,
    e: np.ndarray, tmp: np.ndarray, bits: np.ndarray,
) -> float:  # fmt: skip
    """The objective at beta; writes z = x beta and e = exp(-|z|) (what the next Newton step needs)."""
    f, n = xt.shape
    z[:] = 0.0
    for j in range(f):
        b = beta[j]
        for i in range(n):
            z[i] += b * xt[j, i]
    for i in range(n):
        tmp[i] = -abs(z[i])
    _exp_nonpositive(tmp, n, e, bits)
    _log1p_unit(e, n, tmp)
    for i in range(n):  # softplus(z) - y z, softplus(z) = max(z, 0) + log(1 + e^-|z|)
        tmp[i] = (max(z[i], 0.0) + tmp[i]) - y[i] * z[i]
    penalty = 0.0
    for j in range(f):
        penalty += ridge[j] * beta[j] * beta[j]
    return 0.5 * penalty + _dot(w, tmp, n)


@njit(cache=True, error_model="numpy")
def _normal_equations(
    xt: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: np.ndarray, beta: np.ndarray, z: np.ndarray,
    e: np.ndarray, grad: np.ndarray, hess: np.ndarray, g: np.ndarray, q: np.ndarray, xq: np.ndarray,
) -> None:  # fmt: skip
    """The objective's gradient and Hessian at beta (z = x beta, e = exp(-|z|))."""
    f, n = xt.shape
    for i in range(n):  # p = 1 / (1 + e^-z), from e^-|z|
        p = 1.0 / (1.0 + e[i]) if z[i] >= 0.0 else e[i] / (1.0 + e[i])
        g[i] = w[i] * (p - y[i])
        q[i] = w[i] * (p * (1.0 - p))
    for a in range(f):
        grad[a] = _dot(xt[a], g, n) + ridge[a] * beta[a]
        for i in range(n):
            xq[i] = xt[a, i] * q[i]
        for b in range(a + 1):
            hess[a, b] = hess[b, a] = _dot(xq, xt[b], n)
        hess[a, a] += ridge[a]


@njit(cache=True, error_model="numpy")
def _solve_spd(hess: np.ndarray, rhs: np.ndarray, low: np.ndarray, out: np.ndarray) -> None:
    """out = hess^-1 rhs by Cholesky (the Hessian is positive definite: every example weighs > 0)."""
    f = hess.shape[0]
    for a in range(f):
        for b in range(a + 1):
            t = hess[a, b]
            for c in range(b):
                t -= low[a, c] * low[b, c]
            low[a, b] = np.sqrt(t) if a == b else t / low[b, b]
    for a in range(f):
        t = rhs[a]
        for c in range(a):
            t -= low[a, c] * out[c]
        out[a] = t / low[a, a]
    for a in range(f - 1, -1, -1):
        t = out[a]
        for c in range(a + 1, f):
            t -= low[c, a] * out[c]
        out[a] = t / low[a, a]


@njit(cache=True, error_model="numpy")
def _standardised(real: np.ndarray, fake: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The examples' features as rows (f + 1, a + b): real then fake, less their mean (centre), over their
    standard deviation (scale; 1 for a constant feature), and a row of ones for the intercept."""
    a, f = real.shape
    n = a + fake.shape[0]
    xt = np.empty((f + 1, n))
    for j in range(f):
        for i in range(a):
            xt[j, i] = real[i, j]
        for i in range(fake.shape[0]):
            xt[j, a + i] = fake[i, j]
        m = 0.0
        for i in range(n):
            m += xt[j, i]
        m /= n
        ss = 0.0
        for i in range(n):
            xt[j, i] -= m
            ss += xt[j, i] * xt[j, i]
        sd = np.sqrt(ss / n)
        sd = 1.0 if sd == 0.0 else sd
        for i in range(n):
            xt[j, i] /= sd
        centre[j], scale[j] = m, sd
    xt[f] = 1.0
    return xt


@njit(cache=True, error_model="numpy")
def _fit_one(
    real: np.ndarray, fake: np.ndarray, c: float, steps: int, tol: float,
    beta: np.ndarray, centre: np.ndarray, scale: np.ndarray,
) -> None:  # fmt: skip
    a, b = real.shape[0], fake.shape[0]
    xt = _standardised(real, fake, centre, scale)
    f, n = xt.shape
    y, w = np.zeros(n), np.empty(n)
    y[:a] = 1.0
    w[:a], w[a:] = c * (n / (2 * a)), c * (n / (2 * b))  # balanced classes
    ridge = np.ones(f)
    ridge[f - 1] = 0.0  # the intercept is not penalised
    z, e, z2, e2 = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    tmp, g, bits = np.empty(n), np.empty(n), np.empty(n, np.int64)
    xq = np.empty(n)
    grad, hess, low, step, trial = np.empty(f), np.empty((f, f)), np.zeros((f, f)), np.empty(f), np.empty(f)
    beta[:] = 0.0
    current = _loss(xt, y, w, ridge, beta, z, e, tmp, bits)
    for _ in range(steps):
        _normal_equations(xt, y, w, ridge, beta, z, e, grad, hess, g, tmp, xq)
        _solve_spd(hess, grad, low, step)
        t = 1.0
        for _ in range(30):  # halve the step while it would raise the loss
            for j in range(f):
                trial[j] = beta[j] - t * step[j]
            after = _loss(xt, y, w, ridge, trial, z2, e2, tmp, bits)
            if not after > current + 1e-12 * abs(current):
                break
            t /= 2.0
        moved = 0.0
        for j in range(f):
            moved = max(moved, abs(t * step[j]))
            beta[j] -= t * step[j]
        current = after
        z, z2, e, e2 = z2, z, e2, e
        if moved <= tol:
            break


@njit(cache=True, nogil=True, error_model="numpy")
def fit_logistic_batch(
    real: np.ndarray, fake: np.ndarray, c: float, steps: int, tol: float,
    beta: np.ndarray, centre: np.ndarray, scale: np.ndarray,
) -> None:  # fmt: skip
    """detector.fit_logistic of real (S, a, f) against fake (S, b, f), seed by seed: beta (S, f + 1) (the
    intercept last), centre and scale (S, f)."""
    for s in range(real.shape[0]):
        _fit_one(real[s], fake[s], c, steps, tol, beta[s], centre[s], scale[s])


@njit(cache=True, nogil=True, error_model="numpy")
def gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """x[s, idx[s]] for every seed s of x (S, n, f) and idx (S, k): (S, k, f). numpy's fancy index with a
    broadcast row index took 0.17 ms for a gmm fold (32 x 500 x 4), 0.7 ms a generation."""
    s, k = idx.shape
    f = x.shape[2]
    out = np.empty((s, k, f))
    for j in range(s):
        for i in range(k):
            for a in range(f):  # element by element: a row assigned whole compiled numba's shape checks, 1.8 s
                out[j, i, a] = x[j, idx[j, i], a]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def logits_batch(
    x: np.ndarray, coef: np.ndarray, intercept: np.ndarray, centre: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """detector.decision: the fitted models' logits of examples x (S, k, f), (S, k)."""
    s, k, f = x.shape
    out = np.empty((s, k))
    for j in range(s):
        for i in range(k):
            t = 0.0
            for a in range(f):
                t += (x[j, i, a] - centre[j, a]) / scale[j, a] * coef[j, a]
            out[j, i] = t + intercept[j]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def auc_sorted(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """detector.auc of scores sorted along axis 1 (numpy's sort: vectorized, 10x numba's): U / (a b) per
    seed, U = sum over the real scores of the fake ones below, those tied counted half (2U counted, whole
    numbers: exact), by a merge."""
    s, a = real.shape
    b = fake.shape[1]
    out = np.empty(s)
    for j in range(s):
        r, q = real[j], fake[j]
        below = tied = 0  # fake scores < and == the current real score
        u = 0.0
        for i in range(a):
            while below < b and q[below] < r[i]:
                below += 1
            if i == 0 or r[i] != r[i - 1]:
                tied = 0
                while below + tied < b and q[below + tied] == r[i]:
                    tied += 1
            u += 2 * below + tied
        out[j] = u / (2 * a * b)
    return out


def compile_kernels() -> None:
    """Compile (run nothing) the kernels with the argument types collapse_tui/detector.py passes: for a
    first run's second process (gmm_kernels.compile_aside), which loads them into numba's cache."""
    x, beta = np.zeros((2, 2, 2)), np.zeros((2, 3))  # 2 seeds: a view of one row would count as contiguous
    # fit_logistic's coef and intercept are views of beta (strided), the rest contiguous
    for kernel, args in (
        (fit_logistic_batch, (x, x, 1.0, 1, 1.0, beta, beta[:, :2].copy(), beta[:, :2].copy())),
        (logits_batch, (x, beta[:, :-1], beta[:, -1], beta[:, :2].copy(), beta[:, :2].copy())),
        (auc_sorted, (beta, beta)),
        (gather, (x, np.zeros((2, 2), np.int64))),
    ):
        kernel.compile(tuple(numba.typeof(a) for a in args))

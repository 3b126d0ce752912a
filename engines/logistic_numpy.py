"""The detector's logistic regression in numpy, for small fits: engines/logistic_kernels.py's functions,
the same arguments and results (to rounding: ~1e-15 in the coefficients), batched over the fits instead of
compiled. A process that has no other compiled kernel to run saves numba's start (0.5 s: `import numba`,
its CPU target's registries, the cache's load): gaussian-quick's 200 generations of 40 fits of 60
examples and 2 features take 0.16 s here (0.78 ms a generation; compiled 0.19 ms). Per fit numpy is 3-4x
the compiled kernels' time whatever the seeds (a fit of 60 examples: 5.6 against 1.9 ms for 400 fits), so
larger fits, where that multiple costs more than the start, are compiled. The choice is a fit's size
(detector.kernels), never the seeds', so a seed's numbers do not depend on how seeds are grouped.

No BLAS threads (matrix products of a few rows, LAPACK's solve of (f + 1)-square systems, numpy's own
sums), as the compiled kernels: the same bits whatever the machine's cores.
"""

from __future__ import annotations

import numpy as np

SMALL_FIT = 1024  # examples x (features + 1)^2 of a fit at or below which numpy is used


def _loss(x: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The objective of each fit at beta (F, f + 1): ||beta||^2_ridge / 2 + sum_i w_i (softplus(z_i) - y_i z_i)."""
    z = (x @ beta[..., None])[..., 0]
    soft = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
    return 0.5 * (ridge * beta * beta).sum(-1) + (w * (soft - y * z)).sum(-1)


def fit_logistic_batch(
    real: np.ndarray, fake: np.ndarray, c: float, steps: int, tol: float,
    beta: np.ndarray, centre: np.ndarray, scale: np.ndarray,
) -> None:  # fmt: skip
    """logistic_kernels.fit_logistic_batch: each fit's Newton steps with step halving, a fit stopping on its
    own (the fits still moving take the next step together; the others keep theirs). Silent on inf and NaN,
    as the kernels (error_model "numpy"): a seed's NaN stays that seed's."""
    with np.errstate(all="ignore"):
        _fit(real, fake, c, steps, tol, beta, centre, scale)


def _fit(
    real: np.ndarray, fake: np.ndarray, c: float, steps: int, tol: float,
    beta: np.ndarray, centre: np.ndarray, scale: np.ndarray,
) -> None:  # fmt: skip
    a, b = real.shape[1], fake.shape[1]
    n = a + b
    x = np.concatenate([real, fake], axis=1)
    centre[:] = x.mean(axis=1)
    x = x - centre[:, None]
    sd = np.sqrt((x * x).mean(axis=1))
    scale[:] = np.where(sd == 0.0, 1.0, sd)
    x = np.concatenate([x / scale[:, None], np.ones(x.shape[:2] + (1,))], axis=-1)
    xt, f = np.ascontiguousarray(x.transpose(0, 2, 1)), x.shape[-1]
    y = np.r_[np.ones(a), np.zeros(b)]
    w = np.r_[np.full(a, c * (n / (2 * a))), np.full(b, c * (n / (2 * b)))]  # balanced classes
    ridge = np.r_[np.ones(f - 1), 0.0]  # the intercept is not penalised
    beta[:] = 0.0
    current = _loss(x, y, w, ridge, beta)
    moving = np.ones(len(x), dtype=bool)
    for _ in range(steps):  # every fit's step is computed; those that stopped keep their beta
        z = (x @ beta[..., None])[..., 0]
        e = np.exp(-np.abs(z))
        p = np.where(z >= 0.0, 1.0, e) / (1.0 + e)
        grad = (xt @ (w * (p - y))[..., None])[..., 0] + ridge * beta
        hess = (xt * (w * (p * (1.0 - p)))[:, None]) @ x + np.diag(ridge)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        t = np.ones(len(x))
        after = _loss(x, y, w, ridge, beta - step)
        for _ in range(29):  # halve the step of the fits whose loss it would raise (as the kernel: 30 tries)
            up = moving & (after > current + 1e-12 * np.abs(current))
            if not up.any():
                break
            t[up] /= 2.0
            after[up] = _loss(x[up], y, w, ridge, beta[up] - t[up, None] * step[up])
        else:
            t[moving & (after > current + 1e-12 * np.abs(current))] /= 2.0
        moved = np.where(moving[:, None], t[:, None] * step, 0.0)
        beta -= moved
        current = np.where(moving, after, current)
        moving &= np.abs(moved).max(axis=1) > tol
        if not moving.any():
            break


def logits_batch(
    x: np.ndarray, coef: np.ndarray, intercept: np.ndarray, centre: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """logistic_kernels.logits_batch: the fitted models' logits of examples x (S, k, f), (S, k)."""
    with np.errstate(all="ignore"):
        return ((x - centre[:, None]) / scale[:, None] * coef[:, None]).sum(-1) + intercept[:, None]


def auc_sorted(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """logistic_kernels.auc_sorted: U / (a b) per seed, 2U = sum over the real scores of the fake scores
    below plus those at or below (the ties counted half): whole numbers, exact."""
    u2 = [(np.searchsorted(q, r, "left") + np.searchsorted(q, r, "right")).sum() for r, q in zip(real, fake)]
    return np.array(u2, dtype=np.float64) / (2 * real.shape[1] * fake.shape[1])


def gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """logistic_kernels.gather: x[s, idx[s]] for every seed s, (S, k, f)."""
    return np.take_along_axis(x, idx[..., None], axis=1)

"""The GMM engine's compiled part (numba): per-seed k-means and EM as sklearn's GaussianMixture runs
them, the mixture log-density and sample placement. Each kernel loops over the seeds it is given and
releases the GIL (nogil): engines/gmm.py runs chunks of seeds in threads. Not numba's parallel=True:
its parfor passes add ~20% to the first run's compile, and an OpenMP region waits for its slowest
thread, which on a busy machine is one the OS has descheduled; chunks taken from a queue do not.

cache=True: the first run compiles (numba compiles only the kernels a run calls, at its first call),
later runs load them. error_model="numpy" only drops Python's zero-division checks. No fastmath: with
it, the same function gave other last bits compiled fresh than loaded from the cache (LLVM optimizes
a callee again inside each caller), so a machine's first run differed from its later ones. Without
it every compile must keep IEEE order, and a run's numbers are the same on every run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
from numba import njit

from .numba_cache import cache_dir  # points numba's cache at collapse-tui's folder


def cached() -> bool:
    """Whether numba has this module's fit in its cache."""
    place = cache_dir()
    return place.is_dir() and any(place.rglob(f"{Path(__file__).stem}.fit_batch-*.nbi"))


def compile_aside(d: int, k: int) -> None:
    """On a first run numba compiles one function at a time, the fit alone ~10 s on 2 cores: a second
    process compiles a share of the kernels into the cache meanwhile (compile_second_share), and the
    run loads them when it reaches them (or compiles them itself, if that process is not done). The
    process has its own session: a Ctrl-C of the run leaves it to finish, and the cache to the next run."""
    code = f"from {__name__} import compile_second_share; compile_second_share({int(d)}, {int(k)})"
    env = os.environ | {"NUMBA_CACHE_DIR": str(cache_dir())}
    with contextlib.suppress(OSError):  # no second process: the run compiles them itself
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


EPS = float(np.finfo(np.float64).eps)  # sklearn adds 10 * eps to every component's mass
LOG_2PI = float(np.log(2.0 * np.pi))
KMEANS_TOL = 1e-4  # sklearn KMeans defaults (GaussianMixture builds KMeans(n_init=1) with them)
KMEANS_MAX_ITER = 300

# The K = 2, 2-D passes (the paper's case: nearly all of a gmm run's time) work on blocks of
# PROD_CHUNK points: an elementwise loop of the two component terms, the exp of the block by
# _exp_nonpositive (libm's exp is a call no loop can vectorize), then the sums. A sum with one
# accumulator waits on each add; _sum4 and _prod4 keep four, in a fixed order.
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # ln 2 in two parts (Cody-Waite): k * LN2_HI is exact
LN2_LO = 1.90821492927058770002e-10

# info columns per seed, returned by the compiled fit
INFO_EM_ITER, INFO_CONVERGED, INFO_FAILED, INFO_KMEANS_ITER = range(4)


def n_local_trials(k: int) -> int:
    """k-means++ candidates per centre after the first, as sklearn chooses them."""
    return 2 + int(np.log(k))


@njit(cache=True, error_model="numpy")
def _chol_inv(cov: np.ndarray, linv: np.ndarray) -> float:
    """Inverse of the lower Cholesky factor of cov into linv; returns log det(linv), or nan when cov
    is not positive definite (sklearn raises then)."""
    d = cov.shape[0]
    low = np.zeros((d, d))
    for a in range(d):
        for b in range(a + 1):
            t = cov[a, b]
            for c in range(b):
                t -= low[a, c] * low[b, c]
            if a == b:
                if not t > 0.0:
                    return np.nan
                low[a, a] = np.sqrt(t)
            else:
                low[a, b] = t / low[b, b]
    logdet = 0.0
    for a in range(d):  # forward substitution, column by column of the identity
        linv[a, a] = 1.0 / low[a, a]
        logdet -= np.log(low[a, a])
        for b in range(a):
            t = 0.0
            for c in range(b, a):
                t -= low[a, c] * linv[c, b]
            linv[a, b] = t / low[a, a]
            linv[b, a] = 0.0
    return logdet


@njit(cache=True, error_model="numpy")
def _kmeans_labels(x: np.ndarray, cols: np.ndarray, k: int, u: np.ndarray, n_local: int, labels: np.ndarray) -> int:
    """sklearn's KMeans(n_init=1): greedy k-means++ seeding driven by the uniforms u, then Lloyd until
    the labels stop changing or the centres move less than tol. cols: x's columns, contiguous (x.T).
    Writes labels; returns Lloyd's iteration count."""
    n, d = x.shape
    centers = np.empty((k, d))
    # k-means++: first centre uniform, the next ones the best of n_local candidates drawn by D^2
    first = min(int(u[0] * n), n - 1)
    for a in range(d):  # element by element: a row assigned whole compiles numba's shape checks (1.6 s)
        centers[0, a] = x[first, a]
    # plain loops, not np.cumsum / np.searchsorted / slice copies: a third of the first run's compile
    closest = np.empty(n)
    closest[:] = np.inf
    _nearer(x, cols, centers[0], closest, closest)
    cand_d = np.empty(n)
    best_d = np.empty(n)
    cum = np.empty(n)
    for c in range(1, k):
        pot = 0.0
        for i in range(n):
            pot += closest[i]
            cum[i] = pot
        best_pot = np.inf
        best = 0
        for t in range(n_local):
            j = min(_first_at_least(cum, u[1 + (c - 1) * n_local + t] * pot), n - 1)
            cand_pot = _nearer(x, cols, x[j], closest, cand_d)
            if cand_pot < best_pot:  # strict: the first of equal candidates wins, as np.argmin
                best_pot, best = cand_pot, j
                best_d, cand_d = cand_d, best_d
        closest, best_d = best_d, closest
        for a in range(d):
            centers[c, a] = x[best, a]

    # Lloyd, with sklearn's tolerance: 1e-4 times the mean per-feature variance of the data
    tol = _scatter(x) / (n * d) * KMEANS_TOL
    labels[:] = -1
    sums = np.empty((k, d))
    counts = np.empty(k)
    dist = np.empty(n)
    strict = False
    it = 0
    while it < KMEANS_MAX_ITER:
        it += 1
        if k == 2 and d == 2:
            changed = _assign_k2d2(cols[0], cols[1], centers, labels, dist, sums, counts)
        else:
            changed = _assign(x, centers, labels, dist, sums, counts)
        for c in range(k):  # an empty cluster takes the point farthest from its centre, as sklearn
            if counts[c] == 0.0:
                far = 0
                for i in range(n):  # np.argmax: the first of the largest
                    if dist[i] > dist[far]:
                        far = i
                dist[far] = -1.0
                counts[labels[far]] -= 1.0
                counts[c] = 1.0
                for a in range(d):
                    sums[labels[far], a] -= x[far, a]
                    sums[c, a] = x[far, a]
        shift = 0.0
        for c in range(k):
            for a in range(d):
                new = sums[c, a] / counts[c] if counts[c] > 0.0 else centers[c, a]
                shift += (new - centers[c, a]) ** 2
                centers[c, a] = new
        if not changed:
            strict = True
            break
        if shift <= tol:
            break
    if not strict and k == 2 and d == 2:  # labels must match the final centres
        _assign_k2d2(cols[0], cols[1], centers, labels, dist, sums, counts)
    elif not strict:
        _assign(x, centers, labels, dist, sums, counts)
    return it


@njit(cache=True, error_model="numpy")
def _first_at_least(cum: np.ndarray, v: float) -> int:
    """np.searchsorted(cum, v) of nondecreasing cum: the first index with cum[i] >= v (len(cum) if none)."""
    lo, hi = 0, cum.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, error_model="numpy")
def _nearer(x: np.ndarray, cols: np.ndarray, center: np.ndarray, closest: np.ndarray, out: np.ndarray) -> float:
    """k-means++: out = min(closest, squared distance to center) per point (out may be closest);
    returns the sum, the candidate's potential."""
    if x.shape[1] == 2:
        return _nearer_d2(cols[0], cols[1], center[0], center[1], closest, out)
    total = 0.0
    for i in range(x.shape[0]):
        s = 0.0
        for a in range(x.shape[1]):
            s += (x[i, a] - center[a]) ** 2
        out[i] = min(closest[i], s)
        total += out[i]
    return total


@njit(cache=True, error_model="numpy")
def _nearer_d2(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, closest: np.ndarray, out: np.ndarray) -> float:
    for i in range(xs.shape[0]):
        out[i] = min(closest[i], (xs[i] - cx) ** 2 + (ys[i] - cy) ** 2)
    return _sum4(out, xs.shape[0])


@njit(cache=True, error_model="numpy")
def _sum4(a: np.ndarray, m: int) -> float:
    """The sum of a[:m] in four interleaved partial sums, added in pairs at the end: a fixed order
    that does not wait on one accumulator's every add."""
    s0 = s1 = s2 = s3 = 0.0
    for i in range(0, m - 3, 4):
        s0 += a[i]
        s1 += a[i + 1]
        s2 += a[i + 2]
        s3 += a[i + 3]
    for i in range(m - m % 4, m):
        s0 += a[i]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, error_model="numpy")
def _prod4(a: np.ndarray, m: int) -> float:
    """The product of a[:m] in the order _sum4 adds."""
    p0 = p1 = p2 = p3 = 1.0
    for i in range(0, m - 3, 4):
        p0 *= a[i]
        p1 *= a[i + 1]
        p2 *= a[i + 2]
        p3 *= a[i + 3]
    for i in range(m - m % 4, m):
        p0 *= a[i]
    return (p0 * p1) * (p2 * p3)


@njit(cache=True, error_model="numpy")
def _means_d2(x: np.ndarray) -> tuple[float, float]:
    sx = sy = 0.0
    for i in range(x.shape[0]):
        sx += x[i, 0]
        sy += x[i, 1]
    return sx / x.shape[0], sy / x.shape[0]


@njit(cache=True, error_model="numpy")
def _scatter(x: np.ndarray) -> float:
    """Sum over the features of the squared deviations from their means (two passes per feature)."""
    n, d = x.shape
    if d == 2:
        mx, my = _means_d2(x)
        total = 0.0
        for i in range(n):
            total += (x[i, 0] - mx) ** 2 + (x[i, 1] - my) ** 2
        return total
    total = 0.0
    for a in range(d):
        m = 0.0
        for i in range(n):
            m += x[i, a]
        m /= n
        for i in range(n):
            total += (x[i, a] - m) ** 2
    return total


@njit(cache=True, error_model="numpy")
def _assign(
    x: np.ndarray,
    centers: np.ndarray,
    labels: np.ndarray,
    dist: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
) -> bool:
    """One Lloyd pass: nearest centre per point (ties to the lowest index) and its squared distance,
    the sum and count of each cluster's points; True when any label changed."""
    n, d = x.shape
    sums[:] = 0.0
    counts[:] = 0.0
    changed = False
    for i in range(n):
        best = np.inf
        lab = 0
        for c in range(centers.shape[0]):
            s = 0.0
            for a in range(d):
                s += (x[i, a] - centers[c, a]) ** 2
            if s < best:
                best, lab = s, c
        changed = changed or lab != labels[i]
        labels[i] = lab
        dist[i] = best
        counts[lab] += 1.0
        for a in range(d):
            sums[lab, a] += x[i, a]
    return changed


@njit(cache=True, error_model="numpy")
def _assign_k2d2(
    xs: np.ndarray,
    ys: np.ndarray,
    centers: np.ndarray,
    labels: np.ndarray,
    dist: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
) -> bool:
    """_assign for K = 2 in 2-D (the points' coordinates xs, ys), branch-free: the labels in an
    elementwise loop (vectorized), then the sums."""
    c0x, c0y, c1x, c1y = centers[0, 0], centers[0, 1], centers[1, 0], centers[1, 1]
    n = xs.shape[0]
    changed = 0
    for i in range(n):
        d0 = (xs[i] - c0x) ** 2 + (ys[i] - c0y) ** 2
        d1 = (xs[i] - c1x) ** 2 + (ys[i] - c1y) ** 2
        one = d1 < d0  # ties to the lowest index
        lab = 1 if one else 0
        changed += lab != labels[i]
        labels[i] = lab
        dist[i] = d1 if one else d0
    n1 = s0x = s0y = s1x = s1y = 0.0
    for i in range(n):
        w = 1.0 if labels[i] == 1 else 0.0
        n1 += w
        s1x += w * xs[i]
        s1y += w * ys[i]
        s0x += (1.0 - w) * xs[i]
        s0y += (1.0 - w) * ys[i]
    counts[0], counts[1] = n - n1, n1
    sums[0, 0], sums[0, 1], sums[1, 0], sums[1, 1] = s0x, s0y, s1x, s1y
    return changed > 0


@njit(cache=True, error_model="numpy")
def _centred(data: np.ndarray, center: np.ndarray) -> np.ndarray:
    """data less its mean (written to center), in loops: array expressions cost compile time."""
    n, d = data.shape
    for a in range(d):
        m = 0.0
        for i in range(n):
            m += data[i, a]
        center[a] = m / n
    x = np.empty((n, d))
    for i in range(n):
        for a in range(d):
            x[i, a] = data[i, a] - center[a]
    return x


@njit(cache=True, error_model="numpy")
def _label_stats(x: np.ndarray, labels: np.ndarray, nk: np.ndarray, means: np.ndarray, covs: np.ndarray) -> None:
    """Add each cluster's point count to nk; its mean, and its scatter about it (lower triangle)."""
    n, d = x.shape
    k = nk.shape[0]
    for i in range(n):
        nk[labels[i]] += 1.0
    means[:] = 0.0
    for i in range(n):
        for a in range(d):
            means[labels[i], a] += x[i, a]
    for c in range(k):
        for a in range(d):
            means[c, a] /= nk[c]
    covs[:] = 0.0
    for i in range(n):
        c = labels[i]
        for a in range(d):
            for b in range(a + 1):
                covs[c, a, b] += (x[i, a] - means[c, a]) * (x[i, b] - means[c, b])


@njit(cache=True, error_model="numpy")
def _label_stats_k2d2(x: np.ndarray, labels: np.ndarray, nk: np.ndarray, means: np.ndarray, covs: np.ndarray) -> None:
    """_label_stats for K = 2 in 2-D, branch-free."""
    n = x.shape[0]
    n1 = s0x = s0y = s1x = s1y = 0.0
    for i in range(n):
        w = 1.0 if labels[i] == 1 else 0.0
        n1 += w
        s1x += w * x[i, 0]
        s1y += w * x[i, 1]
        s0x += (1.0 - w) * x[i, 0]
        s0y += (1.0 - w) * x[i, 1]
    nk[0] += n - n1
    nk[1] += n1
    m0x, m0y, m1x, m1y = s0x / nk[0], s0y / nk[0], s1x / nk[1], s1y / nk[1]
    q0xx = q0yx = q0yy = q1xx = q1yx = q1yy = 0.0
    for i in range(n):
        w = 1.0 if labels[i] == 1 else 0.0
        dx, dy = x[i, 0] - m0x, x[i, 1] - m0y
        q0xx += (1.0 - w) * dx * dx
        q0yx += (1.0 - w) * dy * dx
        q0yy += (1.0 - w) * dy * dy
        dx, dy = x[i, 0] - m1x, x[i, 1] - m1y
        q1xx += w * dx * dx
        q1yx += w * dy * dx
        q1yy += w * dy * dy
    means[0, 0], means[0, 1], means[1, 0], means[1, 1] = m0x, m0y, m1x, m1y
    covs[:] = 0.0
    covs[0, 0, 0], covs[0, 1, 0], covs[0, 1, 1] = q0xx, q0yx, q0yy
    covs[1, 0, 0], covs[1, 1, 0], covs[1, 1, 1] = q1xx, q1yx, q1yy


@njit(cache=True, error_model="numpy")
def _fit_one(
    data: np.ndarray,
    u: np.ndarray,
    n_local: int,
    tol: float,
    max_iter: int,
    reg_covar: float,
    weights: np.ndarray,
    means: np.ndarray,
    covs: np.ndarray,
    info: np.ndarray,
) -> None:
    """One seed: k-means labels, then EM exactly as sklearn orders it (E-step with the current
    parameters gives the lower bound, M-step, stop when the bound moved less than tol); the
    returned parameters are those after the last M-step."""
    n, d = data.shape
    k = weights.shape[0]
    # EM and k-means are shift-invariant: work on centred data for accuracy, add the mean back
    center = np.empty(d)
    x = _centred(data, center)
    cols = np.ascontiguousarray(x.T)  # the K = 2, 2-D passes read contiguous coordinates

    labels = np.empty(n, dtype=np.int64)
    info[INFO_KMEANS_ITER] = _kmeans_labels(x, cols, k, u, n_local, labels)

    # sklearn's _initialize: hard responsibilities from the labels (two-pass covariance)
    nk = np.empty(k)
    nk[:] = 10.0 * EPS
    if k == 2 and d == 2:
        _label_stats_k2d2(x, labels, nk, means, covs)
    else:
        _label_stats(x, labels, nk, means, covs)
    for c in range(k):
        weights[c] = nk[c] / n
    _finish_covs(covs, nk, reg_covar)

    linv = np.zeros((k, d, d))
    const = np.empty(k)  # log w + log det(linv) - d/2 log(2 pi): the point-independent part
    sr = np.empty(k)
    s1 = np.empty((k, d))
    s2 = np.empty((k, d, d))
    diff = np.empty((k, d))
    lp = np.empty(k)
    shift = np.empty(d)
    info[INFO_FAILED] = 0.0
    if not _precompute(weights, covs, linv, const):
        info[INFO_FAILED] = 1.0

    lower = -np.inf
    it = 0
    converged = False
    while it < max_iter:
        it += 1
        if info[INFO_FAILED]:
            break
        prev = lower
        if k == 2 and d == 2:
            total = _e_m_pass_k2d2(cols[0], cols[1], means, linv, const, sr, s1, s2, None)
        else:
            total = _e_m_pass(x, means, linv, const, sr, s1, s2, diff, lp, None)
        lower = total / n

        # M-step: mean = old mean + shift; scatter about the new mean from the one about the old
        wsum = 0.0
        for c in range(k):
            nk[c] = sr[c] + 10.0 * EPS
            wsum += nk[c]
        for c in range(k):
            weights[c] = nk[c]
            for a in range(d):
                shift[a] = (s1[c, a] - 10.0 * EPS * means[c, a]) / nk[c]
                means[c, a] += shift[a]
            for a in range(d):  # sum r (diff - shift)(diff - shift)^T, expanded
                for b in range(a + 1):
                    covs[c, a, b] = (
                        s2[c, a, b] - s1[c, a] * shift[b] - shift[a] * s1[c, b] + sr[c] * shift[a] * shift[b]
                    )
        for c in range(k):
            weights[c] /= wsum
        _finish_covs(covs, nk, reg_covar)
        if not _precompute(weights, covs, linv, const):
            info[INFO_FAILED] = 1.0
        if abs(lower - prev) < tol:
            converged = True
            break

    for c in range(k):
        for a in range(d):
            means[c, a] += center[a]
    info[INFO_EM_ITER] = it
    info[INFO_CONVERGED] = 1.0 if converged else 0.0


PROD_CHUNK = 128  # points per log of a product of normalisers: K**128 stays finite for K <= 64


@njit(cache=True, error_model="numpy")
def _e_m_pass(
    x: np.ndarray,
    means: np.ndarray,
    linv: np.ndarray,
    const: np.ndarray,
    sr: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    diff: np.ndarray,
    lp: np.ndarray,
    v: np.ndarray | None,
) -> float:
    """One fused E and M pass: the sum over points of log p(x), and the responsibility-weighted
    statistics about the current means, sr (K,), s1 (K, d), s2 (K, d, d) lower triangle.
    Responsibilities are never stored; deviations about the current means are small near
    convergence, so the scatter about the new means has no cancellation. The per-point
    log(sum_k exp(lp_k - max)) is taken as the log of a product over PROD_CHUNK points: one log per
    chunk instead of per point, the sum changes by ~1e-16 relative.
    v: per-point weights (N,) (weighted EM: the sum of v_i log p(x_i), each responsibility times v_i; the
    product of norms restarts where the weight changes), or None: numba compiles that case without them
    (its branches on v are pruned and the products by 1.0 folded), the same numbers as without weights."""
    n, d = x.shape
    k = means.shape[0]
    sr[:] = 0.0
    s1[:] = 0.0
    s2[:] = 0.0
    total = 0.0
    prod = 1.0
    run = 1.0  # the weight of the points whose norms prod holds
    for i in range(n):
        w = 1.0 if v is None else v[i]
        if w != run:
            total += run * np.log(prod)
            prod, run = 1.0, w
        top = -np.inf
        arg = 0
        for c in range(k):
            q = 0.0
            for a in range(d):
                diff[c, a] = x[i, a] - means[c, a]
            for a in range(d):
                t = 0.0
                for b in range(a + 1):
                    t += linv[c, a, b] * diff[c, b]
                q += t * t
            lp[c] = const[c] - 0.5 * q
            if lp[c] > top:
                top, arg = lp[c], c
        norm = 0.0
        for c in range(k):
            lp[c] = 1.0 if c == arg else np.exp(lp[c] - top)
            norm += lp[c]
        total += w * top
        prod *= norm
        if i % PROD_CHUNK == PROD_CHUNK - 1:
            total += run * np.log(prod)
            prod = 1.0
        inv = 1.0 / norm
        for c in range(k):
            r = lp[c] * inv * w
            sr[c] += r
            for a in range(d):
                ra = r * diff[c, a]
                s1[c, a] += ra
                for b in range(a + 1):
                    s2[c, a, b] += ra * diff[c, b]
    return total + run * np.log(prod)


@njit(cache=True, error_model="numpy")
def _exp_nonpositive(v: np.ndarray, m: int, out: np.ndarray, bits: np.ndarray) -> None:
    """out[:m] = exp(v[:m]) for v <= 0, within 1 ulp of libm's exp (0 below -708, where a term is
    under 1e-307 of the other), in a loop LLVM vectorizes: v = k ln 2 + r with |r| <= ln 2 / 2, exp(r)
    by its Taylor series to r^13 (remainder < 1e-17), 2^k from its bits."""
    for i in range(m):
        a = max(v[i], -708.0)
        k = np.floor(a * LOG2E + 0.5)
        r = (a - k * LN2_HI) - k * LN2_LO
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        out[i] = p * r + 1.0
        bits[i] = (np.int64(k) + 1023) << 52
    scale = bits.view(np.float64)
    for i in range(m):
        out[i] *= scale[i]


@njit(cache=True, error_model="numpy")
def _block_terms_k2d2(
    bx: np.ndarray,
    by: np.ndarray,
    m: int,
    means: np.ndarray,
    linv: np.ndarray,
    const: np.ndarray,
    l0: np.ndarray,
    l1: np.ndarray,
    low: np.ndarray,
) -> None:
    """For the m points (bx, by), each component's log w + log N(x) (l0, l1; K = 2 in 2-D) and
    low = -|l1 - l0|, the log of the smaller weight relative to the larger: the elementwise first loop
    of a block. 1-D coordinates from index 0, so that LLVM can vectorize it (with x[lo + j, 0] it
    cannot bound the addresses)."""
    m0x, m0y, m1x, m1y = means[0, 0], means[0, 1], means[1, 0], means[1, 1]
    a00, a10, a11 = linv[0, 0, 0], linv[0, 1, 0], linv[0, 1, 1]
    b00, b10, b11 = linv[1, 0, 0], linv[1, 1, 0], linv[1, 1, 1]
    c0, c1 = const[0], const[1]
    for j in range(m):
        dx0, dy0 = bx[j] - m0x, by[j] - m0y
        dx1, dy1 = bx[j] - m1x, by[j] - m1y
        t0, u0 = a00 * dx0, a10 * dx0 + a11 * dy0
        t1, u1 = b00 * dx1, b10 * dx1 + b11 * dy1
        l0[j] = c0 - 0.5 * (t0 * t0 + u0 * u0)
        l1[j] = c1 - 0.5 * (t1 * t1 + u1 * u1)
        low[j] = -abs(l1[j] - l0[j])


@njit(cache=True, error_model="numpy")
def _responsibilities_k2d2(
    l0: np.ndarray, l1: np.ndarray, e: np.ndarray, m: int, r0: np.ndarray, r1: np.ndarray
) -> None:
    """A block's responsibilities from its terms and e = exp(low), elementwise (vectorized); l0
    becomes the larger term and e the normaliser 1 + e."""
    for j in range(m):
        norm = 1.0 + e[j]
        r_top = 1.0 / norm
        r_low = e[j] * r_top
        first = l0[j] >= l1[j]
        r0[j] = r_top if first else r_low
        r1[j] = r_low if first else r_top
        l0[j] = max(l0[j], l1[j])
        e[j] = norm


@njit(cache=True, error_model="numpy")
def _e_m_pass_k2d2(
    xs: np.ndarray,
    ys: np.ndarray,
    means: np.ndarray,
    linv: np.ndarray,
    const: np.ndarray,
    sr: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    v: np.ndarray | None,
) -> float:
    """_e_m_pass for the paper's case, K = 2 in 2-D (the points' coordinates xs, ys), in blocks,
    branch-free: points near the boundary between components would mispredict a branch. v: weights or
    None, as there (the weight's one branch is taken alike for nearly all points: real ones, then synthetic)."""
    m0x, m0y, m1x, m1y = means[0, 0], means[0, 1], means[1, 0], means[1, 1]
    n = xs.shape[0]
    l0, l1, low, e = np.empty(PROD_CHUNK), np.empty(PROD_CHUNK), np.empty(PROD_CHUNK), np.empty(PROD_CHUNK)
    r0a, r1a = np.empty(PROD_CHUNK), np.empty(PROD_CHUNK)
    bits = np.empty(PROD_CHUNK, np.int64)
    r0s = r1s = p0x = p0y = p1x = p1y = 0.0
    q0xx = q0yx = q0yy = q1xx = q1yx = q1yy = 0.0
    total = 0.0
    for lo in range(0, n, PROD_CHUNK):
        m = min(PROD_CHUNK, n - lo)
        bx, by = xs[lo : lo + m], ys[lo : lo + m]
        _block_terms_k2d2(bx, by, m, means, linv, const, l0, l1, low)
        _exp_nonpositive(low, m, e, bits)  # the smaller component's weight relative to the larger
        _responsibilities_k2d2(l0, l1, e, m, r0a, r1a)
        prod = 1.0
        run = 1.0 if v is None else v[lo]
        for j in range(m):
            w = 1.0 if v is None else v[lo + j]
            if w != run:
                total += run * np.log(prod)
                prod, run = 1.0, w
            dx0, dy0 = bx[j] - m0x, by[j] - m0y
            dx1, dy1 = bx[j] - m1x, by[j] - m1y
            r0, r1 = r0a[j] * w, r1a[j] * w
            total += w * l0[j]
            prod *= e[j]
            r0s += r0
            r1s += r1
            px, py = r0 * dx0, r0 * dy0
            p0x += px
            p0y += py
            q0xx += px * dx0
            q0yx += py * dx0
            q0yy += py * dy0
            px, py = r1 * dx1, r1 * dy1
            p1x += px
            p1y += py
            q1xx += px * dx1
            q1yx += py * dx1
            q1yy += py * dy1
        total += run * np.log(prod)  # one log per block: norm is in [1, 2], so prod < 2**128
    sr[0], sr[1] = r0s, r1s
    s1[0, 0], s1[0, 1], s1[1, 0], s1[1, 1] = p0x, p0y, p1x, p1y
    s2[0, 0, 0], s2[0, 1, 0], s2[0, 1, 1] = q0xx, q0yx, q0yy
    s2[1, 0, 0], s2[1, 1, 0], s2[1, 1, 1] = q1xx, q1yx, q1yy
    return total


@njit(cache=True, error_model="numpy")
def _finish_covs(covs: np.ndarray, nk: np.ndarray, reg_covar: float) -> None:
    """Lower-triangle scatter -> covariance: divide by the mass, add reg_covar, mirror."""
    k, d, _ = covs.shape
    for c in range(k):
        for a in range(d):
            for b in range(a + 1):
                covs[c, a, b] /= nk[c]
                covs[c, b, a] = covs[c, a, b]
            covs[c, a, a] += reg_covar


@njit(cache=True, error_model="numpy")
def _precompute(weights: np.ndarray, covs: np.ndarray, linv: np.ndarray, const: np.ndarray) -> bool:
    d = covs.shape[1]
    for c in range(weights.shape[0]):
        logdet = _chol_inv(covs[c], linv[c])
        if np.isnan(logdet):
            return False
        const[c] = np.log(weights[c]) + logdet - 0.5 * d * LOG_2PI
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def fit_batch(
    data: np.ndarray,
    u: np.ndarray,
    n_local: int,
    tol: float,
    max_iter: int,
    reg_covar: float,
    weights: np.ndarray,
    means: np.ndarray,
    covs: np.ndarray,
    info: np.ndarray,
) -> None:
    for s in range(data.shape[0]):
        _fit_one(data[s], u[s], n_local, tol, max_iter, reg_covar, weights[s], means[s], covs[s], info[s])


@njit(cache=True, error_model="numpy")
def _top_norm(
    xi: np.ndarray, means: np.ndarray, linv: np.ndarray, const: np.ndarray, lp: np.ndarray, y: np.ndarray
) -> tuple[float, float]:
    """One point under one mixture: log p(x) = top + log(norm), with top the largest component term
    and norm = sum_k exp(lp_k - top) in [1, K]."""
    k, d = means.shape
    top = -np.inf
    arg = 0
    for c in range(k):
        q = 0.0
        for a in range(d):
            y[a] = xi[a] - means[c, a]
        for a in range(d):
            v = 0.0
            for b in range(a + 1):
                v += linv[c, a, b] * y[b]
            q += v * v
        lp[c] = const[c] - 0.5 * q
        if lp[c] > top:
            top, arg = lp[c], c
    norm = 1.0  # exp(0) for the top component
    for c in range(k):
        if c != arg:
            norm += np.exp(lp[c] - top)
    return top, norm


@njit(cache=True, nogil=True, error_model="numpy")
def log_density_batch(x: np.ndarray, means: np.ndarray, covs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """log p(x) per point under each seed's mixture, x (S or 1, T, d) -> (S, T); rows of nan for a
    seed with a covariance that is not positive definite (the caller falls back to numpy)."""
    s, k, d = means.shape
    t = x.shape[1]
    out = np.empty((s, t))
    shared = 0 if x.shape[0] > 1 else 1  # one test set for all seeds
    for j in range(s):
        xs = x[j - j * shared]
        linv = np.zeros((k, d, d))
        const = np.empty(k)
        if not _precompute(weights[j], covs[j], linv, const):
            out[j] = np.nan
            continue
        lp = np.empty(k)
        y = np.empty(d)
        for i in range(t):
            top, norm = _top_norm(xs[i], means[j], linv, const, lp, y)
            out[j, i] = top + np.log(norm)
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def mean_log_density_batch(x: np.ndarray, means: np.ndarray, covs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The mean over points of log_density_batch, (S,): one log per PROD_CHUNK points, as the E-step
    takes it (the held-out NLL of every generation is this); nan for a seed as there."""
    s, k, d = means.shape
    t = x.shape[1]
    out = np.empty(s)
    shared = 0 if x.shape[0] > 1 else 1
    cx, cy = np.empty(t), np.empty(t)  # the k2d2 pass's coordinates
    for j in range(s):
        xs = x[j - j * shared]
        if k == 2 and d == 2 and (j == 0 or not shared):
            for i in range(t):  # element by element, as _kmeans_labels' rows
                cx[i], cy[i] = xs[i, 0], xs[i, 1]
        linv = np.zeros((k, d, d))
        const = np.empty(k)
        if not _precompute(weights[j], covs[j], linv, const):
            out[j] = np.nan
            continue
        if k == 2 and d == 2:
            out[j] = _sum_log_density_k2d2(cx, cy, means[j], linv, const) / t
            continue
        lp = np.empty(k)
        y = np.empty(d)
        total = 0.0
        prod = 1.0
        for i in range(t):
            top, norm = _top_norm(xs[i], means[j], linv, const, lp, y)
            total += top
            prod *= norm
            if i % PROD_CHUNK == PROD_CHUNK - 1:
                total += np.log(prod)
                prod = 1.0
        out[j] = (total + np.log(prod)) / t
    return out


@njit(cache=True, error_model="numpy")
def _sum_log_density_k2d2(
    xs: np.ndarray, ys: np.ndarray, means: np.ndarray, linv: np.ndarray, const: np.ndarray
) -> float:
    """The sum over points of _top_norm's log p(x) for K = 2 in 2-D (coordinates xs, ys), in blocks
    as _e_m_pass_k2d2."""
    l0, l1, low, e = np.empty(PROD_CHUNK), np.empty(PROD_CHUNK), np.empty(PROD_CHUNK), np.empty(PROD_CHUNK)
    bits = np.empty(PROD_CHUNK, np.int64)
    total = 0.0
    for lo in range(0, xs.shape[0], PROD_CHUNK):
        m = min(PROD_CHUNK, xs.shape[0] - lo)
        _block_terms_k2d2(xs[lo : lo + m], ys[lo : lo + m], m, means, linv, const, l0, l1, low)
        _exp_nonpositive(low, m, e, bits)
        for j in range(m):
            l0[j] = max(l0[j], l1[j])
            e[j] += 1.0
        total += _sum4(l0, m) + np.log(_prod4(e, m))
    return total


@njit(cache=True, error_model="numpy")
def place_samples(means: np.ndarray, chol: np.ndarray, counts: np.ndarray, z: np.ndarray) -> np.ndarray:
    """means[label] + chol[label] @ z with labels grouped by component, as mixture.sample computes
    it (same sum order over the full matrix, so the same numbers), without its big temporaries."""
    s, n, d = z.shape
    out = np.empty((s, n, d))
    if d == 2:
        _place_samples_d2(means, chol, counts, z, out)
        return out
    for j in range(s):
        i = 0
        for c in range(means.shape[1]):
            for _ in range(counts[j, c]):
                for a in range(d):
                    v = 0.0
                    for b in range(d):
                        v += chol[j, c, a, b] * z[j, i, b]
                    out[j, i, a] = means[j, c, a] + v
                i += 1
    return out


@njit(cache=True, error_model="numpy")
def _place_samples_d2(means: np.ndarray, chol: np.ndarray, counts: np.ndarray, z: np.ndarray, out: np.ndarray) -> None:
    """place_samples in 2-D: each component's points in one loop that LLVM vectorizes, with the
    same products and sums as the general loop (the upper zero of chol included), so the same numbers."""
    for j in range(z.shape[0]):
        lo = 0
        for c in range(means.shape[1]):
            hi = lo + counts[j, c]
            mx, my = means[j, c, 0], means[j, c, 1]
            l00, l01, l10, l11 = chol[j, c, 0, 0], chol[j, c, 0, 1], chol[j, c, 1, 0], chol[j, c, 1, 1]
            for i in range(lo, hi):
                out[j, i, 0] = mx + ((0.0 + l00 * z[j, i, 0]) + l01 * z[j, i, 1])
                out[j, i, 1] = my + ((0.0 + l10 * z[j, i, 0]) + l11 * z[j, i, 1])
            lo = hi


@njit(cache=True, error_model="numpy")
def sample_stats_batch(x: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """mixture.sample_stats (to round-off) in two passes over each seed's (n, d) points without
    temporaries: total variance (ddof 1) and the share of points beyond radius."""
    s, n, d = x.shape
    variance, tail = np.empty(s), np.empty(s)
    r2 = radius * radius
    if d == 2:
        _sample_stats_d2(x, r2, variance, tail)
        return variance, tail
    mean = np.empty(d)
    for j in range(s):
        mean[:] = 0.0
        beyond = 0
        for i in range(n):
            q = 0.0
            for a in range(d):
                mean[a] += x[j, i, a]
                q += x[j, i, a] * x[j, i, a]
            beyond += q > r2
        mean /= n
        ss = 0.0
        for i in range(n):
            for a in range(d):
                ss += (x[j, i, a] - mean[a]) ** 2
        variance[j] = ss / (n - 1)
        tail[j] = beyond / n
    return variance, tail


@njit(cache=True, error_model="numpy")
def _sample_stats_d2(x: np.ndarray, r2: float, variance: np.ndarray, tail: np.ndarray) -> None:
    """sample_stats_batch in 2-D."""
    n = x.shape[1]
    for j in range(x.shape[0]):
        sx = sy = 0.0
        beyond = 0
        for i in range(n):
            sx += x[j, i, 0]
            sy += x[j, i, 1]
            beyond += x[j, i, 0] * x[j, i, 0] + x[j, i, 1] * x[j, i, 1] > r2
        mx, my = sx / n, sy / n
        ss = 0.0
        for i in range(n):
            ss += (x[j, i, 0] - mx) ** 2 + (x[j, i, 1] - my) ** 2
        variance[j] = ss / (n - 1)
        tail[j] = beyond / n


@njit(cache=True, error_model="numpy")
def _overlap(pw, pm, pc, qw, qm, qc, cov, linv) -> float:  # noqa: ANN001 (one seed's arrays)
    """Integral of p(x) q(x) dx for one seed: sum_ij w_i v_j N(mu_i; nu_j, A_i + B_j), as mixture._overlap."""
    k, d = pm.shape
    total = 0.0
    for a in range(k):
        for b in range(qm.shape[0]):
            for r in range(d):
                for c in range(d):
                    cov[r, c] = pc[a, r, c] + qc[b, r, c]
            logdet = _chol_inv(cov, linv)
            q = 0.0
            for r in range(d):
                t = 0.0
                for c in range(r + 1):
                    t += linv[r, c] * (pm[a, c] - qm[b, c])
                q += t * t
            total += pw[a] * qw[b] * np.exp(logdet - 0.5 * (d * LOG_2PI + q))
    return total


@njit(cache=True, error_model="numpy")
def l2_distance_batch(
    pw: np.ndarray, pm: np.ndarray, pc: np.ndarray, qw: np.ndarray, qm: np.ndarray, qc: np.ndarray
) -> np.ndarray:
    """mixture.l2_distance compiled: per seed, integral of (p - q)^2 = <p, p> - 2 <p, q> + <q, q>,
    clipped at 0; nan for a seed where a summed covariance is not positive definite."""
    s, _, d = pm.shape
    out = np.empty(s)
    cov, linv = np.empty((d, d)), np.zeros((d, d))
    for j in range(s):
        pp = _overlap(pw[j], pm[j], pc[j], pw[j], pm[j], pc[j], cov, linv)
        pq = _overlap(pw[j], pm[j], pc[j], qw[j], qm[j], qc[j], cov, linv)
        qq = _overlap(qw[j], qm[j], qc[j], qw[j], qm[j], qc[j], cov, linv)
        out[j] = max(pp - 2.0 * pq + qq, 0.0)
    return out


@njit(cache=True, error_model="numpy")
def _map_em_one(
    data: np.ndarray,
    v: np.ndarray,
    prior_means: np.ndarray,
    prior_covs: np.ndarray,
    mass: np.ndarray,
    tol: float,
    max_iter: int,
    reg_covar: float,
    weights: np.ndarray,
    means: np.ndarray,
    covs: np.ndarray,
    info: np.ndarray,
) -> None:
    """One seed's weighted MAP-EM (engines/gmm_map.py gives the M-step's formulas) from the mixture in
    weights, means, covs, which it overwrites; stops as _fit_one does."""
    n, d = data.shape
    k = weights.shape[0]
    center = np.empty(d)
    x = _centred(data, center)  # shift-invariant: the means and the prior's means move with the data
    cols = np.ascontiguousarray(x.T)
    mu0 = np.empty((k, d))
    for c in range(k):
        for a in range(d):
            means[c, a] -= center[a]
            mu0[c, a] = prior_means[c, a] - center[a]
    vsum = 0.0
    for i in range(n):
        vsum += v[i]
    vsum = max(vsum, 10.0 * EPS)
    linv = np.zeros((k, d, d))
    const, sr, nk = np.empty(k), np.empty(k), np.empty(k)
    s1, s2, diff, lp = np.empty((k, d)), np.empty((k, d, d)), np.empty((k, d)), np.empty(k)
    new = np.empty(d)
    info[INFO_FAILED] = 0.0
    lower = -np.inf
    it = 0
    converged = False
    while it < max_iter:
        it += 1
        if not _precompute(weights, covs, linv, const):
            info[INFO_FAILED] = 1.0
            break
        prev = lower
        if k == 2 and d == 2:
            lower = _e_m_pass_k2d2(cols[0], cols[1], means, linv, const, sr, s1, s2, v) / vsum
        else:
            lower = _e_m_pass(x, means, linv, const, sr, s1, s2, diff, lp, v) / vsum
        wsum = 0.0
        for c in range(k):
            nk[c] = sr[c] + 10.0 * EPS
            wsum += nk[c] + mass[c]
        for c in range(k):
            t = mass[c]
            total = nk[c] + t
            weights[c] = total / wsum
            for a in range(d):  # sum v r x = s1 + sr * old mean
                new[a] = (t * mu0[c, a] + s1[c, a] + sr[c] * means[c, a]) / total
            for a in range(d):
                for b in range(a + 1):
                    sa, sb = new[a] - means[c, a], new[b] - means[c, b]  # the shift of the mean
                    scatter = s2[c, a, b] - s1[c, a] * sb - sa * s1[c, b] + sr[c] * sa * sb
                    dev = (mu0[c, a] - new[a]) * (mu0[c, b] - new[b])
                    covs[c, a, b] = (scatter + t * prior_covs[c, a, b] + t * dev) / total
                    covs[c, b, a] = covs[c, a, b]
                covs[c, a, a] += nk[c] * reg_covar / total
            for a in range(d):
                means[c, a] = new[a]
        if abs(lower - prev) < tol:
            converged = True
            break
    for c in range(k):
        for a in range(d):
            means[c, a] += center[a]
    info[INFO_EM_ITER] = it
    info[INFO_CONVERGED] = 1.0 if converged else 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def map_em_batch(
    data: np.ndarray,
    v: np.ndarray,
    prior_means: np.ndarray,
    prior_covs: np.ndarray,
    mass: np.ndarray,
    tol: float,
    max_iter: int,
    reg_covar: float,
    weights: np.ndarray,
    means: np.ndarray,
    covs: np.ndarray,
    info: np.ndarray,
) -> None:
    for s in range(data.shape[0]):
        _map_em_one(
            data[s], v[s], prior_means[s], prior_covs[s], mass[s], tol, max_iter, reg_covar,
            weights[s], means[s], covs[s], info[s],
        )  # fmt: skip


def compile_second_share(d: int, k: int) -> None:
    """What compile_aside's second process compiles into the cache (without running anything), for
    the argument types a run passes with K = k components in d dimensions: first the fit's EM passes
    and initial statistics, which the run's compile of fit_batch reaches last (after k-means), then
    the kernels that sample and measure a generation, and the detector's."""

    def compile_for(kernel, *args) -> None:  # noqa: ANN001
        kernel.compile(tuple(numba.typeof(a) for a in args))

    x, labels = np.zeros((4, d)), np.zeros(4, np.int64)
    v, m, c = np.zeros(k), np.zeros((k, d)), np.zeros((k, d, d))
    compile_for(_e_m_pass, x, m, c, v, v, m, c, m, v, None)
    compile_for(_e_m_pass_k2d2, x[:, 0].copy(), x[:, 0].copy(), m, c, v, v, m, c, None)
    compile_for(_precompute, v, c, c, v)
    compile_for(_finish_covs, c, v, 0.0)
    compile_for(_label_stats, x, labels, v, m, c)
    compile_for(_label_stats_k2d2, x, labels, v, m, c)
    means, covs, weights = np.zeros((1, k, d)), np.zeros((1, k, d, d)), np.zeros((1, k))
    compile_for(mean_log_density_batch, np.zeros((1, 2, d)), means, covs, weights)
    compile_for(place_samples, means, covs, np.zeros((1, k), np.int64), means)
    compile_for(sample_stats_batch, means, 1.0)
    compile_for(l2_distance_batch, weights, means, covs, weights, means, covs)
    from .logistic_kernels import compile_kernels  # the detector's, which a run measures every generation

    compile_kernels()

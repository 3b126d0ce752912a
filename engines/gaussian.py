"""The single Gaussian of the paper's theory (Nature, section 3.1): fit mean and covariance to M samples,
draw M new ones, repeat. estimator "unbiased" (ddof 1) is what the paper's theorem assumes; "mle"
(ddof 0) is what the official notebook's np.std and Collapse-or-Thrive's np.cov(bias=True) compute:
it collapses faster (median variance after 100 generations at M = 100: 0.38 against 0.14).

expected() gives what theory says of the mean over seeds, exactly (closed forms and exact recursions on
second moments; each function below cites its source): the samples' variance in every data mode, the
fitted std (1-D) and the held-out NLL under replace."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import Fitted, Param, Report
from .mixture import Mixture, MixtureEngine

COV_FLOOR = 1e-300  # far below any variance a test looks at; keeps the covariance invertible


class GaussianEngine(MixtureEngine):
    name = "gaussian"
    figures = "collapse_tui.engines.figures.gaussian"
    PARAMS = {
        "dim": Param(1, int, "dimension d of the data", min=1, max=64),
        "samples": Param(100, int, "M: samples drawn per generation (and real training set size)", min=2),
        "test_samples": Param(10000, int, "size of the fixed real held-out sample for perplexity", min=1),
        "estimator": Param(
            "unbiased",
            str,
            "covariance estimate: unbiased (ddof 1, the paper's theorem) or mle (ddof 0, the official notebook's)",
            choices=("unbiased", "mle"),
        ),
    }

    def fit(
        self,
        data: np.ndarray,
        rngs: list[np.random.Generator],
        report: Report,
        source: Any = None,
        reference: Mixture | None = None,
        weights: np.ndarray | None = None,
    ) -> Fitted:
        d = data.shape[2]
        mean, cov, dof = self.moments(data, weights)
        if reference is not None:
            mean, cov = anchored(mean, cov, dof, data.shape[1], reference, self.train_keys)
        cov += COV_FLOOR * np.eye(d)  # a fully collapsed seed stays a (very narrow) Gaussian
        report("fit", 1, 1, None)
        return Fitted({"weights": np.ones((data.shape[0], 1)), "means": mean[:, None], "covs": cov[:, None]})

    def moments(self, data: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean (S, d), covariance (S, d, d) and the covariance's degrees of freedom (S,): its divisor, the
        scatter's expectation over the variance. Weighted (weights (S, N), mean 1): the weighted mean, and
        the scatter over V1 - ddof V2 / V1 (V1 = sum w, V2 = sum w^2), the reliability-weights estimate,
        unbiased for ddof 1 (GSL reference manual, "Weighted Samples", gsl_stats_wvariance); N - ddof at
        weights of 1."""
        s, n, _ = data.shape
        ddof = 1 if self.params.estimator == "unbiased" else 0
        if weights is None:
            mean = data.mean(axis=1)
            dev = data - mean[:, None]
            dof = np.full(s, float(n - ddof))
            return mean, np.einsum("sni,snj->sij", dev, dev) / (n - ddof), dof
        v1 = weights.sum(axis=1)
        mean = np.einsum("sn,snd->sd", weights, data) / v1[:, None]
        dev = data - mean[:, None]
        dof = v1 - ddof * np.einsum("sn,sn->s", weights, weights) / v1
        scatter = np.einsum("sni,snj->sij", dev * weights[..., None], dev)
        return mean, scatter / dof[:, None, None], dof

    def expected(self, generations: int, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """E over seeds of: variance (the samples' total variance) in the modes replace, keep, fresh,
        accumulate and accumulate-subsample; fit_std for d = 1 and nll for M > d + 2, under replace. Exact
        (up to COV_FLOOR) for the real N(0, I_d); none with a filter, which keeps the samples generation 0's
        model finds most typical, a selection these formulas do not model; none with a mitigation either."""
        if data.get("filter", "none") != "none" or data["mode"] not in TRACE_MODES or self.mitigated(data):
            return {}
        m, d = self.params.samples, self.dim
        ddof = 1 if self.params.estimator == "unbiased" else 0
        fraction = {"keep": data["keep_fraction"], "fresh": data["fresh_fraction"]}.get(data["mode"], 0.0)
        out = {"variance": expected_traces(data["mode"], generations, m, d, ddof, round(fraction * m))}
        if data["mode"] == "replace":
            if d == 1:
                out["fit_std"] = expected_fit_std(generations, m, ddof)
            if m > d + 2:
                out["nll"] = expected_nll(generations, m, ddof, *self.test_moments())
        return out


def variance_factor(m: int, ddof: int) -> float:
    """E[chi2_{M-1} / (M - ddof)]: what one fit multiplies the expected variance by (Shumailov et al. 2024,
    SI 3.1: a fit's covariance is a Wishart(M - 1) scatter over M - ddof)."""
    return (m - 1) / (m - ddof)


def expected_fit_std(generations: int, m: int, ddof: int) -> np.ndarray:
    """E[sigma_n] in 1-D under replace: c^(n + 1) with c = E[sqrt(chi2_{M-1} / (M - ddof))]
    = sqrt(2 / (M - ddof)) Gamma(M/2) / Gamma((M - 1)/2). Each fit multiplies sigma by an independent
    sqrt(chi2_{M-1} / (M - ddof)) (Shumailov et al. 2024, SI 3.1; Cochran's theorem), and generation n is
    the (n + 1)-th fit."""
    log_c = 0.5 * math.log(2 / (m - ddof)) + math.lgamma(m / 2) - math.lgamma((m - 1) / 2)
    return np.exp(log_c * np.arange(1, generations + 1))


def digamma(x: float) -> float:
    """psi(x) for x > 0: the recurrence psi(x) = psi(x + 1) - 1/x up to x >= 10, then the asymptotic
    series (Abramowitz & Stegun 6.3.5 and 6.3.18), exact to double precision there."""
    shift = 0.0
    while x < 10:
        shift -= 1 / x
        x += 1
    inv2 = 1 / (x * x)
    return (
        shift
        + math.log(x)
        - 0.5 / x
        - inv2 * (1 / 12 - inv2 * (1 / 120 - inv2 * (1 / 252 - inv2 * (1 / 240 - inv2 / 132))))
    )


def expected_nll(generations: int, m: int, ddof: int, t_mean: np.ndarray, t_cov: np.ndarray) -> np.ndarray:
    """E[nll_n] under replace, given the fixed held-out sample's mean t and covariance T (its nll is
    (d log 2 pi + log det S_n + tr(S_n^-1 T) + (t - mu_n)' S_n^-1 (t - mu_n)) / 2d). Each fit draws
    S_n = L W L' / (M - ddof) with L L' = S_{n-1}, W ~ Wishart_d(M - 1, I) independent of the fitted mean
    mu_n ~ N(mu_{n-1}, S_{n-1} / M) (Shumailov et al. 2024, SI 3.1). With q = (M - ddof) / (M - d - 2) (the
    inverse Wishart's mean, E[W^-1] = I / (M - d - 2)) and S_{-1} = I, mu_{-1} = 0, the real distribution:
    E[log det S_n] = (n + 1) (sum_{i<d} psi((M - 1 - i)/2) + d log(2 / (M - ddof))) (Bartlett's decomposition:
    log det W is a sum of independent log chi2_{M-1-i}; both in Anderson 2003, "An Introduction to Multivariate
    Statistical Analysis", ch. 7), E[S_n^-1] = q^(n + 1) I, and Q_n = E[(t - mu_n)' S_n^-1 (t - mu_n)]
    = q (Q_{n-1} + d / M), Q_{-1} = |t|^2."""
    d = len(t_mean)
    n = np.arange(1, generations + 1)
    log_det = sum(digamma((m - 1 - i) / 2) for i in range(d)) + d * math.log(2 / (m - ddof))
    powers = ((m - ddof) / (m - d - 2)) ** n
    quad = powers * float(t_mean @ t_mean) + d / m * np.cumsum(powers)
    return 0.5 * (d * math.log(2 * math.pi) + n * log_det + powers * np.trace(t_cov) + quad) / d


def _mixed_traces(generations: int, m: int, d: int, ddof: int, k: int, reused: bool) -> np.ndarray:
    """E[tr S_n] when each generation trains on k real examples and M - k of the previous model's samples:
    replace (k = 0), keep (k real examples drawn again from the fixed real set: reused) and fresh (k new
    ones). An exact linear recursion on A = E[tr S], B = E[|mu|^2] and C = E[xbar_0 . mu] (xbar_0: the real
    set's mean), from E[scatter] = sum E|x_i|^2 - M E[|mean|^2]: a sample y of the model has E[y.y'] = |mu|^2
    and E|y|^2 = |mu|^2 + tr S; distinct real examples are independent; a real example drawn from the real
    set has E[x . mu] = C. Derived here as Shumailov et al. 2024, SI 3.1 derive replace's moments."""
    a, b, c = d * variance_factor(m, ddof), d / m, d / m  # generation 0 fits the M real examples
    out = np.empty(generations)
    for n in range(generations):
        out[n] = a
        cross = 2 * k * (m - k) * c if reused else 0.0
        b_next = (k * d + (m - k) ** 2 * b + (m - k) * a + cross) / m**2
        a = (k * d + (m - k) * (b + a) - m * b_next) / (m - ddof)
        b, c = b_next, (k * d / m + (m - k) * c) / m
    return out


def _pooled_traces(generations: int, m: int, d: int, ddof: int, subsample: bool) -> np.ndarray:
    """E[tr S_n] when a pool gathers the real set and every generation's M samples, and each generation trains
    on all of it (accumulate: the setting of Gerstgrasser et al. 2024, "Is model collapse inevitable?", in
    which the variance stays bounded) or on M of it drawn without replacement (accumulate-subsample),
    derived here as Shumailov et al. 2024, SI 3.1 derive replace's moments. An exact linear recursion on
    the pool's size P, U = E|sum of the pool|^2 and V = sum over the pool of E|x|^2: a training set of N
    drawn from the pool has E[scatter] = (N - 1) (V / P - (U - V) / (P (P - 1))) and E|mean|^2
    = (V + (N - 1)(U - V) / (P - 1)) / (N P); its mean mu has E[mu . x] = E[pool mean . x] for every x in
    the pool, so the M new samples add M^2 E|mu|^2 + M E[tr S] + 2 M U / P to U and M (E|mu|^2 + E[tr S])
    to V."""
    p, u, v = m, m * d, m * d  # the pool starts as the real set, M independent N(0, I_d) examples
    out = np.empty(generations)
    for n in range(generations):
        size = m if subsample else p
        spread = v / p - (u - v) / (p * (p - 1))
        out[n] = a = (size - 1) * spread / (size - ddof)
        b = (v + (size - 1) * (u - v) / (p - 1)) / (size * p)
        u, v, p = u + m * m * b + m * a + 2 * m * u / p, v + m * (b + a), p + m
    return out


def expected_traces(mode: str, generations: int, m: int, d: int, ddof: int, k: int) -> np.ndarray:
    """E[tr S_n], n = 0 .. generations - 1, in a data mode of TRACE_MODES (k: the real examples of keep or
    fresh): the expected variance of generation n's samples too, since their variance (ddof 1) is unbiased."""
    if mode.startswith("accumulate"):
        return _pooled_traces(generations, m, d, ddof, subsample=mode == "accumulate-subsample")
    return _mixed_traces(generations, m, d, ddof, k, reused=mode == "keep")


TRACE_MODES = ("replace", "keep", "fresh", "accumulate", "accumulate-subsample")


def anchored(
    mean: np.ndarray, cov: np.ndarray, dof: np.ndarray, n: int, reference: Mixture, train: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """The fit (mean, cov with dof degrees of freedom) of N training examples pulled towards generation 0's
    N(mu0, Sigma0): distill = alpha first, then anchor = "prior".

    distill: the moments of the alpha-mixture (1 - alpha) N(mean, cov) + alpha N(mu0, Sigma0), exactly:
    mean_a = (1 - alpha) mean + alpha mu0, cov_a = (1 - alpha) cov + alpha Sigma0 + alpha (1 - alpha) dd^T
    with d = mean - mu0 (the law of total variance). alpha = 1 is generation 0's fit, bit for bit.
    prior: the joint posterior mode of a normal-inverse-Wishart prior with kappa0 = strength x N pseudo-
    observations, mean mu0 and scale Psi0 = kappa0 Sigma0 (Murphy 2012, "Machine Learning: A Probabilistic
    Perspective", 4.6.3; Murphy 2007, "Conjugate Bayesian analysis of the Gaussian distribution", 9):
    mu = (kappa0 mu0 + N mean) / (kappa0 + N), Sigma = (Psi0 + S + kappa0 N / (kappa0 + N) dd^T) / (kappa0 +
    dof), S = dof cov the data's scatter. nu0 = kappa0 - d - 2 - ddof makes the mode's divisor kappa0 + dof,
    so at strength 0 it is the engine's own estimator, and Sigma0 is the covariance of the pseudo-data."""
    mu0, cov0 = reference["means"][:, 0], reference["covs"][:, 0]
    alpha = float(train.get("distill", 0.0))
    if alpha:
        d = mean - mu0
        mean = (1.0 - alpha) * mean + alpha * mu0
        cov = (1.0 - alpha) * cov + alpha * cov0 + alpha * (1.0 - alpha) * d[:, :, None] * d[:, None, :]
    if train.get("anchor") == "prior":
        kappa = float(train["anchor_strength"]) * n
        d = mean - mu0
        mean = (kappa * mu0 + n * mean) / (kappa + n)
        scatter = kappa * cov0 + dof[:, None, None] * cov + kappa * n / (kappa + n) * d[:, :, None] * d[:, None, :]
        cov = scatter / (kappa + dof)[:, None, None]
    return mean, cov

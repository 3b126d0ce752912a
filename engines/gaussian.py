"""The single Gaussian of the paper's theory (Nature, section 3.1): fit mean and covariance to M samples,
draw M new ones, repeat. estimator "unbiased" (ddof 1) is what the paper's theorem assumes; "mle"
(ddof 0) is what the official notebook's np.std and Collapse-or-Thrive's np.cov(bias=True) compute:
it collapses faster (median variance after 100 generations at M = 100: 0.38 against 0.14)."""

from __future__ import annotations

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

    mitigations = frozenset({"prior", "distill", "real_weight"})

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

"""The single Gaussian of the paper's theory (Nature, section 3.1): fit mean and covariance to M samples,
draw M new ones, repeat. estimator "unbiased" (ddof 1) is what the paper's theorem assumes; "mle"
(ddof 0) is what the official notebook's np.std and Collapse-or-Thrive's np.cov(bias=True) compute:
it collapses faster (median variance after 100 generations at M = 100: 0.38 against 0.14)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Fitted, Param, Report
from .mixture import MixtureEngine

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

    def fit(self, data: np.ndarray, rngs: list[np.random.Generator], report: Report, source: Any = None) -> Fitted:
        s, n, d = data.shape
        mean = data.mean(axis=1)
        dev = data - mean[:, None]
        cov = np.einsum("sni,snj->sij", dev, dev) / (n - 1 if self.params.estimator == "unbiased" else n)
        cov += COV_FLOOR * np.eye(d)  # a fully collapsed seed stays a (very narrow) Gaussian
        report("fit", 1, 1, None)
        return Fitted({"weights": np.ones((s, 1)), "means": mean[:, None], "covs": cov[:, None]})

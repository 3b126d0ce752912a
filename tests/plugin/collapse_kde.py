"""A third-party engine in one file, as a user would write one: a Gaussian kernel density estimate.

Fitting keeps the training points; sampling draws M of them with replacement and adds N(0, h^2 I)
noise. With ddof-1 variances, E[s_{n+1}^2 | D_n] = s_n^2 (M - 1) / M + h^2 per dimension, so the
variance of a chain follows a^n s_0^2 + h^2 (1 - a^n) / (1 - a), a = (M - 1) / M: at h = 0, pure
resampling, it decays geometrically (the discrete collapse of the paper's section 1).

Registered by its distribution's entry points (see tests/test_plugin.py):
    [collapse_tui.engines]  kde = collapse_kde:KDEEngine
    [collapse_tui.presets]  kde = collapse_kde:PRESETS
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from collapse_tui.engines import Engine, Fitted, Generated, Metric, Param

PRESETS = [Path(__file__).with_name("kde.toml")]
TEST_SEED = 7


class KDEEngine(Engine):
    name = "kde"
    PARAMS = {
        "samples": Param(100, int, "M: points per generation", min=2),
        "dim": Param(1, int, "dimension of the data", min=1, max=8),
        "bandwidth": Param(0.0, float, "h: std of the kernel", min=0),
        "test_samples": Param(1000, int, "real held-out points for perplexity", min=1),
    }
    preview_kind = "points"
    figures = "collapse_kde_figures"
    METRICS = {
        "perplexity": Metric("exp of mean NLL per dimension of real test data", log=True),
        "variance": Metric("total variance of samples", "data units²"),
    }
    batched = True
    can_draw_fresh = True
    can_score = True

    def real_data(self, rngs, n=None):
        n = self.params.samples if n is None else n
        return np.stack([rng.standard_normal((n, self.params.dim)) for rng in rngs])

    def fit(self, data, rngs, report, source=None):
        report("fit", 1, 1, None)
        return Fitted({"points": np.array(data, dtype=np.float64)})

    def sample(self, model, n, rngs, report, data=None):
        pts, h = model["points"], self.params.bandwidth
        idx = np.stack([rng.integers(pts.shape[1], size=n) for rng in rngs])
        noise = np.stack([rng.standard_normal((n, pts.shape[2])) for rng in rngs]) * h
        x = np.take_along_axis(pts, idx[..., None], axis=1) + noise
        return Generated(x, x[0].astype(np.float32))

    def log_density(self, model, x):
        """log p(x) per point under each seed's KDE, (S, T); h = 0 counts as a tiny kernel."""
        pts, h = model["points"], max(self.params.bandwidth, 1e-3)
        d = pts.shape[2]
        sq = ((x[:, :, None, :] - pts[:, None, :, :]) ** 2).sum(-1)  # (S, T, M)
        logk = -0.5 * sq / h**2 - 0.5 * d * np.log(2 * np.pi * h**2)
        top = logk.max(axis=2, keepdims=True)
        return (top + np.log(np.exp(logk - top).mean(axis=2, keepdims=True)))[..., 0]

    def score(self, reference, samples):
        return -self.log_density(reference, samples) / samples.shape[-1]

    def evaluate(self, model, samples, reference):
        test = np.random.default_rng(TEST_SEED).standard_normal((1, self.params.test_samples, self.params.dim))
        nll = -self.log_density(model, np.broadcast_to(test, (len(samples), *test.shape[1:]))).mean(1) / test.shape[2]
        variance = samples.var(axis=1, ddof=1).sum(-1)
        return [{"perplexity": float(np.exp(a)), "nll": float(a), "variance": float(v)} for a, v in zip(nll, variance)]

    def save(self, model, directory):
        np.save(directory / "points.npy", model["points"], allow_pickle=False)

    def load(self, directory):
        return {"points": np.load(directory / "points.npy", allow_pickle=False)}

"""Gaussian mixtures batched over seeds: sampling, scoring and the paper's metrics in closed form.

A model is a dict of arrays with the seeds on axis 0: weights (S, K), means (S, K, d) and
covs (S, K, d, d). The single Gaussian is the case K = 1. The real distribution is N(0, I).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .base import DETECTOR_AUC, DOWN, UP, Engine, Generated, Metric, Report, point_features, points_preview

Mixture = dict[str, np.ndarray]

TEST_SEED = 20240724  # the fixed real held-out sample is the same for every seed and run
TAIL_P = math.erfc(3.0 / math.sqrt(2.0))  # mass of N(0, 1) beyond 3 sigma, 0.0027


def chi2_sf(x: float, d: int) -> float:
    """P(chi2_d > x), the regularized upper gamma Q(d/2, x/2) in closed form for whole d (no scipy.stats:
    its import alone costs more than a run of gaussian-quick)."""
    h = x / 2.0
    if d % 2 == 0:
        term = total = 1.0
        for k in range(1, d // 2):
            term *= h / k
            total += term
        return math.exp(-h) * total
    total, term = math.erfc(math.sqrt(h)), 2.0 * math.sqrt(h / math.pi)
    for k in range(1, (d + 1) // 2):
        total += math.exp(-h) * term
        term *= h / (k + 0.5)
    return total


@functools.cache
def tail_radius(d: int) -> float:
    """The radius that N(0, I_d) exceeds with probability TAIL_P: sqrt of chi2_d's upper TAIL_P quantile."""
    lo, hi = 0.0, 1.0
    while chi2_sf(hi, d) > TAIL_P:
        hi *= 2.0
    for _ in range(200):  # bisection to the last bit
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if chi2_sf(mid, d) > TAIL_P else (lo, mid)
    return math.sqrt(hi)


def sample_stats(samples: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Total variance (ddof 1) and the share of points beyond radius, per seed of (S, n, d): two
    passes over the samples (numpy's var along axis 1 makes five, strided)."""
    n = samples.shape[1]
    dev = samples - samples.mean(axis=1, keepdims=True)
    variance = np.einsum("snd,snd->s", dev, dev) / (n - 1)
    beyond = np.einsum("snd,snd->sn", samples, samples) > radius * radius
    return variance, beyond.mean(axis=1)


def log_density(x: np.ndarray, m: Mixture) -> np.ndarray:
    """log p(x) per point under each seed's mixture: x (S or 1, T, d) -> (S, T)."""
    d = x.shape[-1]
    prec = np.linalg.inv(m["covs"])  # (S, K, d, d)
    _, logdet = np.linalg.slogdet(m["covs"])  # (S, K)
    diff = x[:, None, :, :] - m["means"][:, :, None, :]  # (S, K, T, d)
    maha = np.einsum("skti,skij,sktj->skt", diff, prec, diff)
    logp = np.log(m["weights"])[..., None] - 0.5 * (d * np.log(2 * np.pi) + logdet[..., None] + maha)
    top = logp.max(axis=1)
    return top + np.log(np.exp(logp - top[:, None]).sum(axis=1))


def moments(m: Mixture) -> tuple[np.ndarray, np.ndarray]:
    """Mean (S, d) and covariance (S, d, d) of each seed's mixture."""
    w = m["weights"]
    mean = np.einsum("sk,skd->sd", w, m["means"])
    dev = m["means"] - mean[:, None]
    cov = np.einsum("sk,skij->sij", w, m["covs"] + dev[..., :, None] * dev[..., None, :])
    return mean, cov


def w2_to_standard(mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """W2 between N(mean, cov) and N(0, I), per seed. For a mixture this is the Gelbrich lower
    bound: the exact W2 of its moment-matched Gaussian."""
    eig = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
    w2sq = (mean**2).sum(-1) + eig.sum(-1) + cov.shape[-1] - 2 * np.sqrt(eig).sum(-1)
    return np.sqrt(np.clip(w2sq, 0.0, None))


def _overlap(p: Mixture, q: Mixture) -> np.ndarray:
    """Integral of p(x) q(x) dx per seed: sum_ij w_i v_j N(mu_i; nu_j, A_i + B_j)."""
    d = p["means"].shape[-1]
    cov = p["covs"][:, :, None] + q["covs"][:, None, :]  # (S, K, K', d, d)
    diff = p["means"][:, :, None] - q["means"][:, None, :]  # (S, K, K', d)
    _, logdet = np.linalg.slogdet(cov)
    maha = np.einsum("sabi,sabi->sab", diff, np.linalg.solve(cov, diff[..., None])[..., 0])
    dens = np.exp(-0.5 * (d * np.log(2 * np.pi) + logdet + maha))
    return np.einsum("sa,sb,sab->s", p["weights"], q["weights"], dens)


def l2_distance(p: Mixture, q: Mixture) -> np.ndarray:
    """The paper's squared L2 distance between densities, integral of (p - q)^2, per seed."""
    return np.clip(_overlap(p, p) - 2 * _overlap(p, q) + _overlap(q, q), 0.0, None)


def sample(m: Mixture, n: int, rngs: list[np.random.Generator]) -> np.ndarray:
    """n points per seed, (S, n, d): component counts ~ Multinomial(n, weights), then normals."""
    s, k, d = m["means"].shape
    counts = np.stack(
        [rng.multinomial(n, w) for rng, w in zip(rngs, m["weights"] / m["weights"].sum(1, keepdims=True))]
    )
    z = np.stack([rng.standard_normal((n, d)) for rng in rngs])
    labels = np.stack([np.repeat(np.arange(k), c) for c in counts])  # (S, n), grouped by component
    chol = _safe_cholesky(m["covs"])  # (S, K, d, d)
    seeds = np.arange(s)[:, None]
    return m["means"][seeds, labels] + np.einsum("snij,snj->sni", chol[seeds, labels], z)


def _safe_cholesky(covs: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.cholesky(covs)
    except np.linalg.LinAlgError:  # a fully collapsed component: clip its eigenvalues at zero
        eig, vec = np.linalg.eigh(covs)
        return vec * np.sqrt(np.clip(eig, 0.0, None))[..., None, :]


METRICS = {
    "perplexity": Metric("perplexity of real test data", "exp of mean NLL per dimension", log=True),
    "variance": Metric("total variance of samples", "data units²"),
    "nll": Metric("mean NLL of real test data", "nats per dimension"),
    "mean_shift": Metric("distance of the model's mean from the real mean", "data units"),
    "fit_std": Metric("the model's sqrt(trace(cov) / d)", "data units"),
    "w2": Metric("Wasserstein-2 distance to the real N(0, I)", "data units"),
    "l2_distance": Metric("squared L2 distance to generation 0's density", "per data unit^d"),
    "component_std": Metric("mean component sqrt(trace(cov) / d)", "data units"),
    "tail_mass": Metric("share of samples beyond the real 3-sigma radius", "fraction"),
    "detector_auc": DETECTOR_AUC,
}


def _rows(scalars: dict[str, np.ndarray], lists: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per seed from columns (S,) of scalars and (S, K) of lists, as Python floats."""
    keys = [*scalars, *lists]
    columns = [v.tolist() for v in (*scalars.values(), *lists.values())]
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]


class MixtureEngine(Engine):
    """Shared part of the Gaussian and GMM engines; subclasses implement fit()."""

    preview_kind = "points"
    METRICS = METRICS
    HEADLINE = (("perplexity", UP), ("variance", DOWN))  # the tails go first (Nature, section 3.1)
    batched = True
    can_draw_fresh = True
    can_score = True
    mitigations = frozenset({"prior", "distill", "real_weight", "detector"})  # each subclass fits them its way
    DISTANCE = Metric("squared L2 distance to the other chain's density", "per data unit^d")

    @property
    def dim(self) -> int:
        return self.params.dim

    def example_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def distance(self, model: Mixture, other_model: Mixture, other_samples: np.ndarray) -> np.ndarray:
        """The paper's squared L2 between the two chains' densities, in closed form (a single Gaussian is
        a mixture of one, so a Gaussian chain and a GMM chain compare directly). numpy's, whatever the
        engine: both chains' rows then carry the same number."""
        return l2_distance(model, other_model)

    def density_l2(self, p: Mixture, q: Mixture) -> np.ndarray:
        """The squared L2 distance between the seeds' densities (l2_distance)."""
        return l2_distance(p, q)

    def real_data(self, rngs: list[np.random.Generator], n: int | None = None) -> np.ndarray:
        n = self.params.samples if n is None else n
        return np.stack([rng.standard_normal((n, self.dim)) for rng in rngs])

    def memory_bytes(self, seeds: int, drawn: int, pooled: int) -> int:
        # float64 points: the data, the pool, the samples with their normals, and the (K, drawn, d)
        # temporaries of scoring them for a filter
        k = int(getattr(self.params, "components", 1))
        n = self.params.samples
        return 8 * self.dim * seeds * (3 * n + pooled + (3 + k) * drawn)

    data_keys = "engine.test_samples"

    def data_bytes(self) -> int:
        # the float64 held-out sample, its copy (the moments of one Gaussian), and a seed's (K, T, d)
        # temporaries when numpy's log-density measures it
        k = int(getattr(self.params, "components", 1))
        return 8 * self.dim * self.params.test_samples * (2 + k)

    def test_data(self) -> np.ndarray:
        if not hasattr(self, "_test"):
            rng = np.random.default_rng(TEST_SEED)
            self._test = rng.standard_normal((1, self.params.test_samples, self.dim))
        return self._test

    def test_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (d,) and covariance (ddof 0, (d, d)) of the fixed real held-out sample."""
        if not hasattr(self, "_test_moments"):
            t = self.test_data()[0]
            self._test_moments = t.mean(0), np.cov(t, rowvar=False, bias=True).reshape(self.dim, self.dim)
        return self._test_moments

    def test_nll(self, model: Mixture) -> np.ndarray:
        """Mean NLL per dimension of the fixed real held-out sample, per seed."""
        test = self.test_data()
        if model["means"].shape[1] > 1:
            return -log_density(test, model).mean(axis=1) / self.dim
        # one Gaussian: the mean NLL depends on the test sample only through its mean and covariance
        t_mean, t_cov = self.test_moments()
        mu, cov = model["means"][:, 0], model["covs"][:, 0]
        dev = t_mean - mu
        scatter = t_cov + dev[:, :, None] * dev[:, None, :]
        _, logdet = np.linalg.slogdet(cov)
        trace = np.trace(np.linalg.solve(cov, scatter), axis1=-2, axis2=-1)
        return 0.5 * (self.dim * np.log(2 * np.pi) + logdet + trace) / self.dim

    def features(self, examples: np.ndarray, reference: Any) -> np.ndarray:
        return point_features(examples)

    def sample(self, model: Mixture, n: int, rngs: list[np.random.Generator], report: Report, data=None) -> Generated:
        x = sample(model, n, rngs)
        return Generated(x, points_preview(x))

    def score(self, reference: Mixture, samples: np.ndarray) -> np.ndarray:
        return -log_density(samples, reference) / samples.shape[-1]

    def sample_stats(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Total variance and tail mass per seed (mixture.sample_stats)."""
        return sample_stats(samples, tail_radius(self.dim))

    def test_nll_later(self, model: Mixture) -> Callable[[], np.ndarray]:
        """test_nll(model), collected by evaluate after the other metrics (GMMEngine computes it meanwhile)."""
        nll = self.test_nll(model)
        return lambda: nll

    def evaluate(self, model: Mixture, samples: np.ndarray, reference: Mixture) -> list[dict[str, Any]]:
        d = self.dim
        nll_result = self.test_nll_later(model)
        mean, cov = moments(model)
        comp_std = np.sqrt(np.trace(model["covs"], axis1=-2, axis2=-1) / d)  # (S, K)
        order = np.argsort(-model["weights"], axis=1)  # components listed heaviest first
        comp_std = np.take_along_axis(comp_std, order, axis=1)
        weights = np.take_along_axis(model["weights"], order, axis=1)
        variance, tail = self.sample_stats(samples)
        l2, w2 = self.density_l2(model, reference), w2_to_standard(mean, cov)
        nll = nll_result()
        with np.errstate(over="ignore"):
            perplexity = np.exp(nll)  # inf once the model all but excludes the real data
        cols = {
            "perplexity": perplexity,
            "nll": nll,
            "variance": variance,
            "mean_shift": np.linalg.norm(mean, axis=-1),
            "fit_std": np.sqrt(np.trace(cov, axis1=-2, axis2=-1) / d),
            "w2": w2,
            "l2_distance": l2,
            "component_std": comp_std.mean(axis=1),
            "tail_mass": tail,
        }
        return _rows(cols, {"component_stds": comp_std, "component_weights": weights})

    def save(self, model: Mixture, directory: Path) -> None:
        with open(directory / "model.npz", "wb") as f:
            np.savez(f, **model)

    def load(self, directory: Path) -> Mixture:
        with np.load(directory / "model.npz", allow_pickle=False) as z:
            return {k: z[k] for k in ("weights", "means", "covs")}

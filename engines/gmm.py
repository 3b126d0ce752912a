"""The paper's Gaussian mixture (Nature, section 2): each generation fits a K-component,
full-covariance mixture by EM with k-means initialisation, like sklearn's
GaussianMixture(covariance_type="full", init_params="kmeans"), then samples from it.

All seeds are fitted by one compiled kernel, in chunks of seeds on threads. Each seed runs its own
k-means and EM to its own convergence, so a fast seed never waits for a slow one, and its result
depends only on its data and on the uniforms drawn from its own Generator: bit-identical whatever the
thread scheduling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .base import DataError, Fitted, Generated, Param, Report, points_preview
from .mixture import Mixture, MixtureEngine, _safe_cholesky, l2_distance, log_density, tail_radius
from .parallel import PARALLEL_WORK, over_seeds, start_over_seeds

FIT_PASSES = 20  # k-means and EM passes over the data in a typical fit, for its work estimate
NORMALS_ON_THREADS = 16_384  # normals a generation (~0.16 ms) from which a thread's wake is worth it


def check_fitted(info: np.ndarray) -> None:
    """ValueError naming the seeds whose fit failed (info (S, 4) of the compiled fits)."""
    from .gmm_kernels import INFO_FAILED

    failed = np.flatnonzero(info[:, INFO_FAILED])
    if failed.size:
        raise ValueError(
            f"mixture fit failed for seeds {failed.tolist()}: a component's covariance is not positive "
            "definite (collapsed samples); increase engine.reg_covar"
        )


def fit_mixtures(
    data: np.ndarray,
    rngs: list[np.random.Generator],
    k: int,
    tol: float = 1e-5,
    max_iter: int = 2000,
    reg_covar: float = 1e-6,
) -> tuple[Mixture, np.ndarray]:
    """Fit a K-component full-covariance mixture to each seed's data (S, N, d). Returns the mixture
    and info (S, 4): EM iterations, converged, failed, k-means iterations."""
    from .gmm_kernels import fit_batch, n_local_trials

    data = np.ascontiguousarray(data, dtype=np.float64)
    s, n, d = data.shape
    if n < k:
        raise ValueError(f"need at least {k} samples per seed for {k} components, got {n}")
    trials = n_local_trials(k)
    # the only randomness: k-means++ uniforms, from each seed's own Generator, drawn here in order
    u = np.stack([rng.random(1 + (k - 1) * trials) for rng in rngs])
    weights, means = np.empty((s, k)), np.empty((s, k, d))
    covs, info = np.empty((s, k, d, d)), np.zeros((s, 4))
    over_seeds(
        fit_batch,
        s * n * k * d * d * FIT_PASSES,
        s,
        data,
        u,
        trials,
        float(tol),
        int(max_iter),
        float(reg_covar),
        weights,
        means,
        covs,
        info,
    )
    check_fitted(info)
    return {"weights": weights, "means": means, "covs": covs}, info


def map_mixtures(
    data: np.ndarray,
    v: np.ndarray,
    start: Mixture,
    prior: Mixture | None,
    mass: np.ndarray | None,
    tol: float,
    max_iter: int,
    reg_covar: float,
) -> tuple[Mixture, np.ndarray]:
    """Weighted MAP-EM from start (data.real_weight, train.anchor = "prior", train.distill): points (S, N, d)
    of weights v (S, N) (a seed's may all be 0: the prior alone), with prior's components as pseudo-data of
    mass (S, K) (None: the weighted maximum likelihood). Each seed stops as fit_mixtures' do; returns the
    mixture and info (S, 4) as fit_mixtures (k-means iterations 0).

    The M-step adds to each component's responsibility-weighted statistics (n_k = sum_i v_i r_ik) the
    pseudo-statistics of prior's component of the same index (mass t_k, mean mu0_k, covariance Sigma0_k):
    MAP-EM with a conjugate prior per component (Ormoneit & Tresp 1996, "Improved Gaussian mixture density
    estimates using Bayesian penalty terms"; Fraley & Raftery 2007, "Bayesian regularization for normal
    mixture estimation", J. Classif. 24), a Dirichlet on the weights and a normal-inverse-Wishart with
    kappa_k = t_k, scale t_k Sigma0_k and nu_k making the covariance's divisor t_k + n_k (as the single
    Gaussian's, engines/gaussian.py anchored):
      w_k = (n_k + t_k) / sum_j (n_j + t_j),  mu_k = (t_k mu0_k + sum_i v_i r_ik x_i) / (t_k + n_k)
      Sigma_k = (sum_i v_i r_ik (x_i - mu_k)(x_i - mu_k)^T + n_k reg_covar I + t_k Sigma0_k
                 + t_k (mu0_k - mu_k)(mu0_k - mu_k)^T) / (t_k + n_k)."""
    from .gmm_kernels import map_em_batch

    data = np.ascontiguousarray(data, dtype=np.float64)
    s, n, d = data.shape
    weights, means, covs = (np.array(start[k], dtype=np.float64) for k in ("weights", "means", "covs"))
    k = weights.shape[1]
    if prior is None:
        prior, mass = {"means": np.zeros_like(means), "covs": np.zeros_like(covs)}, np.zeros((s, k))
    info = np.zeros((s, 4))
    over_seeds(
        map_em_batch,
        s * n * k * d * d * FIT_PASSES,
        s,
        data,
        np.ascontiguousarray(v, dtype=np.float64),
        np.ascontiguousarray(prior["means"], dtype=np.float64),
        np.ascontiguousarray(prior["covs"], dtype=np.float64),
        np.ascontiguousarray(mass, dtype=np.float64),
        float(tol),
        int(max_iter),
        float(reg_covar),
        weights,
        means,
        covs,
        info,
    )
    check_fitted(info)
    return {"weights": weights, "means": means, "covs": covs}, info


def _seeded(rngs: list[np.random.Generator]) -> np.ndarray:
    """The generators as an array (S,), which over_seeds cuts into chunks of seeds as it does the data."""
    out = np.empty(len(rngs), dtype=object)
    out[:] = rngs
    return out


def _normals(rngs: np.ndarray, out: np.ndarray) -> None:
    """out[s] = standard normals from seed s's generator: what rngs[s].standard_normal(out[s].shape) draws."""
    for rng, o in zip(rngs, out):
        rng.standard_normal(o.shape, out=o)


class GMMEngine(MixtureEngine):
    name = "gmm"
    figures = "collapse_tui.engines.figures.gmm"
    PARAMS = {
        "dim": Param(2, int, "dimension d of the data", min=1, max=64),
        "samples": Param(1000, int, "M: samples drawn per generation (and real training set size)", min=2),
        "components": Param(2, int, "K: mixture components", min=1, max=64),
        "test_samples": Param(2000, int, "size of the fixed real held-out sample for perplexity", min=1),
        "tol": Param(1e-5, float, "EM stops when the mean log-likelihood changes less", min=0.0),
        "max_iter": Param(2000, int, "EM iteration limit", min=1),
        "reg_covar": Param(1e-6, float, "added to each covariance's diagonal", min=0.0),
    }

    @staticmethod
    def check_params(params) -> None:
        if params.samples < params.components:
            raise DataError(
                f"engine.samples: expected at least engine.components = {params.components}, got {params.samples}"
            )

    last_info: np.ndarray | None = None  # (S, 4) diagnostics of the last fit, see fit_mixtures

    def expected(self, generations: int, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """None: each generation is EM's fit, from a random k-means start to a tolerance, which has no closed
        form, so neither do the laws of its metrics over generations. Not at M = infinity either: there the
        best K-component fit of N(0, I) is N(0, I) itself, but EM, started from k-means' split of the data,
        stops at its tolerance on a split mixture of its own (K = 1 is engine gaussian, which has its laws)."""
        return {}

    def fit(
        self,
        data: np.ndarray,
        rngs: list[np.random.Generator],
        report: Report,
        source: Any = None,
        reference: Mixture | None = None,
        weights: np.ndarray | None = None,
    ) -> Fitted:
        from . import gmm_kernels  # numba loads for a run, not when a preset is validated

        if not gmm_kernels.fit_batch.signatures and not gmm_kernels.cached():  # the first run on this machine
            report("compile", 0, 1, None)
            gmm_kernels.compile_aside(self.dim, self.params.components)
        p = self.params
        if reference is None:
            model, self.last_info = fit_mixtures(data, rngs, p.components, p.tol, p.max_iter, p.reg_covar)
            if weights is not None:  # weighted EM from the unweighted fit
                model, self.last_info = map_mixtures(data, weights, model, None, None, p.tol, p.max_iter, p.reg_covar)
        else:
            model, self.last_info = self.anchored(data, reference, weights)
        report("fit", 1, 1, None)
        return Fitted(model)

    def anchored(
        self, data: np.ndarray, reference: Mixture, weights: np.ndarray | None
    ) -> tuple[Mixture, np.ndarray | None]:
        """MAP-EM (map_mixtures) from generation 0's mixture, so that component k is anchored to generation
        0's component k (the index is its lineage; no matching step). distill = alpha weighs the data
        1 - alpha and adds generation 0's components as pseudo-data of mass alpha N (its weights apportion
        it; the teacher's points are given to its own component, the exact E-step where student and
        teacher agree); anchor "prior" adds strength x N more. alpha = 1: generation 0's mixture itself
        (the data weigh nothing; no info). So distill alpha is the prior at strength alpha / (1 - alpha):
        both are generation 0's pseudo-data."""
        keys = self.train_keys
        alpha = float(keys.get("distill", 0.0))
        if alpha == 1.0:
            return {k: np.array(a) for k, a in reference.items()}, None
        n = data.shape[1]
        strength = alpha + (float(keys["anchor_strength"]) if keys.get("anchor") == "prior" else 0.0)
        v = (1.0 - alpha) * (np.ones(data.shape[:2]) if weights is None else weights)
        p = self.params
        mass = strength * n * reference["weights"]
        return map_mixtures(data, v, reference, reference, mass, p.tol, p.max_iter, p.reg_covar)

    def sample(self, model: Mixture, n: int, rngs: list[np.random.Generator], report: Report, data=None) -> Generated:
        """mixture.sample: the same draws from each Generator and the same numbers (d <= 2; for d > 2
        the matrix product may round differently in the last bit), without its (S, n, d, d) gather."""
        w = model["weights"] / model["weights"].sum(1, keepdims=True)
        counts = np.stack([rng.multinomial(n, wi) for rng, wi in zip(rngs, w)])
        z = np.empty((len(rngs), n, model["means"].shape[-1]))
        # numpy fills without the GIL: the seeds' normals on the threads (the gmm preset's: 0.66 -> 0.37 ms)
        over_seeds(_normals, PARALLEL_WORK if z.size >= NORMALS_ON_THREADS else 0, len(rngs), _seeded(rngs), z)
        from .gmm_kernels import place_samples

        x = place_samples(model["means"], _safe_cholesky(model["covs"]), counts, z)
        return Generated(x, points_preview(x))

    def log_density(self, x: np.ndarray, model: Mixture) -> np.ndarray:
        """mixture.log_density (to 1e-14), compiled and parallel over seeds."""
        from .gmm_kernels import log_density_batch

        out = log_density_batch(
            np.ascontiguousarray(x, dtype=np.float64), model["means"], model["covs"], model["weights"]
        )
        bad = np.isnan(out).any(axis=1)
        if bad.any():  # singular covariance: keep numpy's behaviour for those seeds
            out[bad] = log_density(x if x.shape[0] == 1 else x[bad], {k: v[bad] for k, v in model.items()})
        return out

    def test_nll(self, model: Mixture) -> np.ndarray:
        """The held-out NLL, every generation's largest measuring cost: the mean log-density in one
        compiled pass, without the per-point logs."""
        return self.test_nll_later(model)()

    def test_nll_later(self, model: Mixture) -> Callable[[], np.ndarray]:
        """test_nll begun on the helper threads (its kernel releases the GIL) while evaluate measures
        the rest; the returned function has the caller take the chunks still left. Split at any size:
        the helpers' wake is hidden behind the caller's own work."""
        from .gmm_kernels import mean_log_density_batch

        test, m = self.test_data(), model
        s = m["means"].shape[0]
        finish = start_over_seeds(mean_log_density_batch, PARALLEL_WORK, s, test, m["means"], m["covs"], m["weights"])

        def nll() -> np.ndarray:
            mean = np.concatenate(finish())
            bad = np.isnan(mean)
            if bad.any():
                mean[bad] = log_density(test, {k: v[bad] for k, v in model.items()}).mean(axis=1)
            return -mean / self.dim

        return nll

    def density_l2(self, p: Mixture, q: Mixture) -> np.ndarray:
        """mixture.l2_distance compiled (to 1e-15): numpy's small-matrix calls cost 0.2 ms a generation."""
        from .gmm_kernels import l2_distance_batch

        out = l2_distance_batch(p["weights"], p["means"], p["covs"], q["weights"], q["means"], q["covs"])
        bad = np.isnan(out)
        if bad.any():  # a summed covariance that is not positive definite: numpy's answer for those seeds
            out[bad] = l2_distance({k: v[bad] for k, v in p.items()}, {k: v[bad] for k, v in q.items()})
        return out

    def sample_stats(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mixture.sample_stats compiled: one tenth of its time."""
        from .gmm_kernels import sample_stats_batch

        return sample_stats_batch(np.ascontiguousarray(samples, dtype=np.float64), tail_radius(self.dim))

    def score(self, reference: Mixture, samples: np.ndarray) -> np.ndarray:
        return -self.log_density(samples, reference) / samples.shape[-1]

"""Linear regression on its own predictions: the setting where model collapse has exact laws (Dohmatob,
Feng & Kempe 2024, "Model collapse demystified: the case of regression"; Gerstgrasser et al. 2024, "Is
model collapse inevitable?", section 2).

Inputs x ~ N(0, I_d); generation 0 fits real labels y = x.w* + sigma e; every later generation fits the
labels the previous model gives to fresh inputs, plus fresh noise of the same sigma. The fit is least
squares with an optional ridge penalty, all seeds at once (one solve over the (S, d, d) Gram matrices).

Data (S, N, d + 1): the d input columns, then the label. A model is a dict of arrays with the seeds on
axis 0: weights (S, d) and noise_var (S,), the residual variance of the fit (its predictive noise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .base import DETECTOR_AUC, UP, DataError, Engine, Fitted, Generated, Metric, Param, Report, point_features

Model = dict[str, np.ndarray]

TEST_SEED = 20240724  # the fixed real held-out set is the same for every seed and run
WEIGHTS_SEED = 20240725  # true_weights = "random": the same w* for every seed and run
LOG_2PI = math.log(2 * math.pi)


def true_weights(kind: str, dim: int) -> np.ndarray:
    """w*: all ones, or one fixed draw of N(0, I_d)."""
    return np.ones(dim) if kind == "ones" else np.random.default_rng(WEIGHTS_SEED).standard_normal(dim)


def labelled(rngs: list[np.random.Generator], n: int, weights: np.ndarray, noise: float) -> np.ndarray:
    """n fresh inputs x ~ N(0, I_d) per seed with labels x.w + noise e, e ~ N(0, 1): (S, n, d + 1).
    weights: (d,) for every seed, or (S, d) one per seed."""
    d = weights.shape[-1]
    x = np.stack([rng.standard_normal((n, d)) for rng in rngs])
    e = np.stack([rng.standard_normal(n) for rng in rngs])
    y = np.einsum("snd,sd->sn", x, np.broadcast_to(weights, (len(rngs), d))) + noise * e
    return np.concatenate([x, y[..., None]], axis=-1)


def fit_ridge(data: np.ndarray, ridge: float) -> Model:
    """Per seed, w = argmin (1/N) ||y - X w||^2 + ridge ||w||^2 = (X^T X + N ridge I)^{-1} X^T y (the ridge
    of Dohmatob et al. 2024's setup, section 3: the penalty per example, so it means the same at every N),
    and noise_var = RSS / (N - dof), dof = tr((X^T X + N ridge I)^{-1} X^T X) (= d for least squares): the
    unbiased noise variance of least squares (Seber & Lee, Linear Regression Analysis, 2nd ed., 3.3)."""
    x, y = data[..., :-1], data[..., -1]
    n, d = x.shape[1:]
    gram = np.matmul(x.transpose(0, 2, 1), x)
    regularised = gram + n * ridge * np.eye(d)
    weights = np.linalg.solve(regularised, np.matmul(x.transpose(0, 2, 1), y[..., None]))[..., 0]
    residual = y - np.einsum("snd,sd->sn", x, weights)
    dof = np.trace(np.linalg.solve(regularised, gram), axis1=-2, axis2=-1) if ridge else d
    return {"weights": weights, "noise_var": np.einsum("sn,sn->s", residual, residual) / (n - dof)}


def fit_anchored(
    data: np.ndarray, ridge: float, weights: np.ndarray | None, reference: Model | None, train: dict[str, Any]
) -> Model:
    """fit_ridge with the mitigations: weights (S, N) (mean 1) weigh the squared residuals; anchor "prior"
    adds strength ||w - w0||^2 (a Gaussian prior N(w0, sigma^2 / (strength N) I) on the weights around
    generation 0's, the MAP estimate: ridge towards w0, Bishop 2006, PRML 3.3.1); distill = alpha mixes
    the data's loss with the teacher's, whose inputs are the real N(0, I) and labels x.w0 + N(0, sigma0^2):
    E_teacher[(y - x.w)^2] = ||w - w0||^2 + sigma0^2, exactly. The objective per example,
      (1 - alpha) [(1/N) sum_i v_i (y_i - x_i.w)^2 + ridge ||w||^2 + strength ||w - w0||^2]
        + alpha [||w - w0||^2 + sigma0^2],
    is minimised by A w = (1 - alpha)(X^T V y / N + strength w0) + alpha w0 with
    A = (1 - alpha)(X^T V X / N + (ridge + strength) I) + alpha I (alpha = 1: w0 exactly); so distill alpha
    is the prior at strength alpha / (1 - alpha). noise_var: (1 - alpha) RSS_v / (N - dof) + alpha (sigma0^2
    + ||w - w0||^2), dof = tr(A^-1 (1 - alpha) X^T V X / N) (fit_ridge's at weights 1, no anchor)."""
    x, y = data[..., :-1], data[..., -1]
    s, n, d = x.shape
    v = np.ones((s, n)) if weights is None else weights
    alpha = float(train.get("distill", 0.0)) if reference is not None else 0.0
    strength = float(train["anchor_strength"]) if reference is not None and train.get("anchor") == "prior" else 0.0
    w0 = np.zeros((s, d)) if reference is None else reference["weights"]
    vx = (x * v[..., None]).transpose(0, 2, 1)  # X^T V
    gram = (1.0 - alpha) * np.matmul(vx, x) / n
    a = gram + ((1.0 - alpha) * (ridge + strength) + alpha) * np.eye(d)
    b = (1.0 - alpha) * (np.matmul(vx, y[..., None])[..., 0] / n + strength * w0) + alpha * w0
    w = np.linalg.solve(a, b[..., None])[..., 0]
    residual = y - np.einsum("snd,sd->sn", x, w)
    dof = np.trace(np.linalg.solve(a, gram), axis1=-2, axis2=-1)
    noise_var = (1.0 - alpha) * np.einsum("sn,sn,sn->s", v, residual, residual) / np.maximum(n - dof, 1e-300)
    if alpha:
        noise_var = noise_var + alpha * (reference["noise_var"] + ((w - w0) ** 2).sum(axis=1))
    return {"weights": w, "noise_var": noise_var}


def gaussian_nll(mean_square: np.ndarray, var: np.ndarray) -> np.ndarray:
    """The mean of -log N(r; 0, var) over residuals r whose mean square is mean_square (one r: its NLL)."""
    return 0.5 * (LOG_2PI + np.log(var) + mean_square / var)


def ols_excess_risk(mode: str, generations: int, dim: int, samples: int, noise: float) -> np.ndarray | None:
    """E||w_n - w*||^2 at generations n = 0 .. generations-1 for least squares with T = samples >= d + 2
    examples a generation; None for a data mode without a closed form.

    Both modes rest on E[(X^T X)^{-1}] = I / (N - d - 1) for X with N rows of N(0, I_d) (the mean of an
    inverse Wishart) and on every generation's noise being fresh and independent of all inputs.
    replace: w_n = w_{n-1} + (X_n^T X_n)^{-1} X_n^T e_n, independent zero-mean steps, so
      sigma^2 d (n + 1) / (T - d - 1): the linear growth of Dohmatob et al. 2024 (section 4, ridge 0) and
      of Gerstgrasser et al. 2024 (section 2, replace).
    accumulate: generation n fits all blocks B_0 .. B_n of T examples, block k labelled by w_{k-1}
      (w_{-1} = w*). With A_n = sum_{k<=n} X_k^T X_k, the normal equations give A_n w_n = A_{n-1} w_{n-1}
      + X_n^T (X_n w_{n-1} + e_n), so w_n - w_{n-1} = A_n^{-1} X_n^T e_n. The steps are uncorrelated, and
      E tr(A_k^{-2} X_k^T X_k) = E tr(A_k^{-1}) / (k + 1) (the k + 1 blocks of A_k are exchangeable), with
      A_k ~ Wishart(d, (k + 1) T): sigma^2 d sum_{m=1}^{n+1} 1 / (m (m T - d - 1)). Derived here for fresh
      inputs every generation; as in Gerstgrasser et al. 2024 (section 2, accumulate) the m-th term is at
      most generation 0's risk / m^2, so the risk stays below pi^2 / 6 times generation 0's.
    """
    n = np.arange(1, generations + 1)
    if mode == "replace":
        return noise**2 * dim * n / (samples - dim - 1)
    if mode == "accumulate":
        return noise**2 * dim * np.cumsum(1.0 / (n * (n * samples - dim - 1)))
    return None


def preview(samples: np.ndarray, weights: np.ndarray, n: int = 1000) -> np.ndarray:
    """Up to n examples of the first seed, their inputs rotated so that w*'s direction comes first, and the
    label moved second: the sample pane's map of the first two columns is then label against x.w*/||w*||
    (a line of slope ||w*||, widened by the noise and by the model's error)."""
    x, y = samples[0, :n, :-1], samples[0, :n, -1:]
    u = weights / np.linalg.norm(weights)
    v = u.copy()
    v[0] -= 1.0  # the Householder reflection I - 2 v v^T / v.v swaps e_1 and u
    rotated = x if not v.any() else x - 2.0 * np.outer(x @ v, v) / (v @ v)
    return np.concatenate([rotated[:, :1], y, rotated[:, 1:]], axis=1).astype(np.float32)


METRICS = {
    "perplexity": Metric("perplexity of real held-out labels", "exp of mean Gaussian NLL per example", log=True),
    "variance": Metric("residual variance of the fit", "label units², RSS / (N − dof)"),
    "excess_risk": Metric("excess risk E_x[(x·(ŵ − w*))²] = ‖ŵ − w*‖²", "label units²"),
    "test_mse": Metric("mean squared error on real held-out data", "label units²"),
    "weight_norm": Metric("norm of the fitted weights ‖ŵ‖", "label units per input unit"),
    "detector_auc": DETECTOR_AUC,
}


class LinregEngine(Engine):
    name = "linreg"
    preview_kind = "points"
    METRICS = METRICS
    # the fit drifts from w*: its excess risk grows (ols_excess_risk: linearly in replace), and so does the
    # real labels' perplexity; its residual variance stays at sigma^2 in expectation and shows no collapse
    HEADLINE = (("perplexity", UP), ("excess_risk", UP))
    batched = True
    can_draw_fresh = True
    can_score = True
    mitigations = frozenset({"prior", "distill", "real_weight", "detector"})
    PARAMS = {
        "dim": Param(10, int, "d: input dimension, x ~ N(0, I_d)", min=1, max=256),
        "samples": Param(50, int, "T: examples a generation (and the real training set's size)", min=1),
        "noise": Param(1.0, float, "sigma: std of the label noise, real and synthetic", min=0, min_exclusive=True),
        "ridge": Param(0.0, float, "lambda: ridge penalty per example (0: ordinary least squares)", min=0),
        "true_weights": Param(
            "ones", str, "w*: all ones, or N(0, I_d) drawn with a fixed seed", choices=("ones", "random")
        ),
        "test_samples": Param(10000, int, "size of the fixed real held-out set (test_mse, perplexity)", min=1),
    }

    @staticmethod
    def check_params(p: Any) -> None:
        if p.ridge == 0 and p.samples < p.dim + 2:
            raise DataError(
                f"engine.samples: least squares (engine.ridge = 0) needs at least engine.dim + 2 = {p.dim + 2} "
                f"examples for a finite expected risk, got {p.samples}; raise it or set engine.ridge > 0"
            )

    @property
    def w_star(self) -> np.ndarray:
        return true_weights(self.params.true_weights, self.params.dim)

    def example_shape(self) -> tuple[int, ...]:
        return (self.params.dim + 1,)

    def memory_bytes(self, seeds: int, drawn: int, pooled: int) -> int:
        # float64: the data, the pool, the samples and their residuals; the Gram matrices and solves
        d, n = self.params.dim, self.params.samples
        return 8 * seeds * ((d + 1) * (3 * n + pooled + 2 * drawn) + 3 * d * d)

    data_keys = "engine.test_samples"

    def data_bytes(self) -> int:
        return 8 * (self.params.dim + 1) * self.params.test_samples * 2  # the held-out set and its residuals

    def test_moments(self) -> tuple[float, np.ndarray, np.ndarray]:
        """The fixed real held-out set through its moments about w*: mean r^2, X^T r / M and X^T X / M with
        r = y - X w* (its noise), from which test_mse follows exactly for any weights."""
        if not hasattr(self, "_moments"):
            test = labelled(
                [np.random.default_rng(TEST_SEED)], self.params.test_samples, self.w_star, self.params.noise
            )
            x, y = test[0, :, :-1], test[0, :, -1]
            r, m = y - x @ self.w_star, len(y)
            self._moments = float(r @ r) / m, x.T @ r / m, x.T @ x / m
        return self._moments

    def test_mse(self, weights: np.ndarray) -> np.ndarray:
        """Mean of (y - x.w)^2 over the held-out set per seed: mean (r - x.delta)^2, delta = w - w*."""
        rr, xr, xx = self.test_moments()
        delta = weights - self.w_star
        return rr - 2 * delta @ xr + np.einsum("si,ij,sj->s", delta, xx, delta)

    def real_data(self, rngs: list[np.random.Generator], n: int | None = None) -> np.ndarray:
        return labelled(rngs, self.params.samples if n is None else n, self.w_star, self.params.noise)

    def fit(
        self,
        data: np.ndarray,
        rngs: list[np.random.Generator],
        report: Report,
        source: Any = None,
        reference: Model | None = None,
        weights: np.ndarray | None = None,
    ) -> Fitted:
        if reference is None and weights is None:
            model = fit_ridge(data, self.params.ridge)
        else:
            model = fit_anchored(data, self.params.ridge, weights, reference, self.train_keys)
        report("fit", 1, 1, None)
        return Fitted(model)

    def sample(self, model: Model, n: int, rngs: list[np.random.Generator], report: Report, data=None) -> Generated:
        x = labelled(rngs, n, model["weights"], self.params.noise)
        return Generated(x, preview(x, self.w_star))

    def features(self, examples: np.ndarray, reference: Any) -> np.ndarray:
        """Coordinates and their squares, and each input times the label: E[x y] is the weights, which
        every model has its own of (all draw x from the same N(0, I))."""
        x = np.asarray(examples, dtype=np.float64)
        return np.concatenate([point_features(x), x[..., :-1] * x[..., -1:]], axis=-1)

    def score(self, reference: Model, samples: np.ndarray) -> np.ndarray:
        """NLL of each label given its input under the reference's N(x.w, noise_var): the model describes
        y given x, and every model here draws its inputs from the same N(0, I)."""
        residual = samples[..., -1] - np.einsum("snd,sd->sn", samples[..., :-1], reference["weights"])
        return gaussian_nll(residual**2, reference["noise_var"][:, None])

    def evaluate(self, model: Model, samples: np.ndarray, reference: Model) -> list[dict[str, Any]]:
        w, noise_var = model["weights"], model["noise_var"]
        mse = self.test_mse(w)
        with np.errstate(over="ignore", divide="ignore"):
            perplexity = np.exp(gaussian_nll(mse, noise_var))  # inf once the model all but excludes the data
        cols = {
            "perplexity": perplexity,
            "variance": noise_var,
            "excess_risk": ((w - self.w_star) ** 2).sum(axis=1),
            "test_mse": mse,
            "weight_norm": np.linalg.norm(w, axis=1),
        }
        return [dict(zip(cols, values)) for values in zip(*(c.tolist() for c in cols.values()))]

    def expected(self, generations: int, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """excess_risk and test_mse for least squares in modes replace and accumulate (ols_excess_risk), and
        variance in mode replace; {} with a ridge, a filter, data mixed between chains or seeds, or a mitigation."""
        p = self.params
        mixed = data.get("share_seeds") or data.get("share_others") or data.get("mix")
        if p.ridge or mixed or data.get("filter", "none") != "none" or self.mitigated(data):
            return {}
        excess = ols_excess_risk(data["mode"], generations, p.dim, p.samples, p.noise)
        if excess is None:
            return {}
        # w_n - w* has mean 0 (the noise's sign is symmetric) and an isotropic covariance (the inputs'
        # law is rotation invariant), so E[delta^T S delta] = tr(S) E||delta||^2 / d for the fixed set's S
        rr, _, xx = self.test_moments()
        out = {"excess_risk": excess, "test_mse": rr + np.trace(xx) / p.dim * excess}
        if data["mode"] == "replace":
            # each generation's labels are X_n w_{n-1} + e_n, exactly linear in X_n, so RSS / (T - d) is
            # unbiased for sigma^2 at every generation (Seber & Lee, 3.3)
            out["variance"] = np.full(generations, p.noise**2)
        return out

    def save(self, model: Model, directory: Path) -> None:
        with open(directory / "model.npz", "wb") as f:
            np.savez(f, **model)

    def load(self, directory: Path) -> Model:
        with np.load(directory / "model.npz", allow_pickle=False) as z:
            return {k: z[k] for k in ("weights", "noise_var")}

"""The detector (issue 24, adversarial filtering and importance resampling): every generation, a
discriminator learns to tell real examples from the generation's samples, on the features the engine
declares (Engine.features), and gives each sample D = P(real | x). Its AUC is every row's detector_auc
(0.5: the samples cannot be told from real data); data.filter = "detector" keeps the samples with the
highest D, data.reweight = "detector" draws the training set with probability proportional to D / (1 - D).

The discriminator is L2-regularised logistic regression on standardised features with balanced classes:
the objective of scikit-learn's LogisticRegression(C=1, class_weight="balanced"), minimised here by
Newton's method for all seeds at once in numpy (tests/test_detector.py checks it against scikit-learn's
fit). One scikit-learn fit per seed and fold costs milliseconds: more than a whole generation of the point
engines, whose 20 seeds would need 40 of them. The real examples are the engine's detector_real(): held
apart from the training and the test data. The fit is cross-fitted on two folds of both, so every sample's
D and each fold's AUC come from a model that did not see them; at most CAP examples of each class are fitted.

Its linear algebra runs on one BLAS thread: the same bits whatever the machine's cores and --workers, and
no threads waiting on each other on a busy machine (ngram-quick's detector on a loaded 2-core machine:
2.3 s a generation with OpenBLAS's two threads, 0.2 s with one).

Randomness: the detector's own generators, derived from (seed, generation), never the run's: a run that
does not filter with the detector trains on what it did before, and a resumed run recomputes each number.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .engines import DataError, Engine

CAP = 500  # real examples held apart, and samples fitted, per seed and generation (each fold fits half)
REAL_PER_FAKE = 4  # real examples fitted per sample fitted, at most
C = 1.0  # inverse L2 strength, scikit-learn's default
NEWTON_STEPS = 50  # Newton converges in ~10 on these problems; a seed still moving after 50 keeps its last
TOL = 1e-6  # a seed stops when its Newton step moves no coefficient more than this (Newton: the next ~1e-12)
DETECTOR_SEED = 0x5EED_DE7  # the detector's generators: SeedSequence((DETECTOR_SEED, seed[, generation]))


@dataclass(frozen=True)
class Detection:
    """One group's detector: logit (S, n) = log D / (1 - D) of every sample (NaN: not measured), the AUC
    of real against generated examples per seed, (S,) (NaN: not measured), and the seeds' detector
    generators, continued after the folds were dealt (reweight draws from them)."""

    logit: np.ndarray
    auc: np.ndarray
    rngs: list[np.random.Generator]

    def auc_value(self, s: int) -> float | None:
        """Seed s's AUC for its row: None where it was not measured."""
        v = float(self.auc[s])
        return v if np.isfinite(v) else None


def real_features(engine: Engine, g: Any) -> np.ndarray | None:
    """Features (S, m, f) of the group's held-apart real examples (Engine.detector_real, from the detector's
    own generator of each seed), computed once per group (they depend on generation 0's model only); None
    when the engine holds none apart or declares no features."""
    if g.detector_real is None:
        rngs = [np.random.default_rng((DETECTOR_SEED, s)) for s in g.seeds]
        try:
            real = engine.detector_real(rngs, CAP)
            g.detector_real = () if real is None else engine.features(real, g.reference)
        except NotImplementedError:
            g.detector_real = ()
    return None if isinstance(g.detector_real, tuple) else g.detector_real


def measure(engine: Engine, g: Any, gen: int, samples: np.ndarray) -> Detection:
    """The detector of generation gen's samples (S, n, ...) of group g."""
    s, n = samples.shape[:2]
    real = real_features(engine, g)
    rngs = [np.random.default_rng((DETECTOR_SEED, seed, gen)) for seed in g.seeds]
    if real is None or n < 2 or real.shape[1] < 2:
        return Detection(np.full((s, n), np.nan), np.full(s, np.nan), rngs)
    with _blas().limit(limits=1, user_api="blas"):
        logit, aucs = cross_fit(real, engine.features(samples, g.reference), rngs)
    return Detection(logit, aucs, rngs)


@functools.cache
def _blas() -> Any:
    """The process's BLAS thread pools (numpy's), found once."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def select(data: Any, samples: np.ndarray, detection: Detection, n: int) -> np.ndarray:
    """What the next training set is drawn from (data: the [data] section): the n samples that look most
    real (filter = "detector"), n drawn in proportion to D / (1 - D) (reweight = "detector"), else samples.
    DataError when the detector measured nothing (no real examples held apart, fewer than 2 samples)."""
    key = "filter" if data.filter == "detector" else "reweight" if data.reweight == "detector" else ""
    if key and np.isnan(detection.logit).all():
        raise DataError(f"data.{key}: the detector had no real examples held apart or too few samples to measure")
    if data.filter == "detector":
        return most_real(samples, detection.logit, n)
    if data.reweight == "detector":
        return reweighted(samples, detection.logit, n, detection.rngs)
    return samples


def cross_fit(real: np.ndarray, fake: np.ndarray, rngs: list[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
    """Two-fold cross-fitting of the discriminator, real (S, m, f) against fake (S, n, f) with m, n >= 2:
    the real examples (a random draw already) dealt into two folds by position, each seed's samples at
    random (from its generator). The model fitted on one fold (both folds' models in one batch) gives the
    other fold's samples their logits and its AUC. Each fold fits at most CAP / 2 samples and REAL_PER_FAKE
    times as many real examples (at least CAP / 10): more would cost time and hardly narrow an AUC that the
    samples' count limits. Returns the logits (S, n) and the two folds' mean AUC (S,)."""
    s, m, n = real.shape[0], real.shape[1], fake.shape[1]
    h_fake = min(n // 2, CAP // 2)
    h_real = min(m // 2, CAP // 2, max(REAL_PER_FAKE * h_fake, CAP // 10))
    perm = np.stack([rng.permutation(n) for rng in rngs])
    folds = [perm[:, 0::2], perm[:, 1::2]]
    coef, intercept, centre, scale = fit_logistic(
        np.concatenate([real[:, k::2][:, :h_real] for k in (0, 1)]),
        np.concatenate([take(fake, folds[k][:, :h_fake]) for k in (0, 1)]),
    )
    logit, aucs = np.full((s, n), np.nan), []
    for k in (0, 1):  # model k scores fold 1 - k
        model = [p[k * s : (k + 1) * s] for p in (coef, intercept, centre, scale)]
        z_fake = decision(take(fake, folds[1 - k]), *model)
        z_real = decision(real[:, 1 - k :: 2][:, :h_real], *model)
        np.put_along_axis(logit, folds[1 - k], z_fake, axis=1)
        aucs.append(auc(z_real, z_fake))
    return logit, (aucs[0] + aucs[1]) / 2


def take(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """x[s, idx[s]] for every seed s: (S, k, f)."""
    return np.take_along_axis(x, idx[..., None], axis=1)


def fit_logistic(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Logistic regression of real (label 1, (S, a, f)) against fake (label 0, (S, b, f)) per seed:
    (coef (S, f), intercept (S,), centre (S, f), scale (S, f)) on features standardised by the fit set's
    mean and standard deviation (a constant feature: scale 1). Minimises scikit-learn's objective
    ||w||^2 / 2 + C sum_i s_i (log(1 + e^z_i) - y_i z_i), z = x w + b, balanced weights s_i = N / (2 N_class)
    (the intercept unpenalised), by Newton's method with step halving; each seed stops on its own."""
    (sn, a, f), b = real.shape, fake.shape[1]
    x = np.empty((sn, a + b, f + 1))  # the features, then a column of ones for the intercept
    x[:, :a, :f], x[:, a:, :f], x[..., f] = real, fake, 1.0
    mean = np.full(a + b, 1.0 / (a + b))  # sums over examples as products: numpy's strided sums are slower
    centre = mean @ x[..., :f]
    x[..., :f] -= centre[:, None]
    scale = np.sqrt(mean @ (x[..., :f] ** 2))
    scale[scale == 0] = 1.0
    x[..., :f] /= scale[:, None]
    xt = np.ascontiguousarray(x.transpose(0, 2, 1))  # (S, f + 1, N)
    y = np.concatenate([np.ones(a), np.zeros(b)])
    w = C * np.concatenate([np.full(a, (a + b) / (2 * a)), np.full(b, (a + b) / (2 * b))])
    ridge = np.ones(x.shape[2])
    ridge[-1] = 0.0  # the intercept is not penalised
    beta = np.zeros((sn, x.shape[2]))
    active = np.arange(sn)  # the seeds still moving

    def loss(xts: np.ndarray, bs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = (bs[:, None] @ xts)[:, 0]
        softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))  # log(1 + e^z) without overflow
        return 0.5 * (ridge * bs * bs).sum(1) + (w * (softplus - y * z)).sum(1), z

    current, z = loss(xt, beta)
    for _ in range(NEWTON_STEPS):
        xs, xts, bs = (x, xt, beta) if len(active) == sn else (x[active], xt[active], beta[active])
        p = 1.0 / (1.0 + np.exp(-z))
        grad = (xts @ (w * (p - y))[..., None])[..., 0] + ridge * bs
        hess = (xts * (w * p * (1 - p))[:, None]) @ xs + np.diag(ridge)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        t = np.ones(len(bs))
        for _ in range(30):  # halve the step of the seeds whose loss it would raise
            after, z_after = loss(xts, bs - t[:, None] * step)
            worse = after > current[active] + 1e-12 * np.abs(current[active])
            if not worse.any():
                break
            t[worse] /= 2
        beta[active] = bs - t[:, None] * step
        current[active] = after
        moving = np.abs(t[:, None] * step).max(axis=1) > TOL
        active, z = active[moving], z_after[moving]
        if not len(active):
            break
    return beta[:, :-1], beta[:, -1], centre, scale


def decision(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray, centre: np.ndarray, scale: np.ndarray):
    """The fitted model's logit log D / (1 - D) of examples x (S, k, f): (S, k)."""
    return np.einsum("skf,sf->sk", (x - centre[:, None]) / scale[:, None], coef) + intercept[:, None]


def auc(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Area under the ROC curve of scores that should be higher for real (S, a) than for fake (S, b):
    P(real > fake) + P(real = fake) / 2 per seed, the Mann-Whitney U / (a b) (Hanley and McNeil 1982).
    U counts, for every real score, the samples below it, those tied with it counted half: the mean of
    two sorts of all scores, one placing ties' real scores first, one last."""
    a, b = real.shape[1], fake.shape[1]
    scores = np.concatenate([real, fake], axis=1)
    is_fake = np.r_[np.zeros(a), np.ones(b)]
    u = np.zeros(len(scores))
    for tie_key in (is_fake, 1 - is_fake):  # ties: real first (samples strictly below), then real last
        order = np.lexsort((np.broadcast_to(tie_key, scores.shape), scores), axis=-1)
        fake_sorted = is_fake[order]
        below = np.cumsum(fake_sorted, axis=1)  # samples at or before each position
        u += (below * (1 - fake_sorted)).sum(axis=1)
    return u / (2 * a * b)


def most_real(samples: np.ndarray, logit: np.ndarray, n: int) -> np.ndarray:
    """data.filter = "detector": the n samples per seed with the highest D (ties: the earlier first)."""
    best = np.argsort(-logit, axis=1, kind="stable")[:, :n]
    return np.take_along_axis(samples, best.reshape(best.shape + (1,) * (samples.ndim - 2)), axis=1)


def reweighted(samples: np.ndarray, logit: np.ndarray, n: int, rngs: list[np.random.Generator]) -> np.ndarray:
    """data.reweight = "detector": n samples per seed drawn with replacement with probability proportional
    to D / (1 - D) = exp(logit), the classifier's density-ratio estimate p_real / p_model (the
    probabilistic-classification estimator: Sugiyama, Suzuki and Kanamori 2012, 'Density Ratio Estimation
    in Machine Learning', ch. 4; balanced classes make the odds the ratio itself). Each seed draws from its
    own generator."""
    p = np.exp(logit - logit.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    idx = np.stack([rng.choice(len(pi), size=n, replace=True, p=pi) for rng, pi in zip(rngs, p)])
    return np.take_along_axis(samples, idx.reshape(idx.shape + (1,) * (samples.ndim - 2)), axis=1)

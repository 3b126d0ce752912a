"""The detector (issue 24, adversarial filtering and importance resampling): every generation, a
discriminator learns to tell real examples from the generation's samples, on the features the engine
declares (Engine.features), and gives each sample D = P(real | x). Its AUC is every row's detector_auc
(0.5: the samples cannot be told from real data); data.filter = "detector" keeps the samples with the
highest D, data.reweight = "detector" draws the training set with probability proportional to D / (1 - D).

The discriminator is L2-regularised logistic regression on standardised features with balanced classes:
the objective of scikit-learn's LogisticRegression(C=1, class_weight="balanced"), minimised here by
Newton's method, compiled (engines/logistic_kernels.py) or, for fits small enough that numba's start
would cost more, in numpy (engines/logistic_numpy.py); tests/test_detector.py checks both against
scikit-learn's fit and each other. One scikit-learn fit per seed and fold costs milliseconds: more than a
whole generation of the point engines, whose 20 seeds would need 40 of them. The real examples are the engine's
detector_real(): held apart from the training and the test data. The fit is cross-fitted on two folds of
both, so every sample's D and each fold's AUC come from a model that did not see them; at most CAP examples
of each class are fitted.

It starts no BLAS threads: the same bits whatever the machine's cores and --workers, and no threads
waiting on each other on a busy machine (ngram-quick's detector on a loaded 2-core machine, with numpy's
BLAS: 2.3 s a generation on OpenBLAS's two threads, 0.2 s on one).

Randomness: the detector's own generators, derived from (seed, generation), never the run's: a run that
does not filter with the detector trains on what it did before, and a resumed run recomputes each number.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .engines import DataError, Engine

CAP = 500  # real examples held apart, and samples fitted, per seed and generation (each fold fits half)
REAL_PER_FAKE = 4  # real examples fitted per sample fitted, at most
C = 1.0  # inverse L2 strength, scikit-learn's default
NEWTON_STEPS = 50  # Newton converges in ~10 on these problems; a seed still moving after 50 keeps its last
PASSES = 10  # passes over the examples of a typical fit (5 Newton steps, a loss after each), for its work
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
    logit, aucs = cross_fit(real, engine.features(samples, g.reference), rngs)
    return Detection(logit, aucs, rngs)


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
    s, m, n, f = real.shape[0], real.shape[1], fake.shape[1], real.shape[2]
    h_fake = min(n // 2, CAP // 2)
    h_real = min(m // 2, CAP // 2, max(REAL_PER_FAKE * h_fake, CAP // 10))
    ops = kernels(h_real + h_fake, f)
    perm = np.stack([rng.permutation(n) for rng in rngs])
    folds = [perm[:, 0::2], perm[:, 1::2]]
    dealt = [take(fake, fold, ops) for fold in folds]  # each fold's samples; the first h_fake are fitted
    coef, intercept, centre, scale = fit_logistic(
        np.concatenate([real[:, j::2][:, :h_real] for j in (0, 1)]),
        np.concatenate([dealt[j][:, :h_fake] for j in (0, 1)]),
        ops,
    )
    logit, aucs = np.full((s, n), np.nan), []
    for j in (0, 1):  # model j scores fold 1 - j
        model = [p[j * s : (j + 1) * s] for p in (coef, intercept, centre, scale)]
        z_fake = decision(dealt[1 - j], *model, ops)
        z_real = decision(real[:, 1 - j :: 2][:, :h_real], *model, ops)
        np.put_along_axis(logit, folds[1 - j], z_fake, axis=1)
        aucs.append(auc(z_real, z_fake, ops))
    return logit, (aucs[0] + aucs[1]) / 2


def kernels(examples: int, features: int) -> ModuleType:
    """The detector's arithmetic for fits of this many examples and features: numpy for small fits
    (engines/logistic_numpy.py: no numba to start), else compiled (engines/logistic_kernels.py). Chosen by
    one fit's size, so a seed's numbers depend neither on the other seeds nor on what else the process ran."""
    from .engines import logistic_numpy

    if examples * (features + 1) ** 2 <= logistic_numpy.SMALL_FIT:
        return logistic_numpy
    from .engines import logistic_kernels  # numba loads when a run measures larger fits

    return logistic_kernels


def take(x: np.ndarray, idx: np.ndarray, ops: ModuleType) -> np.ndarray:
    """x[s, idx[s]] for every seed s: (S, k, f) (compiled at the gmm's size, where numpy's fancy index is 8x slower)."""
    return ops.gather(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(idx, dtype=np.int64))


def fit_logistic(
    real: np.ndarray, fake: np.ndarray, ops: ModuleType | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Logistic regression of real (label 1, (S, a, f)) against fake (label 0, (S, b, f)) per seed:
    (coef (S, f), intercept (S,), centre (S, f), scale (S, f)) on features standardised by the fit set's
    mean and standard deviation (a constant feature: scale 1). Minimises scikit-learn's objective
    ||w||^2 / 2 + C sum_i s_i (log(1 + e^z_i) - y_i z_i), z = x w + b, balanced weights s_i = N / (2 N_class)
    (the intercept unpenalised), by Newton's method with step halving; each seed stops on its own
    (ops: the arithmetic's module, by default kernels' choice for the fits' size)."""
    from .engines.parallel import over_seeds  # chunks of seeds on threads

    sn, examples, f = real.shape[0], real.shape[1] + fake.shape[1], real.shape[2]
    ops = ops or kernels(examples, f)
    beta, centre, scale = np.empty((sn, f + 1)), np.empty((sn, f)), np.empty((sn, f))
    args = (np.ascontiguousarray(real, dtype=np.float64), np.ascontiguousarray(fake, dtype=np.float64), C)
    args += (NEWTON_STEPS, TOL, beta, centre, scale)
    over_seeds(ops.fit_logistic_batch, sn * examples * (f + 1) ** 2 * PASSES, sn, *args)
    return beta[:, :-1], beta[:, -1], centre, scale


def decision(
    x: np.ndarray, coef: np.ndarray, intercept: np.ndarray, centre: np.ndarray, scale: np.ndarray, ops: ModuleType
) -> np.ndarray:
    """The fitted model's logit log D / (1 - D) of examples x (S, k, f): (S, k)."""
    return ops.logits_batch(np.ascontiguousarray(x, dtype=np.float64), coef, intercept, centre, scale)


def auc(real: np.ndarray, fake: np.ndarray, ops: ModuleType) -> np.ndarray:
    """Area under the ROC curve of scores that should be higher for real (S, a) than for fake (S, b):
    P(real > fake) + P(real = fake) / 2 per seed, the Mann-Whitney U / (a b) (Hanley and McNeil 1982),
    counted exactly (ops.auc_sorted)."""
    return ops.auc_sorted(np.sort(real, axis=1).astype(np.float64), np.sort(fake, axis=1).astype(np.float64))


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

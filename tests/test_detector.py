"""The detector (collapse_tui/detector.py): its logistic regression against scikit-learn's, its AUC against
roc_auc_score, the AUC of identical and disjoint distributions and of a collapsing GMM, what the filter
keeps and what reweight draws, a resumed run with the detector on, and the combinations refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import WIKI_TEST, WIKI_TRAIN, run_loop, run_preset
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from collapse_tui.cli import main
from collapse_tui.config import DataSection
from collapse_tui.detector import (
    Detection,
    auc,
    cross_fit,
    decision,
    fit_logistic,
    kernels,
    most_real,
    reweighted,
    select,
)
from collapse_tui.engines import logistic_kernels, logistic_numpy
from collapse_tui.engines.base import DataError, point_features
from collapse_tui.engines.ngram import NgramEngine
from collapse_tui.engines.text_metrics import hashed_ngrams


def rngs(seeds: int, base: int = 0) -> list[np.random.Generator]:
    return [np.random.default_rng(base + s) for s in range(seeds)]


NUMPY, COMPILED = logistic_numpy, logistic_kernels


@pytest.mark.parametrize("ops", [NUMPY, COMPILED], ids=["numpy", "compiled"])
def test_the_fit_is_scikit_learns_logistic_regression(ops):
    """Coefficients and logits equal LogisticRegression(C=1, class_weight='balanced') fitted to convergence on
    the same standardised features, seed by seed, with unequal classes and one constant feature."""
    rng = np.random.default_rng(3)
    real = rng.standard_normal((3, 120, 3)) + [0.3, 0.0, 0.0]
    fake = rng.standard_normal((3, 70, 3)) * [1.0, 0.6, 0.0]
    real[..., 2] = fake[..., 2] = 1.5  # constant: scale 1, coefficient 0
    coef, intercept, centre, scale = fit_logistic(real, fake, ops)
    for s in range(3):
        x = (np.concatenate([real[s], fake[s]]) - centre[s]) / scale[s]
        y = np.r_[np.ones(120), np.zeros(70)]
        sk = LogisticRegression(C=1.0, class_weight="balanced", tol=1e-12, max_iter=10_000).fit(x, y)
        np.testing.assert_allclose(coef[s], sk.coef_[0], atol=1e-6)
        np.testing.assert_allclose(intercept[s], sk.intercept_[0], atol=1e-6)
        model = (coef[s : s + 1], intercept[s : s + 1], centre[s : s + 1], scale[s : s + 1])
        z = decision(fake[s : s + 1], *model, ops)
        np.testing.assert_allclose(z[0], sk.decision_function((fake[s] - centre[s]) / scale[s]), atol=1e-6)


@pytest.mark.parametrize("ops", [NUMPY, COMPILED], ids=["numpy", "compiled"])
def test_auc_is_roc_auc_score_ties_included(ops):
    rng = np.random.default_rng(5)
    real, fake = rng.integers(0, 12, (4, 50)).astype(float), rng.integers(0, 10, (4, 80)).astype(float)
    ours = auc(real, fake, ops)
    for s in range(4):
        expected = roc_auc_score(np.r_[np.ones(50), np.zeros(80)], np.r_[real[s], fake[s]])
        assert ours[s] == pytest.approx(expected, abs=1e-12)


def test_numpys_fits_are_the_compiled_ones_and_small_fits_take_numpy():
    """The two implementations on 60 random problems (1 to 40 fits of 4 to 120 examples, 1 to 3
    coordinates and their squares; a constant feature in some, samples far from the real data in others):
    coefficients, centres and scales to 1e-12 of the largest coefficient, the logits of new examples
    likewise, the AUCs equal. Small fits (gaussian-quick's: 60 examples of 2 features) take numpy, larger
    ones (gmm-quick's: 250 of 4) the compiled kernels."""
    rng = np.random.default_rng(8)
    for trial in range(60):
        s, a, b, d = rng.integers(1, 41), rng.integers(2, 81), rng.integers(2, 41), rng.integers(1, 4)
        real = point_features(rng.standard_normal((s, a, d)))
        fake = point_features(rng.normal(rng.uniform(-3, 3), rng.uniform(0.05, 3), (s, b, d)))
        if trial % 5 == 0:
            real[..., 0] = fake[..., 0] = 2.0
        fits = [fit_logistic(real, fake, ops) for ops in (NUMPY, COMPILED)]
        size = max(1.0, np.abs(fits[1][0]).max())
        for ours, theirs in zip(*fits):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12 * size)
        new = point_features(rng.standard_normal((s, 30, d)))
        z = [decision(new, *fit, ops) for fit, ops in zip(fits, (NUMPY, COMPILED))]
        np.testing.assert_allclose(z[0], z[1], rtol=0, atol=1e-11 * size)
        assert np.array_equal(auc(z[1][:, :10], z[1][:, 10:], NUMPY), auc(z[1][:, :10], z[1][:, 10:], COMPILED))
    assert kernels(50 + 10, 2) is NUMPY and kernels(200 + 50, 4) is COMPILED


def test_numpys_step_halving_is_the_compiled_ones(monkeypatch):
    """Newton's full step overshoots (and is halved) only where the ridge hardly holds it: C from 1e5 to 1e8
    on small, nearly separable problems. The first 5 of the random problems where the numpy fits halved a
    step (counted: more losses than Newton steps): the coefficients equal the compiled ones' to 1e-12 of the
    largest (they differ by ~1e-15 of it; a halving by 3 instead of 2 by ~4e-8)."""
    calls = {"_loss": 0, "solve": 0}  # the numpy fits' losses and Newton steps

    def counted(owner, name):
        def call(*args):
            calls[name] += 1
            return fn(*args)

        fn = getattr(owner, name)
        monkeypatch.setattr(owner, name, call)

    counted(NUMPY, "_loss")
    counted(np.linalg, "solve")
    rng, found = np.random.default_rng(5), 0
    for _ in range(400):
        a, b, f = rng.integers(2, 30), rng.integers(2, 30), rng.integers(1, 4)
        real = rng.standard_normal((2, a, f)) * rng.uniform(0.01, 10, f) + rng.uniform(-5, 5, f)
        fake = rng.standard_normal((2, b, f)) * rng.uniform(0.01, 10, f) + rng.uniform(-5, 5, f)
        c = 10 ** rng.uniform(5, 8)
        betas, halved = [], False
        for ops in (NUMPY, COMPILED):
            beta, centre, scale = np.empty((2, f + 1)), np.empty((2, f)), np.empty((2, f))
            calls["_loss"] = calls["solve"] = 0
            ops.fit_logistic_batch(real, fake, c, 50, 1e-6, beta, centre, scale)
            betas.append(beta)
            halved |= ops is NUMPY and calls["_loss"] > calls["solve"] + 1
        if halved:
            found += 1
            np.testing.assert_allclose(betas[0], betas[1], rtol=0, atol=1e-12 * np.abs(betas[1]).max())
            if found == 5:
                break
    assert found == 5


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e200])
def test_numpys_fits_are_silent_on_a_bad_sample_and_keep_it_to_its_seed(bad):
    """A sample of nan, inf or 1e200 (a diverged model's) in seed 1: no warning (the compiled kernels raise
    none), seed 1's numbers are the compiled ones' (NaN where theirs are), the other seeds' unchanged."""
    rng = np.random.default_rng(0)
    real, fake = point_features(rng.standard_normal((3, 50, 1))), point_features(rng.standard_normal((3, 10, 1)))
    clean = fit_logistic(real, fake, NUMPY)
    fake[1, 3] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fits = [fit_logistic(real, fake, ops) for ops in (NUMPY, COMPILED)]
    for ours, theirs, before in zip(*fits, clean):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)  # NaN where theirs is
        np.testing.assert_array_equal(ours[[0, 2]], before[[0, 2]])


def test_the_compiled_log1p_is_numpys_to_a_few_ulp():
    """The fits' loss takes log(1 + e^-|z|) by a series in a vectorized loop: within 4 ulp of numpy's log1p
    over e in [0, 1] (the end points, tiny e where log1p(e) = e, and e^-|z| of z in [-40, 40])."""
    from collapse_tui.engines.logistic_kernels import _log1p_unit

    e = np.concatenate([[0.0, 1.0, 1e-300, 1e-17, 0.5], np.exp(-np.abs(np.linspace(-40, 40, 10_001)))])
    ours = np.empty_like(e)
    _log1p_unit(e, e.size, ours)
    exact = np.log1p(e)
    assert (np.abs(ours - exact) <= 4 * np.spacing(exact)).all()
    assert ours[0] == 0.0 and ours[3] == 1e-17


def test_identical_distributions_give_one_half_and_disjoint_ones_one():
    """400 seeds at once: N(0, 1) against itself, mean AUC within 4 SE of 0.5 (SE ~ 0.0015: a detector
    scored on the examples it was fitted on would sit near 0.55); against N(10, 0.01^2), AUC 1 for every
    seed, each fold's held-out AUC being roc_auc_score of perfectly separated scores."""
    s = 400
    rng = np.random.default_rng(1)
    real = point_features(rng.standard_normal((s, 400, 1)))
    _, same = cross_fit(real, point_features(rng.standard_normal((s, 200, 1))), rngs(s))
    se = same.std(ddof=1) / np.sqrt(s)
    assert se < 0.003 and abs(same.mean() - 0.5) < 4 * se, (same.mean(), se)
    _, apart = cross_fit(real, point_features(10 + 0.01 * rng.standard_normal((s, 200, 1))), rngs(s))
    assert (apart == 1.0).all()


def test_each_seeds_detector_depends_on_its_own_data_and_generator_alone():
    rng = np.random.default_rng(2)
    real, fake = (
        point_features(rng.standard_normal((5, 300, 2))),
        point_features(0.7 * rng.standard_normal((5, 100, 2))),
    )
    logit, aucs = cross_fit(real, fake, rngs(5))
    for s in range(5):
        one_logit, one_auc = cross_fit(real[s : s + 1], fake[s : s + 1], [np.random.default_rng(s)])
        assert np.array_equal(one_logit[0], logit[s]) and one_auc[0] == aucs[s]


def test_the_auc_rises_as_a_gmm_collapses(tmp_path):
    """gmm-quick (M = 100, 200 generations) on 16 seeds: generation 0's samples come from a fit to 100 real
    points and nearly pass for real (mean AUC 0.54, SE 0.011: the fit's own error shows a little); as the
    variance collapses (median 1.85 -> 0.009) the AUC climbs (0.66 at generation 10, 0.89 at 100) to 0.95
    (SE 0.013) at 199, far more than 4 SE of the difference above generation 0, and higher for every seed."""
    by_gen = run_preset(tmp_path, "gmm-quick", "experiment.seeds=16", detector=True)
    first, last = by_gen[0]["detector_auc"], by_gen[199]["detector_auc"]
    se = np.sqrt((first.var(ddof=1) + last.var(ddof=1)) / 16)
    assert 0.45 < first.mean() < 0.6 and last.mean() > 0.9 and last.mean() - first.mean() > 4 * se, (first, last)
    assert (last > first).all()
    assert np.median(by_gen[199]["variance"]) < 0.01 * np.median(by_gen[0]["variance"])  # it did collapse


def test_the_filter_keeps_the_samples_with_the_highest_d():
    rng = np.random.default_rng(4)
    samples, logit = rng.standard_normal((3, 50, 2)), rng.standard_normal((3, 50))
    logit[0, 10] = logit[0, 11]  # a tie: the earlier first
    kept = most_real(samples, logit, 20)
    for s in range(3):
        order = sorted(range(50), key=lambda i: (-logit[s, i], i))[:20]  # an independent ranking
        np.testing.assert_array_equal(kept[s], samples[s, order])
    detection = Detection(logit, np.full(3, np.nan), rngs(3))
    np.testing.assert_array_equal(select(DataSection(filter="detector"), samples, detection, 20), kept)


def test_choosing_without_a_measure_is_one_line():
    detection = Detection(np.full((2, 10), np.nan), np.full(2, np.nan), rngs(2))
    for data in (DataSection(filter="detector"), DataSection(reweight="detector")):
        with pytest.raises(DataError, match="held apart"):
            select(data, np.zeros((2, 10, 1)), detection, 5)


def test_reweight_draws_in_proportion_to_the_odds():
    """200,000 draws from 8 samples of logits -2..2: the counts fit D / (1 - D) = e^z (chi-square p > 0.001),
    and not D itself (p < 1e-10: the test can tell the two)."""
    z = np.linspace(-2, 2, 8)[None]
    samples = np.arange(8)[None, :, None]
    draws = reweighted(samples, z, 200_000, rngs(1))
    counts = np.bincount(draws[0, :, 0], minlength=8)
    odds, d = np.exp(z[0]), 1 / (1 + np.exp(-z[0]))
    assert stats.chisquare(counts, 200_000 * odds / odds.sum()).pvalue > 1e-3
    assert stats.chisquare(counts, 200_000 * d / d.sum()).pvalue < 1e-10


def test_each_seed_draws_from_its_own_generator():
    z = np.random.default_rng(6).standard_normal((4, 30))
    samples = np.arange(30)[None, :, None].repeat(4, 0)
    together = reweighted(samples, z, 100, rngs(4, 10))
    for s in range(4):
        np.testing.assert_array_equal(
            reweighted(samples[s : s + 1], z[s : s + 1], 100, rngs(1, 10 + s))[0], together[s]
        )


def test_reweighting_a_collapsed_gaussians_samples_raises_their_variance():
    """400 seeds of 500 samples from N(0, 0.25) (variance collapsed to a quarter), 1000 real N(0, 1): the
    detector's draw has variance 0.74 against the samples' 0.25 (replace trains on them as they are), and
    it matches a draw with the exact density ratio N(0, 1) / N(0, 0.25) from the same samples (0.74)
    within 4 SE of their difference."""
    s, n = 400, 500
    rng = np.random.default_rng(1)
    x = 0.5 * rng.standard_normal((s, n, 1))
    real = point_features(rng.standard_normal((s, 1000, 1)))
    logit, _ = cross_fit(real, point_features(x), rngs(s))
    drawn = reweighted(x, logit, n, rngs(s))
    exact = reweighted(x, 1.5 * x[..., 0] ** 2, n, rngs(s, 1000))  # log N(x; 0, 1) / N(x; 0, 1/4) + const
    var = {k: v[..., 0].var(axis=1, ddof=1) for k, v in (("replace", x), ("drawn", drawn), ("exact", exact))}
    gain = var["drawn"] - var["replace"]
    assert gain.mean() > 0.4 and gain.mean() > 4 * gain.std(ddof=1) / np.sqrt(s)
    diff = var["drawn"] - var["exact"]
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / np.sqrt(s) + 0.01


def test_hashed_ngrams_count_every_token_and_pair_once():
    blocks = np.random.default_rng(7).integers(0, 5000, (2, 6, 16))
    f = np.expm1(hashed_ngrams(blocks))
    assert f.shape == (2, 6, 128) and np.allclose(f.round(), f)
    assert (f[..., :64].sum(-1) == 16).all() and (f[..., 64:].sum(-1) == 15).all()
    same = np.broadcast_to(blocks[:1, :1], blocks.shape)  # equal blocks: equal rows, whatever their seed
    assert (hashed_ngrams(same) == hashed_ngrams(same)[0, 0]).all()


@pytest.mark.parametrize("setting", ["data.filter='detector'", "data.reweight='detector'"])
def test_a_resumed_run_with_the_detector_equals_an_uninterrupted_one(tmp_path, setting):
    sets = [setting, "experiment.generations=6", "experiment.checkpoint_seconds=0", "engine.samples=200"]
    whole, state = run_loop(tmp_path / "a", "gmm-quick", sets)
    assert state == "finished"
    part, state = run_loop(tmp_path / "b", "gmm-quick", sets, stop_after=2)
    assert state == "stopped"
    _, state = run_loop(tmp_path / "b", "gmm-quick", sets, resume_dir=part)
    assert state == "finished" and part.metrics_path.read_text() == whole.metrics_path.read_text()
    rows = whole.read_metrics()
    assert len(rows) == 24 and all(0 <= r["detector_auc"] <= 1 for r in rows)


def test_measuring_changes_no_other_number_and_can_be_left_off(tmp_path):
    """The detector draws from its own generators: with it measuring (no filter), every row's numbers but
    detector_auc are those of the same run without it (data.detector_auc = false: no such column, and no
    time spent on it, for runs of thousands of seeds)."""
    sets = ["experiment.generations=4", "engine.samples=200"]
    measured = run_loop(tmp_path / "a", "gmm-quick", sets)[0].read_metrics()
    without = run_loop(tmp_path / "b", "gmm-quick", [*sets, "data.detector_auc=false"])[0].read_metrics()
    assert all(0 <= r["detector_auc"] <= 1 for r in measured) and all("detector_auc" not in r for r in without)
    assert [{k: v for k, v in r.items() if k != "detector_auc"} for r in measured] == without


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["data.reweight='detector'", "data.filter='perplexity'"], ["data.reweight", "not both"]),
        (["data.reweight='detector'", "data.mode='keep'", "data.keep_fraction=1.0"], ["data.reweight", "no samples"]),
        (["data.filter='detector'", "data.mode='fresh'", "data.fresh_fraction=1.0"], ["data.filter", "no samples"]),
        (["data.reweight='detector'", "data.real_weight=2.0"], ["data.real_weight"]),
    ],
)
def test_impossible_combinations_are_one_line_and_exit_2(tmp_path, capsys, sets, words):
    args = ["--batch", "gmm-quick", "--runs-dir", str(tmp_path / "runs")]
    code = main(args + [a for s in sets for a in ("--set", s)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and all(w in err for w in words), err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    ("preset", "sets", "words"),
    [  # ngram on a whole training file (no validation text, no max_chars); the VAE training on all its digits
        ("ngram-quick", ["engine.max_chars=0", "data.filter='detector'"], ["data.filter", "held apart"]),
        ("vae-quick", ["data.reweight='detector'"], ["engine.train_count", "held apart"]),
        (  # the stream trains on the previous decoder's output alone: nothing to choose from
            "vae-quick",
            ["engine.synthetic='stream'", "engine.train_count=1000", "data.reweight='detector'"],
            ["engine.synthetic", "data.reweight"],
        ),
    ],
)
def test_an_engine_without_real_data_held_apart_or_samples_to_choose_refuses_the_detector(
    tmp_path, capsys, preset, sets, words
):
    args = ["--batch", preset, "--runs-dir", str(tmp_path / "runs")]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert not (tmp_path / "runs").exists()


def test_ngrams_held_apart_text_is_the_training_files_next_max_chars():
    """ngram with max_chars = 6000 trains on the file's first 6000 characters: the detector's real blocks are
    the words of the next 6000, read independently here, in blocks of block_size."""
    engine = NgramEngine({"train": WIKI_TRAIN, "test": WIKI_TEST, "max_chars": 6000, "block_size": 16, "order": 2})
    text = Path(WIKI_TRAIN).read_text(encoding="utf-8")[6000:12000]
    words = [w for line in text.splitlines() if line.split() for w in [*line.split(), "<eos>"]]
    data = engine.dataset()
    expected = np.array(data.ids(words[: len(words) // 16 * 16])).reshape(-1, 16)
    np.testing.assert_array_equal(data.held, expected)
    drawn = engine.detector_real(rngs(2), 10)
    assert drawn.shape == (2, 10, 16) and all({tuple(b) for b in d} <= {tuple(b) for b in expected} for d in drawn)

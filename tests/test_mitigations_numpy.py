"""The numpy engines' mitigations (issue 24, section 1): lifelong learning (train.anchor = "prior"), knowledge
distillation (train.distill) and weighted real data (data.real_weight) in gaussian, gmm, ngram, categorical
and linreg, checked against theory or an independent computation.

Tolerances are four standard errors measured from the seeds (tests/test_gaussian_theory.py's style), with
the SE bounded so that the test can tell the formula from a plausible wrong one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import WIKI_TEST, WIKI_TRAIN, run_loop, run_preset
from scipy.special import digamma
from scipy.stats import multivariate_normal

from collapse_tui.cli import main
from collapse_tui.engines import engine_class
from collapse_tui.engines.gmm import map_mixtures
from collapse_tui.rundir import RunDir

NGRAM = {"train": WIKI_TRAIN, "test": WIKI_TEST, "max_chars": 6000, "block_size": 16, "order": 3}
NGRAM_SETS = [f"engine.{k}={v!r}" for k, v in NGRAM.items()]


def quiet(*_: object) -> None:
    """A report that ignores progress."""


def rngs_for(seeds: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in range(seeds)]


def train_keys(anchor: str = "none", strength: float = 1.0, distill: float = 0.0) -> dict[str, object]:
    return {"anchor": anchor, "anchor_strength": strength, "distill": distill, "distill_temperature": 1.0}


def replace_chain(engine, generations: int, seeds: int, samples: int) -> list[dict]:
    """Models of generations 0 .. generations-1 in replace mode, every fit after the first given generation
    0's model as reference (as the loop passes it when train.anchor or train.distill is set)."""
    rngs = rngs_for(seeds)
    reference = engine.fit(engine.real_data(rngs), rngs, quiet).model
    models = [reference]
    for _ in range(1, generations):
        x = engine.sample(models[-1], samples, rngs, quiet).samples
        models.append(engine.fit(x, rngs, quiet, reference=reference).model)
    return models


def assert_close(values: np.ndarray, expected: float, max_se: float) -> None:
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert se < max_se, f"too few seeds to test: SE {se:.4f}"
    assert abs(values.mean() - expected) < 4 * se, f"{values.mean():.4f} vs {expected:.4f} (SE {se:.4f})"


def rows_of(rundir) -> list[dict]:
    return [json.loads(line) for line in rundir.metrics_path.read_text().splitlines()]


# --- lifelong learning: the prior --------------------------------------------------------------------------


def test_prior_anchored_gaussian_keeps_its_variance_where_replace_loses_it():
    """With the normal-inverse-Wishart prior (kappa = strength N pseudo-observations of generation 0's fit)
    and unbiased fits in replace mode, v = sigma^2 / sigma_0^2 and m = (mu - mu_0)^2 / sigma_0^2 follow, in
    expectation, an exact linear recursion (x_bar ~ N(mu, sigma^2 / N) and S ~ sigma^2 chi2_{N-1}, independent):
      E m' = (E m + E v / N) / (1 + s)^2
      E v' = (kappa + (N - 1) E v + kappa N / (kappa + N) (E m + E v / N)) / (kappa + N - 1).
    Its E v stays above 1 (the mean's wander widens the fit), where a prior without the dd^T term keeps 1;
    and E log v stays near 0, where replace's falls by (psi((N-1)/2) + log(2 / (N-1))) a generation."""
    n, s, generations, seeds = 20, 0.2, 40, 2000
    engine = engine_class("gaussian")({"samples": n, "test_samples": 10}, train=train_keys("prior", s))
    models = replace_chain(engine, generations, seeds, n)
    var0, mu0 = models[0]["covs"][:, 0, 0, 0], models[0]["means"][:, 0, 0]
    last = models[-1]
    v = last["covs"][:, 0, 0, 0] / var0
    m = (last["means"][:, 0, 0] - mu0) ** 2 / var0
    kappa, ev, em = s * n, 1.0, 0.0
    for _ in range(generations - 1):
        ev, em = (
            (kappa + (n - 1) * ev + kappa * n / (kappa + n) * (em + ev / n)) / (kappa + n - 1),
            (em + ev / n) / (1 + s) ** 2,
        )
    assert ev - 1 > 0.15
    assert_close(v, ev, max_se=(ev - 1) / 8)  # E v = 1 (no dd^T term) is 8 SEs away
    assert_close(m, em, max_se=em / 8)
    replace_log = (generations - 1) * (digamma((n - 1) / 2) + np.log(2 / (n - 1)))  # -2.1
    log_v = np.log(v)
    se = log_v.std(ddof=1) / np.sqrt(seeds)
    assert replace_log < -2 and log_v.mean() - 4 * se > replace_log / 10, (log_v.mean(), replace_log)


def test_the_prior_keeps_every_symbol_and_word_of_generation_0(tmp_path):
    """categorical: the prior's pseudo-counts give every symbol of generation 0's estimate mass, so no seed
    loses one (support equal to generation 0's, seed by seed), where replace loses the rare ones. ngram:
    every word of generation 0's training text stays in the model's counts, and the held-out perplexity
    stays nearer generation 0's than replace's."""
    sets = ["experiment.generations=30", "experiment.seeds=50", "engine.vocab=100", "engine.samples=100"]
    replace = run_preset(tmp_path / "r", "categorical-zipf", *sets)
    prior = run_preset(tmp_path / "p", "categorical-zipf", *sets, "train.anchor='prior'", "train.anchor_strength=0.5")
    assert all((prior[g]["support"] == prior[0]["support"]).all() for g in prior)
    lost = prior[0]["support"] - replace[29]["support"]
    assert lost.mean() - 4 * lost.std(ddof=1) / np.sqrt(lost.size) > 5, lost.mean()

    engine = engine_class("ngram")(NGRAM, train=train_keys("prior", 0.5))
    plain = engine_class("ngram")(NGRAM)
    rngs = rngs_for(2)
    first = engine.fit(engine.real_data(rngs), rngs, quiet).model
    words0 = first.unigram_counts() > 0
    anchored, replaced = first, first
    for _ in range(3):
        x = engine.sample(anchored, engine.dataset().train.shape[0], rngs, quiet).samples
        anchored = engine.fit(x, rngs, quiet, reference=first).model
        x = plain.sample(replaced, engine.dataset().train.shape[0], rngs, quiet).samples
        replaced = plain.fit(x, rngs, quiet).model
        assert (anchored.unigram_counts()[words0] > 0).all()
    assert (replaced.unigram_counts()[words0] == 0).any()
    ppl = {
        name: np.array([r["perplexity"] for r in e.evaluate(model, x, first)])
        for name, e, model in (("prior", engine, anchored), ("replace", plain, replaced), ("first", plain, first))
    }
    assert (abs(np.log(ppl["prior"] / ppl["first"])) < abs(np.log(ppl["replace"] / ppl["first"]))).all(), ppl


def test_a_prior_anchored_gmm_keeps_its_perplexity_where_replace_loses_it(tmp_path):
    """M = 100 points, 2 components: by generation 15 replace's held-out perplexity has grown from generation
    0's; MAP-EM anchored to generation 0's mixture (strength 1) stays nearer it, seed by seed (paired: the
    same real data), by more than four SEs of the difference of the log ratios."""
    sets = ["experiment.generations=16", "experiment.seeds=40", "engine.test_samples=500"]
    replace = run_preset(tmp_path / "r", "gmm-quick", *sets)
    prior = run_preset(tmp_path / "p", "gmm-quick", *sets, "train.anchor='prior'")
    drift = [np.log(rows[15]["perplexity"] / rows[0]["perplexity"]) for rows in (replace, prior)]
    gain = drift[0] - drift[1]
    assert gain.mean() > 4 * gain.std(ddof=1) / np.sqrt(gain.size), (drift[0].mean(), drift[1].mean())


def test_gmm_map_em_equals_an_independent_em():
    """map_mixtures (the compiled weighted MAP-EM) against a plain EM written here with scipy's densities:
    the same 100 iterations from the same start, with per-point weights and a prior of mass 150."""
    gmm = engine_class("gmm")({"samples": 300})
    rngs = rngs_for(3)
    first = gmm.fit(gmm.real_data(rngs), rngs, quiet).model
    x = 0.7 * gmm.sample(first, 300, rngs, quiet).samples + 0.3
    v = np.ones((3, 300))
    v[:, :30] = 4.0
    mass = 150.0 * first["weights"]
    got, _ = map_mixtures(x, v, first, first, mass, 0.0, 100, 1e-6)
    for s in range(3):
        w, mu, cov = (np.array(first[k][s]) for k in ("weights", "means", "covs"))
        mu0, cov0, t = first["means"][s], first["covs"][s], mass[s]
        for _ in range(100):
            dens = np.stack([w[k] * multivariate_normal(mu[k], cov[k]).pdf(x[s]) for k in range(2)])
            vr = dens / dens.sum(axis=0) * v[s]
            nk = vr.sum(axis=1)
            mu = (t[:, None] * mu0 + vr @ x[s]) / (t + nk)[:, None]
            for k in range(2):
                dx, dm = x[s] - mu[k], mu0[k] - mu[k]
                scatter = (vr[k][:, None] * dx).T @ dx + nk[k] * 1e-6 * np.eye(2)
                cov[k] = (scatter + t[k] * cov0[k] + t[k] * np.outer(dm, dm)) / (t[k] + nk[k])
            w = (nk + t) / (nk + t).sum()
        for key, want in (("weights", w), ("means", mu), ("covs", cov)):
            np.testing.assert_allclose(got[key][s], want, rtol=1e-10, atol=1e-12)


# --- knowledge distillation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset, sets",
    [
        ("gaussian-quick", []),
        ("gmm-quick", ["engine.samples=200", "engine.test_samples=200"]),
        ("categorical-zipf", ["engine.add_k=0.5"]),
        ("linreg", []),
        ("ngram-quick", NGRAM_SETS),
    ],
)
def test_distill_alpha_1_is_generation_0_for_ever(tmp_path, preset, sets):
    """alpha = 1: the fit of the teacher's own distribution is the teacher, bit for bit: every generation's
    held-out perplexity is generation 0's, seed by seed."""
    rows = run_preset(tmp_path, preset, *sets, "experiment.generations=4", "experiment.seeds=3", "train.distill=1.0")
    for g in range(1, 4):
        assert (rows[g]["perplexity"] == rows[0]["perplexity"]).all(), (g, rows[g]["perplexity"], rows[0]["perplexity"])


@pytest.mark.parametrize(
    "name, params",
    [("gaussian", {"samples": 50}), ("categorical", {"vocab": 20, "samples": 50}), ("ngram", NGRAM)],
)
def test_distill_alpha_0_with_a_reference_is_the_plain_fit(name, params):
    """alpha = 0 (and no anchor) with generation 0's model given: the replace fit, to the last bit."""
    engine = engine_class(name)(params, train=train_keys(distill=0.0))
    rngs = rngs_for(3)
    first = engine.fit(engine.real_data(rngs), rngs, quiet).model
    x = engine.sample(first, engine.real_data(rngs).shape[1], rngs, quiet).samples
    a, b = engine.fit(x, rngs, quiet).model, engine.fit(x, rngs, quiet, reference=first).model
    a_rows, b_rows = engine.evaluate(a, x, first), engine.evaluate(b, x, first)
    assert a_rows == b_rows


@pytest.mark.parametrize(
    "name, params",
    [
        ("gaussian", {"samples": 50, "estimator": "mle", "dim": 2}),
        ("gmm", {"samples": 200}),
        ("categorical", {"vocab": 20, "samples": 50}),
        ("linreg", {"dim": 3, "samples": 20, "ridge": 0.1}),
        ("ngram", NGRAM),
    ],
)
def test_distillation_is_the_prior_at_strength_alpha_over_1_minus_alpha(name, params):
    """Both add generation 0's distribution as pseudo-data: the fit of the alpha-mixture of data and teacher
    is the MAP fit with strength alpha / (1 - alpha), computed by another formula (gaussian: mixture moments
    against the NIW mode, ddof 0; linreg: the mixed loss against ridge towards w0; categorical at add_k 0:
    mixed probabilities against pseudo-counts; gmm and ngram: other weights, the same after scaling). linreg's
    weights only: its noise variance is the mixed loss's residual, by design."""
    alpha = 0.3
    distil = engine_class(name)(params, train=train_keys(distill=alpha))
    prior = engine_class(name)(params, train=train_keys("prior", alpha / (1 - alpha)))
    rngs = rngs_for(3)
    first = distil.fit(distil.real_data(rngs), rngs, quiet).model
    x = distil.sample(first, distil.real_data(rngs).shape[1], rngs, quiet).samples
    a, b = distil.fit(x, rngs, quiet, reference=first).model, prior.fit(x, rngs, quiet, reference=first).model
    ra, rb = distil.evaluate(a, x, first), prior.evaluate(b, x, first)
    # linreg's noise variance differs by design: the mixed loss's is the teacher's residual, the prior's RSS
    skip = {"perplexity", "variance"} if name == "linreg" else set()
    for row_a, row_b in zip(ra, rb):
        for key, value in row_a.items():
            if isinstance(value, float) and key not in skip:
                assert value == pytest.approx(row_b[key], rel=1e-9, abs=1e-12), (key, value, row_b[key])


# --- weighted real data ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, params",
    [
        ("gaussian", {"samples": 40, "estimator": "mle", "dim": 2}),
        ("categorical", {"vocab": 20, "samples": 40}),
        ("linreg", {"dim": 3, "samples": 40}),
        ("gmm", {"samples": 200}),
    ],
)
def test_a_weight_counts_as_a_multiplicity(name, params):
    """Weights 3 on the first 10 examples and 1 on the rest (scaled to mean 1) fit as the data with those
    examples three times over; gmm: the same EM iterations from the same start on both."""
    engine = engine_class(name)(params)
    rngs = rngs_for(4)
    x = engine.real_data(rngs)
    n = x.shape[1]
    w = np.ones((4, n))
    w[:, :10] = 3.0
    tripled = np.concatenate([x[:, :10], x[:, :10], x], axis=1)
    if name == "gmm":
        start = engine.fit(x, rngs, quiet).model
        a, _ = map_mixtures(x, w, start, None, None, 0.0, 50, 1e-6)
        b, _ = map_mixtures(tripled, np.ones(tripled.shape[:2]), start, None, None, 0.0, 50, 1e-6)
    else:
        a = engine.fit(x, rngs, quiet, weights=w * n / w.sum(axis=1, keepdims=True)).model
        b = engine.fit(tripled, rngs, quiet).model
    for key in a:
        if name == "linreg" and key == "noise_var":  # RSS / (N - d): N differs (the weights' mean is 1)
            continue
        np.testing.assert_allclose(a[key], b[key], rtol=1e-9, atol=1e-12)


def test_ngram_weighted_counts_are_the_repeated_blocks_counts():
    """ngram: a block of weight 3 counts three times (raw counts); Kneser-Ney's discounts read each block once."""
    from collapse_tui.engines.ngram_counts import count

    blocks = engine_class("ngram")(NGRAM).real_data(rngs_for(2))[:, :40]
    w = np.ones((2, 40))
    w[:, :5] = 3.0
    a = count(blocks, 5000, 3, "kneser-ney", 1.0, w)
    b = count(np.concatenate([blocks[:, :5], blocks[:, :5], blocks], axis=1), 5000, 3, "kneser-ney", 1.0)
    c = count(blocks, 5000, 3, "kneser-ney", 1.0)
    for la, lb, lc in zip(a.levels, b.levels, c.levels):
        assert (la.keys == lb.keys).all() and np.array_equal(la.raw, lb.raw) and np.array_equal(la.tally, lc.raw)


@pytest.mark.parametrize("mode", ["keep", "fresh", "accumulate", "replace"])
def test_the_real_examples_come_first_in_every_mode(mode):
    """real_count says how many of next_data's first examples are real (what the weights rely on): real
    examples are negative here, samples positive, over two generations (accumulate keeps its first)."""
    from collapse_tui.datamodes import next_data, real_count

    rngs = rngs_for(3)
    real = -np.arange(1.0, 41.0)[None, :, None].repeat(3, axis=0)
    data, pool, count = real, real, 40
    for _ in range(2):
        samples = np.random.default_rng(1).random((3, 40, 1)) + 1
        prev = data
        data, pool = next_data(
            mode, prev=prev, pool=pool, real=real, samples=samples, rngs=rngs, keep_fraction=0.25,
            fresh_fraction=0.1, draw_fresh=lambda k: -np.ones((3, k, 1)),
        )  # fmt: skip
        count = real_count(mode, count, data.shape[1], 0.25, 0.1)
        assert (data[:, :count] < 0).all() and (data[:, count:] > 0).all(), (mode, count)
    assert count == {"keep": 10, "fresh": 4, "accumulate": 40, "replace": 0}[mode]


def test_real_weight_at_the_real_share_is_the_count_fit_row_for_row(tmp_path):
    """keep 10%: real_weight = 0.1 is what counting gives the real examples already: the same rows."""
    sets = ["data.mode='keep'", "data.keep_fraction=0.1", "experiment.generations=6", "experiment.seeds=5"]
    plain = run_preset(tmp_path / "a", "gaussian-quick", *sets)
    weighed = run_preset(tmp_path / "b", "gaussian-quick", *sets, "data.real_weight=0.1")
    assert all(np.array_equal(plain[g]["fit_std"], weighed[g]["fit_std"]) for g in plain)


def test_a_larger_real_weight_keeps_the_fit_nearer_generation_0(tmp_path):
    """accumulate, M = 20: by count the real examples (generation 0's training set) weigh 1 / 21 of the fit
    at generation 20; with real_weight 0.5 they keep half. The squared log ratio of the fit's variance to
    generation 0's is smaller, seed by seed on average (the seeds are paired: the same real data), by more
    than four SEs of the difference."""
    sets = ["data.mode='accumulate'", "experiment.generations=21", "experiment.seeds=400", "engine.test_samples=10"]
    by_count = run_preset(tmp_path / "a", "gaussian-quick", *sets)
    weighed = run_preset(tmp_path / "b", "gaussian-quick", *sets, "data.real_weight=0.5")
    drift = [np.log(rows[20]["fit_std"] / rows[0]["fit_std"]) ** 2 for rows in (by_count, weighed)]
    gain = drift[0] - drift[1]
    assert gain.mean() > 4 * gain.std(ddof=1) / np.sqrt(gain.size), (drift[0].mean(), drift[1].mean())


def test_a_branch_weighs_only_what_its_own_mode_drew(tmp_path):
    """A branch at K of a replace run, with keep 10% and real_weight 0.5: generation K + 1 trains on the data
    the parent's replace drew (no real example to weigh: the rows of the same branch without real_weight),
    generation K + 2 on keep's, whose real examples weigh half (other rows)."""
    parent = tmp_path / "parent"
    sets = ["--set", "experiment.generations=4", "--set", "experiment.seeds=5"]
    assert main(["--batch", "gaussian-quick", "--runs-dir", str(parent), *sets]) == 0
    (run,) = parent.iterdir()
    rows = {}
    for weight in ("0", "0.5"):
        runs = tmp_path / f"branch-{weight}"
        keep = ["--set", "data.mode='keep'", "--set", f"data.real_weight={weight}", "--set", "experiment.seeds=5"]
        args = ["--batch", "gaussian-quick", "--from", str(run), "--at", "1", "--runs-dir", str(runs), *keep]
        assert main([*args, "--set", "experiment.generations=4"]) == 0
        (branch,) = runs.iterdir()
        rows[weight] = {(r["generation"], r["seed"]): r["fit_std"] for r in rows_of(RunDir(branch))}
    assert all(rows["0"][g, s] == rows["0.5"][g, s] for g in (0, 1, 2) for s in range(5))
    assert all(rows["0"][3, s] != rows["0.5"][3, s] for s in range(5))


@pytest.mark.parametrize("preset", ["gaussian-quick", "categorical-zipf", "linreg"])
@pytest.mark.parametrize(
    "sets", [["train.anchor='prior'"], ["train.distill=0.5"], ["data.mode='accumulate'", "data.real_weight=0.5"]]
)
def test_a_mitigated_run_has_no_unmitigated_theory(preset, sets):
    """theory.jsonl would set the unmitigated laws against a mitigated run: the engines give none."""
    from collapse_tui.preset_files import load_preset
    from collapse_tui.theory import expected

    plain = ["data.mode='accumulate'"] if "data.real_weight=0.5" in sets else []
    assert expected(load_preset(preset, plain)) and expected(load_preset(preset, sets)) == {}


# --- resume, refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset, sets",
    [
        ("gaussian-quick", ["data.mode='accumulate'", "data.real_weight=0.3"]),
        ("gmm-quick", ["engine.samples=200", "train.anchor='prior'", "train.anchor_strength=0.5"]),
        ("gmm-quick", ["engine.samples=200", "data.mode='keep'", "data.real_weight=0.5"]),
    ],
)
def test_a_resumed_mitigated_run_equals_an_uninterrupted_one(tmp_path, preset, sets):
    sets = [*sets, "experiment.generations=6", "experiment.seeds=4"]
    whole, state = run_loop(tmp_path / "a", preset, sets)
    assert state == "finished"
    part, state = run_loop(tmp_path / "b", preset, sets, stop_after=2)
    assert state == "stopped"
    _, state = run_loop(tmp_path / "b", preset, sets, resume_dir=part)
    assert state == "finished"
    assert rows_of(whole) == rows_of(part)


@pytest.mark.parametrize(
    "sets, words",
    [
        (["data.real_weight=0.5"], ["data.real_weight", "'replace'", "keep, fresh, accumulate"]),
        (["data.real_weight=0.5", "data.mode='accumulate-subsample'"], ["data.real_weight", "accumulate-subsample"]),
        (["data.real_weight=0.5", "data.mode='keep'", "data.keep_fraction=0"], ["data.keep_fraction = 0"]),
        (["train.anchor='l2'"], ["train.anchor", "'gaussian'"]),
        (["train.anchor='prior'", "train.anchor_strength=-1"], ["train.anchor_strength"]),
        (["train.distill=1.5"], ["train.distill"]),
    ],
)
def test_bad_mitigation_keys_are_one_line(tmp_path, capsys, sets, words):
    runs = tmp_path / "runs"
    args = ["--batch", "gaussian-quick", "--runs-dir", str(runs)]
    for s in sets:
        args += ["--set", s]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("collapse-tui: "), err
    assert all(w in err for w in words), (words, err)
    assert not runs.exists() or not any(runs.iterdir())

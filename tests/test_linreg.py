"""The linreg engine (engines/linreg.py): its fit against numpy's least squares and scikit-learn's ridge,
its metrics against an explicit computation, its bad keys, and the laws of least squares refitted to its
own labels (Dohmatob et al. 2024; Gerstgrasser et al. 2024) against runs of the engine through the loop.

Each law's tolerance is four standard errors measured from the seeds; each test asserts that its SE is
small enough that the plausible wrong values lie more than 8 SE from the law (so that a wrong formula
fails its 4-SE check): no collapse (generation 0's risk throughout) and the other data mode's law.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_preset
from scipy.stats import norm
from sklearn.linear_model import Ridge

from collapse_tui.cli import main
from collapse_tui.engines import engine_class
from collapse_tui.engines.linreg import TEST_SEED, LinregEngine, fit_ridge, labelled, true_weights
from collapse_tui.preset_files import load_preset

D, T, SIGMA = 10, 30, 1.5  # generation 0's expected excess risk: SIGMA^2 D / (T - D - 1) = 1.18
GENERATIONS, SEEDS = 8, 2000


def quiet(*_: object) -> None:
    pass


def law_run(tmp_path, mode: str) -> tuple[dict[int, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The rows of a linreg run in mode, and the engine's expected() for its preset."""
    sets = [
        f"experiment.generations={GENERATIONS}",
        f"experiment.seeds={SEEDS}",
        f"data.mode={mode}",
        f"engine.dim={D}",
        f"engine.samples={T}",
        f"engine.noise={SIGMA}",
        "engine.true_weights=random",
        "engine.test_samples=500",
    ]
    cfg = load_preset("linreg", sets)
    expected = engine_class("linreg")(cfg.engine).expected(cfg.generations, cfg.data.as_dict())
    return run_preset(tmp_path, "linreg", *sets), expected


def se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(values.size))


def assert_law(values: np.ndarray, expected: float, *wrong: float) -> None:
    """The mean of values within 4 SE of expected, with an SE that would put every wrong value 8 SE off."""
    error = se(values)
    assert all(abs(w - expected) > 8 * error for w in wrong), f"too few seeds to test: SE {error:.4f}"
    assert abs(values.mean() - expected) < 4 * error, f"{values.mean():.4f} vs {expected:.4f} (SE {error:.4f})"


def ols_risk(n: int, accumulate: bool) -> float:
    """E||w_n - w*||^2 written out term by term, independently of engines/linreg.py's vector form."""
    if accumulate:
        return sum(SIGMA**2 * D / (m * (m * T - D - 1)) for m in range(1, n + 2))
    return SIGMA**2 * D * (n + 1) / (T - D - 1)


def test_replace_risk_grows_linearly_and_the_noise_estimate_stays_unbiased(tmp_path):
    rows, expected = law_run(tmp_path, "replace")
    last = GENERATIONS - 1
    assert np.allclose(expected["excess_risk"], [ols_risk(n, False) for n in range(GENERATIONS)])
    # generation 0 fits real data: E||w_0 - w*||^2 = sigma^2 tr E[(X^T X)^{-1}] = sigma^2 d / (T - d - 1),
    # not sigma^2 d / T (as if X^T X were its mean T I)
    assert_law(rows[0]["excess_risk"], ols_risk(0, False), SIGMA**2 * D / T)
    assert_law(rows[last]["excess_risk"], expected["excess_risk"][last], ols_risk(0, False), ols_risk(last, True))
    assert_law(rows[last]["test_mse"], expected["test_mse"][last], expected["test_mse"][0])
    # RSS / (T - d) stays unbiased for sigma^2 at every generation; RSS / T would be (T - d) / T of it
    assert_law(rows[last]["variance"], SIGMA**2, SIGMA**2 * (T - D) / T)
    assert np.array_equal(expected["variance"], np.full(GENERATIONS, SIGMA**2))


def test_accumulate_risk_stays_bounded_as_the_exact_sum_says(tmp_path):
    rows, expected = law_run(tmp_path, "accumulate")
    last = GENERATIONS - 1
    assert np.allclose(expected["excess_risk"], [ols_risk(n, True) for n in range(GENERATIONS)])
    assert rows[last]["train_size"][0] == GENERATIONS * T
    assert_law(rows[last]["excess_risk"], expected["excess_risk"][last], ols_risk(0, True), ols_risk(last, False))
    # the growth over generation 0, paired per seed (generation 0's noise cancels): the exact sum against the
    # sum_m 1/m^2 form, generation 0's risk / m^2 for the m-th term, which one reused input matrix would give
    growth = rows[last]["excess_risk"] - rows[0]["excess_risk"]
    reused = ols_risk(0, True) * sum(1 / m**2 for m in range(2, GENERATIONS + 1))
    assert_law(growth, expected["excess_risk"][last] - expected["excess_risk"][0], reused, 0.0)
    assert_law(rows[last]["test_mse"], expected["test_mse"][last], expected["test_mse"][0])
    assert expected["excess_risk"][last] < np.pi**2 / 6 * expected["excess_risk"][0]  # bounded, as the sum says
    assert "variance" not in expected  # mixed labels: RSS / (N - d) is no longer unbiased


@pytest.mark.parametrize(
    "data",
    [
        {"mode": "keep"},
        {"mode": "fresh"},
        {"mode": "accumulate-subsample"},
        {"mode": "replace", "filter": "perplexity"},
        {"mode": "replace", "share_seeds": 0.5},
    ],
)
def test_no_expectation_is_claimed_where_there_is_no_closed_form(data):
    base = {"filter": "none", "share_seeds": 0.0, "share_others": 0.0, "mix": []}
    assert LinregEngine().expected(5, base | data) == {}
    assert LinregEngine({"ridge": 0.1}).expected(5, base | {"mode": "replace"}) == {}


def test_the_fit_is_numpys_least_squares_and_scikit_learns_ridge():
    rng = np.random.default_rng(3)
    data = rng.standard_normal((5, 30, 5))  # 4 inputs and a label, 5 seeds
    x, y = data[..., :-1], data[..., -1]
    ols = fit_ridge(data, 0.0)
    for s in range(5):
        w, rss, *_ = np.linalg.lstsq(x[s], y[s], rcond=None)
        assert np.allclose(ols["weights"][s], w) and np.isclose(ols["noise_var"][s], rss[0] / (30 - 4))
    ridge = fit_ridge(data, 0.1)  # the penalty per example: scikit-learn's alpha = N lambda
    for s in range(5):
        w = Ridge(alpha=30 * 0.1, fit_intercept=False).fit(x[s], y[s]).coef_
        sv = np.linalg.svd(x[s], compute_uv=False)
        dof = (sv**2 / (sv**2 + 30 * 0.1)).sum()  # the ridge smoother's trace
        assert np.allclose(ridge["weights"][s], w)
        assert np.isclose(ridge["noise_var"][s], ((y[s] - x[s] @ w) ** 2).sum() / (30 - dof))


def test_rows_and_scores_match_an_explicit_computation():
    engine = LinregEngine({"dim": 3, "samples": 20, "true_weights": "random", "noise": 0.7, "test_samples": 300})
    rngs = [np.random.default_rng(s) for s in range(4)]
    model = engine.fit(engine.real_data(rngs), rngs, quiet).model
    samples = engine.sample(model, 50, rngs, quiet).samples
    rows = engine.evaluate(model, samples, model)
    w_star = true_weights("random", 3)
    test = labelled([np.random.default_rng(TEST_SEED)], 300, w_star, 0.7)[0]
    for s, row in enumerate(rows):
        w, sd = model["weights"][s], np.sqrt(model["noise_var"][s])
        assert np.isclose(row["test_mse"], np.mean((test[:, -1] - test[:, :-1] @ w) ** 2))
        assert np.isclose(row["perplexity"], np.exp(-norm.logpdf(test[:, -1], test[:, :-1] @ w, sd).mean()))
        assert np.isclose(row["excess_risk"], ((w - w_star) ** 2).sum())
        assert np.isclose(row["weight_norm"], np.linalg.norm(w))
        assert row["variance"] == model["noise_var"][s]
        nll = -norm.logpdf(samples[s, :, -1], samples[s, :, :-1] @ w, sd)
        assert np.allclose(engine.score(model, samples)[s], nll)


def test_samples_are_fresh_inputs_labelled_by_the_model_with_the_real_noise():
    engine = LinregEngine({"dim": 3, "samples": 20, "noise": 0.5})
    rngs = [np.random.default_rng(s) for s in range(2)]
    model = {"weights": np.array([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]]), "noise_var": np.array([9.0, 9.0])}
    generated = engine.sample(model, 20000, rngs, quiet)
    x, y = generated.samples[..., :-1], generated.samples[..., -1]
    residual = y - np.einsum("snd,sd->sn", x, model["weights"])
    # N(0, sigma^2) noise (not the model's residual variance 9): mean square 0.25, SE 0.25 sqrt(2 / 20000)
    assert np.all(np.abs((residual**2).mean(1) - 0.25) < 4 * 0.25 * np.sqrt(2 / 20000))
    assert np.all(np.abs(np.einsum("sni,snj->sij", x, x) / 20000 - np.eye(3)) < 4 * np.sqrt(2 / 20000))
    # the preview: the input along w* (here all ones), the label, then the input's other coordinates
    preview = generated.preview
    assert np.allclose(preview[:, 0], x[0, :1000] @ np.ones(3) / np.sqrt(3), atol=1e-5)
    assert np.allclose(preview[:, 1], y[0, :1000], atol=1e-5)
    norms = np.linalg.norm(np.delete(preview, 1, axis=1), axis=1)
    assert np.allclose(norms, np.linalg.norm(x[0, :1000], axis=1), atol=1e-4)  # a rotation of the inputs


@pytest.mark.parametrize(
    "sets, words",
    [
        (["engine.samples=11"], ["engine.samples", "engine.dim + 2 = 12", "got 11", "engine.ridge"]),
        (["engine.noise=0"], ["engine.noise", "> 0"]),
        (["engine.ridge=-1"], ["engine.ridge", ">= 0"]),
        (["engine.true_weights=zeros"], ["engine.true_weights", "'zeros'"]),
        (["engine.dim=0"], ["engine.dim", "[1, 256]", "got 0"]),
    ],
)
def test_bad_keys_are_one_line_before_a_run_directory(sets, words, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["--batch", "linreg", *(a for s in sets for a in ("--set", s)), "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("collapse-tui: "), err
    assert all(w in err for w in words), (words, err)
    assert not runs.exists()


def test_every_data_mode_applies(tmp_path):
    """fresh at fraction 1 trains on T new real pairs each generation: generation 0's law at every one;
    keep at fraction 1 refits the real set: generation 0's weights again; a filter that keeps the samples
    whose labels the reference finds likeliest trims the noise: the risk grows slower than replace's law;
    accumulate-subsample trains on T of the pool."""
    last, seeds = 4, 1000
    sets = [f"experiment.generations={last + 1}", f"experiment.seeds={seeds}", "engine.test_samples=100"]
    fresh = run_preset(tmp_path / "f", "linreg", *sets, "data.mode=fresh", "data.fresh_fraction=1")
    g0 = 10 / (50 - 10 - 1)  # sigma^2 d / (T - d - 1) at the preset's d = 10, T = 50, sigma = 1
    assert_law(fresh[last]["excess_risk"], g0, (last + 1) * g0)
    keep = run_preset(tmp_path / "k", "linreg", *sets, "data.mode=keep", "data.keep_fraction=1")
    assert np.allclose(keep[last]["excess_risk"], keep[0]["excess_risk"], rtol=1e-9)
    filtered = run_preset(tmp_path / "p", "linreg", *sets, "data.filter=perplexity", "data.filter_keep=0.5")
    assert filtered[last]["excess_risk"].mean() + 4 * se(filtered[last]["excess_risk"]) < (last + 1) * g0
    subsample = run_preset(tmp_path / "s", "linreg", *sets, "data.mode=accumulate-subsample")
    assert (subsample[last]["train_size"] == 50).all() and np.isfinite(subsample[last]["excess_risk"]).all()


def test_ridge_lets_fewer_samples_than_dimensions_run(tmp_path):
    rows = run_preset(tmp_path, "linreg", "engine.samples=5", "engine.ridge=0.1", "experiment.generations=3")
    assert np.isfinite(rows[2]["excess_risk"]).all() and (rows[2]["variance"] > 0).all()


@pytest.mark.parametrize("preset", ["linreg", "linreg-accumulate"])
def test_the_presets_show_their_law(tmp_path, preset):
    """The presets as shipped, with their 200 seeds: the mean risk at generation 0 and at the last within
    4 SE of the law, which is what their descriptions say: replace's risk past 20 times generation 0's at
    the last generation, accumulate's below pi^2 / 6 = 1.65 times it."""
    cfg = load_preset(preset)
    rows = run_preset(tmp_path, preset)
    expected = engine_class("linreg")(cfg.engine).expected(cfg.generations, cfg.data.as_dict())["excess_risk"]
    for gen in (0, cfg.generations - 1):
        risk = rows[gen]["excess_risk"]
        assert abs(risk.mean() - expected[gen]) < 4 * se(risk), (gen, risk.mean(), expected[gen])
    assert f"{expected[0]:.2f}" in cfg.experiment["description"]
    ratio = expected[-1] / expected[0]
    assert ratio > 20 if cfg.data.mode == "replace" else ratio < np.pi**2 / 6

"""Theory beside a run (collapse_tui/theory.py, GaussianEngine.expected): each gaussian formula against Monte
Carlo runs of the engine itself and against an independent computation; theory.jsonl written and read back;
the summary's lines; the report's dashed curve; the app's marked trend row.

Monte Carlo tolerances are four standard errors measured from the seeds (as in test_gaussian_theory.py), so
a correct formula fails with probability about 6e-5 per assertion; each asserts first that its SE puts the
formula at least 8 SE from what a wrong law gives (no collapse: generation 0's value, or the true model's;
the replace mode's; the other estimator's), so that a wrong formula would fail.
"""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pytest
from conftest import run_async, run_preset
from scipy import stats
from scipy.special import digamma as scipy_digamma
from scipy.special import gammaln, stdtrit

from collapse_tui import theory
from collapse_tui.batch import run_batch
from collapse_tui.checkpoints import open_for_resume
from collapse_tui.cli import main
from collapse_tui.config import Config
from collapse_tui.engines.gaussian import GaussianEngine, digamma
from collapse_tui.preset_files import load_preset
from collapse_tui.records import RunDirError
from collapse_tui.rundir import RunDir
from collapse_tui.testing import run_in_process
from collapse_tui.theory import check, read_theory, t_quantile

DATA = {"mode": "replace", "keep_fraction": 0.5, "fresh_fraction": 0.5, "filter": "none"}


def assert_law(values: np.ndarray, expected: float, wrong: float) -> None:
    """The seeds' mean is expected within 4 SE, and the SE is small enough to tell expected from wrong."""
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(expected - wrong) > 8 * se, f"too few seeds to tell {expected:.4f} from {wrong:.4f}: SE {se:.4f}"
    assert abs(values.mean() - expected) < 4 * se, f"{values.mean():.4f} vs {expected:.4f} (SE {se:.4f})"


def preset(*overrides: str) -> Config:
    return load_preset("gaussian", list(overrides))


# --- the formulas against the engine's own runs ----------------------------------------------------------


@pytest.mark.parametrize("estimator, dim", [("unbiased", 1), ("mle", 1), ("mle", 3)])
def test_replace_follows_its_closed_forms(tmp_path, estimator, dim):
    """variance, fit_std (1-D only: for d > 1 sqrt(tr S / d) has no closed form) and nll at M = 30, at a
    middle and the last generation, 4000 seeds. The nll's wrong law is the true model's (no collapse),
    fit_std's is 1; the variance's is the other estimator's (the unbiased one keeps it at d: no collapse)."""
    gens, sets = 8, ("experiment.seeds=4000", "engine.samples=30", f"engine.dim={dim}", "engine.test_samples=500")
    overrides = [f"experiment.generations={gens}", *sets, f"engine.estimator={estimator!r}"]
    rows = run_preset(tmp_path, "gaussian", *overrides)
    curves = theory.expected(preset(*overrides))
    assert set(curves) == ({"variance", "fit_std", "nll"} if dim == 1 else {"variance", "nll"})
    other = "mle" if estimator == "unbiased" else "unbiased"
    other_variance = theory.expected(preset(*overrides, f"engine.estimator={other!r}"))["variance"]
    engine = GaussianEngine({"dim": dim, "test_samples": 500})
    t_mean, t_cov = engine.test_moments()
    true_nll = 0.5 * (dim * math.log(2 * math.pi) + np.trace(t_cov) + t_mean @ t_mean) / dim
    wrong = {"variance": other_variance, "fit_std": np.ones(gens), "nll": np.full(gens, true_nll)}
    for g in (gens // 2, gens - 1):
        for key, curve in curves.items():
            assert_law(rows[g][key], curve[g], wrong[key][g])


@pytest.mark.parametrize(
    "mode, estimator, m, dim, gens, seeds",
    [
        ("keep", "mle", 6, 2, 12, 3000),
        ("fresh", "unbiased", 4, 3, 16, 4000),
        ("accumulate", "unbiased", 4, 3, 16, 4000),
        ("accumulate-subsample", "mle", 6, 2, 12, 3000),
    ],
)
def test_each_data_mode_follows_its_recursion(tmp_path, mode, estimator, m, dim, gens, seeds):
    """The expected variance of the last generation's samples in each data mode that mixes real data or
    accumulates (fractions 0.5), told apart from generation 0's value (no collapse) and from replace's."""
    overrides = [
        f"experiment.generations={gens}",
        f"experiment.seeds={seeds}",
        f"engine.samples={m}",
        f"engine.dim={dim}",
        f"engine.estimator={estimator!r}",
        "engine.test_samples=10",
        "data.keep_fraction=0.5",
        "data.fresh_fraction=0.5",
    ]
    rows = run_preset(tmp_path, "gaussian", *overrides, f"data.mode={mode!r}")
    curve = theory.expected(preset(*overrides, f"data.mode={mode!r}"))["variance"]
    replace = theory.expected(preset(*overrides))["variance"]
    for wrong in (curve[0], replace[-1]):
        assert_law(rows[gens - 1]["variance"], curve[-1], wrong)


# --- the formulas against independent computations ------------------------------------------------------


@pytest.mark.parametrize("estimator, ddof", [("unbiased", 1), ("mle", 0)])
@pytest.mark.parametrize("dim", [1, 3])
def test_formulas_agree_with_independent_computations(estimator, ddof, dim):
    """replace: E[tr S_n] = d ((M - 1)/(M - ddof))^(n + 1) and E[sigma_n] = c^(n + 1) (scipy's log gamma); nll
    from scipy's chi-square expectations (numerical integration; E log det W by Bartlett's decomposition) and
    inverse Wishart mean. keep with every real example, fresh with all fresh ones: no collapse. accumulate:
    the scatter of a pool grown by M samples, (N - ddof) tr S + (M - 1) tr S + N/(N + M) tr S in expectation."""
    m, gens = 12, 30
    engine = GaussianEngine({"samples": m, "dim": dim, "estimator": estimator, "test_samples": 50})
    n = np.arange(1, gens + 1)
    r = (m - 1) / (m - ddof)
    out = engine.expected(gens, DATA)
    np.testing.assert_allclose(out["variance"], dim * r**n, rtol=1e-12)
    if dim == 1:
        c = np.exp(0.5 * np.log(2 / (m - ddof)) + gammaln(m / 2) - gammaln((m - 1) / 2))
        np.testing.assert_allclose(out["fit_std"], c**n, rtol=1e-12)
    log_det_w = sum(stats.chi2(m - 1 - i).expect(np.log) for i in range(dim))
    q = (m - ddof) * np.ravel(stats.invwishart(df=m - 1, scale=np.eye(dim)).mean())[0]
    t_mean, t_cov = engine.test_moments()
    quad = q**n * (t_mean @ t_mean) + dim / m * np.cumsum(q**n)
    log_det = n * (log_det_w - dim * np.log(m - ddof))
    nll = 0.5 * (dim * np.log(2 * np.pi) + log_det + q**n * np.trace(t_cov) + quad) / dim
    np.testing.assert_allclose(out["nll"], nll, rtol=1e-9)
    stays = dim * r * np.ones(gens)
    np.testing.assert_allclose(engine.expected(gens, DATA | {"mode": "keep", "keep_fraction": 1.0})["variance"], stays)
    np.testing.assert_allclose(
        engine.expected(gens, DATA | {"mode": "fresh", "fresh_fraction": 1.0})["variance"], stays
    )
    keep_none = engine.expected(gens, DATA | {"mode": "keep", "keep_fraction": 0.0})["variance"]
    np.testing.assert_allclose(keep_none, out["variance"], rtol=1e-12)
    pool = [dim * r]
    for g in range(gens - 1):
        size = (g + 1) * m
        pool.append(pool[-1] * (size - ddof + m - 1 + size / (size + m)) / (size + m - ddof))
    np.testing.assert_allclose(engine.expected(gens, DATA | {"mode": "accumulate"})["variance"], pool, rtol=1e-12)


def test_the_special_functions_are_scipys():
    for x in (0.5, 1.0, 1.5, 3.7, 9.5, 10.0, 49.5, 1e5):
        assert digamma(x) == pytest.approx(scipy_digamma(x), rel=1e-13, abs=1e-13)
    for df in (1, 2, 3, 4, 7, 19, 30, 999):
        assert t_quantile(0.975, df) == pytest.approx(stdtrit(df, 0.975), rel=1e-12)


def test_no_theory_where_the_formulas_do_not_hold():
    """A filter, chains and pooled seeds draw data the formulas do not model; gmm has no closed form."""
    assert theory.expected(preset()) != {}
    assert theory.expected(preset("data.filter='perplexity'")) == {}
    assert theory.expected(preset("data.share_seeds=0.5")) == {}
    assert theory.expected(load_preset("points-ecosystem", [])) == {}
    assert theory.expected(load_preset("gmm-quick", [])) == {}


def test_an_engine_that_gives_other_keys_or_lengths_is_refused(monkeypatch):
    monkeypatch.setattr(GaussianEngine, "expected", lambda self, g, data: {"not_a_metric": np.zeros(g)})
    with pytest.raises(ValueError, match="not_a_metric"):
        theory.expected(preset())
    monkeypatch.setattr(GaussianEngine, "expected", lambda self, g, data: {"variance": np.zeros(g + 1)})
    with pytest.raises(ValueError, match="one value per generation"):
        theory.expected(preset())


# --- theory.jsonl -----------------------------------------------------------------------------------------


def test_theory_jsonl_holds_the_engines_expected_values_and_follows_a_longer_resume(tmp_path):
    cfg = preset("experiment.generations=6", "experiment.seeds=2", "engine.test_samples=50")
    rundir = RunDir.create(tmp_path, cfg)
    assert run_in_process(rundir) == "finished"
    lines = [json.loads(x) for x in (rundir.path / theory.THEORY).read_text().splitlines()]
    assert [x["generation"] for x in lines] == list(range(6))
    assert set(lines[0]) == {"generation", "expected_variance", "expected_fit_std", "expected_nll"}
    want = GaussianEngine(cfg.engine).expected(6, cfg.data.as_dict())
    got = read_theory(rundir.path)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    longer = open_for_resume(RunDir(rundir.path), generations=9)
    assert run_in_process(longer, resume=True) == "finished"
    assert all(len(v) == 9 for v in read_theory(rundir.path).values())


def test_a_run_without_theory_has_no_file(tmp_path):
    rundir = RunDir.create(tmp_path, preset("experiment.generations=2", "data.filter='perplexity'"))
    assert run_in_process(rundir) == "finished"
    assert not (rundir.path / theory.THEORY).exists() and read_theory(rundir.path) == {}


@pytest.mark.parametrize(
    "text, where",
    [
        ('{"generation": 1, "expected_variance": 1.0}\n', "line 1: expected an object with generation 0"),
        ('{"generation": 0, "expected_variance": "1"}\n', "line 1: expected_variance should be a finite number"),
        ('{"generation": 0, "variance": 1.0}\n', "line 1: expected the same expected_<metric> keys"),
        ('{"generation": 0, "expected_a": 1}\n{"generation": 1, "expected_b": 1}\n', "line 2: expected the same"),
        ('{"generation": true, "expected_a": 1}\n', "line 1: expected an object with generation 0"),
        ("[1, 2]\n", "line 1: expected an object"),
        ("{not json\n", "line 1: not JSON"),
    ],
)
def test_a_theory_file_this_tool_did_not_write_is_refused_naming_the_line(tmp_path, text, where):
    (tmp_path / theory.THEORY).write_text(text)
    with pytest.raises(RunDirError, match=re.escape(f"{tmp_path / theory.THEORY}: {where}")):
        read_theory(tmp_path)


def test_null_reads_as_unknown(tmp_path):
    (tmp_path / theory.THEORY).write_text('{"generation": 0, "expected_a": null}\n{"generation": 1, "expected_a": 2}\n')
    (curve,) = read_theory(tmp_path).values()
    assert math.isnan(curve[0]) and curve[1] == 2


# --- the checks and the summary lines ----------------------------------------------------------------------

CORRECT = ("--set", "experiment.generations=10", "--set", "experiment.seeds=400", "--set", "engine.test_samples=1000")


def theory_lines(out: str) -> list[str]:
    return [line.split(" theory: ", 1)[1] for line in out.splitlines() if " theory: " in line]


def test_the_summary_says_consistent_for_a_correct_run(tmp_path, capsys):
    assert main(["--batch", "gaussian", "--runs-dir", str(tmp_path), *CORRECT]) == 0
    lines = theory_lines(capsys.readouterr().out)
    assert [line.split(" at ")[0] for line in lines] == ["variance", "fit_std", "nll"]
    for line in lines:
        assert re.fullmatch(
            r"\w+ at generation 9: mean \S+ \[\S+, \S+\] \(95%, 400 seeds\); expected \S+: consistent", line
        )


def test_the_summary_says_inconsistent_when_theory_is_wrong(tmp_path, capsys, monkeypatch):
    right = GaussianEngine.expected
    monkeypatch.setattr(
        GaussianEngine, "expected", lambda self, g, d: {k: 1.25 * v for k, v in right(self, g, d).items()}
    )
    assert main(["--batch", "gaussian", "--runs-dir", str(tmp_path), *CORRECT]) == 0
    lines = theory_lines(capsys.readouterr().out)
    assert len(lines) == 3 and all(line.endswith(": INCONSISTENT") for line in lines)


def test_a_terminal_sees_the_verdict_styled(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    right = GaussianEngine.expected
    monkeypatch.setattr(GaussianEngine, "expected", lambda self, g, d: {"variance": 2 * right(self, g, d)["variance"]})
    rundir = RunDir.create(tmp_path, preset("experiment.generations=3", "experiment.seeds=50"))
    out = Terminal()
    assert run_batch(rundir, out=out) == 0
    assert "\x1b[1;31mINCONSISTENT\x1b[0m" in out.getvalue()


def test_the_interval_is_the_mean_plus_minus_t_standard_errors():
    x = np.array([-1.0, 0.5, 2.0, 1.0, 0.0])  # symmetric about its mean 0.5: not skewed
    c = check("m", 7, x, 0.0)
    half = stdtrit(4, 0.975) * x.std(ddof=1) / np.sqrt(5)
    assert c.mean == pytest.approx(0.5) and c.half == pytest.approx(half, rel=1e-12)
    assert c.verdict == "consistent" and check("m", 7, x, 0.5 + 1.01 * half).verdict == "INCONSISTENT"
    interval = f"[{0.5 - half:.4g}, {0.5 + half:.4g}]"
    assert c.text() == f"theory: m at generation 7: mean 0.5 {interval} (95%, 5 seeds); expected 0: consistent"


@pytest.mark.parametrize(
    "observed, expected, why, mean",
    [
        ([0.5], 1.0, "one seed gives no interval", "0.5"),
        ([1.0, math.nan, 2.0], 1.0, "1 of 3 seeds without a value", "n/a"),
        ([1.0, math.inf, 2.0], 1.0, "1 of 3 seeds without a value", "n/a"),
        ([1.0, 2.0], math.nan, "no expected value", "1.5"),
        ([3.0, 3.0, 3.0], 2.0, "no spread over seeds", "3"),
        ([1e-9, 1e-6, 1e-3, 1e-5, 1.0, 1e-8], 1.0, "too skewed for an interval from 6 seeds", "0.1668"),
        ([1e308, 1e308, 1.7e308], 1.0, "the values overflow", "inf"),
    ],
)
def test_what_cannot_be_checked_says_why_and_never_reads_as_a_number(observed, expected, why, mean):
    c = check("m", 3, np.array(observed), expected)
    assert c.verdict == "not checked" and c.why == why
    assert f"mean {mean}" in c.text() and "+-" not in c.text() and "[inf" not in c.text()


def test_every_seed_equal_to_the_expected_value_is_consistent():
    c = check("m", 0, np.array([1.0, 1.0]), 1.0)
    assert c.text() == "theory: m at generation 0: mean 1 (2 seeds); expected 1: consistent (every seed equal to it)"


# --- the report and the app ------------------------------------------------------------------------------


def test_the_report_draws_theory_dashed_over_the_median_and_band(tmp_path):
    pytest.importorskip("matplotlib")
    from collapse_tui.report.figures import Options
    from collapse_tui.report.generic import metrics_figure, variance_figure
    from collapse_tui.runs import load_run

    rundir = RunDir.create(tmp_path, preset("experiment.generations=12", "experiment.seeds=30"))
    assert run_in_process(rundir) == "finished"
    run = load_run(rundir.path)
    rows = rundir.read_metrics()
    (ax,) = variance_figure([run], Options()).axes
    assert len(ax.collections) == 1  # the band
    by_style = {line.get_linestyle(): line for line in ax.lines}
    assert set(by_style) == {"-", "--", ":"}
    expected, mean = by_style["--"], by_style[":"]
    np.testing.assert_array_equal(expected.get_xdata(), np.arange(12))
    np.testing.assert_array_equal(expected.get_ydata(), read_theory(rundir.path)["variance"])
    want = [np.mean([r["variance"] for r in rows if r["generation"] == g]) for g in range(12)]
    np.testing.assert_allclose(mean.get_ydata(), want, rtol=1e-12)
    assert expected.get_color() == by_style["-"].get_color()
    assert "expected mean (theory)" in [t.get_text() for t in ax.get_legend().get_texts()]
    fig = metrics_figure([run], Options())
    dashed = {ax.get_title(): [x for x in ax.lines if x.get_linestyle() == "--"] for ax in fig.axes}
    assert {k for k, v in dashed.items() if v} == {"variance", "fit_std", "nll"}
    np.testing.assert_array_equal(dashed["nll"][0].get_ydata(), read_theory(rundir.path)["nll"])
    assert "dashed: theory" in fig.get_suptitle()


@run_async
async def test_the_trend_row_marks_the_expected_curve(tmp_path):
    from collapse_tui.tui import render
    from collapse_tui.tui.app import build_app
    from collapse_tui.tui.components import Trend
    from collapse_tui.tui.components.trend import LABEL_WIDTH

    rundir = RunDir.create(tmp_path, preset("experiment.generations=30", "experiment.seeds=20", "engine.samples=20"))
    assert run_in_process(rundir, stop_after=11) == "stopped"
    app = build_app(str(rundir.path), [], tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        trend = app.screen.query_one("#trend-variance", Trend)
        assert trend.expected == list(read_theory(rundir.path)["variance"])  # all 30 generations: theory runs ahead
        rows = trend.render().plain.splitlines()
        assert rows[1].startswith(f"{render.MARKS[2]} theory")
        top = rows[0][
            LABEL_WIDTH : LABEL_WIDTH + 30
        ]  # a column per generation: the line at 1 tops the frame, over the bars
        assert all(c == render.MARKS[-1] or c in render.EIGHTHS[1:] for c in top)
        assert top.count(render.MARKS[-1]) > 20  # where the bars do not reach the top row
        last = [r for r in rundir.read_metrics() if r["generation"] == 11]
        mean = np.mean([r["variance"] for r in last])
        assert re.search(rf"mean {mean:.4g} theory 1\b", rows[1])
        assert not app.screen.query_one("#trend-perplexity", Trend).expected  # theory gives no perplexity


@run_async
async def test_a_metric_theory_expects_beside_no_trend_row_gets_a_row_of_its_own(tmp_path, monkeypatch):
    """An engine whose theory covers neither perplexity nor variance (as linreg's and categorical's): the first
    metric it declares gets a trend row of its own, and the panes below still show at 80x24."""
    from collapse_tui.tui.app import build_app
    from collapse_tui.tui.components import SamplesView, Trend

    right = GaussianEngine.expected
    monkeypatch.setattr(GaussianEngine, "expected", lambda self, g, d: {"fit_std": right(self, g, d)["fit_std"]})
    rundir = RunDir.create(tmp_path, preset("experiment.generations=10", "experiment.seeds=5"))
    assert run_in_process(rundir) == "finished"
    app = build_app(str(rundir.path), [], tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        trends = list(app.screen.query(Trend).results(Trend))
        assert [t.label for t in trends] == ["perplexity", "variance", "fit_std"]
        assert trends[2].expected == list(read_theory(rundir.path)["fit_std"]) and not trends[1].expected
        assert app.screen.query_one(SamplesView).size.height >= 10


def test_the_apps_log_ends_with_the_checks_as_the_batch_output_does(tmp_path):
    from collapse_tui.events import RunFinished
    from collapse_tui.tui.state import ScreenState

    cfg = preset("experiment.generations=4", "experiment.seeds=30")
    rundir = RunDir.create(tmp_path, cfg)
    assert run_in_process(rundir) == "finished"
    st = ScreenState(rundir, cfg)
    st.load()
    st.apply(RunFinished(rundir.path, "finished", 4, 1.0))
    rows = [r for r in rundir.read_metrics() if r["generation"] == 3]
    want = [c.text() for c in theory.checks(rows, read_theory(rundir.path))]
    assert len(want) == 3 and [line.split(" ", 1)[1] for line in st.log[-3:]] == want

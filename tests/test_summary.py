"""summary.py, the one place that turns rows into numbers over seeds: the median and the 16th-84th
percentile band (checked against percentiles computed here from the sorted values), log-quantities
summarised in log10 (a perplexity past float's range included), unknown values read as n/a."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collapse_tui.chains import DISTANCE_PREFIX
from collapse_tui.numbers import NA
from collapse_tui.summary import (
    LN10,
    Summary,
    by_generation,
    change_text,
    is_log,
    ratio_text,
    summarize,
    summarize_columns,
    summarize_rows,
    value_text,
    values,
)


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile by linear interpolation between the sorted values (numpy's default method)."""
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    i = math.floor(pos)
    return s[i] if i + 1 == len(s) else s[i] + (s[i + 1] - s[i]) * (pos - i)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 10, 37])
def test_median_and_band_are_the_percentiles_of_the_values(n):
    rng = np.random.default_rng(n)
    xs = rng.lognormal(0, 2, n)
    s = summarize(xs)
    assert s.centre == pytest.approx(percentile(list(xs), 50), rel=1e-12)
    assert s.centre == pytest.approx(float(np.median(xs)), rel=1e-12)
    assert s.lo == pytest.approx(percentile(list(xs), 16), rel=1e-12)
    assert s.hi == pytest.approx(percentile(list(xs), 84), rel=1e-12)
    assert s.seeds == n and not s.log


def test_columns_are_summarised_as_each_alone():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(7, 4)) * [1, 10, 1e-3, 1e6]
    logs = [False, True, False, True]
    assert summarize_columns(table, logs) == [summarize(table[:, j], log) for j, log in enumerate(logs)]


@pytest.mark.parametrize("seed", range(20))
def test_the_band_never_leaves_the_values_range_and_holds_the_centre(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    xs = rng.choice([0.0, 1e-300, 1e-3, 1.0, 5.0, 1e300], size=n) * rng.uniform(0.5, 1.5, n)
    s = summarize(xs)
    assert xs.min() <= s.lo <= s.centre <= s.hi <= xs.max()
    assert s.lo >= 0  # no negative variance from non-negative values


def test_one_seed_has_no_spread():
    s = summarize(np.array([3.5]))
    assert s.centre == s.lo == s.hi == 3.5
    assert s.text() == "3.5"


def test_perplexity_past_floats_range_is_summarised_from_its_nll():
    """A perplexity of e^820 is written as null (it overflows float); its nll is given, so its log10 is known."""
    rows = [
        {"seed": 0, "generation": 0, "perplexity": None, "nll": 820.0},
        {"seed": 1, "generation": 0, "perplexity": math.exp(2.0), "nll": 2.0},
        {"seed": 2, "generation": 0, "perplexity": math.exp(3.0), "nll": 3.0},
    ]
    x = values(rows, "perplexity", log=True)
    np.testing.assert_allclose(x, [820 / LN10, 2 / LN10, 3 / LN10])
    s = summarize_rows(rows, ["perplexity"])["perplexity"]
    assert s.log and s.centre == pytest.approx(3 / LN10) and s.hi <= 820 / LN10
    assert value_text(820 / LN10, log=True) == "1.32e356"  # e^820 = 10^356.12, the number it stands for
    assert Summary(820 / LN10, 820 / LN10, 820 / LN10, 3, log=True).text() == "1.32e356"


def test_a_log_quantity_is_summarised_in_log10():
    """The median of the log10 values, not the log10 of a mean: 1, 100 and 1e300 have median 100."""
    rows = [{"seed": s, "generation": 0, "perplexity": p} for s, p in enumerate([1.0, 100.0, 1e300])]
    s = summarize_rows(rows, ["perplexity"])["perplexity"]
    assert s.log
    assert s.centre == pytest.approx(2.0)
    assert s.lo == pytest.approx(percentile([0.0, 2.0, 300.0], 16))
    assert s.hi == pytest.approx(percentile([0.0, 2.0, 300.0], 84))
    assert value_text(s.centre, log=True) == "100"


def test_the_log10_of_zero_is_minus_infinity_not_unknown():
    rows = [{"seed": s, "generation": 0, "perplexity": 0.0} for s in range(3)]
    s = summarize_rows(rows, ["perplexity"])["perplexity"]
    assert s.centre == s.lo == s.hi == -math.inf
    assert value_text(s.centre, log=True) == "0"


@pytest.mark.parametrize(
    "row",
    [
        {"variance": None, "perplexity": None},  # null in metrics.jsonl
        {"variance": math.nan, "perplexity": math.inf},  # not finite in memory: written as null
        {},  # the key missing from the row
    ],
    ids=["null", "not-finite", "missing"],
)
def test_an_unknown_value_makes_the_summary_unknown(row):
    rows = [{"seed": 0, "generation": 0, "variance": 1.0, "perplexity": 10.0}, {"seed": 1, "generation": 0, **row}]
    for key, s in summarize_rows(rows, ["variance", "perplexity"]).items():
        assert math.isnan(s.centre), key
        assert s.text() == NA
        assert value_text(s.centre, s.log) == NA


def test_no_seeds_is_unknown():
    s = summarize(np.array([]))
    assert s.seeds == 0 and math.isnan(s.centre) and s.text() == NA


def test_the_band_is_written_with_one_digit_less():
    s = Summary(34.2, 30.1, 38.9, 4)
    assert s.text() == "34.2 [30.1, 38.9]"
    assert Summary(1.23456, 1.0, 2.0, 4).text(digits=3) == "1.23 [1, 2]"


def test_by_generation_orders_generations_and_summarises_each():
    rows = [{"seed": s, "generation": g, "variance": 10.0 * g + s} for g in (2, 0, 1) for s in range(3)]
    series = by_generation(rows, "variance")
    assert list(series) == [0, 1, 2]
    assert [s.centre for s in series.values()] == [1.0, 11.0, 21.0]
    assert all(s.seeds == 3 for s in series.values())


def test_which_metrics_are_log_quantities():
    assert is_log("perplexity") and not is_log("variance")
    assert is_log("kl", ["kl"]) and not is_log("kl")
    assert is_log(f"{DISTANCE_PREFIX}b", [DISTANCE_PREFIX]) and not is_log(f"{DISTANCE_PREFIX}b")


@pytest.mark.parametrize(
    "d, text",
    [(math.log10(1.035), "+3.50%"), (-math.log10(1.1), "-9.09%"), (0.0, "+0.00%"), (math.log10(12.6), "×12.6"),
     (352.0, "×1e352"), (-1.0, "×0.1"), (math.inf, "×inf"), (-math.inf, "×0"), (math.nan, NA)],
)  # fmt: skip
def test_a_change_in_log10_reads_as_a_ratio(d, text):
    assert ratio_text(d) == text


def test_a_change_is_a_ratio_for_log_quantities_and_a_difference_otherwise():
    assert change_text(Summary(1.0, 1.0, 1.0, 2, log=True), Summary(2.0, 2.0, 2.0, 2, log=True)) == "×10"
    assert change_text(Summary(1.5, 1.0, 2.0, 2), Summary(1.25, 1.0, 2.0, 2)) == "-0.25"
    unknown = Summary(math.nan, math.nan, math.nan, 2)
    assert change_text(unknown, Summary(1.0, 1.0, 1.0, 2)) == NA
    assert change_text(Summary(1.0, 1.0, 1.0, 2, log=True), Summary(math.nan, math.nan, math.nan, 2, log=True)) == NA


@pytest.mark.parametrize(
    "x, log, text",
    [(1234.5678, False, "1235"), (math.nan, False, NA), (math.inf, False, "inf"), (2.0, True, "100"),
     (-3.0, True, "0.001"), (356.1, True, "1.26e356"), (-400.5, True, "3.16e-401"), (math.inf, True, "inf"),
     (5.0823e18, True, "10^5.082e18"), (-2e6, True, "10^-2e6")],
)  # fmt: skip
def test_a_value_is_written_as_the_number_it_stands_for(x, log, text):
    assert value_text(x, log) == text

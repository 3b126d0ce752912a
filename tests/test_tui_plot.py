"""The plot pane (g, pane 5; g on the compare screen): its decimation, band and ticks as numbers, and what it
draws, read off the rendered screen against numbers computed here from metrics.jsonl."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_async, run_loop, wait_for
from test_tui import Gate
from textual.color import Color
from textual_plot import NumericAxisFormatter, PlotWidget

from collapse_tui.preset_files import load_preset
from collapse_tui.rundir import RunDir
from collapse_tui.runs import load_runs
from collapse_tui.tui.app import build_app
from collapse_tui.tui.compare_screen import CompareScreen
from collapse_tui.tui.components.plot_pane import (
    MARKERS,
    GenerationTicks,
    PlotPane,
    band_columns,
    decimate,
    log_ticks,
    tick_labels,
)

SIZE = (80, 24)
BRAILLE = re.compile("[\u2801-\u28ff]")
BOX = "┃┣┫╋┓┛┏┗"  # the axes' box, its ticks included


# the plain functions


def test_decimate_keeps_every_columns_extremes_and_the_last_generation():
    rng = np.random.default_rng(3)
    y = np.cumsum(rng.normal(size=2000))
    y[1234], y[777], y[5] = 1e3, -1e3, math.nan  # one-generation spike and dip; an unknown value
    bins, span = 140, 2000
    x, v = decimate(y, bins, span)
    assert len(x) <= 4 * bins and x[0] == 0 and x[-1] == 1999 and v[-1] == y[-1]
    np.testing.assert_array_equal(v, y[x])  # drawn at their own generations
    assert np.all(np.diff(x) > 0)
    for c in range(bins):  # each column's lowest and highest value over its generations is drawn
        gens = [g for g in range(2000) if g * bins // span == c and np.isfinite(y[g])]
        assert np.nanmin(y[gens]) in v[(x >= gens[0]) & (x <= gens[-1])]
        assert np.nanmax(y[gens]) in v[(x >= gens[0]) & (x <= gens[-1])]
    assert 1234 in x and 777 in x and 5 not in x
    short = np.arange(30.0)
    x, v = decimate(short, bins, span)  # fewer values than the columns hold: all of them
    np.testing.assert_array_equal(x, np.arange(30))
    np.testing.assert_array_equal(v, short)


def test_band_columns_span_each_columns_band_and_fill_a_short_run():
    rng = np.random.default_rng(4)
    mid = rng.normal(size=2000)
    lo, hi = mid - rng.uniform(0, 1, 2000), mid + rng.uniform(0, 1, 2000)
    x, b_lo, b_hi = band_columns(lo, hi, 70, 2000)
    assert len(x) == 70
    for c in range(70):
        gens = [g for g in range(2000) if g * 70 // 2000 == c]
        assert b_lo[c] == lo[gens].min() and b_hi[c] == hi[gens].max()
        assert gens[0] <= x[c] <= gens[-1] + 1
    # 10 generations of a 200-generation run in 70 columns: every column from generation 0's to 9's, interpolated
    lo10, hi10 = np.arange(10.0), np.arange(10.0) + 2
    x, b_lo, b_hi = band_columns(lo10, hi10, 70, 200)
    assert len(x) == 9 * 70 // 200 + 1 and np.all(np.diff(x) > 0)
    np.testing.assert_allclose(b_lo, np.interp(x, np.arange(10), lo10))
    np.testing.assert_allclose(b_hi - b_lo, 2.0)


def test_log_ticks_in_the_quantitys_units():
    assert log_ticks(0.3, 3.7) == [1, 2, 3] and tick_labels([1, 2, 3], log=True) == ["10", "100", "1000"]
    assert tick_labels(log_ticks(0.2, 1.2), log=True) == ["2", "5", "10"]
    narrow = log_ticks(math.log10(15.9), math.log10(18.1))  # within a decade: nice steps of the perplexity
    assert tick_labels(narrow, log=True) == ["16", "16.5", "17", "17.5", "18"]
    huge = log_ticks(0.9, 360284.0)  # perplexities past float's range: nice steps of decades
    assert huge == [100000.0, 200000.0, 300000.0] and tick_labels(huge, log=True)[0] == "1e100000"
    assert tick_labels([0.0, 0.5, 1.0, 1.5], log=False) == ["0", "0.5", "1", "1.5"]  # never '2' for 1.5
    assert tick_labels([1e-5, 2e-5], log=False) == ["1e-5", "2e-5"]


# the pane on screen


def screen_lines(app) -> list[str]:
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


def plot_area(app) -> tuple[list[str], list[str]]:
    """The y tick labels' margin and the inside of the axes' box, row by row, as on screen."""
    plot = app.screen.query_one(PlotPane).query_one(PlotWidget)
    r = plot.region
    rows = screen_lines(app)[r.y : r.y + r.height - plot.margin_bottom]
    left = plot.margin_left
    return [row[r.x : r.x + left] for row in rows[1:-1]], [row[r.x + left + 1 : r.right - 1] for row in rows[1:-1]]


def y_ticks(app) -> dict[float, int]:
    """The y axis's tick labels as numbers, and their rows inside the box."""
    plot = app.screen.query_one(PlotPane).query_one(PlotWidget)
    r = plot.region
    rows = screen_lines(app)[r.y : r.y + r.height - plot.margin_bottom]
    ticks = {}
    for i, row in enumerate(rows):
        label, axis = row[r.x : r.x + plot.margin_left - 1].strip(), row[r.x + plot.margin_left]
        if label and axis in "┫╋":
            ticks[float(label)] = i - 1
    return ticks


async def show_plot(pilot) -> PlotPane:
    """g, and the plot once drawn."""
    await pilot.press("g")
    pane = pilot.app.screen.query_one(PlotPane)
    await wait_for(pilot, lambda: pane.curves, what="the plot")
    await pilot.pause(0.1)
    return pane


def gaussian_run(tmp_path: Path, generations: int = 40) -> tuple[RunDir, list[dict]]:
    """A real gaussian-quick run, finished."""
    rundir, state = run_loop(tmp_path, "gaussian-quick", [f"experiment.generations={generations}"])
    assert state == "finished"
    return rundir, rundir.read_metrics()


@run_async
async def test_finished_run_has_band_ticks_and_theory_at_80x24(tmp_path):
    rundir, rows = gaussian_run(tmp_path)
    by_gen = [np.array([r["variance"] for r in rows if r["generation"] == g]) for g in range(40)]
    p16, p50, p84 = np.array([np.percentile(v, [16, 50, 84]) for v in by_gen]).T
    mean = np.array([v.mean() for v in by_gen])
    theory = [json.loads(line)["expected_variance"] for line in (rundir.path / "theory.jsonl").read_text().splitlines()]
    lo, hi = min(p16.min(), mean.min(), min(theory)), max(p84.max(), mean.max(), max(theory))
    want = [t for t in NumericAxisFormatter().get_ticks(lo, hi) if lo <= t <= hi]

    app = build_app(str(rundir.path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = await show_plot(pilot)
        assert pane.title.startswith("variance") and pane.region.bottom <= SIZE[1] - 1  # the footer stays
        assert "q Quit" in screen_lines(app)[-1]
        ticks = y_ticks(app)
        assert len(ticks) >= 3
        np.testing.assert_allclose(sorted(ticks), want, rtol=1e-9, atol=1e-12)  # the labels are the ticks' values
        _, inside = plot_area(app)
        height = len(inside)
        assert height >= 8
        for value, row in ticks.items():  # and sit where their value is on the axis
            assert abs(row - (hi - value) / (hi - lo) * (height - 1)) <= 1.01
        assert sum(len(BRAILLE.findall(row)) for row in inside) > 40
        assert sum(row.count("│") for row in inside) > 10  # the band's bars
        # the theory's mean (1: the unbiased estimate keeps it) is a line across the whole width
        at = round((hi - 1.0) / (hi - lo) * (height - 1))
        near = [
            "".join(inside[r][c] for r in range(max(at - 1, 0), min(at + 2, height))) for c in range(len(inside[0]))
        ]
        assert sum(bool(BRAILLE.search(cells)) for cells in near) >= 0.9 * len(near)
        legend = str(pane.query_one("#plot-legend").render())
        assert all(s in legend for s in ("16-84th pct", "median of 20 seeds", "mean", "theory: mean"))
        # the median's last generation sits in the last column, at its own row
        last = [r for r in range(height) if BRAILLE.match(inside[r][-1])]
        assert last and min(abs(r - (hi - p50[-1]) / (hi - lo) * (height - 1)) for r in last) <= 1.01
        keys = app.screen.run_state.keys
        await pilot.press("m")  # the next metric; M back
        assert app.screen.plot_metric == keys[keys.index("variance") + 1] and pane.title.startswith(
            keys[keys.index("variance") + 1]
        )
        await pilot.press("M")
        assert app.screen.plot_metric == "variance"


def write_run(tmp_path: Path, values: np.ndarray) -> RunDir:
    """A run directory of the gaussian preset whose rows hold one metric, mean_shift, given per generation; three
    seeds 0.001 apart around it."""
    cfg = load_preset("gaussian-quick", [f"experiment.generations={len(values)}", "experiment.seeds=3"])
    run = RunDir.create(tmp_path / "runs", cfg)
    run.append_metrics(
        [
            {"seed": s, "generation": g, "mean_shift": float(v) + 0.001 * (s - 1)}
            for g, v in enumerate(values)
            for s in range(3)
        ]
    )
    run.write_status(state="finished", generation=len(values) - 1, error=None)
    return run


@run_async
async def test_long_run_is_drawn_whole(tmp_path):
    """2000 generations in 60-odd columns: a one-generation spike and dip reach the box's top and bottom rows at
    their columns, and the last generation's median is in the last column."""
    values = 5 + np.sin(np.arange(2000) / 150)
    values[1234], values[777] = 9.0, 1.0
    run = write_run(tmp_path, values)
    app = build_app(str(run.path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await show_plot(pilot)
        _, inside = plot_area(app)
        width, height = len(inside[0]), len(inside)

        def column(g: int) -> int:
            return round(g / 1999 * (width - 1))

        top = [c for c, ch in enumerate(inside[0]) if BRAILLE.match(ch)]
        bottom = [c for c, ch in enumerate(inside[-1]) if BRAILLE.match(ch)]
        assert top and all(abs(c - column(1234)) <= 1 for c in top)
        assert bottom and all(abs(c - column(777)) <= 1 for c in bottom)
        lo, hi = 1.0 - 0.001, 9.0 + 0.001
        last = [r for r in range(height) if BRAILLE.match(inside[r][-1])]
        assert last and min(abs(r - (hi - values[-1]) / (hi - lo) * (height - 1)) for r in last) <= 1.01


def filled_columns(app) -> int:
    _, inside = plot_area(app)
    return sum(any(BRAILLE.match(row[c]) for row in inside) for c in range(len(inside[0])))


@run_async
async def test_live_run_plot_grows(tmp_path, monkeypatch):
    gate = Gate(monkeypatch)
    app = build_app("gaussian-quick", ["experiment.generations=40"], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.screen.action_start()
        await pilot.pause()
        screen = app.screen
        gate.let(5)
        await wait_for(pilot, lambda: screen.run_state.done == 5, what="5 generations")
        screen.plot_metric = "mean_shift"  # a metric without a theory (whose curve spans the run from the start)
        await show_plot(pilot)
        await wait_for(pilot, lambda: filled_columns(app) > 0, what="the curve")
        early = filled_columns(app)
        width = len(plot_area(app)[1][0])
        assert 0 < early <= 5 / 39 * width + 2  # the x axis spans the whole run from the start
        gate.let(15)
        await wait_for(pilot, lambda: screen.run_state.done == 20, what="20 generations")
        await wait_for(pilot, lambda: filled_columns(app) > early, what="the curve grown")
        later = filled_columns(app)
        assert later > early and abs(later - 19 / 39 * width) <= 3
        await pilot.press("s")
        gate.let(40)
        await wait_for(pilot, lambda: not screen.live, what="the stop")


@run_async
async def test_no_color_draws_markers(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    rundir, _ = gaussian_run(tmp_path, generations=30)
    app = build_app(str(rundir.path))
    async with app.run_test(size=SIZE) as pilot:
        assert app.no_color
        await pilot.pause()
        await show_plot(pilot)
        _, inside = plot_area(app)
        drawn = "".join(inside)
        legend = str(app.screen.query_one("#plot-legend").render())
        # the median a braille line, the band bars, the mean and the theory each a marker of its own
        assert BRAILLE.search(drawn) and "│" in drawn
        assert f"{MARKERS[0] * 2} mean" in legend and f"{MARKERS[1] * 2} theory: mean" in legend
        assert drawn.count(MARKERS[0]) >= 10 and drawn.count(MARKERS[1]) >= 10
        await pilot.resize_terminal(120, 40)  # larger than the canvases' first buffers
        await wait_for(pilot, lambda: len(plot_area(app)[1][0]) > 100, what="the plot resized")
        _, inside = plot_area(app)
        assert len(inside[0]) > 100 and BRAILLE.search("".join(inside))


@run_async
async def test_compare_overlays_runs_each_in_its_colour(tmp_path):
    a = write_run(tmp_path / "a", 5 + np.sin(np.arange(50) / 8))
    b = write_run(tmp_path / "b", 4 + np.cos(np.arange(50) / 8))
    app = build_app(None, [], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.push_screen(CompareScreen(load_runs([a.path, b.path])))
        await pilot.pause()
        pane = await show_plot(pilot)
        assert pane.title.startswith("mean_shift") and len(pane.curves) == 2
        legend = str(pane.query_one("#plot-legend").render())
        assert "⠒⠒ A" in legend and "⠒⠒ B" in legend
        dark = line_colours(app, pane)
        assert len(dark) == 2
        app.theme = "textual-light"  # the curves take the light theme's colours, still two
        await wait_for(pilot, lambda: line_colours(app, pane) != dark, what="the light theme's colours")
        light = line_colours(app, pane)
        theme = app.current_theme
        own = {Color.parse(c).rich_color for c in (theme.accent, theme.primary, theme.success, theme.error)}
        assert len(light) == 2 and light != dark and light <= own


def line_colours(app, pane: PlotPane) -> set:
    """The colours of the braille cells on screen."""
    r = pane.query_one(PlotWidget).region
    return {
        seg.style.color
        for strip in app.screen._compositor.render_strips()[r.y : r.bottom]
        for seg in strip
        if BRAILLE.search(seg.text) and seg.style and seg.style.color
    }


@pytest.mark.parametrize("last, max_ticks", [(3, 8), (1, 8), (2, 20), (39, 8), (1999, 8)])
def test_generation_ticks_are_whole_generations(last, max_ticks):
    """A 4-generation run's x axis reads 0 1 2 3 (textual-plot's own ticks would put 0.5 between)."""
    formatter = GenerationTicks()
    ticks = formatter.get_ticks(0, last, max_ticks)
    assert len(ticks) >= 2 and all(t == int(t) and 0 <= t <= last for t in ticks)
    assert formatter.get_labels_for_ticks(ticks) == [str(int(t)) for t in ticks]
    if last <= 3:
        assert ticks == list(range(last + 1))

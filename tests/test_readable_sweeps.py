"""Sweeps and comparisons that read at 80 columns: the sweep screen's sparklines on one scale for all cells,
with each cell's first and last median and the change beside it; `compare` and the compare screen of a
5-cell sweep whose values span 13 decades (variance 3e-11 .. 0.93, perplexity 4 .. 10^2e10) with every
line within 80 columns and no '1e+03'. Every number is checked against medians computed here from the
cells' metrics.jsonl with numpy."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import make_run, run_async

from collapse_tui.cli import main
from collapse_tui.compare import grid, letters
from collapse_tui.numbers import fmt
from collapse_tui.runs import load_runs
from collapse_tui.summary import ratio_text, value_text
from collapse_tui.sweepdir import SweepDir, expand
from collapse_tui.tui import render

GENERATIONS = 12
SAMPLES = [2, 3, 6, 20, 1000]  # M: at M = 2 the variance falls to ~1e-11 in 12 generations, at 1000 it stays ~1
SWEEP = f"""
[experiment]
engine = "gaussian"
generations = {GENERATIONS}
seeds = 5
[engine]
dim = 1
estimator = "mle"
test_samples = 200
[sweep]
"engine.samples" = {SAMPLES}
"""
LN10 = math.log(10)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> SweepDir:
    tmp = tmp_path_factory.mktemp("span")
    (tmp / "span.toml").write_text(SWEEP)
    return SweepDir.open(make_run(tmp, str(tmp / "span.toml")))


def by_generation(cell: Path, key: str) -> np.ndarray:
    """(generations, seeds): the metric's values (perplexity's as log10, from nll) read from metrics.jsonl."""
    rows = [json.loads(line) for line in (cell / "metrics.jsonl").read_text().splitlines()]
    column = "nll" if key == "perplexity" else key
    scale = 1 / LN10 if key == "perplexity" else 1.0
    return np.array([[r[column] * scale for r in rows if r["generation"] == g] for g in range(GENERATIONS)])


def final_text(cell: Path, key: str) -> str:
    """What compare writes of a cell's metric at its last generation: the median [16th, 84th percentile]."""
    lo, mid, hi = np.percentile(by_generation(cell, key)[-1], [16, 50, 84])
    log = key == "perplexity"
    return f"{value_text(mid, log, 3)} [{value_text(lo, log, 2)}, {value_text(hi, log, 2)}]"


def levels(spark: str) -> list[int]:
    return [render.EIGHTHS.index(c) for c in spark]


@run_async
async def test_the_sweep_screen_draws_every_cell_on_one_scale_with_its_numbers(sweep):
    from collapse_tui.tui.app import build_app
    from collapse_tui.tui.components.cell_table import CellTable

    app = build_app(str(sweep.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen, table = app.screen, app.screen.query_one(CellTable)
        for key, log in (("perplexity", True), ("variance", False)):
            while screen.metric != key:
                await pilot.press("m")
            medians = {c.name: np.median(by_generation(c.rundir.path, key), axis=1) for c in sweep.cells}
            lo, hi = min(map(min, medians.values())), max(map(max, medians.values()))
            assert all(math.isfinite(x) for x in (lo, hi)), (lo, hi)
            scale = str(screen.query_one("#sweep-scale").render())
            assert scale.endswith(f"scale for all cells' medians, {value_text(lo, log, 3)} to {value_text(hi, log, 3)}")
            for i in range(len(sweep.cells)):
                name, _, _, spark, first, last, change = (str(x) for x in table.get_row_at(i))
                m = medians[name]
                # a generation a column (12 of 16), each at 1 + its share of the shared range in 7 eighths
                assert levels(spark) == [1 + round((v - lo) / (hi - lo) * 7) for v in m], (name, spark)
                assert first == value_text(m[0], log, 3) and last == value_text(m[-1], log, 3)
                assert change == (ratio_text(m[-1] - m[0]) if log else fmt(m[-1] - m[0], signed=True, digits=3))
            smallest = next(c.name for c in sweep.cells if c.values["engine.samples"] == 2)
            if key == "variance":  # at most 0.12 (generation 1) against the largest cell's 1.01: stays low
                assert max(levels(str(table.get_row_at(0)[3]))) <= 2 and sweep.cells[0].name == smallest
                assert max(levels(render.sparkline(list(medians[smallest]), 16)[0])) == 8  # on a scale of its own
                assert max(levels(str(table.get_row_at(4)[3]))) == 8
        assert table.virtual_size.width <= 80  # every column in view


def page_cells(out: str) -> dict[tuple[str, str], str]:
    """(metric, column) -> cell, from compare's ASCII tables, page after page."""
    cells: dict[tuple[str, str], str] = {}
    header: list[str] = []
    for line in out.splitlines():
        if not line.startswith("| "):
            continue
        parts = [p.strip() for p in line.strip("|").split("|")]
        if parts[0] == "metric":
            header = parts
        elif not parts[0].startswith(("peak", "change")):
            cells.update({(parts[0], h): p for h, p in zip(header[1:], parts[1:])})
    return cells


def test_compare_of_a_five_cell_sweep_reads_at_80_columns(sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # a pipe writes 200 columns wide unless COLUMNS asks otherwise
    assert main(["compare", str(sweep.path)]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 80
    assert "e+" not in out
    cells = page_cells(out)
    names = letters(len(SAMPLES))
    assert {column for _, column in cells} == {*names, *(f"{n} vs A" for n in names[1:])}  # every column, paged
    for name, cell in zip(names, sweep.cells):
        assert re.search(rf"^{name} = samples={cell.values['engine.samples']}: gaussian", out, re.M)
        for key in ("variance", "perplexity"):
            assert cells[(key, name)] == final_text(cell.rundir.path, key)
    spans = [float(cells[("variance", n)].split()[0]) for n in names]
    assert spans[0] < 1e-6 < 0.5 < spans[-1]  # what the sweep is for: values 10 decades apart, in one table


@run_async
async def test_the_compare_screen_of_a_five_cell_sweep_reads_at_80_columns(sweep, tmp_path):
    from textual.widgets import DataTable

    from collapse_tui.tui.app import build_app
    from collapse_tui.tui.compare_screen import CompareScreen

    runs = load_runs(expand([str(sweep.path)])[0])
    app = build_app(None, [], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(CompareScreen(runs))
        await pilot.pause()
        table = app.screen.query_one("#compare", DataTable)
        shown = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert shown == [list(line) for line in grid(app.screen.rows)[1]]
        assert not [c for row in shown for c in row if "e+" in c]
        by_metric = {row[0]: row for row in shown}
        for i, cell in enumerate(sweep.cells):
            for key in ("variance", "perplexity"):
                assert by_metric[key][1 + i] == final_text(cell.rundir.path, key)
        widths = [c.get_render_width(table) for c in table.columns.values()]
        assert widths[0] + max(widths[1:]) <= 80  # any column scrolls into view whole beside the metric names
        table.scroll_to(x=table.max_scroll_x, animate=False)
        await pilot.pause()
        rendered = [table.render_line(y).text for y in range(table.size.height)]
        (line,) = [r for r in rendered if r.split() and r.split()[0] == "perplexity"]
        assert by_metric["perplexity"][-1] in line  # the last column (E vs A), whole
        assert max(map(len, rendered)) <= 80

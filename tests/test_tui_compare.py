"""The compare screen: mark runs in the start screen's runs list, c compares them (numbers from compare_rows)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import run_async

from collapse_tui.cli import main
from collapse_tui.compare import compare_rows, grid
from collapse_tui.numbers import fmt
from collapse_tui.tui.app import build_app
from collapse_tui.tui.compare_screen import CompareScreen
from collapse_tui.tui.start import StartScreen


def make_runs(runs):
    base = ["--batch", "gaussian-quick", "--set", "experiment.generations=10", "--runs-dir", str(runs)]
    assert main(base) == 0
    assert main([*base, "--set", "data.mode=accumulate"]) == 0
    return sorted(p for p in runs.iterdir() if (p / "preset.toml").is_file())


@run_async
async def test_mark_two_runs_and_compare(tmp_path):
    runs = tmp_path / "runs"
    make_runs(runs)
    app = build_app(None, [], runs)
    async with app.run_test(size=(80, 24)) as pilot:
        start = app.screen
        assert isinstance(start, StartScreen)
        table = start.query_one("#runs")
        await pilot.press("c")  # outside the runs list: c and space do nothing
        assert app.screen is start and not start.marked
        await pilot.press("shift+tab")  # from the presets, back round to the runs list
        assert start.focused is table
        assert table.row_count == 2
        await pilot.press("space")  # one marked: c refuses, with a message
        assert table.get_row_at(0)[-1].startswith("✓ ")  # the run column
        await pilot.press("c")
        await pilot.pause()
        assert app.screen is start
        assert "mark two or more" in str(start.query_one("#message").render())
        await pilot.press("down", "space", "c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)

        marked = list(start.marked)  # marking order: the first marked is the baseline of the differences
        columns, lines = grid(compare_rows(marked))
        shown = screen.query_one("#compare")
        assert [str(c.label) for c in shown.columns.values()] == columns == ["metric", "A", "B", "B vs A"]
        cells = [[str(c) for c in shown.get_row_at(i)] for i in range(shown.row_count)]
        assert cells == [list(line) for line in lines]
        # the variance line of run A: the median over its seeds at its last generation, and their band
        rows = [json.loads(x) for x in (Path(marked[0]) / "metrics.jsonl").read_text().splitlines()]
        last = [r["variance"] for r in rows if r["generation"] == 9]
        (var,) = [c for c in cells if c[0] == "variance"]
        lo, mid, hi = np.percentile(last, [16, 50, 84])
        assert var[1] == f"{fmt(mid, digits=3)} [{fmt(lo, digits=2)}, {fmt(hi, digits=2)}]"
        assert shown.fixed_columns == 1  # the metric names stay when the table scrolls sideways
        # at 80x24 a metric's name and its final values for both runs and their difference are on screen
        rendered = [shown.render_line(y).text for y in range(shown.size.height)]
        (line,) = [x for x in lines if x[0] == "perplexity"]
        whole = [r for r in rendered if r.split()[0] == "perplexity" and all(c in r for c in line[1:])]
        assert whole, "\n".join(rendered)

        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is start
        assert len(start.marked) == 2  # the marks stay

"""The compare screen: mark runs in the start screen's runs list, c compares them (numbers from compare_rows)."""

from __future__ import annotations

import asyncio
import functools

from collapse_tui.cli import main
from collapse_tui.compare import compare_rows
from collapse_tui.numbers import fmt
from collapse_tui.tui.app import build_app
from collapse_tui.tui.compare_screen import CompareScreen
from collapse_tui.tui.start import StartScreen


def run_async(test):
    """No async pytest plugin here (as in test_tui.py): run each Pilot test in its own event loop."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


def na(x: float | None, signed: bool = False) -> str:
    """A number as the comparison writes it: n/a when there is none."""
    return fmt(x, signed, missing="n/a")


def numbers(r: dict) -> list[str]:
    """final, peak and change per generation of a compare_rows row, as the CLI's table writes them."""
    if r["kind"] == "diff":
        return [na(r["final"], True), na(r["peak"], True), na(r["slope"], True)]
    final, peak = f"{na(r['final'])} ± {na(r['final_std'])}", f"{na(r['peak'])} ({r['peak_generation']})"
    return [final, peak, na(r["slope"], True)]


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
        rows = compare_rows(marked)
        assert {r["kind"] for r in rows} == {"run", "diff"}
        metrics = list(dict.fromkeys(r["metric"] for r in rows))
        shown = screen.query_one("#compare")
        assert shown.row_count == len(metrics) > 0
        # a row per metric: the final values of A, B and B−A, then their peaks, then their changes per generation
        assert [str(c.label) for c in shown.columns.values()][:4] == ["metric", "A final", "B final", "B−A final"]
        for i, metric in enumerate(metrics):
            a, b, diff = (numbers(r) for r in rows if r["metric"] == metric)
            assert [str(c) for c in shown.get_row_at(i)] == [metric, *(x[j] for j in range(3) for x in (a, b, diff))]
        variance = next(r for r in rows if r["metric"] == "variance" and r["kind"] == "diff")
        assert numbers(variance)[0] != "n/a"
        # at 80x24 every metric's name and final values are on screen
        lines = [shown.render_line(y).text for y in range(shown.size.height)]
        for r in rows:
            assert numbers(r)[0] in next(line for line in lines if line.split()[0] == r["metric"])
        legend = str(screen.query_one("#compare-runs").render())
        assert legend.startswith(f"A  {rows[0]['run']}: gaussian") and f"\nB  {rows[1]['run']}: " in legend

        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is start
        assert len(start.marked) == 2  # the marks stay

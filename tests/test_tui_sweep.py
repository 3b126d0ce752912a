"""The sweep screen at 80x24: a sweep directory's cells with state, generations and a metric's sparkline;
enter opens a cell's run screen, which only watches a cell another process writes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import run_async, spawn

from collapse_tui.cli import main
from collapse_tui.config import ConfigError
from collapse_tui.summary import by_generation
from collapse_tui.sweepdir import SweepDir
from collapse_tui.tui import render
from collapse_tui.tui.app import build_app
from collapse_tui.tui.components.cell_table import SPARK_WIDTH, CellTable
from collapse_tui.tui.run_screen import RunScreen
from collapse_tui.tui.sweep_screen import SweepScreen

SWEEP = """
[experiment]
engine = "gaussian"
generations = 5
seeds = 4
[engine]
dim = 1
[sweep]
"engine.samples" = [10, 100]
"""


@pytest.fixture
def sweep(tmp_path) -> SweepDir:
    (tmp_path / "m.toml").write_text(SWEEP)
    assert main(["--batch", str(tmp_path / "m.toml"), "--runs-dir", str(tmp_path / "sweeps")]) == 0
    return SweepDir.open(next((tmp_path / "sweeps").iterdir()))


@run_async
async def test_the_sweep_screen_shows_the_cells_and_opens_one(sweep):
    app = build_app(str(sweep.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, SweepScreen)
        table = app.screen.query_one(CellTable)
        assert table.row_count == 2 and str(table.columns["trend"].label) == "perplexity ↑"
        medians = [
            [s.centre for s in by_generation(c.rundir.read_metrics(), "perplexity").values()] for c in sweep.cells
        ]
        frame = (min(map(min, medians)), max(map(max, medians)))  # one scale for both cells
        for i, cell in enumerate(sweep.cells):
            name, state, gen, spark, *_ = table.get_row_at(i)
            assert (name, state, gen) == (cell.name, "finished", "5/5")
            assert spark == render.sparkline(medians[i], SPARK_WIDTH, total=5, frame=frame)[0] and spark.strip()
        await pilot.press("m")
        assert app.screen.metric == "nll" and str(table.columns["trend"].label) == "nll"
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.rundir.path == sweep.cells[1].rundir.path
        await pilot.press("escape")
        assert isinstance(app.screen, SweepScreen)


@run_async
async def test_a_cell_another_process_writes_is_only_watched(sweep):
    cell = sweep.cells[0]
    cell.rundir.write_status(state="running")
    holder = spawn(  # another process holds the cell's lock, as a sweep's worker does
        [
            sys.executable,
            "-c",
            f"from collapse_tui.rundir import RunDir; RunDir({str(cell.rundir.path)!r}).acquire();"
            "print('held', flush=True); import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        app = build_app(str(sweep.path))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert app.screen.query_one(CellTable).get_row_at(0)[1] == "running"
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, RunScreen) and app.screen.run_state.state == "watching"
            await pilot.press("r")  # resume: refused, the other process writes it
            await pilot.pause()
            assert app.screen.control is None
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.01)
    assert cell.state()[0] == "crashed"  # its writer died: the sweep's resume takes it up


def test_a_sweep_preset_in_the_app_says_to_use_batch(tmp_path):
    (tmp_path / "m.toml").write_text(SWEEP)
    with pytest.raises(ConfigError, match="sweeps run with collapse-tui --batch"):
        build_app(str(tmp_path / "m.toml"))

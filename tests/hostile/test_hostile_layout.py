"""What a user meets on an 80x24 terminal and when a run should go on: compare of a 5-cell sweep prints
every number in full, esc during a run says what to do and the run goes on, and --resume RUN
--generations N extends a run to the rows of a run of N generations."""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import make_run, run_async, run_loop, wait_for

from collapse_tui import compare, runs
from collapse_tui.cli import build_commands, main
from collapse_tui.engines.gaussian import GaussianEngine
from collapse_tui.rundir import RunDir
from collapse_tui.tui.app import build_app
from collapse_tui.tui.compare_screen import CompareScreen
from collapse_tui.tui.run_screen import RunScreen
from collapse_tui.tui.start import StartScreen

SWEEP = """
[experiment]
description = "five cells"
engine = "gaussian"
generations = 4
seeds = 3
[data]
mode = "keep"
[engine]
dim = 1
samples = 20
[sweep]
"data.keep_fraction" = [0, 0.05, 0.1, 0.2, 0.5]
"""
LN10 = math.log(10)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def agrees(shown: str, x: float) -> bool:
    """shown is x to the digits shown: within half a unit of its last digit."""
    mantissa, _, exponent = shown.partition("e")
    decimals = len(mantissa.partition(".")[2])
    unit = 10.0 ** (int(exponent or 0) - decimals)
    return abs(float(shown) - x) <= 0.5 * unit * (1 + 1e-9)


def cell_agrees(cell: str, x: float, log: bool, diff: bool, per_gen: bool = False) -> bool:
    """A compare cell against its number: a log-quantity's change as a percentage or a ratio."""
    if diff or per_gen:
        cell = cell.removesuffix("/gen")
        if log and cell.endswith("%"):
            return agrees(cell[:-1], (10.0**x - 1) * 100)
        if log:
            return agrees(cell.removeprefix("×"), 10.0**x)
        return agrees(cell, x)
    return agrees(cell, 10.0**x if log else x)


def parse_pages(text: str) -> dict[str, dict[str, list[str]]]:
    """column -> row name (metric, 'metric peak', 'metric change') -> cells, from every page of the table."""
    out: dict[str, dict[str, list[str]]] = {}
    header: list[str] = []
    metric = ""
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == "metric":
            header = cells
            continue
        if not header or not line.strip() or set(line.strip()) <= set("─"):
            continue
        assert len(cells) == len(header), f"a row cut or wrapped: {line!r} under {header}"
        if line.startswith("    "):
            name = f"{metric} {'peak' if cells[0].startswith('peak') else 'change'}"
        else:
            metric = name = cells[0]
        for col, cell in zip(header[1:], cells[1:]):
            out.setdefault(col, {})[name] = [cell]
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A finished 5-cell sweep (keep_fraction 0 .. 0.5) of a tiny Gaussian."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "sweep.toml").write_text(SWEEP)
    assert main(["--batch", str(root / "sweep.toml"), "--runs-dir", str(root / "runs")]) == 0
    (path,) = (root / "runs").iterdir()
    return path


def test_compare_of_a_five_cell_sweep_prints_every_number_in_full_at_80_columns(sweep, monkeypatch):
    """At COLUMNS=80 the table of a 5-cell sweep (5 runs, 4 differences) goes in pages that fit: every line
    fits, nothing ends in '…', every row keeps its cells, and each number is metrics.jsonl's to its digits."""
    monkeypatch.setenv("COLUMNS", "80")
    out = Terminal()
    assert compare.run(build_commands().parse_args(["compare", str(sweep)]), out) == 0
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    table = parse_pages(text)
    assert list(table) == ["A", "B", "C", "D", "E", "B vs A", "C vs A", "D vs A", "E vs A"]

    cells = sorted((sweep / "cells").iterdir())  # A..E: the sweep's order is keep_fraction's
    rows = [[json.loads(line) for line in (c / "metrics.jsonl").read_text().splitlines()] for c in cells]
    metrics = [k for k in table["A"] if " " not in k]
    assert {"perplexity", "variance", "nll", "train_size"} <= set(metrics)
    numbers = {(r["metric"], r["run"]): r for r in compare.compare_rows(runs.load_runs(cells))}
    labels = [r.label for r in runs.load_runs(cells)]
    for metric in metrics:
        log = numbers[metric, labels[0]]["log"]  # shown as the number, summarised in log10
        for col, run_rows, label in zip("ABCDE", rows, labels):
            # the final median and band, and the peak: from the rows themselves
            by_gen: dict[int, list[float]] = {}
            for r in run_rows:
                v = r["nll"] / LN10 if metric == "perplexity" else math.log10(r[metric]) if log else r[metric]
                by_gen.setdefault(r["generation"], []).append(v)
            last = max(by_gen)
            lo, centre, hi = np.percentile(by_gen[last], [16, 50, 84])
            shown = re.fullmatch(r"(\S+)(?: \[(\S+), (\S+)\])?", table[col][metric][0])
            assert cell_agrees(shown[1], centre, log, False), (metric, col, shown[0], centre)
            if shown[2] is not None:
                assert cell_agrees(shown[2], lo, log, False) and cell_agrees(shown[3], hi, log, False)
            medians = {g: np.median(v) for g, v in by_gen.items()}
            peak_gen = max(medians, key=lambda g: (medians[g], g))
            value, gen = re.fullmatch(r"(\S+) \((\d+)\)", table[col][f"{metric} peak"][0]).groups()
            assert cell_agrees(value, medians[peak_gen], log, False) and int(gen) == peak_gen
            slope = numbers[metric, label]["slope"]
            assert cell_agrees(table[col][f"{metric} change"][0], slope, log, False, per_gen=True)
        for col, label in zip(["B vs A", "C vs A", "D vs A", "E vs A"], labels[1:]):
            d = numbers[metric, f"{label} vs {labels[0]}"]
            for name, key in ((metric, "final"), (f"{metric} peak", "peak"), (f"{metric} change", "slope")):
                assert cell_agrees(table[col][name][0], d[key], log, True), (metric, col, name, d[key])


@pytest.fixture
def gate(monkeypatch):
    """The Gaussian engine fits a generation per permit: the test decides how far the run gets."""
    permits = threading.Semaphore(0)
    fit = GaussianEngine.fit

    def gated(engine, data, rngs, report, source=None):
        if not permits.acquire(timeout=20):
            raise TimeoutError("the test never let this generation run")
        return fit(engine, data, rngs, report, source)

    monkeypatch.setattr(GaussianEngine, "fit", gated)
    yield permits
    permits.release(1000)  # a loop still running ends


def screen_text(app) -> list[str]:
    """What the terminal shows, line by line (the compositor's lines: no public text export)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


@run_async
async def test_the_apps_80x24_screens_show_every_run_and_value(sweep, tmp_path):
    """At 80x24 the compare screen of a 5-cell sweep names all five runs, and a run screen's status line keeps
    its values (generation, engine, mode, seeds) however long the run's name: only the name may end in '…'."""
    cells = sorted((sweep / "cells").iterdir())
    app = build_app(None, [], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(CompareScreen(runs.load_runs(cells)))
        await pilot.pause(0.2)
        shown = screen_text(app)
        for letter in "ABCDE":
            assert any(line.startswith(f" {letter} = keep_fraction=") for line in shown), (letter, shown)
    sets = ["experiment.generations=3", "experiment.seeds=2", 'data.mode="keep"', "data.keep_fraction=0.25"]
    run = make_run(tmp_path, "gaussian-quick", *sets)
    app = build_app(str(run), [], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        status = screen_text(app)[0]
        assert status.startswith(" FINISHED · gen 2/2 · gaussian · keep · 2 seeds · gaussian-quick-keep-")
        assert status.rstrip().endswith("…")  # the name, which does not fit


@run_async
async def test_esc_during_a_run_says_what_to_do_and_the_run_goes_on(tmp_path, gate):
    """esc while a run goes: one notice saying s stops it, the screen and the run stay; once stopped, esc
    goes back to the presets."""
    app = build_app("gaussian-quick", ["experiment.generations=50", "experiment.seeds=2"], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        try:
            await esc_while_running(app, pilot, gate)
        finally:
            gate.release(1000)  # a failure leaves no loop waiting for permits


async def esc_while_running(app, pilot, gate) -> None:
    await pilot.press("enter")
    screen = app.screen
    assert isinstance(screen, RunScreen)
    gate.release(2)
    await wait_for(pilot, lambda: screen.run_state.done == 2, "2 generations")
    await pilot.press("escape")
    assert app.screen is screen and screen.live
    notes = [n.message for n in app._notifications]
    assert notes == ["a run is going: s stops it at a checkpoint (r resumes it later), then esc"]
    gate.release(2)
    await wait_for(pilot, lambda: screen.run_state.done == 4, "the run to go on after esc")
    await pilot.press("s")
    gate.release(50)
    await wait_for(pilot, lambda: not screen.live, "the stop")
    assert screen.rundir.read_status()["state"] == "stopped"
    await pilot.press("escape")
    assert isinstance(app.screen, StartScreen)


def metrics_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


async def extend_in_app(run: Path, generations: int) -> None:
    """`collapse-tui --resume RUN --generations N`: the app resumes the run at once; wait for its end."""
    app = build_app(None, [], run.parent, resume=str(run), generations=generations)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_for(pilot, lambda: not screen.live and screen.run_state.state == "finished", "the run's end")


@pytest.mark.parametrize(
    "preset, how", [("gaussian-quick", "finished"), ("gmm-quick", "stopped"), ("gaussian-quick", "in the app")]
)
def test_resume_generations_extends_a_run_to_the_rows_of_a_longer_one(tmp_path, preset, how, capsys):
    """--resume RUN --generations 7 (--batch, or the app) continues a run of 4 generations (finished, or stopped
    after 2) from its last checkpoint: its rows are those of a run of 7 from the start (no engine sees the
    total), its preset.toml says 7; fewer generations than it has finished is one line, exit 2, nothing
    changed."""
    sets = ["experiment.seeds=2", "engine.samples=50"]
    straight = make_run(tmp_path, preset, "experiment.generations=7", *sets)
    overrides = ["experiment.generations=4", *sets]
    if how == "stopped":
        rundir, state = run_loop(tmp_path, preset, overrides, stop_after=1)
        assert state == "stopped"
        run = rundir.path
    else:
        run = make_run(tmp_path, preset, *overrides)
    if how == "in the app":
        asyncio.run(extend_in_app(run, 7))
    else:
        assert main(["--batch", "--resume", str(run), "--generations", "7"]) == 0
    assert metrics_of(run) == metrics_of(straight)
    assert RunDir.open(run).config().generations == 7 and "generations = 7" in (run / "preset.toml").read_text()
    assert RunDir(run).read_status()["state"] == "finished"

    before = {p: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "lock"}
    capsys.readouterr()
    assert main(["--batch", "--resume", str(run), "--generations", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "7 generations are finished, more than the 5 asked" in err
    assert before == {p: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "lock"}

"""What the readers of run and sweep directories withstand (issue 27, items 7, 8, 9 and 14): JSON nested
a thousand levels, metrics of the wrong type, unreadable cells of a sweep and numbers that were never
computed. A real gaussian-quick run (3 generations) is damaged after the fact; every command that reads
it exits 2 with one line naming the file, the app lists it as unreadable and goes on, and a value
written as null reads "n/a", never as a number."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_async, wait_for

from collapse_tui.batch import BatchView
from collapse_tui.cli import main
from collapse_tui.engines.gaussian import GaussianEngine
from collapse_tui.rundir import RunDir
from collapse_tui.sweepdir import SweepDir
from collapse_tui.tui.app import build_app
from collapse_tui.tui.components.cell_table import CellTable
from collapse_tui.tui.run_screen import RunScreen
from collapse_tui.tui.start import StartScreen
from collapse_tui.tui.sweep_screen import SweepScreen

QUICK = ["--set", "experiment.generations=3", "--set", "experiment.seeds=2"]
DEEP = 1000  # levels of nesting: the stdlib parser's recursion limit
SIZE = (100, 30)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A finished gaussian-quick run of 3 generations and 2 seeds, made by a child process (which holds
    no lock once it exits), copied by each test before it damages it."""
    runs = tmp_path_factory.mktemp("template") / "runs"
    cmd = [sys.executable, "-m", "collapse_tui", "--batch", "gaussian-quick", *QUICK, "--runs-dir", str(runs)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    (run,) = runs.iterdir()
    return run


def copy_run(template: Path, root: Path, name: str = "run") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(template, root / f"{template.name}-{name}"))


def set_value(run: Path, line: int, key: str, text: str) -> None:
    """Replace key's value on a metrics.jsonl line (1-based) with the JSON text given."""
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[line - 1])
    assert key in row
    lines[line - 1] = "{" + ", ".join(f'"{k}": {text if k == key else json.dumps(v)}' for k, v in row.items()) + "}"
    path.write_text("\n".join(lines) + "\n")


def files(run: Path) -> dict[Path, bytes]:
    """What the run holds, but its lock (a resume takes it, writing its pid there, before it reads)."""
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "lock"}


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


READERS = {
    "compare": lambda run, tmp: ["compare", str(run)],
    "report": lambda run, tmp: ["report", str(run), "--out", str(tmp / "rep"), "--format", "svg"],
    "export": lambda run, tmp: ["export", str(run), "--csv", str(tmp / "m.csv")],
    "resume": lambda run, tmp: ["--batch", "--resume", str(run)],
}


def refused(argv: list[str], capsys, *words: str) -> str:
    """The command exits 2 with one line on stderr holding every word; returns that line."""
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("collapse-tui: "), err
    assert all(w in err for w in words), (words, err)
    return err


# 7. JSON nested a thousand levels ----------------------------------------------------------------------
DEEP_FILES = {
    "status.json": lambda run: (run / "status.json").write_text(nested(DEEP)),
    "metrics.jsonl": lambda run: set_value(run, 5, "w2", nested(DEEP)),
    "checkpoint.json": lambda run: (run / "state" / "checkpoint.json").write_text('{"a": ' * DEEP + "1" + "}" * DEEP),
    "theory.jsonl": lambda run: (run / "theory.jsonl").write_text(nested(DEEP) + "\n"),
}
DEEP_CASES = [
    (file, command)
    for file, commands in (
        ("status.json", ("compare", "report", "resume")),  # export reads the metrics alone
        ("metrics.jsonl", ("compare", "report", "export", "resume")),
        ("checkpoint.json", ("resume",)),  # resume alone needs the state
        ("theory.jsonl", ("report",)),  # the report draws it (a resume writes it anew)
    )
    for command in commands
]


@pytest.mark.parametrize("file, command", DEEP_CASES)
def test_json_nested_a_thousand_levels_is_one_line_naming_the_file(template, tmp_path, capsys, file, command):
    """status.json, a metrics line or checkpoint.json nested 1000 levels deep: every reader exits 2 with
    one line naming the file (and the line), not a RecursionError, and changes nothing."""
    run = copy_run(template, tmp_path)
    DEEP_FILES[file](run)
    before = files(run)
    where = {"metrics.jsonl": "metrics.jsonl: line 5", "theory.jsonl": "theory.jsonl: line 1"}.get(file, file)
    refused(READERS[command](run, tmp_path), capsys, where)
    assert files(run) == before


@pytest.mark.parametrize("command", ["compare", "report", "export"])
def test_a_sweep_file_nested_a_thousand_levels_is_one_line(tmp_path, capsys, command):
    """A sweep directory whose sweep.toml nests arrays 1000 levels deep: compare, report and export exit
    2 naming sweep.toml (tomllib recurses per level), and so does `collapse-tui SWEEP_DIR`."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.toml").write_text(f"[sweep]\nname = 'x'\naxes = {nested(DEEP)}\n")
    refused(READERS[command](sweep, tmp_path), capsys, f"{sweep}/sweep.toml: ")
    refused([str(sweep)], capsys, f"{sweep}/sweep.toml: ")


@run_async
async def test_the_start_screen_lists_a_deeply_nested_run_as_unreadable(template, tmp_path):
    """A run whose status.json is nested 1000 levels deep, beside a good one: the start screen lists it
    as unreadable and the good one as it is; enter on it says which file is wrong in one line."""
    runs = tmp_path / "runs"
    good, bad = copy_run(template, runs, "good"), copy_run(template, runs, "bad")
    (bad / "status.json").write_text(nested(DEEP))
    app = build_app(None, [], runs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#runs")
        assert {str(k.value): str(table.get_cell(k, "state")) for k in table.rows} == {
            str(good): "finished",
            str(bad): "unreadable",
        }
        table.focus()
        table.move_cursor(row=[str(k.value) for k in table.rows].index(str(bad)))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)
        message = str(app.screen.query_one("#message").render())
        assert f"{bad}/status.json" in message.replace("\n", "")


# 8. metrics of the wrong type -------------------------------------------------------------------------
WRONG = {
    "string": '"abc"',
    "huge-int": "1" + "0" * 400,  # an integer past float's range
    "bool": "true",
    "list-of-strings": '["x"]',
    "overflowed-float": "1e400",  # Python's parser reads inf: this tool writes null
}


@pytest.mark.parametrize("command", list(READERS))
@pytest.mark.parametrize("kind", list(WRONG))
def test_a_metric_of_the_wrong_type_is_one_line_naming_the_line(template, tmp_path, capsys, kind, command):
    """A metric whose value is a string, an integer beyond float's range, a bool, a list of strings or
    an infinite float: compare, report, export and --resume exit 2 naming the file, line and key."""
    run = copy_run(template, tmp_path)
    set_value(run, 6, "w2", WRONG[kind])
    refused(READERS[command](run, tmp_path), capsys, "metrics.jsonl: line 6: w2 ")


def test_a_metric_that_changes_shape_between_lines_is_refused(template, tmp_path, capsys):
    """w2 a number on line 1 and a list of numbers on line 6 (the tables take a key's shape from the
    first row): refused with one line, not a TypeError in the summary."""
    run = copy_run(template, tmp_path)
    set_value(run, 6, "w2", "[0.5, 0.25]")
    refused(
        READERS["compare"](run, tmp_path),
        capsys,
        "metrics.jsonl: line 6: w2 is a list here and not a list on an earlier line",
    )


@run_async
async def test_the_app_refuses_a_run_with_a_bad_metric_and_keeps_the_others(template, tmp_path):
    """`collapse-tui RUN_DIR` on such a run is one line (ConfigError, exit 2 at the CLI); on the start
    screen enter on it says which line is wrong and stays, and the good run beside it still opens."""
    runs = tmp_path / "runs"
    good, bad = copy_run(template, runs, "good"), copy_run(template, runs, "bad")
    set_value(bad, 6, "w2", WRONG["huge-int"])
    with pytest.raises(Exception, match=r"metrics.jsonl: line 6: w2 ") as e:
        build_app(str(bad), [], runs)
    assert type(e.value).__name__ == "RunDirError"
    app = build_app(None, [], runs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#runs")
        keys = [str(k.value) for k in table.rows]
        table.focus()
        table.move_cursor(row=keys.index(str(bad)))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)
        assert "metrics.jsonl: line 6: w2" in str(app.screen.query_one("#message").render()).replace("\n", "")
        table.move_cursor(row=keys.index(str(good)))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the good run's screen")
        assert app.screen.rundir.path == good


# 9. a sweep with unreadable cells -------------------------------------------------------------------
SWEEP = """
[experiment]
engine = "gaussian"
generations = 3
seeds = 2
[engine]
dim = 1
[sweep]
"engine.samples" = [10, 20, 30, 40]
"""


@run_async
async def test_the_sweep_screen_shows_unreadable_cells_and_the_others(tmp_path):
    """A sweep of four cells: one with a status.json nested 1000 levels, one with a string for a metric;
    then a third cell's folder is deleted while the screen is open. Each reads "unreadable" with the
    file that is wrong, the fourth cell keeps its state and sparkline, enter on a bad cell stays."""
    (tmp_path / "m.toml").write_text(SWEEP)
    assert main(["--batch", str(tmp_path / "m.toml"), "--runs-dir", str(tmp_path / "sweeps")]) == 0
    sweep = SweepDir.open(next((tmp_path / "sweeps").iterdir()))
    bad_status, bad_metrics, deleted, good = (c.rundir.path for c in sweep.cells)
    (bad_status / "status.json").write_text(nested(DEEP))
    set_value(bad_metrics, 2, "variance", '"abc"')
    app = build_app(str(sweep.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, SweepScreen)
        table = app.screen.query_one(CellTable)

        def row(i: int) -> list[str]:
            return [str(c) for c in table.get_row_at(i)]

        assert row(0)[1:3] == ["unreadable", "?"] and row(0)[3].startswith("status.json: ")
        assert row(1)[1:3] == ["unreadable", "?"] and row(1)[3].startswith("metrics.jsonl: ")  # enter: all of it
        assert row(2)[1:3] == ["finished", "3/3"] and row(3)[1:3] == ["finished", "3/3"] and row(3)[3].strip()
        shutil.rmtree(deleted)
        await wait_for(pilot, lambda: row(2)[1] == "unreadable", "the deleted cell to read unreadable")
        assert row(2)[3].startswith("not a run dir") and row(3)[1:3] == ["finished", "3/3"]
        table.move_cursor(row=0)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, SweepScreen)
        table.move_cursor(row=3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the good cell's run screen")
        assert app.screen.rundir.path == good


# 14. a value that was not computed ----------------------------------------------------------------------
@run_async
async def test_a_null_value_reads_n_a_in_the_batch_summary_and_the_app(tmp_path, monkeypatch, capsys):
    """The last generation's w2 comes out NaN (0/0) and its tail_mass None, as an engine may compute
    them; metrics.jsonl holds null. The batch summary, the app's metrics table and its trend show
    "n/a" there, never inf, +inf or a change computed from them."""
    evaluate, calls = GaussianEngine.evaluate, []

    def undefined_at_the_end(engine, model, samples, reference):
        rows = evaluate(engine, model, samples, reference)
        calls.append(1)
        if len(calls) == 3:  # generation 2 of 3
            rows = [r | {"w2": math.nan, "tail_mass": None, "perplexity": None, "nll": None} for r in rows]
        return rows

    monkeypatch.setattr(GaussianEngine, "evaluate", undefined_at_the_end)
    runs = tmp_path / "runs"
    assert main(["--batch", "gaussian-quick", *QUICK, "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    (run,) = runs.iterdir()
    assert [json.loads(x)["w2"] for x in (run / "metrics.jsonl").read_text().splitlines()][-2:] == [None, None]
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]] for line in out.splitlines()
             if line.startswith("| ") and "metric" not in line}  # fmt: skip
    for key in ("w2", "tail_mass", "perplexity", "nll"):
        assert table[key][1:] == ["n/a", "n/a"], (key, table[key])
    assert "inf" not in out.split("generation 0 -> 2")[1]

    view = io.StringIO()  # the same table from the run directory, as a later summary reads it
    BatchView(view).summary(RunDir(run), "finished")
    assert "| w2            |" in view.getvalue() and "inf" not in view.getvalue()

    app = build_app(str(run), [], runs)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await pilot.press("3")  # the table pane
        metrics = screen.query_one("#metrics")
        await wait_for(pilot, lambda: metrics.row_count == 3, "the metrics table")
        last = dict(zip([str(c.label) for c in metrics.columns.values()], [str(c) for c in metrics.get_row_at(2)]))
        assert last["w2"] == last["tail_mass"] == last["perplexity"] == "n/a", last
        assert last["variance"] not in ("n/a", "inf")
        await pilot.press("1")
        trend = str(screen.query_one("#trend-perplexity").render()).splitlines()[0]
        assert trend.rstrip().endswith(" n/a") and "inf" not in trend

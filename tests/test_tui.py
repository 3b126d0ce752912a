"""The Textual app driven through Pilot: real presets, real worker thread, real run directories."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import WIKI, run_async, spawn, wait_for

from collapse_tui import loop
from collapse_tui.cli import main as cli_main
from collapse_tui.config import ConfigError
from collapse_tui.engines import DataError
from collapse_tui.engines.gaussian import GaussianEngine
from collapse_tui.engines.hub import unreachable
from collapse_tui.events import GenerationDone, Progress
from collapse_tui.preflight import check_runnable
from collapse_tui.preset_files import builtin_presets, load_preset, read_preset
from collapse_tui.run_names import run_name
from collapse_tui.rundir import RunDir
from collapse_tui.summary import SERIES
from collapse_tui.tui.app import build_app
from collapse_tui.tui.components import TABLE_ROWS, SamplesView, Trend
from collapse_tui.tui.run_screen import RunScreen
from collapse_tui.tui.start import StartScreen

SIZE = (80, 24)


async def set_field(pilot, field_id: str, text: str) -> None:
    screen = pilot.app.screen
    screen.query_one(f"#{field_id}").focus()
    await pilot.press("home", "ctrl+k", *text)


class Gate:
    """Let the (instant) Gaussian engine fit one generation per permit, so the test decides how far a
    run gets before it is paused or stopped. The loop, worker thread and run directory are real."""

    def __init__(self, monkeypatch):
        self.permits = threading.Semaphore(0)
        fit = GaussianEngine.fit

        def gated(engine, data, rngs, report, source=None):
            if not self.permits.acquire(timeout=20):
                raise TimeoutError("the test never let this generation run")
            return fit(engine, data, rngs, report, source)

        monkeypatch.setattr(GaussianEngine, "fit", gated)

    def let(self, n: int) -> None:
        for _ in range(n):
            self.permits.release()


def trend_values(screen: RunScreen, key: str) -> list[float]:
    return screen.query_one(f"#trend-{key}", Trend).values


def assert_trends_match_metrics(screen: RunScreen, rundir: RunDir) -> None:
    """The trends are the medians over seeds of metrics.jsonl (perplexity's in log10, from nll)."""
    rows = rundir.read_metrics()
    gens = sorted({r["generation"] for r in rows})
    at = [[r for r in rows if r["generation"] == g] for g in gens]
    want = {
        "perplexity": [np.median([r["nll"] for r in g]) / np.log(10) for g in at],
        "variance": [np.median([r["variance"] for r in g]) for g in at],
    }
    for key in SERIES:
        np.testing.assert_allclose(trend_values(screen, key), want[key], rtol=1e-12)


@run_async
async def test_pick_change_start_pause_stop_resume_finish(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    gate = Gate(monkeypatch)
    app = build_app(None, [], runs)
    async with app.run_test(size=SIZE) as pilot:
        start = app.screen
        assert isinstance(start, StartScreen)
        assert Path(start.selected).name == "gmm.toml"  # no argument: the GMM preset, no download
        await pilot.press("up")  # the table is sorted: gaussian, gaussian-quick, gmm, ...
        assert Path(start.selected).name == "gaussian-quick.toml"
        assert start.query_one("#generations").value == "200"
        await set_field(pilot, "generations", "30x")
        message = str(start.query_one("#message").render())
        assert "experiment.generations: expected an integer >= 1, got '30x'" in message
        await pilot.press("enter")  # refused: nothing starts, no run directory
        assert app.screen is start and not runs.exists()
        await pilot.press("backspace", "enter")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        rundir = screen.rundir
        assert rundir.config().generations == 30 and len(rundir.config().seeds) == 20
        assert re.fullmatch(r"gaussian-quick-generations30-\d{8}-\d{6}", rundir.path.name)  # named by the change

        gate.let(3)
        await wait_for(pilot, lambda: all(len(trend_values(screen, k)) >= 3 for k in SERIES), what="3 points")
        assert screen.run_state.done == 3 and screen.run_state.state == "running"
        assert " · gen 2/29 · " in str(screen.query_one("#status").render())  # as the log counts: gen 2 of 0..29
        view = screen.query_one(SamplesView)
        assert view.saved == (0, 1, 2) and view.n == 2 and view.follow
        assert "ETA" in str(screen.query_one("#eta").render())
        await pilot.press("left_square_bracket")
        assert not view.follow and view.n == 1
        assert str(screen.query_one("#right").border_title) == "generation 1"
        await pilot.press("left_curly_bracket", "right_square_bracket", "right_square_bracket")
        assert view.n == 2 and view.follow  # back on the newest: follows it again

        await pilot.press("p")
        assert screen.run_state.state == "paused" and screen.control.paused
        assert screen.check_action("pause", ()) is False and screen.check_action("resume_loop", ()) is True
        gate.let(2)  # generation 3 fits, then the loop holds at its next check
        await pilot.pause(0.4)
        assert screen.run_state.done == 3
        await pilot.press("p")
        assert screen.run_state.state == "running"
        await wait_for(pilot, lambda: screen.run_state.done == 5, what="generations 3 and 4")
        await pilot.press("s")
        assert screen.run_state.state == "stopping"
        gate.let(30)  # generation 5's fit returns; its first progress report sees the stop
        await wait_for(pilot, lambda: not screen.live, what="the loop to stop")
        await pilot.pause(0.2)
        assert screen.run_state.state == "stopped" and screen.run_state.done == 5
        assert rundir.read_status()["state"] == "stopped"
        assert len(rundir.read_metrics()) == 5 * 20
        assert_trends_match_metrics(screen, rundir)
        assert screen.check_action("resume", ()) is True and screen.check_action("pause", ()) is False

    monkeypatch.undo()  # the resumed half runs at full speed
    app = build_app(str(rundir.path), [], runs)  # `collapse-tui runs/NAME`
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.run_state.state == "stopped"
        assert len(trend_values(screen, "variance")) == 5
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.live and screen.run_state.state == "finished", what="finish")
        await pilot.pause(0.2)
        rows = rundir.read_metrics()
        assert len(rows) == 30 * 20
        assert sorted({r["generation"] for r in rows}) == list(range(30))
        assert_trends_match_metrics(screen, rundir)
        view = screen.query_one(SamplesView)
        assert view.n == 29 and view.follow
        await pilot.press("3")  # the table pane: one row per generation
        assert screen.query_one("#metrics").row_count == 30
        await pilot.press("4")  # the log pane (it draws once shown)
        await pilot.pause(0.1)
        log = " ".join(" ".join(line.text for line in screen.query_one("#log-view").lines).split())  # unwrapped
        assert "resuming at generation 5" in log and "finished 30 generations" in log
        await pilot.press("escape")  # back to the presets
        assert isinstance(app.screen, StartScreen)


@run_async
async def test_failed_run_shows_error_and_stays_resumable(tmp_path, monkeypatch):
    fit, calls = GaussianEngine.fit, [0]

    def failing(self, data, rngs, report, source=None):
        calls[0] += 1
        if calls[0] == 4:
            raise RuntimeError("the GPU caught fire")
        return fit(self, data, rngs, report, source)

    monkeypatch.setattr(GaussianEngine, "fit", failing)
    app = build_app("gaussian-quick", ["experiment.generations=8", "experiment.seeds=3"], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        screen = app.screen
        await wait_for(pilot, lambda: not screen.live and screen.run_state.state == "failed", what="failure")
        panel = screen.query_one("#error")
        assert panel.display and "RuntimeError: the GPU caught fire" in str(panel.render())
        assert screen.run_state.done == 3
        assert screen.check_action("resume", ()) is True and screen.check_action("stop", ()) is False
        monkeypatch.undo()
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.live and screen.run_state.state == "finished", what="finish")
        assert not screen.query_one("#error").display
        assert len(screen.rundir.read_metrics()) == 8 * 3


@run_async
async def test_start_fields_validate_as_the_cli(tmp_path):
    app = build_app("gaussian-quick", [], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        start = app.screen
        cases = {
            "generations": ("0", "experiment.generations=0"),
            "seeds": ("[1, 1]", "experiment.seeds=[1, 1]"),
            "keep_fraction": ("1.5", "data.keep_fraction=1.5"),
        }
        for field, (text, override) in cases.items():
            before = start.query_one(f"#{field}").value
            await set_field(pilot, field, text)
            with pytest.raises(ConfigError) as cli_error:
                load_preset("gaussian-quick", [override])
            assert str(start.query_one("#message").render()) == str(cli_error.value)
            await set_field(pilot, field, before)
            assert str(start.query_one("#message").render()).startswith("ready: 200 generations × 20 seeds on cpu")
        start.query_one("#mode").value = "keep"
        await pilot.pause()
        assert start.config().data.mode == "keep"


@run_async
async def test_presets_folder_and_user_preset(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "tiny.toml").write_text('[experiment]\nengine = "gaussian"\ngenerations = 3\nseeds = 2\n')
    (folder / "broken.toml").write_text('[experiment]\nengine = "gaussian"\nepochs = 3\n')
    app = build_app(str(folder / "tiny.toml"), [], tmp_path / "runs")  # `collapse-tui PRESET.toml`
    async with app.run_test(size=SIZE) as pilot:
        start = app.screen
        assert Path(start.selected) == folder / "tiny.toml"
        assert start.query_one("#generations").value == "3"
        start.query_one("#presets_dir").value = str(folder)  # a long path: not typed key by key
        start.query_one("#presets_dir").focus()
        await pilot.press("enter")
        assert str(folder / "broken.toml") in start.entries
        assert Path(start.selected) == folder / "broken.toml"  # the folder's first preset, highlighted
        assert "experiment.epochs: unknown key" in str(start.query_one("#message").render())
    app = build_app(str(folder), [], tmp_path / "runs")  # a folder of presets as the target
    async with app.run_test(size=SIZE) as pilot:
        assert Path(app.screen.selected) == folder / "broken.toml"


def test_bad_input_exits_2_before_the_app(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    run = RunDir.create(tmp_path / "runs", load_preset("gaussian-quick"))
    for argv, expected in [
        (["nope.toml"], "nope.toml: no such preset file"),
        (["gaussian-quick", "--set", "experiment.generations=0"], "experiment.generations: expected an integer >= 1"),
        (["--set", "engine.bogus=1"], "engine.bogus: unknown key"),
        (["empty"], "empty: not a run directory (no preset.toml) and no presets"),
        ([str(run.path), "--set", "experiment.seeds=2"], "a run directory's preset is fixed"),
    ]:
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, (argv, err)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [run.path.name]  # nothing created


@run_async
async def test_long_run_keeps_table_and_sparkline_small(tmp_path):
    """2500 generations: the table keeps the last TABLE_ROWS, the sparkline averages to its width."""
    cfg = load_preset("gaussian-quick", ["experiment.generations=2500", "experiment.seeds=1"])
    run = RunDir.create(tmp_path, cfg)
    rows = [
        {"seed": 0, "generation": g, "perplexity": None if g > 2000 else 2.0 + g, "variance": 1 / (1 + g)}
        for g in range(2500)
    ]
    run.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run.write_status(state="finished", generation=2499)
    app = build_app(str(run.path), [], tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await pilot.press("3")  # the table pane
        table = screen.query_one("#metrics")
        assert table.row_count == TABLE_ROWS
        assert table.get_row_at(TABLE_ROWS - 1)[0].plain == "2499"
        assert len(trend_values(screen, "perplexity")) == 2500 and math.isnan(trend_values(screen, "perplexity")[-1])
        line = str(screen.query_one("#trend-perplexity").render()).splitlines()[0]
        assert line.rstrip().endswith(" n/a") and len(line) <= SIZE[0]  # null and no nll: not computed, no number
        assert "no samples saved" in str(screen.query_one("#right #body").render())  # none written


@run_async
async def test_a_preview_kind_without_a_drawing_is_one_line(tmp_path, monkeypatch):
    """A plugin's own preview kind: the panes say so in one line; the rest of the screen works."""
    monkeypatch.setattr(GaussianEngine, "preview_kind", "rgb")
    app = build_app("gaussian-quick", ["experiment.generations=3", "experiment.seeds=1"], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        screen = app.screen
        await wait_for(pilot, lambda: screen.run_state.state == "finished", what="finish")
        await pilot.pause(0.1)
        for pane in ("#left", "#right"):
            body = str(screen.query_one(f"{pane} #body").render())
            assert body == "no drawing for preview kind 'rgb' (samples on disk in samples/)"
        assert str(screen.query_one("#right").border_title) == "generation 2"
        assert len(trend_values(screen, "variance")) == 3


@run_async
async def test_no_color(tmp_path, monkeypatch):
    """NO_COLOR: Textual turns every colour to grey; the drawings are characters, so they survive."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = build_app("gaussian-quick", ["experiment.generations=5"], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        assert app.no_color
        await pilot.press("enter")
        screen = app.screen
        await wait_for(pilot, lambda: screen.run_state.state == "finished", what="finish")
        await pilot.pause(0.2)
        svg = app.export_screenshot()

    colours = set(re.findall(r"fill: #([0-9a-f]{6})", svg)) - {"c5c8c6"}  # the SVG frame's own default text
    assert colours and all(c[0:2] == c[2:4] == c[4:6] for c in colours), " ".join(sorted(colours))
    assert "█" in svg  # the histogram and sparklines are drawn with block characters


@run_async
async def test_quit_while_running_stops_at_a_checkpoint(tmp_path, monkeypatch):
    gate = Gate(monkeypatch)
    app = build_app("gaussian-quick", ["experiment.generations=50"], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        screen = app.screen
        gate.let(2)
        await wait_for(pilot, lambda: screen.run_state.done == 2, what="2 generations")
        await pilot.press("q")  # asks the loop to stop; the app exits once it has
        assert app.quitting and screen.run_state.state == "stopping"
        gate.let(50)
        await wait_for(pilot, lambda: app.return_code is not None or not app.is_running, what="exit")
    run = screen.rundir
    assert run.read_status()["state"] == "stopped"
    assert run.read_checkpoint()[0] == 1 and len(run.read_metrics()) == 2 * 20
    # the start screen lists it, and enter opens it
    app = build_app(None, [], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        runs = app.screen.query_one("#runs")
        assert runs.row_count == 1 and runs.get_row_at(0)[:4] == ["stopped", "replace", "20", "2/50"]
        runs.focus()
        await pilot.press("enter")
        assert isinstance(app.screen, RunScreen) and app.screen.rundir.path == run.path


@run_async
async def test_gmm_quick_smoke(tmp_path):
    """The README's engine: a few gmm-quick generations, their samples drawn as 2-D density maps."""
    app = build_app("gmm-quick", ["experiment.generations=3", "experiment.seeds=2"], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        screen = app.screen
        done = ("finished", "failed")
        await wait_for(pilot, lambda: not screen.live and screen.run_state.state in done, timeout=120, what="gmm")
        assert screen.run_state.state == "finished", screen.run_state.error
        await pilot.pause(0.1)
        for pane in ("#left", "#right"):
            lines = str(screen.query_one(f"{pane} #body").render()).splitlines()
            assert any(c in "".join(lines[:-1]) for c in "░▒▓█") and " y " in lines[-1]
        assert str(screen.query_one("#right").border_title) == "generation 2"


@run_async
async def test_watch_a_run_of_another_process(tmp_path):
    """A run directory another live process is running: shown read-only, followed as it grows."""
    run = RunDir.create(tmp_path, load_preset("gaussian-quick", ["experiment.generations=4", "experiment.seeds=1"]))
    other = spawn([sys.executable, "-c", "import time; time.sleep(60)  # collapse-tui"])
    try:
        run.write_status(state="running", generation=0)
        status = run.read_status() | {"pid": other.pid}
        run.status_path.write_text(json.dumps(status))
        run.append_metrics([{"seed": 0, "generation": 0, "perplexity": 3.0, "variance": 1.0}])
        app = build_app(str(run.path), [], tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            assert screen.run_state.state == "watching" and screen.run_state.done == 1
            assert screen.check_action("resume", ()) is False and screen.check_action("stop", ()) is False
            run.append_metrics([{"seed": 0, "generation": g, "perplexity": 3.0, "variance": 1.0} for g in (1, 2, 3)])
            run.status_path.write_text(json.dumps(status | {"state": "finished", "generation": 3}))
            await wait_for(pilot, lambda: screen.run_state.state == "finished", timeout=10, what="the poll")
            assert trend_values(screen, "variance") == [1.0] * 4
    finally:
        other.kill()
        other.wait()


def shown_lines(widget) -> list[str]:
    """What a scrolling widget (a DataTable) draws now: its visible lines, without the border."""
    return [widget.render_line(y).text for y in range(widget.size.height)]


@run_async
async def test_q_quits_the_start_screen_and_types_in_a_field(tmp_path):
    app = build_app(None, [], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await set_field(pilot, "presets_dir", "quiet")
        assert app.screen.query_one("#presets_dir").value == "quiet" and app.is_running
        await pilot.press("ctrl+l", "q")  # back in the preset table: q quits
        await wait_for(pilot, lambda: app.return_code is not None, what="exit")
    assert app.return_code == 0


@run_async
async def test_presets_and_runs_share_the_height(tmp_path):
    """At 120x50 every built-in preset shows; at 80x24, with six runs, the runs list still shows four or more."""
    runs = tmp_path / "runs"
    for mode in ("replace", "keep", "accumulate", "fresh", "replace", "keep"):
        RunDir.create(runs, load_preset("gaussian-quick", [f"data.mode={mode}"]))
    app = build_app(None, [], runs)
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.pause()
        presets = app.screen.query_one("#presets")
        names = [line.split()[0] for line in shown_lines(presets)[1:] if line.strip()]
        assert names == sorted(builtin_presets())
    app = build_app(None, [], runs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        lines = shown_lines(app.screen.query_one("#runs"))
        assert lines[0].split() == ["state", "mode", "seeds", "gens", "run"]
        assert sum("gaussian-quick-" in line for line in lines) >= 4
        assert len(shown_lines(app.screen.query_one("#presets"))) >= 5  # the header and four presets


@run_async
async def test_runs_list_the_last_started_first_with_mode_and_seeds(tmp_path):
    """Ordered by status.json's 'started' (else the name's timestamp), not by mtime, which a report changes."""
    runs = tmp_path / "runs"
    old = RunDir.create(runs, load_preset("gaussian-quick", ["data.mode=keep", "experiment.seeds=2"]), name="old")
    old.write_status(started="2025-01-01T10:00:00+00:00")
    later = RunDir.create(runs, load_preset("gmm-quick"), name="later")
    later.write_status(started="2025-06-01T10:00:00+00:00")
    new = RunDir.create(runs, load_preset("gaussian-quick", ["experiment.seeds=[1, 5]"]), name="new")  # not started
    future = time.time() + 1000
    os.utime(old.path, (future, future))  # touched last, started first
    app = build_app(None, [], runs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#runs")
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert [r[-1] for r in rows] == [new.path.name, later.path.name, old.path.name]
        assert [r[:4] for r in rows] == [
            ["created", "replace", "[1, 5]", "0/200"],
            ["created", "replace", "4", "0/200"],
            ["created", "keep", "2", "0/200"],
        ]


@run_async
async def test_new_runs_are_named_by_what_changed(tmp_path, capsys):
    keep2 = load_preset("gmm-quick", ["data.mode=keep", "experiment.seeds=2"])
    assert run_name(read_preset("gmm-quick"), load_preset("gmm-quick")) == "gmm-quick"  # the preset as it is
    assert run_name(read_preset("gmm-quick"), keep2) == "gmm-quick-keep-seeds2"
    many = ["experiment.generations=5", "data.mode=keep", "engine.samples=50", "data.keep_fraction=0.5"]
    assert (
        run_name(read_preset("gmm-quick"), load_preset("gmm-quick", many))
        == "gmm-quick-keep-keep_fraction0.5-generations5"
    )
    runs = tmp_path / "runs"
    batch = ["--batch", "gmm-quick", "--set", "data.mode=keep", "--set", "experiment.seeds=2", "--runs-dir", str(runs)]
    assert cli_main(batch) == 0
    assert [re.sub(r"-\d{8}-\d{6}$", "", p.name) for p in runs.iterdir()] == ["gmm-quick-keep-seeds2"]
    capsys.readouterr()
    app = build_app("gmm-quick", [], tmp_path / "app-runs")
    async with app.run_test(size=SIZE) as pilot:
        start = app.screen
        start.query_one("#mode").value = "keep"
        await set_field(pilot, "seeds", "2")
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.rundir.path.name.startswith("gmm-quick-keep-seeds2-")
        await wait_for(pilot, lambda: not screen.live, timeout=60, what="the run")


@run_async
async def test_start_screen_shows_needs_and_refuses_what_cannot_run(tmp_path, monkeypatch):
    """The needs column; opt-tiny without text needs the hub, which is unreachable here (a closed port): the
    check's one line, no run directory. Its text dir field gives local text (train.txt and test.txt)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    unreachable.cache_clear()
    text = tmp_path / "text"
    text.mkdir()
    shutil.copy(WIKI / "valid.txt", text / "train.txt")
    shutil.copy(WIKI / "test.txt", text / "test.txt")
    runs = tmp_path / "runs"
    app = build_app(None, [], runs)
    try:
        async with app.run_test(size=SIZE) as pilot:
            start = app.screen
            presets = start.query_one("#presets")
            needs = {presets.get_row_at(i)[0]: presets.get_row_at(i)[-1] for i in range(presets.row_count)}
            assert needs["gmm"] == "-" and needs["opt-tiny"] == "torch,hub" and needs["vae-quick"] == "torch"
            assert not start.query_one("#text_dir").display  # gmm: no text
            presets.move_cursor(row=presets.get_row_index(str(builtin_presets()["opt-tiny"])))
            await pilot.pause()
            assert start.query_one("#text_dir").display
            await pilot.press("enter")
            message = str(start.query_one("#message").render())
            assert message.startswith("engine.dataset: wikitext/wikitext-2-raw-v1 comes from the Hugging Face hub")
            assert app.screen is start and not runs.exists()
            start.query_one("#text_dir").value = str(text)  # a long path: not typed key by key
            await pilot.pause()
            assert str(start.query_one("#message").render()).startswith("ready: 5 generations × 1 seed on cpu")
            assert start.config().engine["text_dir"] == str(text)
            check_runnable(start.config())  # what enter checks first: the local text needs no hub
    finally:
        unreachable.cache_clear()


@run_async
async def test_vae_samples_fill_the_pane(tmp_path):
    """A bigger terminal shows more of the preview's 64 digits, never below their own size."""
    cfg = load_preset("vae-quick", ["experiment.generations=3"])
    run = RunDir(RunDir.create(tmp_path, cfg).path.rename(tmp_path / "vae"))
    images = np.random.default_rng(0).random((64, 8, 8), dtype=np.float32)
    for g in (0, 1):
        run.append_metrics([{"seed": 0, "generation": g, "perplexity": 2.0, "variance": 1.0}])
        run.save_samples(g, images)
    run.write_status(state="stopped", generation=1)
    shown = {}
    for size in (SIZE, (120, 40)):
        app = build_app(str(run.path), [], tmp_path)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            pane = app.screen.query_one("#right")
            shown[size] = int(re.fullmatch(r"(\d+) of 64 images", str(pane.border_subtitle))[1])
            body = str(pane.query_one("#body").render()).splitlines()
            cols, rows = (len(body[0]) + 1) // 9, (len(body) + 1) // 5  # 8x8 at 1x: 8 columns and 4 lines, a gap
            assert cols * rows == shown[size] and len(body[0]) == 9 * cols - 1 and len(body) == 5 * rows - 1
    assert 8 <= shown[SIZE] < shown[(120, 40)]


@run_async
async def test_eta_during_the_first_generation(tmp_path, monkeypatch):
    """A slow first generation (a VAE's): the time left from the share of its training done."""
    gate, fit = threading.Event(), GaussianEngine.fit

    def slow(engine, data, rngs, report, source=None):
        time.sleep(0.3)
        report("fit", 1, 4, None)  # a quarter of the training done
        if not gate.wait(20):
            raise TimeoutError("the test never let this generation finish")
        return fit(engine, data, rngs, report, source)

    monkeypatch.setattr(GaussianEngine, "fit", slow)
    app = build_app("gaussian-quick", ["experiment.generations=3", "experiment.seeds=1"], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        screen = app.screen
        eta = screen.query_one("#eta")
        await wait_for(pilot, lambda: "fit 1/4" in str(screen.query_one("#phase").render()), what="progress")
        await pilot.pause(0.2)
        assert re.fullmatch(r"ETA (<1s|\d+:\d\d)", str(eta.render())) and str(eta.render()) != "ETA <1s"
        gate.set()
        await wait_for(pilot, lambda: not screen.live, what="the run")


def test_a_pause_inside_a_generation_is_not_its_time(tmp_path):
    run = RunDir.create(tmp_path, load_preset("gaussian-quick", ["experiment.generations=3", "experiment.seeds=1"]))
    control, seconds = loop.Control(), {}

    def emit(ev) -> None:
        if isinstance(ev, Progress) and ev.generation == 1 and ev.phase == "fit":
            control.pause()  # the loop holds at its next check, inside generation 1
            threading.Timer(0.5, control.resume).start()
        elif isinstance(ev, GenerationDone):
            seconds[ev.generation] = ev.seconds

    start = time.monotonic()
    assert loop.run(run, emit, control) == "finished"
    assert time.monotonic() - start >= 0.5 and seconds[1] < 0.25


@run_async
async def test_a_failed_run_that_resuming_cannot_help_offers_no_resume(tmp_path, monkeypatch):
    fit, calls = GaussianEngine.fit, [0]

    def bad_data(self, data, rngs, report, source=None):
        calls[0] += 1
        if calls[0] == 2:
            raise DataError("engine.samples: the data ran out")
        return fit(self, data, rngs, report)

    monkeypatch.setattr(GaussianEngine, "fit", bad_data)
    app = build_app("gaussian-quick", ["experiment.generations=4", "experiment.seeds=1"], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        screen = app.screen
        await wait_for(pilot, lambda: not screen.live and screen.run_state.state == "failed", what="failure")
        await pilot.pause()
        assert screen.run_state.error == "DataError: engine.samples: the data ran out"
        assert str(screen.query_one("#phase").render()) == "failed after 1 of 4 generations"
        assert screen.query_one("#error").border_subtitle == "traceback in error.log"
        assert screen.check_action("resume", ()) is False
        await pilot.press("r")
        assert screen.run_state.state == "failed" and not screen.live

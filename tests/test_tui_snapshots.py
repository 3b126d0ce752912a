"""Snapshots of the app at 80x24 (pytest-textual-snapshot; `pytest --snapshot-update` accepts changes).

Each snapshot opens a run directory made in the test under a fixed name, so nothing volatile
(timestamps, timings, ETA) is on screen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import WIKI

from collapse_tui.preset_files import load_preset
from collapse_tui.records import RunState
from collapse_tui.rundir import RunDir
from collapse_tui.testing import run_in_process
from collapse_tui.tui.app import build_app

SIZE = (80, 24)
WIKI_VALID = WIKI / "valid.txt"


def stopped_run(tmp_path: Path, stop_after: int = 11) -> Path:
    """A real gaussian-quick run of 40 generations, stopped after generation stop_after."""
    cfg = load_preset("gaussian-quick", ["experiment.generations=40"])
    path = RunDir.create(tmp_path, cfg).path.rename(tmp_path / "demo")  # the status line shows the name
    assert run_in_process(RunDir(path), stop_after) == RunState.STOPPED
    return path


def text_run(tmp_path: Path, generations: int = 6) -> Path:
    """A run directory of a text engine (the opt-tiny preset; nothing is trained) with text samples as
    it writes them: continuations of the same real prompts (WikiText-2), drifting into loops
    generation after generation. The panes draw what the engine's preview kind says, so the preset
    must be a text engine's."""
    paragraphs = [line.split() for line in WIKI_VALID.read_text(encoding="utf-8").splitlines()]
    paragraphs = [p for p in paragraphs if len(p) > 60 and p[0] != "="][:3]
    cfg = load_preset("opt-tiny", [f"experiment.generations={generations}", "experiment.seeds=2"])
    path = RunDir.create(tmp_path, cfg).path.rename(tmp_path / "demo-text")
    run = RunDir(path)
    for g in range(generations):
        spread = {"variance": 2.0 / (1 + g), "distinct_1": 0.5 / (1 + g)}  # distinct_1: a text engine's headline
        rows = [{"seed": s, "generation": g, "perplexity": 20.0 * 1.3**g + s, **spread} for s in (0, 1)]
        run.append_metrics(rows)
        texts = []
        for tokens in paragraphs:
            words = tokens[:40]
            loop_unit = words[5:9]
            texts.append(" ".join(words[: 40 - 4 * g] + loop_unit * g))
        run.save_samples(g, texts)
    run.write_status(state="stopped", generation=generations - 1, error=None)
    return path


def test_snapshot_start_screen(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the device column, on any machine
    monkeypatch.setattr("collapse_tui.tui.components.preset_table.has_gpu", lambda: False)
    assert snap_compare(build_app(None, [], Path("runs")), terminal_size=SIZE)


def test_snapshot_run_screen_mid_run(snap_compare, tmp_path):
    app = build_app(str(stopped_run(tmp_path)), [], tmp_path)
    assert snap_compare(app, terminal_size=SIZE, press=["left_square_bracket", "left_square_bracket"])


def test_snapshot_run_screen_light_theme(snap_compare, tmp_path):
    app = build_app(str(stopped_run(tmp_path)), [], tmp_path)

    async def light(pilot) -> None:
        pilot.app.theme = "textual-light"
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=light)


def test_snapshot_plot_pane(snap_compare, tmp_path):
    """The plot pane (g) of the stopped gaussian run: variance's median and band over 12 of 40 generations, theory's
    expected mean over all 40 and the seeds' mean."""
    app = build_app(str(stopped_run(tmp_path)), [], tmp_path)
    assert snap_compare(app, terminal_size=SIZE, press=["g"])


def test_snapshot_diff_pane(snap_compare, tmp_path):
    app = build_app(str(text_run(tmp_path)), [], tmp_path)
    assert snap_compare(app, terminal_size=SIZE, press=["2"])


def test_snapshot_text_samples(snap_compare, tmp_path):
    app = build_app(str(text_run(tmp_path)), [], tmp_path)
    assert snap_compare(app, terminal_size=SIZE, press=["left_square_bracket", "full_stop"])


def test_text_samples_state(tmp_path):
    """Not a snapshot: the text fixture's repeated phrases really are there to highlight."""
    from collapse_tui.phrases import repeated_phrases

    last = RunDir(text_run(tmp_path)).load_samples(5)
    assert all(repeated_phrases(t) for t in last) and isinstance(last, list)
    assert np.all([len(t.split()) == 40 for t in last])

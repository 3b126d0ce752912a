"""Kill -9 or Ctrl-C at any moment, resume, and get the uninterrupted run's metrics row for row."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import spawn

from collapse_tui.rundir import RunDir

# about 1.5 s of generations on 2 quiet cores (big samples, few rows); a checkpoint every 0.2 s, so kills
# land before, inside and after checkpoints. Without the detector (70% of the CPU here): tests/test_detector.py
# checks that a resumed run with it equals an uninterrupted one and that it changes no other column.
SEEDS, GENERATIONS = 100, 80
SETTINGS = {
    "experiment.generations": GENERATIONS,
    "experiment.seeds": SEEDS,
    "experiment.checkpoint_seconds": 0.2,
    "engine.samples": 2000,
    "engine.dim": 3,
    "data.detector_auc": "false",
}
ARGS = [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]


def cli(*args: str, cwd: Path) -> subprocess.Popen:
    return spawn(
        [sys.executable, "-m", "collapse_tui", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def only_run(runs: Path) -> RunDir:
    (path,) = runs.glob("[!.]*")
    return RunDir(path)


def count_rows(path: Path) -> int:
    """Rows in metrics.jsonl, asserting that it ends with a whole line."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "partial line"
    return data.count(b"\n")


def check_whole_lines(path: Path) -> int:
    """Every line in metrics.jsonl is complete JSON; returns the row count."""
    for line in path.read_text().splitlines():
        json.loads(line)
    return count_rows(path)


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> list[str]:
    """metrics.jsonl of the run never interrupted."""
    ref = tmp_path_factory.mktemp("ref")
    proc = cli("--batch", "gaussian", *ARGS, cwd=ref)
    assert proc.wait(120) == 0, proc.stderr.read()
    return only_run(ref / "runs").metrics_path.read_text().splitlines()


@pytest.mark.parametrize("trial", range(3))
def test_kill_9_then_resume_equals_the_uninterrupted_run(tmp_path, trial, expected):
    work = tmp_path / "work"
    work.mkdir()
    proc = cli("--batch", "gaussian", *ARGS, cwd=work)
    # kill once a random share of the rows is written, plus a random delay: any point of a generation
    rnd = random.Random(trial)
    target, delay = int(rnd.uniform(0.1, 0.8) * len(expected)), rnd.uniform(0, 0.2)
    rows = 0
    while rows < target and proc.poll() is None:
        if (work / "runs").exists() and any((work / "runs").glob("[!.]*")):
            rows = count_rows(only_run(work / "runs").metrics_path)
        time.sleep(0.002)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = only_run(work / "runs")
    killed_rows = check_whole_lines(run.metrics_path)
    assert killed_rows < len(expected), "the kill came after the run had finished"
    resumed = cli("--batch", "--resume", str(run.path), cwd=work)
    assert resumed.wait(120) == 0, resumed.stderr.read()
    assert run.metrics_path.read_text().splitlines() == expected
    status = run.read_status()
    assert status["state"] == "finished" and status["generation"] == GENERATIONS - 1


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path, expected):
    work = tmp_path / "work"
    work.mkdir()
    proc = cli("--batch", "gaussian", *ARGS, "--set", "experiment.checkpoint_seconds=100", cwd=work)
    # generation 1's samples exist: generation 0 has finished (however loaded the machine), no checkpoint yet
    while proc.poll() is None and not any((work / "runs").glob("[!.]*/samples/gen-000001.*")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume with: collapse-tui --batch --resume" in out and "Traceback" not in err
    run = only_run(work / "runs")
    status = run.read_status()
    # no checkpoint was due in 100 s: the stop wrote one for the last finished generation
    assert status["state"] == "stopped" and status["checkpoint_generation"] == status["generation"] >= 0
    assert check_whole_lines(run.metrics_path) == SEEDS * (status["generation"] + 1)
    resumed = cli("--batch", "--resume", str(run.path), cwd=work)
    assert resumed.wait(120) == 0
    assert run.metrics_path.read_text().splitlines() == expected


def test_a_live_run_cannot_be_resumed_twice(tmp_path):
    proc = cli("--batch", "gaussian", *ARGS, cwd=tmp_path)
    try:
        for _ in range(500):
            runs = tmp_path / "runs"
            if runs.exists() and any(runs.glob("[!.]*")) and only_run(runs).read_status().get("state") == "running":
                break
            time.sleep(0.01)
        second = cli("--batch", "--resume", str(only_run(tmp_path / "runs").path), cwd=tmp_path)
        assert second.wait(30) == 2
        assert f"another process (pid {proc.pid}) is writing this run" in second.stderr.read()
    finally:
        proc.kill()
        proc.wait()

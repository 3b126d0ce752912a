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

from collapse_tui.rundir import RunDir

# about 3 s of generations; checkpoints every 0.2 s so kills land between and inside checkpoints
ARGS = [
    "--set",
    "experiment.generations=400",
    "--set",
    "experiment.seeds=400",
    "--set",
    "experiment.checkpoint_seconds=0.2",
]


def cli(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "collapse_tui", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def only_run(runs: Path) -> RunDir:
    (path,) = runs.glob("[!.]*")
    return RunDir(path)


def check_whole_lines(path: Path) -> int:
    """Every line in metrics.jsonl is complete JSON; returns the row count."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "partial line"
    for line in text.splitlines():
        json.loads(line)
    return text.count("\n")


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
    deadline = time.monotonic() + random.Random(trial).uniform(0.3, 2.0) + 1.0  # + start-up
    while time.monotonic() < deadline and proc.poll() is None:
        if (work / "runs").exists() and any((work / "runs").glob("[!.]*")):
            check_whole_lines(only_run(work / "runs").metrics_path)
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = only_run(work / "runs")
    killed_rows = check_whole_lines(run.metrics_path)
    assert killed_rows < len(expected), "the kill came after the run had finished"
    resumed = cli("--batch", "--resume", str(run.path), cwd=work)
    assert resumed.wait(120) == 0, resumed.stderr.read()
    assert run.metrics_path.read_text().splitlines() == expected
    status = run.read_status()
    assert status["state"] == "finished" and status["generation"] == 399


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path, expected):
    work = tmp_path / "work"
    work.mkdir()
    proc = cli("--batch", "gaussian", *ARGS, "--set", "experiment.checkpoint_seconds=100", cwd=work)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume with: collapse-tui --batch --resume" in out and "Traceback" not in err
    run = only_run(work / "runs")
    status = run.read_status()
    # no checkpoint was due in 100 s: the stop wrote one for the last finished generation
    assert status["state"] == "stopped" and status["checkpoint_generation"] == status["generation"] >= 0
    assert check_whole_lines(run.metrics_path) == 400 * (status["generation"] + 1)
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
        assert "the run is still running" in second.stderr.read()
    finally:
        proc.kill()
        proc.wait()

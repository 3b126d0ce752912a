"""What the tool withstands: `nohup collapse-tui --batch ... &` and a logout. A stop signal that the process
started with ignored (SIGHUP under nohup, SIGINT under a non-interactive `cmd &`) stays ignored: the run,
or the sweep, goes on to its end. A signal that was not ignored still stops at a checkpoint."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collapse_tui.rundir import RunDir
from collapse_tui.sweepdir import SweepDir

GENERATIONS = 1500  # gaussian, 4 seeds: a few seconds, so the signal comes while it runs
SWEEP = f"""
[experiment]
engine = "gaussian"
generations = {GENERATIONS}
seeds = 4

[data]
mode = "replace"

[engine]
dim = 1
samples = 20

[sweep]
"engine.samples" = [20, 21]
"""


@contextlib.contextmanager
def batch(tmp_path: Path, args: list[str], ignored: signal.Signals | None) -> Iterator[subprocess.Popen]:
    """`collapse-tui --batch ARGS` in a session of its own, started with `ignored` set to SIG_IGN (as nohup
    and `&` start it); the whole session is killed at the end, whatever happens."""

    def ignore() -> None:
        if ignored is not None:
            signal.signal(ignored, signal.SIG_IGN)

    proc = subprocess.Popen(
        [sys.executable, "-m", "collapse_tui", "--batch", *args, "--runs-dir", "runs"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ignore,
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def runs_when_running(tmp_path: Path, count: int) -> list[RunDir]:
    """The `count` runs under tmp_path/runs (a sweep's cells) once every one of them is running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            found = sorted((tmp_path / "runs").rglob("status.json"))
        except FileNotFoundError:  # a run's hidden folder was renamed into place while rglob walked it
            continue
        runs = [RunDir(p.parent) for p in found if ".tmp" not in str(p) and "/." not in str(p)]
        if len(runs) == count and all(r.read_status().get("state") == "running" for r in runs):
            return runs
        time.sleep(0.01)
    raise AssertionError(f"no {count} running runs under {tmp_path / 'runs'}")


@pytest.mark.parametrize(
    "sig, ignored, code, state",
    [
        (signal.SIGHUP, True, 0, "finished"),  # nohup, then the SSH session ends
        (signal.SIGINT, True, 0, "finished"),  # `cmd &` in a script, then a Ctrl-C to its process group
        (signal.SIGHUP, False, 128 + signal.SIGHUP, "stopped"),  # no nohup: stops at a checkpoint as ever
    ],
    ids=["nohup-sighup", "background-sigint", "sighup"],
)
def test_a_batch_run_outlives_a_signal_it_started_with_ignored(tmp_path, sig, ignored, code, state):
    args = ["gaussian-quick", "--set", f"experiment.generations={GENERATIONS}", "--set", "experiment.seeds=4"]
    with batch(tmp_path, args, sig if ignored else None) as proc:
        (run,) = runs_when_running(tmp_path, 1)
        os.killpg(proc.pid, sig)  # the run's whole session, as a hang-up or a terminal's Ctrl-C
        assert run.read_status()["state"] == "running"  # the signal came while the run ran
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == code and "Traceback" not in err, err
    status = run.read_status()
    assert status["state"] == state and status["checkpoint_generation"] == status["generation"]
    if state == "finished":
        assert status["generation"] == GENERATIONS - 1
        assert len(run.read_metrics()) == GENERATIONS * 4  # every generation of every seed


def test_a_sweep_of_local_workers_outlives_a_hang_up_it_started_with_ignored(tmp_path):
    """The sweep passes no SIGTERM on to its cells for a SIGHUP that nohup set aside."""
    (tmp_path / "sweep.toml").write_text(SWEEP)
    with batch(tmp_path, ["sweep.toml", "--workers", "2"], signal.SIGHUP) as proc:
        cells = runs_when_running(tmp_path, 2)
        os.killpg(proc.pid, signal.SIGHUP)
        assert [c.read_status()["state"] for c in cells] == ["running", "running"]
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in err, err
    (sweep,) = (tmp_path / "runs").iterdir()
    assert [c.state()[:2] for c in SweepDir.open(sweep).cells] == [("finished", GENERATIONS - 1)] * 2

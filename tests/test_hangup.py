"""A real terminal that goes away (a dropped SSH session, a killed tmux pane): the app, on a pty, ends
by itself, and a run it was showing stops at a checkpoint that a resume can take."""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from collapse_tui.rundir import RunDir

pty = pytest.importorskip("pty")
ROOT = Path(__file__).parents[1]


def app_on_a_pty(*args: str) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the app on the pty's slave, its controlling terminal
        os.environ["TERM"] = "xterm-256color"
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "collapse_tui", *args])
    return pid, fd


def read_until(fd: int, done, timeout: float = 60.0) -> None:
    seen, end = b"", time.monotonic() + timeout
    while time.monotonic() < end and not done(seen):
        if select.select([fd], [], [], 0.1)[0]:
            seen += os.read(fd, 1 << 16)
    assert done(seen), seen[-2000:]


def ended_within(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


@pytest.mark.parametrize("delay", [0.0, 0.5])
def test_the_app_ends_when_its_terminal_goes_away(tmp_path, delay):
    pid, fd = app_on_a_pty("--runs-dir", str(tmp_path / "runs"))
    read_until(fd, lambda seen: b"preset" in seen)  # the start screen is drawing
    time.sleep(delay)
    os.close(fd)  # the terminal hangs up: SIGHUP, and every write to it fails
    assert ended_within(pid, 30)


def test_a_hang_up_stops_the_run_at_a_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    pid, fd = app_on_a_pty("gaussian-quick", "--set", "experiment.generations=100000", "--runs-dir", str(runs))
    read_until(fd, lambda seen: b"preset" in seen)
    os.write(fd, b"\r")  # enter: start the run

    def running(_: bytes) -> bool:
        found = list(runs.glob("[!.]*")) if runs.exists() else []
        return bool(found) and RunDir(found[0]).read_status().get("generation", -1) >= 0

    read_until(fd, running)
    os.close(fd)
    assert ended_within(pid, 60)
    (path,) = runs.glob("[!.]*")
    status = RunDir(path).read_status()
    assert status["state"] == "stopped" and status["checkpoint_generation"] == status["generation"] >= 0

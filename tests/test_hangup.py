"""A real terminal that goes away (a dropped SSH session, a killed tmux pane): the app, on a pty, ends
by itself, and a run it was showing stops at a checkpoint that a resume can take."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import spawn

from collapse_tui.rundir import RunDir

pty = pytest.importorskip("pty")
ROOT = Path(__file__).parents[1]


def take_the_terminal() -> None:
    """In the child, in its new session: the pty's slave (its stdin) becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def app_on_a_pty(*args: str) -> tuple[subprocess.Popen, int]:
    """The app on a pty's slave, its controlling terminal; returns the process and the pty's master."""
    master, slave = pty.openpty()
    cmd = [sys.executable, "-m", "collapse_tui", *args]
    env = {**os.environ, "TERM": "xterm-256color"}
    proc = spawn(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env, preexec_fn=take_the_terminal)
    os.close(slave)
    return proc, master


def read_until(fd: int, done, timeout: float = 60.0) -> None:
    seen, end = b"", time.monotonic() + timeout
    while time.monotonic() < end and not done(seen):
        if select.select([fd], [], [], 0.1)[0]:
            seen += os.read(fd, 1 << 16)
    assert done(seen), seen[-2000:]


def ended_within(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return False  # the test's teardown kills it
    return True


@pytest.mark.parametrize("delay", [0.0, 0.5])
def test_the_app_ends_when_its_terminal_goes_away(tmp_path, delay):
    proc, fd = app_on_a_pty("--runs-dir", str(tmp_path / "runs"))
    read_until(fd, lambda seen: b"preset" in seen)  # the start screen is drawing
    time.sleep(delay)
    os.close(fd)  # the terminal hangs up: SIGHUP, and every write to it fails
    assert ended_within(proc, 30)


def test_a_hang_up_stops_the_run_at_a_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    proc, fd = app_on_a_pty("gaussian-quick", "--set", "experiment.generations=100000", "--runs-dir", str(runs))
    read_until(fd, lambda seen: b"preset" in seen)
    os.write(fd, b"\r")  # enter: start the run

    def running(_: bytes) -> bool:
        found = list(runs.glob("[!.]*")) if runs.exists() else []
        return bool(found) and RunDir(found[0]).read_status().get("generation", -1) >= 0

    read_until(fd, running)
    os.close(fd)
    assert ended_within(proc, 60)
    (path,) = runs.glob("[!.]*")
    status = RunDir(path).read_status()
    assert status["state"] == "stopped" and status["checkpoint_generation"] == status["generation"] >= 0

"""A run's state as every reader computes it (rundir.run_state): status.json's state, except that a
'running' run whose lock no live process holds has crashed. The app shows a run another live process
runs as 'watching' (tui.state.disk_state). A holder killed outright: test_faults.py."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from collapse_tui.records import STATES
from collapse_tui.rundir import RunDir, run_state
from collapse_tui.tui.state import disk_state


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    """A run directory nobody writes: run_state reads only the status given and the lock."""
    path = tmp_path / "run"
    path.mkdir()
    return RunDir(path)


@contextmanager
def held_elsewhere(run: RunDir) -> Iterator[None]:
    """The run's lock held as another writer holds it: an exclusive flock on its own open file (which this
    process's RunDir does not know of)."""
    fd = os.open(run.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def test_no_status_is_a_created_run(run):
    assert run_state(run, {}) == "created"


@pytest.mark.parametrize("state", [s for s in STATES if s != "running"])
def test_a_run_that_is_not_running_reads_as_its_status_says_lock_or_not(run, state):
    assert run_state(run, {"state": state}) == state
    with held_elsewhere(run):
        assert run_state(run, {"state": state}) == state


def test_running_with_a_live_holder_is_running(run):
    with held_elsewhere(run):
        assert run_state(run, {"state": "running"}) == "running"


def test_running_with_no_lock_file_has_crashed(run):
    assert not run.lock_path.exists()
    assert run_state(run, {"state": "running"}) == "crashed"


def test_running_with_a_lock_nobody_holds_has_crashed(run):
    with held_elsewhere(run):
        pass  # the holder let go (a process's locks go with it)
    assert run.lock_path.exists()
    assert run_state(run, {"state": "running"}) == "crashed"


def test_this_process_holding_the_lock_is_a_live_writer(run):
    run.acquire()
    try:
        assert run_state(run, {"state": "running"}) == "running"
    finally:
        run.release()
    assert run_state(run, {"state": "running"}) == "crashed"


@pytest.mark.parametrize("state", [s for s in STATES if s != "running"])
def test_the_app_shows_the_state_on_disk(run, state):
    assert disk_state(run, {"state": state}) == state


def test_the_app_watches_a_run_another_process_writes_and_sees_a_crash(run):
    with held_elsewhere(run):
        assert disk_state(run, {"state": "running"}) == "watching"
    assert disk_state(run, {"state": "running"}) == "crashed"

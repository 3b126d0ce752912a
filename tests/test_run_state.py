"""A run's state as every reader computes it (rundir.run_state): status.json's state, except that a
'running' run whose lock no live process holds has crashed. The app shows a run another live process
runs as 'watching' (tui.state.disk_state). A holder killed outright: test_faults.py."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import run_loop

from collapse_tui.engines import DataError
from collapse_tui.records import STATES, RunDirError, RunState
from collapse_tui.rundir import RunDir, run_state
from collapse_tui.runlog import resumable
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


def test_states_are_one_enum_whose_members_are_the_strings_on_disk(run):
    assert [str(s) for s in RunState] == ["created", "running", "finished", "stopped", "failed", "crashed"]
    assert run_state(run, {"state": "stopped"}) is RunState.STOPPED
    assert run_state(run, {"state": "running"}) is RunState.CRASHED  # nobody holds the lock
    assert json.loads(json.dumps({"state": RunState.FAILED})) == {"state": "failed"}


@pytest.mark.parametrize(
    "engine_fails, failure, resumes",
    [(DataError("engine.train: the file went away"), "input", False), (OSError("a disk error"), "fault", True)],
)
def test_a_failure_records_its_kind_and_only_an_input_error_is_not_offered_a_resume(
    tmp_path, monkeypatch, engine_fails, failure, resumes
):
    """Whether a resume can help is decided from the failure's kind that status.json records, not from
    the error's text: an error in the preset or its data meets a resume again; anything else does not."""
    from collapse_tui.engines.gaussian import GaussianEngine

    def fit(*args, **kwargs):
        raise engine_fails

    monkeypatch.setattr(GaussianEngine, "fit", fit)
    rundir, state = run_loop(tmp_path, "gaussian-quick", [])
    status = rundir.read_status()
    assert (state, status["failure"]) == (RunState.FAILED, failure)
    assert resumable(status["state"], status["failure"]) is resumes
    assert not resumable(RunState.FINISHED, None) and resumable(RunState.STOPPED, None)


def test_a_status_with_an_unknown_failure_kind_is_refused(run):
    run.status_path.write_text(json.dumps({"state": "failed", "failure": "bad luck"}))
    with pytest.raises(RunDirError, match="failure 'bad luck' is not one of input, fault"):
        run.read_status()

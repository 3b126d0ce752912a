"""What the thread choice withstands: a machine busy with other work. A torch run takes the cores that are
free when it starts (not torch's default, every core), says so in one line, keeps the count when it
resumes (the same rows), and gives way to the variables a user sets; `--workers N` shares the same
choice among its processes."""

from __future__ import annotations

import io
import json
import os
import sys
import time

import pytest
from conftest import kill_spawned, spawn

from collapse_tui import batch, seed_workers, threads
from collapse_tui.events import GenerationDone
from collapse_tui.loop import Control, run
from collapse_tui.preset_files import load_preset
from collapse_tui.rundir import RunDir
from collapse_tui.runlog import RunLog
from collapse_tui.threads import choose

VARS = ("COLLAPSE_TUI_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@pytest.mark.parametrize(
    "cpus, load, own, env, processes, kept, count, words",
    [
        # free cores: the affinity less the others' load, to the nearest core, shared among processes
        (
            2,
            3.9,
            0.0,
            {},
            1,
            None,
            1,
            "threads: 1 (2 cores, load 3.9 from other work; COLLAPSE_TUI_THREADS sets another)",
        ),
        (2, 0.4, 0.0, {}, 1, None, 2, "threads: 2 (2 cores, load 0.4 from"),
        (2, 0.6, 0.0, {}, 1, None, 1, "threads: 1 (2 cores, load 0.6 from"),
        (16, 0.0, 0.0, {}, 1, None, 16, "threads: 16 (16 cores, load 0.0 from"),
        (16, 4.2, 0.0, {}, 3, None, 4, "threads: 4 in each of 3 processes (16 cores, load 4.2 from"),
        (4, 9.0, 0.0, {}, 4, None, 1, "threads: 1 in each of 4 processes"),
        # the load this process itself made is not another's
        (8, 6.0, 2.0, {}, 1, None, 4, "threads: 4 (8 cores, load 4.0 from"),
        (8, 1.0, 3.0, {}, 1, None, 8, "threads: 8 (8 cores, load 0.0 from"),
        # the user's variables; a resumed run keeps its count, over all but COLLAPSE_TUI_THREADS
        (2, 3.9, 0.0, {"COLLAPSE_TUI_THREADS": "3"}, 1, 2, 3, "threads: 3 (from COLLAPSE_TUI_THREADS=3)"),
        (2, 3.9, 0.0, {"OMP_NUM_THREADS": "4"}, 1, None, 4, "threads: 4 (from OMP_NUM_THREADS=4)"),
        (2, 3.9, 0.0, {"MKL_NUM_THREADS": " 5 "}, 2, None, 5, "threads: 5 in each of 2 processes (from MKL_NUM"),
        (2, 3.9, 0.0, {"OMP_NUM_THREADS": "4"}, 1, 2, 2, "threads: 2 (as when this run started, for the same rows;"),
        (8, 7.5, 0.0, {}, 1, 6, 6, "threads: 6 (as when this run started"),
        # what is not a count of threads is said to be ignored, in the same line
        (2, 0.0, 0.0, {"COLLAPSE_TUI_THREADS": "0"}, 1, None, 2, "another); COLLAPSE_TUI_THREADS='0' ignored"),
        (2, 0.0, 0.0, {"OMP_NUM_THREADS": "4,2", "MKL_NUM_THREADS": "1"}, 1, None, 1, "MKL_NUM_THREADS=1); OMP_NUM_"),
        (2, 3.9, 0.0, {"COLLAPSE_TUI_THREADS": "99999"}, 1, None, 1, "'99999' ignored: not a whole number from 1 to"),
        (2, 3.9, 0.0, {"COLLAPSE_TUI_THREADS": ""}, 1, None, 1, "threads: 1 (2 cores"),
        (2, 3.9, 0.0, {"COLLAPSE_TUI_THREADS": "x"}, 1, 2, 2, "sets another); COLLAPSE_TUI_THREADS='x' ignored"),
    ],
)
def test_threads_are_the_free_cores_unless_the_user_or_the_runs_start_says(
    cpus, load, own, env, processes, kept, count, words
):
    chosen = choose(cpus, load, own, env, processes, kept)
    assert chosen.count == count
    assert words in chosen.line and "\n" not in chosen.line


@pytest.mark.parametrize(
    "load, busy, count, words",
    [
        # two processes started seconds ago: the 1-minute load average has not seen them yet, the cores busy now
        (0.2, 2.0, 1, "threads: 1 (2 cores, load 2.0 from other work"),
        (0.3, 1.6, 1, "threads: 1 (2 cores, load 1.6 from other work"),
        (0.2, 0.1, 2, "threads: 2 (2 cores, load 0.2 from other work"),
        # work that just ended: the load average still counts it
        (1.7, 0.0, 1, "threads: 1 (2 cores, load 1.7 from other work"),
    ],
)
def test_work_started_seconds_ago_counts_before_the_load_average_sees_it(load, busy, count, words):
    chosen = choose(2, load, 0.0, {}, busy=busy)
    assert chosen.count == count and words in chosen.line


def test_the_cores_busy_now_count_a_spinning_process():
    """A process that spins on one core: the cores busy now (other work, measured while this one sleeps) count
    at least most of that core, and never more cores than there are."""
    spinner = spawn([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # started
        busy = [threads.busy_now() for _ in range(3)]
    finally:
        kill_spawned([spinner])
    assert 0.8 <= max(busy) <= threads.cores() + 0.3, busy


@pytest.fixture
def busy(monkeypatch) -> None:
    """A 16-core machine with 13 cores' worth of other work (the load figure injected), none of it ours,
    and no variable set."""
    for var in VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(os, "getloadavg", lambda: (13.0, 13.0, 13.0))
    monkeypatch.setattr(threads, "own_load", lambda: 0.0)


TINY_VAE = [
    "experiment.seeds=1",
    "experiment.generations=2",
    "experiment.checkpoint_seconds=0",
    'engine.source="digits"',
    "engine.train_count=100",
    "engine.test_count=50",
    "engine.latent=2",
    "engine.capacity=4",
    "engine.epochs=1",
]


def test_a_torch_run_on_a_busy_machine_sets_torchs_threads_to_the_free_cores_and_keeps_them_on_resume(
    tmp_path, busy, monkeypatch
):
    """16 cores, 13 busy: the run calls torch.set_num_threads(3), says so in one line of its log at its
    start and records it; resumed on a quiet machine, it keeps 3 (the same rows) and the batch output says why."""
    torch = pytest.importorskip("torch")
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)  # recorded; this process's pool is left alone
    rundir = RunDir.create(tmp_path / "runs", load_preset("vae-quick", TINY_VAE))
    control, events = Control(), []

    def emit(ev) -> None:
        events.append(ev)
        if isinstance(ev, GenerationDone):
            control.stop()  # as a first Ctrl-C: stopped at generation 0's checkpoint

    assert run(rundir, emit, control) == "stopped"
    assert calls == [3]
    log = RunLog()
    said = [line for ev in events for line in log.lines(ev) if "threads" in line]
    assert said == ["threads: 3 (16 cores, load 13.0 from other work; COLLAPSE_TUI_THREADS sets another)"]
    assert json.loads(rundir.status_path.read_text())["threads"] == 3

    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # quiet now: 16 free, yet 3 kept
    out = io.StringIO()
    assert batch.run_batch(rundir, resume=True, out=out) == 0
    assert calls == [3, 3]
    said = [line for line in out.getvalue().splitlines() if "threads" in line]
    assert len(said) == 1 and said[0].endswith(
        "threads: 3 (as when this run started, for the same rows; COLLAPSE_TUI_THREADS sets another)"
    )


TWO_CHAINS = """
[experiment]
generations = 2
seeds = 2

[[chains]]
name = "a"
engine = "gaussian"

[[chains]]
name = "b"
engine = "gaussian"
"""


def test_seed_workers_share_the_free_cores_by_the_same_choice(tmp_path, busy, monkeypatch):
    """--workers 2 on 16 cores with 13 busy: 3 free, so 1 thread in each of the 2 workers, in their
    environment (every pool's variable) and in the run's line and status."""
    preset = tmp_path / "two.toml"
    preset.write_text(TWO_CHAINS)
    rundir = RunDir.create(tmp_path / "runs", load_preset(str(preset), []))
    given: list[int] = []
    worker_env = seed_workers.worker_env
    monkeypatch.setattr(seed_workers, "worker_env", lambda n, gpu=None: given.append(n) or worker_env(n, gpu))
    out = io.StringIO()
    assert batch.run_batch(rundir, out=out, workers=2) == 0
    assert given == [1, 1]
    said = [line for line in out.getvalue().splitlines() if "threads" in line]
    assert len(said) == 1
    assert " threads: 1 in each of 2 processes (16 cores, load 13.0 from other work; COLL" in said[0]
    assert json.loads(rundir.status_path.read_text())["threads"] == 1

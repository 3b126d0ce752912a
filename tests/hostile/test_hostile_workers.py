"""What `--workers N` on a single run withstands: a seed worker that dies, or freezes, in the middle of
sending its generation's result (as an out-of-memory kill does while it writes a large model).

The choreography is deterministic: the run's parent is frozen (SIGSTOP) while a worker computes, so the
worker's result (megabytes) fills the pipe and its write blocks half done; the test sees that write in
/proc and only then kills or freezes the worker and lets the parent go on."""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collapse_tui.cli import main
from collapse_tui.rundir import RunDir

# two batched chains: two groups of seeds, so --workers 2 gives each worker one; a chain's samples
# (2 seeds x 200,000 x 2 float64, 6.4 MB) are far more than a pipe holds
PRESET = """
[experiment]
generations = 6
seeds = 2
checkpoint_seconds = 0

[data]
mode = "replace"

[[chains]]
name = "a"
engine = "gaussian"
dim = 2
samples = 200000

[[chains]]
name = "b"
engine = "gaussian"
dim = 2
samples = 200000
"""
ROWS_PER_GENERATION = 4  # 2 chains x 2 seeds
DEADLINE = 60.0  # seconds: generous on a loaded machine; a hang is for ever
# every process of these runs, workers and the one-process reference alike, with one thread per pool,
# so that their rows are the same to the last bit
ENV = {"COLLAPSE_TUI_THREADS": "1"} | dict.fromkeys(
    ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"), "1"
)


@pytest.fixture
def env(monkeypatch) -> dict[str, str]:
    """ENV in this process too (a resume runs here) and in what it starts."""
    for var, value in ENV.items():
        monkeypatch.setenv(var, value)
    return dict(os.environ)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts, each in its own session: their groups are killed whatever happens."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the run's workers are in its group
        proc.wait()


def batch(preset: Path, runs: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "collapse_tui", "--batch", str(preset), "--runs-dir", str(runs), *args]


def tasks(pid: int) -> dict[int, str]:
    """tid -> the kernel function it sleeps in ('' when it runs or is gone)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out[int(task.name)] = task.joinpath("wchan").read_text()
        except (OSError, ValueError):
            continue
    return out


def workers_of(pid: int) -> list[int]:
    """pid's spawned worker processes (multiprocessing's resource tracker left out)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            out.append(int(stat.parent.name))
    return out


def writing(pid: int) -> bool:
    """One of pid's threads is blocked writing into a full pipe."""
    return any("pipe_write" in w for w in tasks(pid).values())


def idle(pid: int) -> bool:
    """pid's main thread waits for its next task (reading its task pipe), and none of its threads writes."""
    return "pipe_read" in tasks(pid).get(pid, "pipe_read") and not writing(pid)


def metrics_rows(runs: Path) -> int:
    found = list(runs.glob("[!.]*/metrics.jsonl")) if runs.exists() else []
    return found[0].read_bytes().count(b"\n") if found else 0


def freeze_parent_while_a_worker_writes(run: subprocess.Popen, runs: Path) -> int:
    """Once generation 0 is checkpointed: the parent frozen while a worker's write of its result into the
    full pipe is blocked half done. Returns that worker's pid (the parent stays frozen)."""
    deadline = time.monotonic() + DEADLINE
    frozen = False
    while True:
        assert run.poll() is None, "the run ended before a worker was caught writing"
        assert time.monotonic() < deadline, "no worker was caught writing its result"
        workers = workers_of(run.pid)
        if frozen:
            for pid in workers:
                if writing(pid):
                    return pid
            if all(idle(pid) for pid in workers):  # frozen between generations: let it hand out the next
                os.kill(run.pid, signal.SIGCONT)
                frozen = False
        elif len(workers) == 2 and metrics_rows(runs) >= ROWS_PER_GENERATION and not all(map(idle, workers)):
            os.kill(run.pid, signal.SIGSTOP)
            frozen = True
        time.sleep(0.001)


@contextlib.contextmanager
def pipe_written_by(worker: int) -> Iterator[Callable[[], int]]:
    """How many bytes wait in the pipe that the worker's blocked write goes into (the fd its syscall names)."""
    (fd,) = {
        int(task.joinpath("syscall").read_text().split()[1], 16)
        for task in Path(f"/proc/{worker}/task").iterdir()
        if "pipe_write" in task.joinpath("wchan").read_text()
    }
    probe = os.open(f"/proc/{worker}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)  # reads nothing: FIONREAD only

    def waiting() -> int:
        n = array.array("i", [0])
        fcntl.ioctl(probe, termios.FIONREAD, n)
        return n[0]

    try:
        yield waiting
    finally:
        os.close(probe)


def wait_exit(proc: subprocess.Popen, what: str) -> int:
    try:
        return proc.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run hung {what}")


@pytest.fixture(scope="module")
def preset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("preset") / "two-chains.toml"
    path.write_text(PRESET)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, preset: Path) -> bytes:
    """The rows of the run in one process, uninterrupted."""
    runs = tmp_path_factory.mktemp("reference") / "runs"
    env = dict(os.environ) | ENV
    done = subprocess.run(batch(preset, runs), env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    (run,) = runs.iterdir()
    return (run / "metrics.jsonl").read_bytes()


def test_a_worker_killed_while_it_sends_its_result_fails_the_run_at_once_and_it_resumes_to_the_same_rows(
    tmp_path, preset, env, started, reference
):
    """The worker is SIGKILLed half way through writing its result: the run ends within seconds with one
    line naming the dead worker and its signal, status "failed", its lock free, and --resume (with workers)
    gives the uninterrupted run's rows."""
    runs = tmp_path / "runs"
    run = subprocess.Popen(
        batch(preset, runs, "--workers", "2"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    started.append(run)
    worker = freeze_parent_while_a_worker_writes(run, runs)
    os.kill(worker, signal.SIGKILL)
    os.kill(run.pid, signal.SIGCONT)
    assert wait_exit(run, "after its worker was killed") == 1
    err = run.stderr.read().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("collapse-tui: failed: WorkerDied: seed worker"), err
    assert f"(pid {worker})" in err[0] and "killed by SIGKILL" in err[0]
    (path,) = runs.iterdir()
    rundir = RunDir(path)
    status = json.loads(rundir.status_path.read_text())
    assert status["state"] == "failed" and "killed by SIGKILL" in status["error"]
    assert status["checkpoint_generation"] >= 0
    assert not rundir.writer_alive()
    assert main(["--batch", "--resume", str(path), "--workers", "2"]) == 0
    assert rundir.metrics_path.read_bytes() == reference


def test_sigterm_stops_a_run_whose_worker_froze_while_it_sent_its_result(tmp_path, preset, env, started, reference):
    """The worker is frozen (SIGSTOP) half way through writing its result, and the parent has read all that
    came: the first SIGTERM still stops the run at its checkpoint (exit 143, status "stopped"), its workers
    end, and --resume gives the same rows."""
    runs = tmp_path / "runs"
    run = subprocess.Popen(
        batch(preset, runs, "--workers", "2"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    started.append(run)
    worker = freeze_parent_while_a_worker_writes(run, runs)
    workers = workers_of(run.pid)
    with pipe_written_by(worker) as waiting:
        os.kill(worker, signal.SIGSTOP)
        os.kill(run.pid, signal.SIGCONT)
        deadline = time.monotonic() + DEADLINE
        while waiting():
            assert time.monotonic() < deadline, "the parent did not read what the frozen worker wrote"
            time.sleep(0.001)
    os.kill(run.pid, signal.SIGTERM)
    assert wait_exit(run, "after one SIGTERM") == 128 + signal.SIGTERM
    assert "stopping (SIGTERM)" in run.stdout.read()
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "a worker outlived its run"
    (path,) = runs.iterdir()
    rundir = RunDir(path)
    assert json.loads(rundir.status_path.read_text())["state"] == "stopped"
    assert main(["--batch", "--resume", str(path), "--workers", "2"]) == 0
    assert rundir.metrics_path.read_bytes() == reference

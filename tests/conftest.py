"""Shared fixtures and helpers of the suite.

Processes: start every child process with `spawn` (subprocess.Popen's arguments; it runs in its own session,
so its process group holds it and whatever it starts) or `run_process` (the same run to its end, as
subprocess.run, with a timeout). However the test ends (passed, failed, interrupted), its teardown SIGKILLs
each spawned process group and waits for it. Then a guard fails the test (an error at teardown) if a process
it started is still alive by any other way, after killing it: a leaked child cannot come back silently.
Processes started in a module-scoped fixture are killed at the end of the first test that uses it.

    from conftest import run_process, spawn

    proc = spawn([sys.executable, "-m", "collapse_tui", "--batch", ...], cwd=tmp_path, stdout=subprocess.PIPE)
    done = run_process([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

Files: write under tmp_path (or tmp_path_factory). pyproject.toml keeps the temporary folders of failed
tests only, of the last two sessions.
"""

from __future__ import annotations

import os

# One thread per process: under pytest-xdist torch's pool would otherwise oversubscribe the machine (OpenMP
# spin-waiting then slows training tenfold), and without a fixed count a torch run's threads follow the
# machine's load (collapse_tui/threads.py), so two runs a test compares could differ in their last bits.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import asyncio
import contextlib
import functools
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

# The suite started under nohup, or in the background of a shell without job control (SIGINT ignored),
# would hand those signals ignored to every run it starts, and a run keeps a signal ignored at start
# ignored (stopsignals.py): the tests of hang-ups and Ctrl-C would then test nohup. Each test that wants
# a signal ignored ignores it itself.
signal.signal(signal.SIGHUP, signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.default_int_handler)

from collapse_tui import batch  # noqa: E402 (SIGHUP reset first: stopsignals reads it at import)
from collapse_tui.cli import main  # noqa: E402
from collapse_tui.preset_files import load_preset  # noqa: E402
from collapse_tui.rundir import RunDir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"  # real subsets shipped with the tests (tests/data/README.md)
WIKI = DATA / "wikitext-2"
MNIST = DATA / "mnist"
# the OPT tests' text: WikiText-2's validation split trains, its test split tests
WIKI_TRAIN, WIKI_TEST = str(WIKI / "valid.txt"), str(WIKI / "test.txt")

pytest_plugins = ("pytester",)  # tests/hostile/test_hostile_hygiene.py runs whole pytest sessions

GRACE = 10.0  # seconds a process left behind gets to end by itself before the guard kills it
# processes that outlive a test by design: multiprocessing's resource tracker lives as long as this process,
# the gmm engine's compile_aside process (its own session) finishes filling numba's kernel cache
EXPECTED = (b"multiprocessing.resource_tracker", b"compile_second_share")
CACHE = pytest.StashKey[str]()  # the session's XDG_CACHE_HOME
_spawned: list[subprocess.Popen] = []  # started by spawn and not yet killed, each the leader of its group


def spawn(args: Sequence[str] | str, **kwargs) -> subprocess.Popen:
    """subprocess.Popen(args, **kwargs) in a new session: the test's teardown kills its process group."""
    proc = subprocess.Popen(args, start_new_session=True, **kwargs)
    _spawned.append(proc)
    return proc


def run_process(
    args: Sequence[str] | str, *, timeout: float = 300, check: bool = False, capture_output: bool = False, **kwargs
) -> subprocess.CompletedProcess:
    """subprocess.run through spawn: when it ends, times out or fails, its whole process group is killed."""
    if capture_output:
        kwargs |= {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = spawn(args, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_spawned([proc])
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, args, out, err)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields from the state on (state, ppid, pgrp, ..., starttime at 19); None once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _in_groups(pgids: set[int]) -> list[int]:
    """The live processes of these process groups."""
    found = []
    for entry in os.scandir("/proc"):
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields and fields[0] != "Z" and int(fields[2]) in pgids:
            found.append(int(entry.name))
    return found


def children(pid: int, marker: bytes) -> list[int]:
    """pid's child processes whose command line holds marker (e.g. b"spawn_main": multiprocessing's workers,
    its resource tracker left out)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == pid and marker in cmdline:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def all_end(pids: list[int], timeout: float = 30) -> bool:
    """Whether every process of pids has ended (or is a zombie) within timeout seconds."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not any(alive(pid) for pid in pids)


def kill_spawned(procs: list[subprocess.Popen]) -> None:
    """SIGKILL each spawned process's group; wait for the process, then (GRACE at most) for its group."""
    for proc in procs:
        # a process not waited for holds its pid, so the group's number is ours; once waited for, the number
        # may name another process's group: kill it only while no process has that pid
        if proc.returncode is None or _stat(proc.pid) is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()  # in case it left its group
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe:
                pipe.close()
        with contextlib.suppress(ValueError):
            _spawned.remove(proc)
    deadline = time.monotonic() + GRACE
    while _in_groups({p.pid for p in procs}) and time.monotonic() < deadline:
        time.sleep(0.05)


def _descendants() -> dict[tuple[int, str], str]:
    """This process's live descendants: (pid, start time) -> command line."""
    found, todo = {}, [os.getpid()]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    todo += [int(child) for child in Path(task.path, "children").read_text().split()]
        fields = _stat(pid) if pid != os.getpid() else None
        with contextlib.suppress(OSError):
            if fields and fields[0] != "Z":
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if not any(e in cmd for e in EXPECTED):
                    found[(pid, fields[19])] = cmd.replace(b"\0", b" ").decode(errors="replace")[:200]
    return found


def _left_behind(before: set) -> dict[tuple[int, str], str]:
    """Descendants started since `before` that are still alive after GRACE; SIGKILLed and reaped."""
    deadline = time.monotonic() + GRACE
    while (left := {k: cmd for k, cmd in _descendants().items() if k not in before}) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid, _ in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return left


@pytest.fixture(autouse=True)
def _processes_end_with_their_test():
    """Kill the process groups the test spawned, whatever happened; fail the test if a process it started
    some other way is still running (and kill that one too)."""
    before = set(_descendants())
    yield
    kill_spawned(list(_spawned))
    if left := _left_behind(before):
        lines = "\n".join(f"  pid {pid}: {cmd}" for (pid, _), cmd in left.items())
        pytest.fail(
            f"the test left {len(left)} process(es) running (killed now; start them with conftest.spawn):\n{lines}",
            pytrace=False,
        )


# The slowest modules, slowest first (each one's setups and calls summed by --durations=0 on 2 cores).
# pytest-xdist's loadfile hands a worker the next module in collection order when it runs out (pyproject.toml
# turns off its reordering by test count, which put these few-test modules last): the long ones first, the
# short ones fill in, and no worker ends minutes after the other behind a slow module started late.
SLOWEST_FIRST = (
    "test_vae_collapse.py",
    "test_opt125m_shape.py",
    "test_opt_fast.py",
    "test_opt.py",
    "test_mitigations_numpy.py",
    "test_quick_demos.py",
    "test_resume.py",
    "test_gaussian_theory.py",
    "test_faults.py",
    "test_seed_workers.py",
    "test_hostile_ray.py",
    "test_mitigations_torch.py",
    "test_report.py",
    "test_theory.py",
    "test_tui.py",
    "test_sweep.py",
    "test_chains.py",
    "test_hostile_workers.py",
    "test_gmm_engine.py",
    "test_ngram_theory.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_configure(config: pytest.Config) -> None:
    """The caches (XDG_CACHE_HOME: collapse-tui's classifiers and numba kernels, Hugging Face's locks,
    matplotlib's fonts; torch inductor's kernels, ~100 MB a compiled test; Ray's session folders) are a folder of
    this session's, made by the controller before xdist starts its workers (they inherit it) and removed at
    its end: tests write nothing outside their folders, and a machine that ran the suite before tests what
    CI tests."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        cache = config.stash[CACHE] = tempfile.mkdtemp(prefix="ctt-")  # short: Ray's sockets
        os.environ["XDG_CACHE_HOME"] = cache
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache, "torchinductor")
        if len(cache) <= 40:  # Ray's sessions (it adds ray/; its sockets' paths must stay under 108 bytes)
            os.environ["RAY_TMPDIR"] = cache


def pytest_unconfigure(config: pytest.Config) -> None:
    if CACHE in config.stash:
        shutil.rmtree(config.stash[CACHE], ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    kill_spawned(list(_spawned))  # a module fixture's processes when no test ran after it


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel` builds from this checkout, built from a copy of what the build reads (so
    that parallel workers share no setuptools build/ folder and the checkout gets none)."""
    src = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    for name in ("collapse_tui", "engines", "presets"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    (path,) = out.glob("*.whl")
    return path


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the package as `pip install` lays it out (the wheel unpacked): collapse_tui/
    with engines/ and presets/ in it."""
    site = tmp_path_factory.mktemp("site")
    zipfile.ZipFile(wheel).extractall(site)
    return site


@pytest.fixture
def no_hub(monkeypatch):
    """The hub at a port where nothing listens (refused at once, no network touched), probed afresh."""
    from collapse_tui.engines import hub

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    hub.unreachable.cache_clear()
    yield
    hub.unreachable.cache_clear()


@pytest.fixture
def write_preset(tmp_path: Path):
    """Write a preset file in tmp_path and return its path."""

    def write(text: str | bytes, name: str = "preset.toml") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return write


def run_preset(
    tmp_path: Path, preset: str, *overrides: str, detector: bool = False
) -> dict[int, dict[str, np.ndarray]]:
    """Run a preset headless; return generation -> metric -> array over seeds. The laws tested with it run
    thousands of seeds: detector_auc is measured only when asked (a filter or reweight measures it anyway)."""
    sets = [*overrides, *([] if detector else ["data.detector_auc=false"])]
    rundir = RunDir.create(tmp_path / "runs", load_preset(preset, sets))
    with open(tmp_path / "out.txt", "w") as out:
        assert batch.run_batch(rundir, out=out) == 0
    by_gen: dict[int, dict[str, list]] = {}
    for line in rundir.metrics_path.read_text().splitlines():
        row = json.loads(line)
        cols = by_gen.setdefault(row["generation"], {})
        for k, v in row.items():
            cols.setdefault(k, []).append(np.inf if v is None else v)
    return {g: {k: np.array(v) for k, v in cols.items() if k != "component_stds"} for g, cols in by_gen.items()}


def make_run(root: Path, preset: str, *sets: str) -> Path:
    """Run a preset with the batch CLI in a fresh runs folder under root; return the run directory."""
    runs = root / f"runs-{len(list(root.iterdir()))}"
    args = ["--batch", preset, "--runs-dir", str(runs)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    (path,) = runs.iterdir()
    return path


def run_loop(tmp_path: Path, preset: str, overrides: list[str], stop_after: int | None = None, resume_dir=None):
    """Run a preset through the loop in this process; stop after a generation, or resume a run directory.
    Returns (run directory, final state)."""
    from collapse_tui.testing import run_in_process

    rundir = resume_dir or RunDir.create(tmp_path / "runs", load_preset(preset, overrides))
    return rundir, run_in_process(rundir, stop_after, resume=resume_dir is not None)


def tiny_opt(**params: object):
    """An OPT engine on the tiny config and the first 20,000 characters of the WikiText-2 files."""
    from collapse_tui.engines.lm import OPTEngine

    base = dict(model="tiny", train=WIKI_TRAIN, test=WIKI_TEST, max_chars=20000, block_size=16, vocab_size=500)
    return OPTEngine({**base, **params})


def run_async(test):
    """No async pytest plugin here: run each Pilot test in its own event loop."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


def running_past(runs: Path, generation: int = 0) -> RunDir | None:
    """The one run under `runs` once its status (a heartbeat every few seconds) says that it runs and has
    finished `generation`; None before. A fixed sleep is not enough: a cold numba cache makes a first
    generation take seconds on a loaded CI box."""
    found = list(runs.glob("[!.]*")) if runs.exists() else []
    if len(found) != 1:
        return None
    status = RunDir(found[0]).read_status()
    return RunDir(found[0]) if status.get("state") == "running" and status.get("generation", -1) >= generation else None


async def wait_for(pilot, condition, what: str = "condition", timeout: float = 30.0) -> None:
    """Let the app run until condition() holds (bounded: a hung UI fails the test, not CI)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)

"""The suite kills what it starts and bounds what it writes, even when a test fails (issue 27, item 17):
three failed Ctrl-C tests once left 100,000-generation runs going for 17 minutes (1.3 GB each), and the
suite left 2.8 GB in the temporary folder. Each test here runs a small pytest session with the suite's
own conftest.py and pyproject.toml, and checks what that session leaves behind."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from collapse_tui import rundir
from collapse_tui.cli import main
from collapse_tui.preset_files import load_preset
from collapse_tui.rundir import RunDir

TESTS = Path(__file__).resolve().parents[1]
SLEEPER = """
import subprocess, sys, time
if sys.argv[1:] == ["parent"]:  # a process that starts its own, as a batch run starts its seed workers
    print(subprocess.Popen([sys.executable, __file__, "child"]).pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_sleepers(folder: Path) -> None:
    """Whatever an inner session left of its sleepers (on a suite without the guard), killed."""
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if b"sleeper.py" in (proc / "cmdline").read_bytes() and (proc / "cwd").resolve() == folder.resolve():
                os.kill(int(proc.name), signal.SIGKILL)


@pytest.fixture
def session(pytester: pytest.Pytester):
    """run(test source) -> the outcome of a pytest session over it, with this suite's conftest.py (its guard
    waiting 1 s, not 10, for a process to end by itself) and pyproject.toml, and sleeper.py at hand."""
    pytester.makeconftest((TESTS / "conftest.py").read_text() + "\nGRACE = 1.0\n")
    shutil.copy(TESTS.parent / "pyproject.toml", pytester.path)
    (pytester.path / "sleeper.py").write_text(SLEEPER)

    def run(source: str) -> pytest.RunResult:
        pytester.makepyfile(test_inner=source)
        return pytester.run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_inner.py", timeout=120)

    yield run
    kill_sleepers(pytester.path)


FAILS_WITH_A_GROUP_RUNNING = """
import subprocess, sys
from pathlib import Path
from conftest import spawn


def test_fails_while_its_process_and_their_child_run():
    parent = spawn([sys.executable, "sleeper.py", "parent"], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    Path("pids").write_text(f"{parent.pid} {child}")
    raise RuntimeError("the test body fails")


def test_next():
    pids = [int(p) for p in Path("pids").read_text().split()]
    states = [Path(f"/proc/{p}/stat").read_text().split()[2] if Path(f"/proc/{p}").exists() else "gone" for p in pids]
    assert all(s in ("gone", "Z") for s in states), states
"""


def test_a_failing_test_s_processes_and_their_children_are_killed_at_its_teardown(session, pytester):
    """A test starts a process that starts another, then raises: by the next test both are dead."""
    result = session(FAILS_WITH_A_GROUP_RUNNING)
    result.assert_outcomes(failed=1, passed=1)
    pids = [int(p) for p in (pytester.path / "pids").read_text().split()]
    assert len(pids) == 2 and not [p for p in pids if alive(p)]


FORGETS_A_PROCESS = """
import subprocess, sys
from pathlib import Path


def test_starts_a_process_without_spawn_and_forgets_it():
    Path("pid").write_text(str(subprocess.Popen([sys.executable, "sleeper.py", "alone"]).pid))
"""


def test_a_process_a_test_leaves_running_fails_that_test_and_is_killed(session, pytester):
    """A test that passes but leaves a process running (started without spawn) gets an error at its
    teardown naming the process, and the process is dead when the session ends."""
    result = session(FORGETS_A_PROCESS)
    result.assert_outcomes(passed=1, errors=1)
    pid = int((pytester.path / "pid").read_text())
    result.stdout.fnmatch_lines(["*the test left 1 process(es) running*", f"*pid {pid}: *sleeper.py alone*"])
    assert not alive(pid)


WRITES_FILES = """
def test_passes(tmp_path):
    (tmp_path / "big").write_bytes(bytes(2**22))


def test_fails(tmp_path):
    (tmp_path / "big").write_bytes(bytes(2**22))
    assert False
"""


def test_the_temporary_folder_keeps_only_failed_tests_of_two_sessions(session):
    """Three sessions, each with a passing and a failing test writing 4 MB: what stays is the failing
    test's folder of the last two sessions, 8 MB in all."""
    for _ in range(3):
        session(WRITES_FILES).assert_outcomes(passed=1, failed=1)
    root = Path(os.environ["PYTEST_DEBUG_TEMPROOT"])  # where pytester's inner sessions make their folders
    files = [p for p in root.rglob("big") if p.is_file()]
    assert sorted(p.parent.name for p in files) == ["test_fails0", "test_fails0"]
    assert len({p.parents[1] for p in files}) == 2  # two sessions
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 2 * 2**22 + 2**20


SWEEP = """
[experiment]
engine = "gaussian"
generations = 3
seeds = 2

[engine]
samples = 20

[sweep]
"engine.samples" = [20, 30, 40, 50]
"""


def test_a_sweep_or_run_folder_that_cannot_be_finished_leaves_nothing_in_the_runs_folder(tmp_path, monkeypatch, capsys):
    """The disk fills up while a sweep's third cell is made: one line, exit 2, and no hidden half-made sweep
    folder stays in the runs folder; nor a run's when a Ctrl-C comes while its folder is made."""
    real, writes = rundir.atomic_write, []

    def full_at_the_third_cell(path, data, *args, **kwargs):
        writes.append(path)
        if len(writes) > 2 * 4:  # a cell's run folder takes 4 writes: preset.toml twice, metrics, status
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, *args, **kwargs)

    monkeypatch.setattr(rundir, "atomic_write", full_at_the_third_cell)
    (tmp_path / "grid.toml").write_text(SWEEP)
    runs = tmp_path / "runs"
    assert main(["--batch", str(tmp_path / "grid.toml"), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err, err
    assert sorted(p.name for p in runs.iterdir()) == []

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "atomic_write", real)  # space freed
    monkeypatch.setattr(RunDir, "write_status", interrupted)
    with pytest.raises(KeyboardInterrupt):
        RunDir.create(runs, load_preset("gaussian-quick"))
    assert sorted(p.name for p in runs.iterdir()) == []

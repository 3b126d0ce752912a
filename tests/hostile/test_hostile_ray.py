"""What the tool withstands with `--executor ray`: a malformed or unreachable `--address` is one line and
exit 2 within seconds, before any sweep directory exists and without starting Ray; Ctrl-C and SIGTERM
stop the cells after a checkpoint ("stopped", resumable: a resume finishes them), with no traceback; a
sweep started with SIGINT ignored (`cmd &`) keeps ignoring it and still stops on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from collapse_tui.cli import main
from collapse_tui.rundir import RunDir
from collapse_tui.sweepdir import SweepDir

GENERATIONS = 1500  # the cells are frozen (SIGSTOP) at their first checkpoint, 0.1 s in
SWEEP = f"""
[experiment]
engine = "gaussian"
generations = {GENERATIONS}
seeds = 2
checkpoint_seconds = 0.1

[data]
mode = "replace"

[engine]
dim = 1
samples = 20

[sweep]
"engine.samples" = [20, 21]
"""


def cli(tmp_path: Path, *args: str, ignore: signal.Signals | None = None) -> subprocess.Popen:
    """`collapse-tui --batch ...` in a session of its own (killed by the caller), `ignore` set to SIG_IGN."""
    return subprocess.Popen(
        [sys.executable, "-m", "collapse_tui", "--batch", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=(lambda: signal.signal(ignore, signal.SIG_IGN)) if ignore else None,
    )


def kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on return: nothing listens there


@pytest.mark.parametrize(
    "address, words",
    [
        ("localhost", ["expected HOST:PORT"]),
        ("10.0.0.5:", ["expected HOST:PORT"]),
        ("10.0.0.5:99999", ["expected HOST:PORT"]),
        ("http://10.0.0.5:6379", ["expected HOST:PORT"]),
        (f"127.0.0.1:{unused_port()}", ["cannot reach a Ray cluster there: Connection refused"]),
    ],
    ids=["no-port", "empty-port", "port-out-of-range", "http", "nothing-listens"],
)
def test_a_bad_or_unreachable_ray_address_is_one_line_before_any_sweep(tmp_path, address, words):
    (tmp_path / "sweep.toml").write_text(SWEEP)
    proc = cli(tmp_path, "sweep.toml", "--executor", "ray", "--address", address)
    try:
        _, err = proc.communicate(timeout=60)  # the old code hung here for minutes
    finally:
        kill(proc)
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith(f"collapse-tui: --address {address}") and "Traceback" not in err
    assert all(w in err for w in words), err
    assert not (tmp_path / "runs").exists()


def frozen_when(
    proc: subprocess.Popen, cells: list[RunDir], ready: Callable[[RunDir, dict], bool], deadline: float
) -> list[int]:
    """SIGSTOP each cell's process as soon as ready(cell, status) holds: the cells cannot finish while the
    sweep is signalled, however fast the machine. Returns their pids."""
    pids: dict[Path, int] = {}
    while len(pids) < len(cells):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, [c.read_status() for c in cells]
        for cell in cells:
            status = cell.read_status()
            if cell.path not in pids and ready(cell, status):
                os.kill(status["pid"], signal.SIGSTOP)
                pids[cell.path] = status["pid"]
        time.sleep(0.005)
    return list(pids.values())


def thaw_once_told(pids: list[int], deadline: float) -> None:
    """SIGCONT each frozen cell once its Ray task has sent it SIGTERM (pending while it is stopped)."""
    for pid in pids:
        while not pending(pid) & (1 << (signal.SIGTERM - 1)):
            assert time.monotonic() < deadline, f"no SIGTERM reached cell process {pid}"
            time.sleep(0.01)
        os.kill(pid, signal.SIGCONT)


def pending(pid: int) -> int:
    """The signals pending for a process, as a mask; AssertionError once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        raise AssertionError(f"cell process {pid} was killed before any SIGTERM: it reads crashed") from None
    return int(status.split("ShdPnd:")[1].split()[0], 16)


def stop_sweep(proc: subprocess.Popen, cells: list[RunDir], ready, signals, code: int) -> str:
    """Freeze the running cells, send `signals` to the sweep's session, let the cells go once told to stop;
    the sweep must exit `code` with no traceback and every cell "stopped" at a checkpoint. Returns stdout."""
    deadline = time.monotonic() + 180
    pids = frozen_when(proc, cells, ready, deadline)
    try:
        for sig in signals:
            os.killpg(proc.pid, sig)
        thaw_once_told(pids, deadline)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code and "Traceback" not in err, out + err
    for cell in cells:
        status = cell.read_status()
        assert status["state"] == "stopped" and status["checkpoint_generation"] == status["generation"] >= 0, status
    return out


def test_ray_cells_stop_at_a_checkpoint_on_ctrl_c_and_sigterm_and_resume(tmp_path):
    """(a) Ctrl-C: the cells stop after a checkpoint, exit 130; (b, c) a resume started with SIGINT ignored
    ignores a Ctrl-C and stops on SIGTERM (exit 143), one line, no Ray stack dump; then a resume finishes.
    One local Ray cluster, started here; the sweeps join it by --address."""
    ray = pytest.importorskip("ray")
    (tmp_path / "sweep.toml").write_text(SWEEP)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    procs: list[subprocess.Popen] = []
    try:
        address = ray.get_runtime_context().gcs_address
        procs.append(cli(tmp_path, "sweep.toml", "--runs-dir", "runs", "--executor", "ray", "--address", address))
        deadline = time.monotonic() + 180
        while not list((tmp_path / "runs").glob("[!.]*")):  # not the hidden folder it is made in
            assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].communicate()
            time.sleep(0.01)
        (sweep,) = (tmp_path / "runs").glob("[!.]*")
        cells = [c.rundir for c in SweepDir.open(sweep).cells]

        def checkpointed(cell: RunDir, status: dict) -> bool:
            return status.get("state") == "running" and cell.read_checkpoint() is not None

        out = stop_sweep(procs[0], cells, checkpointed, [signal.SIGINT], 130)
        assert out.count("stopping (SIGINT)") == 1, out
        first = {c.path: c.read_status()["pid"] for c in cells}

        def resumed(cell: RunDir, status: dict) -> bool:
            return status.get("state") == "running" and status.get("pid") != first[cell.path]

        resume = ["--resume", str(sweep), "--executor", "ray", "--address", address]
        procs.append(cli(tmp_path, *resume, ignore=signal.SIGINT))
        out = stop_sweep(procs[1], cells, resumed, [signal.SIGINT, signal.SIGTERM], 128 + signal.SIGTERM)
        assert out.count("stopping (") == 1 and "stopping (SIGTERM)" in out, out  # SIGINT stayed ignored
    finally:
        for proc in procs:
            kill(proc)
        ray.shutdown()  # the cluster's workers, and the cells with them
    assert main(["--batch", "--resume", str(sweep)]) == 0
    for cell in cells:
        rows = [json.loads(line) for line in cell.metrics_path.read_text().splitlines()]
        assert sorted((r["generation"], r["seed"]) for r in rows) == [
            (g, s) for g in range(GENERATIONS) for s in (0, 1)
        ]

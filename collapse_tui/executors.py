"""Who runs a sweep's cells: this process one after another, N local worker processes, or a Ray cluster.

Every cell is an ordinary resumable run, so every executor runs it the same way: resumed from its last
checkpoint (a cell never started resumes from nothing), and a cell already finished is left as it is.
Workers are fresh interpreters (`python -m collapse_tui --batch --resume CELL`), never forks of a
process that loaded numba or torch, with their thread counts (BLAS, OpenMP, numba, torch) set in their
environment before anything loads, so N workers share the cores instead of oversubscribing them. A
worker dies with the process that started it (PR_SET_PDEATHSIG): kill -9 of a sweep leaves no writer
behind, and the kernel frees a dead writer's flock, so a resume can take every cell's lock at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from .batch import EXIT, run_batch
from .checkpoints import check_resumable
from .config import Config, ConfigError
from .engines import engine_class
from .preflight import check_runnable, prefixed
from .records import RunState
from .rundir import RunDir
from .seed_workers import die_with_parent, worker_env
from .stopsignals import handling
from .sweepdir import LOGS, CellRun, SweepDir, open_log
from .threads import run_threads

RAY_RETRIES = 3  # a cell whose worker died is run again this often, each time from its last checkpoint
POLL = 0.2  # seconds between looks at the workers
LOCK_GRACE = 30.0  # seconds a retried Ray task waits for the killed try's cell process to be gone
RAY_CONNECT_TIMEOUT = 5.0  # seconds the host of --address has to accept a connection
# --address: HOST:PORT (the head's address, as `ray start --head` prints it) or ray://HOST:PORT (Ray Client);
# HOST a name, an IPv4 address or a bracketed IPv6 one
RAY_ADDRESS = re.compile(
    r"(?:ray://)?(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})"
)


def start_cell(cell: CellRun, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A worker for one cell, in its own session (a Ctrl-C reaches the sweep, which passes it on)."""
    with open_log(log) as out:
        return subprocess.Popen(
            [sys.executable, "-m", "collapse_tui", "--batch", "--resume", str(cell.rundir.path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_cell_preexec,
        )


def _cell_preexec() -> None:
    die_with_parent()
    # the sweep stops its cells with SIGTERM: the cell must handle it even if the sweep started with it ignored
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def ray_resources(cfg: Config) -> dict[str, int]:
    """What a cell asks of Ray: a CPU, and a GPU when any of its engines runs torch on CUDA (a chain's
    engine as much as the first's)."""
    torch = any(engine_class(name).needs_torch for name in cfg.engine_names)
    return {"num_cpus": 1, "num_gpus": int(torch and cfg.experiment["device"] == "cuda")}


def todo(sweep: SweepDir) -> list[CellRun]:
    """The cells to run: all but the finished ones, each checked as a run's resume is (ConfigError else)."""
    cells = []
    for cell in sweep.cells:
        state, _, _ = cell.state()
        if state == RunState.FINISHED:
            continue
        if state == RunState.RUNNING:
            raise ConfigError(f"sweep cell {cell.name}: another process is running it ({cell.rundir.path})")
        cfg = cell.rundir.config()
        try:
            check_resumable(cell.rundir, cfg)
            check_runnable(cfg)
        except ConfigError as e:
            raise prefixed(f"sweep cell {cell.name}: ", e) from None
        cells.append(cell)
    return cells


def run_sweep(
    sweep: SweepDir,
    workers: int = 1,
    executor: str = "local",
    gpus: list[str] | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the sweep's unfinished cells; print a line per cell and a summary. Exit status: 0 every cell
    finished, 1 a cell failed (the others still ran), 128 + the signal when one stopped the sweep.
    executor "ray" runs them on the cluster that ray_session joined."""
    out = out or sys.stdout
    cells = todo(sweep)
    say = _sayer(out)
    say(
        f"sweep {sweep.name}: {len(sweep.cells) - len(cells)} of {len(sweep.cells)} cells finished, {len(cells)} to run"
    )
    if executor == "ray":
        stopped = run_ray(cells, say)
    elif workers > 1:
        stopped = run_local(cells, workers, gpus or [], sweep.logs, say)
    else:
        stopped = run_here(cells, out)
    return report(sweep, stopped, say)


def run_here(cells: list[CellRun], out: TextIO) -> int:
    """One after another in this process, with the run's own progress display."""
    for cell in cells:
        code = run_batch(cell.rundir, resume=True, out=out)
        cell.rundir.release()  # a finished cell is nobody's to write: the app may open it, a resume take it
        if code >= 128:
            return code
    return 0


def run_local(cells: list[CellRun], workers: int, gpus: list[str], logs: Path, say: Callable[[str], None]) -> int:
    """At most `workers` worker processes at a time; a GPU each, in turn, when gpus are given."""
    threads = run_threads(workers).count
    queue = list(cells)
    running: dict[int, tuple[CellRun, subprocess.Popen]] = {}  # worker slot -> its cell
    stopped_by: list[int] = []

    def on_signal(signum, frame) -> None:
        stopped_by.append(signum)
        queue.clear()
        for _, proc in running.values():  # each stops after a checkpoint (twice: at once)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    with handling(on_signal):
        while queue or running:
            for slot in range(workers):
                if slot not in running and queue:
                    cell = queue.pop(0)
                    gpu = gpus[slot % len(gpus)] if gpus else None
                    proc = start_cell(cell, worker_env(threads, gpu), logs / f"{cell.name}.log")
                    running[slot] = (cell, proc)
                    say(f"cell {cell.name}: started (pid {proc.pid}{f', GPU {gpu}' if gpu else ''})")
            time.sleep(POLL)
            for slot, (cell, proc) in list(running.items()):
                if proc.poll() is not None:
                    del running[slot]
                    say(_ended(cell))
    return 128 + stopped_by[0] if stopped_by else 0


def ray_endpoint(address: str, source: str = "--address") -> tuple[str, int] | None:
    """(host, port) of a Ray address, None for "auto" (the cluster `ray start` runs on this machine, which
    Ray finds itself); ConfigError for any other form."""
    if address == "auto":
        return None
    match = RAY_ADDRESS.fullmatch(address)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ConfigError(
            f"{source} {address}: expected HOST:PORT (the head's address, e.g. 10.0.0.5:6379), ray://HOST:PORT or auto"
        )
    return match["host"].strip("[]"), int(match["port"])


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray, joined before a sweep directory exists and shut down after: the cluster at address (or at
    $RAY_ADDRESS, which Ray reads too), reached within RAY_CONNECT_TIMEOUT seconds (ConfigError else), or
    a local one. A session this process already has open (tests) is used as it is."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs ray: pip install -e '.[ray]'") from None
    if ray.is_initialized():
        yield
        return
    source, target = ("--address", address) if address else ("RAY_ADDRESS", os.environ.get("RAY_ADDRESS"))
    endpoint = ray_endpoint(target, source) if target else None
    if endpoint is not None:
        try:
            socket.create_connection(endpoint, timeout=RAY_CONNECT_TIMEOUT).close()
        except OSError as e:  # refused, no route, an unknown host, or no answer within the timeout
            reason = f"no answer within {RAY_CONNECT_TIMEOUT:g} s" if isinstance(e, TimeoutError) else e.strerror or e
            raise ConfigError(f"{source} {target}: cannot reach a Ray cluster there: {reason}") from None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError) as e:  # "auto" and no cluster here; another version of Ray there
        raise ConfigError(f"{source} {target}: {e}" if target else f"Ray: {e}") from None
    try:
        yield
    finally:
        ray.shutdown()  # a local cluster's processes end with it


def run_ray(cells: list[CellRun], say: Callable[[str], None]) -> int:
    """Cells as Ray tasks (a GPU each for torch engines on cuda); run directories must be on storage that
    every node sees at the same path. A task whose worker died is retried and resumes the cell. The first
    stop signal cancels the tasks: a running cell stops after a checkpoint (ray_cell), a waiting one does
    not start; a second one quits at once (the cells in flight end "crashed", resumable)."""
    import ray

    task = ray.remote(ray_cell)
    refs = {}
    stopped_by: list[int] = []

    def on_signal(signum, frame) -> None:
        if stopped_by:
            raise KeyboardInterrupt
        stopped_by.append(signum)

    with handling(on_signal):
        for cell in cells:
            options = {**ray_resources(cell.rundir.config()), "max_retries": RAY_RETRIES}
            # absolute: a worker's current directory is not this process's (a relative --runs-dir)
            refs[task.options(**options).remote(str(cell.rundir.path.absolute()))] = cell
            say(f"cell {cell.name}: submitted to Ray")
        pending, cancelled = list(refs), False
        while pending:
            if stopped_by and not cancelled:
                name = signal.Signals(stopped_by[0]).name
                say(f"stopping ({name}): the cells save a checkpoint (again to quit at once)")
                for ref in pending:
                    ray.cancel(ref)
                cancelled = True
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL)
            for ref in done:
                line = _ray_ended(ray, ref, refs[ref])
                if line is not None:
                    say(line)
    return 128 + stopped_by[0] if stopped_by else 0


def _ray_ended(ray: Any, ref: Any, cell: CellRun) -> str | None:
    """The line for a cell whose Ray task ended: the cell's state, or why the task raised; None for a task
    cancelled before its cell started."""
    try:
        if ray.get(ref) is None:
            return None
    except ray.exceptions.TaskCancelledError:
        return None
    except ray.exceptions.RayError as e:
        cause = getattr(e, "cause", None) or e  # a RayTaskError carries the task's own exception
        return f"cell {cell.name}: its Ray task failed: {type(cause).__name__}: {cause}".splitlines()[0]
    return _ended(cell)


def ray_cell(path: str) -> int | None:
    """A Ray task: the cell's run in a fresh interpreter with one thread per pool (the task holds one CPU).
    Ray sets CUDA_VISIBLE_DEVICES for a task that holds a GPU; the worker inherits it. ray.cancel (the sweep
    stopped) stops the cell after a checkpoint, or before it starts (None then): its exit status else."""
    cell = CellRun(Path(path).name, {}, RunDir(Path(path)))
    cancelled: list[int] = []
    # Ray cancels a running task through the SIGINT handler of the worker's main thread: this one records it,
    # whatever the worker inherited (with SIGINT ignored, as under `cmd &`, a cancel would do nothing)
    previous = signal.signal(signal.SIGINT, lambda signum, frame: cancelled.append(signum))
    try:
        deadline = time.monotonic() + LOCK_GRACE
        while not cancelled and cell.rundir.writer_alive() and time.monotonic() < deadline:
            time.sleep(POLL)  # a retry: the dead try's cell exits
        if cancelled:
            return None
        proc = start_cell(cell, worker_env(1), Path(path).parent.parent / LOGS / f"{cell.name}.log")
        told = False
        while proc.poll() is None:
            if cancelled and not told:
                proc.terminate()  # SIGTERM: the cell stops after a checkpoint
                told = True
            time.sleep(POLL)
        return proc.returncode
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _ended(cell: CellRun) -> str:
    state, gen, error = cell.state()
    return f"cell {cell.name}: {state} at generation {gen}" + (f": {error}" if error else "")


def _sayer(out: TextIO) -> Callable[[str], None]:
    tty = out.isatty()

    def say(text: str) -> None:
        stamp = "" if tty else time.strftime("%Y-%m-%d %H:%M:%S ")
        with contextlib.suppress(OSError, ValueError):
            print(f"{stamp}{text}", file=out, flush=True)

    return say


def report(sweep: SweepDir, stopped: int, say: Callable[[str], None]) -> int:
    """A line per cell that did not finish, then the sweep's exit status."""
    states = [(cell, *cell.state()) for cell in sweep.cells]
    failed = [c for c, state, _, _ in states if state in (RunState.FAILED, RunState.CRASHED)]
    done = sum(state == RunState.FINISHED for _, state, _, _ in states)
    for cell, state, gen, error in states:
        if state != RunState.FINISHED:
            say(f"  {cell.name}: {state} at generation {gen}" + (f": {error}" if error else ""))
    say(f"sweep {sweep.name}: {done} of {len(states)} cells finished, {len(failed)} failed: {sweep.path}")
    if stopped or done < len(states):
        say(f"resume with: collapse-tui --batch --resume {sweep.path}")
    if stopped:
        return stopped
    return EXIT[RunState.FAILED] if failed or done < len(states) else 0

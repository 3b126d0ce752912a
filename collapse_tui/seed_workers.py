"""A run's groups of seeds in N worker processes (`--workers N` on a single run), for engines that train
one seed at a time: each generation, every group trains, samples and is measured in its worker, then the
loop in the parent mixes the next data, commits the generation and checkpoints as with one process.

Group k lives in worker k % N for the whole run. The worker keeps the group's real data, reference and
model between generations, so the parent ships them once (at the start, or from a checkpoint on resume);
each generation it ships the group's training data and random states and gets back the model (the parent
checkpoints it), the samples, the rows and the random states: the rows equal, row for row, those of one
process with the workers' thread counts. Both ways they travel as pickled bytes, copies: torch's own
queue pickling would share a model's memory between the processes (and the next generation's training
would reach the parent's copy).
Workers write only what the group writes with one process (its reference folder at generation 0, its
sample previews); metrics rows and checkpoints are the parent's alone, so kill -9 and resume work as ever.

Each worker answers through a pipe of its own whose writing end only it holds, read whole messages at a
time by a thread of the parent's: a worker that dies, even half way through a message (an out-of-memory
kill while it sends a model), ends its pipe, and the loop, which only ever waits with a timeout, fails the
generation at once (WorkerDied; the run is resumable). A queue shared by the workers would not do: its
reader blocks for ever on the dead worker's half message, and its lock, held by the dead writer, keeps the
others' messages out.

Workers are spawned interpreters (never forks of a process that loaded torch or numba) whose environment
holds their thread counts (the run's choice, threads.py: the free cores // N, for BLAS, OpenMP, numba and
torch) and, with --gpus, their GPU in CUDA_VISIBLE_DEVICES, from before anything loads. A
worker dies with the parent (PR_SET_PDEATHSIG), so a killed run leaves no writer behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from .chains import Chain, Group, Step, rng_from
from .config import Config, ConfigError, DataSection, chain_specs
from .engines import engine_class
from .engines.base import NOTE
from .generation import one_generation
from .rundir import RunDir

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
PR_SET_PDEATHSIG = 1
POLL = 0.1  # seconds between looks at stop, pause and the workers' health while a generation runs
EXIT_WAIT = 5.0  # seconds a worker whose pipe ended has to be seen dead, for its exit code
PROGRESS_INTERVAL = 0.1  # seconds between a worker's Progress messages
_environ_lock = threading.Lock()  # os.environ is patched while a worker starts


def worker_env(threads: int, gpu: str | None = None) -> dict[str, str]:
    """The environment of a worker process: thread counts for every pool (torch reads OMP_NUM_THREADS
    for its own), and its GPU when several are shared out."""
    env = dict(os.environ) | {var: str(threads) for var in THREAD_VARS}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def check_workers(cfg: Config, workers: int, gpus: list[str] | None) -> None:
    """--workers N on a single run: its groups of seeds (one per seed of an engine that trains one seed at a
    time, one per batched chain) in N processes; ConfigError when there is nothing to share out."""
    if gpus and workers < 2:
        raise ConfigError("--gpus shares GPUs out among workers: give --workers N (N >= 2) too")
    if workers < 2:
        return
    specs = chain_specs(cfg)
    groups = sum(1 if engine_class(c.engine_name).batched else len(c.seeds) for c in specs)
    if groups < 2:
        raise ConfigError(
            f"--workers {workers}: this run trains its seeds together in one process ({cfg.engine_name} is "
            "batched); --workers shares out the seeds of engines that train one seed at a time, or a sweep's cells"
        )


@dataclass
class Task:
    """One group's generation. The first task a worker gets for a group carries its engine, seeds, real
    data, reference and model; later ones only what changes."""

    key: int
    gen: int
    data: np.ndarray
    rng_states: list[dict[str, Any]]
    data_cfg: DataSection
    keep_preview: bool
    chain: str
    group: dict[str, Any] | None = None  # engine_name, params, device, train, seeds, real, reference, model
    real_count: int | None = None  # how many of data's first examples are real (chains.Group)


class RemoteTraceback(Exception):
    """The worker's traceback, chained to the error it raised (error.log shows both)."""


class WorkerDied(RuntimeError):
    """A worker process ended while the run needed it (killed, e.g. for memory, or crashed)."""


class SeedWorkers:
    """The run's worker processes, started once its groups exist and closed when it ends."""

    def __init__(self, rundir: RunDir, chains: list[Chain], processes: int, gpus: list[str], threads: int) -> None:
        """processes workers (at most one per group), each with threads threads for every pool."""
        self.chains, self.specs = chains, chain_specs(rundir.config())
        self.threads = threads
        ctx = mp.get_context("spawn")
        self.inbox: queue.Queue[tuple[int, bytes | None]] = queue.Queue()  # (worker, message or None: pipe ended)
        self.tasks = [ctx.Queue() for _ in range(processes)]
        self.sent: set[int] = set()  # groups whose worker holds their state
        self.procs = []
        for i in range(processes):
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=serve, args=(str(rundir.path), self.tasks[i], writer, os.getpid()), daemon=True)
            with _environment(worker_env(threads, gpus[i % len(gpus)] if gpus else None)):
                proc.start()
            writer.close()  # the worker's is the only writing end left: its death ends the pipe
            self.procs.append(proc)
            threading.Thread(target=self._receive, args=(i, reader), name=f"seed-worker-{i}", daemon=True).start()

    def close(self, finished: bool) -> None:
        """Ends the workers: a finished run's when they are idle, else at once (the generation in flight is lost)."""
        for q, proc in zip(self.tasks, self.procs):
            if finished and proc.is_alive():
                q.put(None)
                proc.join(5)
            if proc.is_alive():
                proc.kill()
            proc.join()
            q.cancel_join_thread()  # a task still in the pipe of a killed worker does not hold up exit
            q.close()

    def generation(
        self, gen: int, data_cfg: DataSection, report: Callable, check: Callable[[], None], keep_preview: bool
    ) -> list[list[Step]]:
        """Every chain's steps of generation gen, as generation.one_generation gives them; report gets the
        workers' progress (and so stop and pause), check is called while no progress comes."""
        pairs = list(self._groups())
        for key, (ch_i, g_i, ch, g) in enumerate(pairs):
            first = key not in self.sent
            spec = self.specs[ch_i]
            group = (
                {
                    "engine_name": spec.engine_name,
                    "params": spec.params,
                    "device": ch.engine.device,
                    "train": ch.engine.train_keys,
                    "threads": self.threads,
                    "seeds": g.seeds,
                    "real": g.real,
                    "reference": g.reference,
                    "model": g.model,
                }
                if first
                else None
            )
            states = [r.bit_generator.state for r in g.rngs]
            task = Task(key, gen, g.data, states, data_cfg, keep_preview and g_i == 0, ch.name, group, g.real_count)
            self.tasks[key % len(self.procs)].put(pickle.dumps(task))
            self.sent.add(key)
        steps: dict[int, Step] = {}
        while len(steps) < len(pairs):
            try:
                worker, raw = self.inbox.get(timeout=POLL)
            except queue.Empty:
                check()
                self._check_alive(gen)
                continue
            if raw is None:
                raise self._died(worker, gen)
            kind, key, body = pickle.loads(raw)
            if kind == "progress":
                report(*body)
            elif kind == "failed":
                error, tb = body
                raise error from RemoteTraceback(tb)
            else:
                step, states = body
                for rng, state in zip(pairs[key][3].rngs, states):  # the parent mixes the next data with them
                    rng.bit_generator.state = state
                steps[key] = step
        out: list[list[Step]] = [[] for _ in self.chains]
        for key, (ch_i, _, _, _) in enumerate(pairs):
            out[ch_i].append(steps[key])
        return out

    def _groups(self) -> Iterator[tuple[int, int, Chain, Group]]:
        for ch_i, ch in enumerate(self.chains):
            for g_i, g in enumerate(ch.groups):
                yield ch_i, g_i, ch, g

    def _receive(self, worker: int, reader: Connection) -> None:
        """A worker's messages into the inbox, each read whole here: the loop's thread never waits inside
        one. None when the pipe ends (the worker died, perhaps half way through a message)."""
        with reader:
            while True:
                try:
                    self.inbox.put((worker, reader.recv_bytes()))
                except (EOFError, OSError):
                    self.inbox.put((worker, None))
                    return

    def _check_alive(self, gen: int) -> None:
        """A dead worker whose pipe did not end (a process it started holds the pipe) is found here."""
        for i, proc in enumerate(self.procs):
            if not proc.is_alive():
                raise self._died(i, gen)

    def _died(self, worker: int, gen: int) -> WorkerDied:
        proc = self.procs[worker]
        proc.join(EXIT_WAIT)
        code = proc.exitcode
        if code is None:
            how = "closed its pipe"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
            how += " (as the out-of-memory killer does)" if code == -signal.SIGKILL else ""
        else:
            how = f"exited with code {code}"
        return WorkerDied(f"seed worker {worker} (pid {proc.pid}) {how} in generation {gen}")


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ as env while a worker starts: a spawned interpreter inherits it before it imports anything."""
    with _environ_lock:
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


def serve(path: str, tasks: Any, results: Connection, parent: int) -> None:
    """A worker's life: the groups it is given, a generation at a time, until the parent says stop. Its
    messages go into results from this thread alone (a Connection is not safe to share between threads)."""
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above
        return
    for sig in (signal.SIGINT, signal.SIGHUP):  # a terminal's Ctrl-C reaches the parent, which stops us
        signal.signal(sig, signal.SIG_IGN)
    rundir = RunDir(Path(path))
    engines: dict[str, Any] = {}
    groups: dict[int, tuple[Any, Group]] = {}
    while (raw := tasks.get()) is not None:
        task = pickle.loads(raw)
        try:
            if task.group is not None:
                spec = task.group
                engine = engines.get(task.chain)
                if engine is None:
                    engine = engines[task.chain] = engine_class(spec["engine_name"])(
                        spec["params"], device=spec["device"], train=spec["train"]
                    )
                    engine.set_threads(spec["threads"])
                real = spec["real"]
                group = Group(spec["seeds"], [], real, real, real, spec["reference"], spec["model"])
                groups[task.key] = (engine, group)
            engine, g = groups[task.key]
            g.data, g.real_count = task.data, task.real_count
            g.rngs = [rng_from(state) for state in task.rng_states]
            report = _reporter(task.gen, task.key, results)
            step = one_generation(engine, g, task.gen, task.data_cfg, report, rundir, task.keep_preview, task.chain)
            g.model = step.model
            _send(results, "done", task.key, (step, [r.bit_generator.state for r in g.rngs]))
        except Exception as e:
            _send(results, "failed", task.key, (_picklable(e), traceback.format_exc()))


def _send(results: Connection, kind: str, key: int, body: Any) -> None:
    results.send_bytes(pickle.dumps((kind, key, body)))


def _reporter(gen: int, key: int, results: Connection) -> Callable:
    last = [0.0]

    def report(phase: str, step: int, total: int, loss: float | None, detail: str = "") -> None:
        now = time.monotonic()
        note = phase.startswith(NOTE)  # a log line (the parent's report makes it a Note): it resets no interval
        if note or step >= total or now - last[0] >= PROGRESS_INTERVAL:
            if not note:
                last[0] = now
            _send(results, "progress", key, (phase, step, total, loss, detail))

    return report


def _picklable(e: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")

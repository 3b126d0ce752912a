"""The generation loop, engine-agnostic: train, sample, measure, mix the next data, checkpoint.

Generation n's model trains on D_n (D_0 is real data); its samples S_n are measured and, by the
data mode, become D_{n+1}. Seeds run together when the engine is batched, else one at a time.
A checkpoint (metrics rows, data, RNG states, models) is written at most every checkpoint_seconds
(every generation of slow engines) and always at the end, on stop and on failure, so a resumed run
gives the same metrics row for row. Each generation's compute time (seconds, pauses left out) goes to
status.json's "seconds" (one per finished generation; a resume keeps those up to its checkpoint), never
to the rows, which a resume reproduces to the last bit.

A preset with [[chains]] runs several chains (chains.py) side by side: every chain trains, samples and
is measured as a single chain is; then each chain's next data are drawn from its own, the other chains'
and its other seeds' samples (mixing.py) before the data mode applies, and each chain's rows get its
distance to every other chain (Engine.distance). A single-engine preset is one chain without a name.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .chains import Chain, Step, check_shapes, measure_distances, shared_samples
from .checkpoints import check_resumable, load_chains, save_checkpoint
from .config import Config, ConfigError, DataSection, chain_specs
from .engines import DataError, Report, engine_class
from .engines.base import NOTE
from .events import Event, GenerationDone, Note, Progress, RunFailed, RunFinished, RunStarted
from .files import atomic_write, disk_full, now_iso, printable
from .generation import chain_next_data, one_generation, sample_saved
from .mixing import synthetic_data
from .records import Failure, RunState
from .rundir import RunDir
from .seed_workers import SeedWorkers
from .theory import write_theory
from .threads import Threads, run_threads

PROGRESS_INTERVAL = 0.1  # seconds between Progress events inside a generation
STATUS_INTERVAL = 2.0  # seconds between heartbeats in status.json


class Stopped(Exception):
    """Raised inside the loop when the user asked it to stop."""


class Control:
    """Thread-safe stop and pause, checked between generations and at every engine report."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._go = threading.Event()
        self._go.set()
        self._waited = 0.0  # seconds check() held the loop paused (written by the loop's thread only)

    def stop(self) -> None:
        self._stop.set()
        self._go.set()

    def pause(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    @property
    def paused(self) -> bool:
        return not self._go.is_set()

    def clock(self) -> float:
        """time.monotonic() less the time check() held the loop paused: a generation's time leaves pauses out."""
        return time.monotonic() - self._waited

    def check(self) -> None:
        start = time.monotonic()
        while not self._go.wait(0.1):
            pass
        self._waited += time.monotonic() - start
        if self._stop.is_set():
            raise Stopped


def run(
    rundir: RunDir,
    emit: Callable[[Event], None],
    control: Control | None = None,
    resume: bool = False,
    workers: int = 1,
    gpus: list[str] | None = None,
) -> RunState:
    """Run (or resume) the experiment in rundir. Returns FINISHED, STOPPED or FAILED. Before anything
    is written: RunDirError (a ConfigError) when another process writes the run or, on resume, when its
    state does not match its preset or its metrics. workers > 1: the groups of seeds train in that many
    processes (seed_workers.py), with the same rows."""
    control = control or Control()
    rundir.acquire()
    cfg = rundir.config()
    ckpt, kept = check_resumable(rundir, cfg) if resume else (None, [])
    t_run = time.monotonic()
    done = saved = -1  # the last finished and the last checkpointed generation
    chains: list[Chain] = []
    pending: list[dict[str, Any]] = []  # metrics rows since the last checkpoint
    times: list[float | None] = []  # each finished generation's compute time (status.json's "seconds")
    seed_workers: SeedWorkers | None = None
    try:
        chains = _chains(cfg)
        processes = min(workers, sum(len(ch.seed_groups()) for ch in chains))
        threads = _threads(rundir, chains, processes)
        if ckpt is not None:
            saved = done = ckpt[0]
            load_chains(rundir, chains, ckpt[1], cfg.data)
        if resume:
            rundir.write_metrics(kept)  # rows after the checkpoint are computed again
            times = _kept_times(rundir, done)
        write_theory(rundir.path, cfg)  # for the generations asked now (a resume may extend the run)
        _started(rundir, cfg, done, threads, emit)
        for ch in chains:
            if not ch.groups:
                ch.start()  # reads the real data: after RunStarted, which the front ends show at once
        if len(chains) > 1:
            check_shapes(chains)
        if threads and processes > 1:  # threads are always chosen for workers
            seed_workers = SeedWorkers(rundir, chains, processes, gpus or [], threads.count)
        last_ckpt = last_status = time.monotonic()
        for gen in range(done + 1, cfg.generations):
            control.check()
            t_gen = control.clock()
            report = _reporter(gen, emit, control, rundir)
            keep_preview = sample_saved(gen, cfg.generations)
            if seed_workers:
                steps = seed_workers.generation(gen, cfg.data, report, control.check, keep_preview)
            else:
                steps = _steps(chains, gen, cfg, report, rundir, keep_preview)
            rows = _commit(chains, steps, cfg.data)
            done = gen
            pending += rows
            times.append(round(control.clock() - t_gen, 6))  # microseconds: status.json stays short
            emit(GenerationDone(gen, tuple(rows), times[-1]))
            now = time.monotonic()
            if gen == cfg.generations - 1 or now - last_ckpt >= cfg.experiment["checkpoint_seconds"]:
                save_checkpoint(rundir, gen, chains, pending)
                saved, last_ckpt = gen, time.monotonic()
            if saved == gen or now - last_status >= STATUS_INTERVAL:  # a checkpoint's seconds are kept
                rundir.write_status(generation=gen, checkpoint_generation=saved, seconds=times)
                last_status = now
        end = Ending(RunState.FINISHED)
    except (Stopped, KeyboardInterrupt):
        end = Ending(RunState.STOPPED)
    except Exception as e:  # a failing run is kept resumable; its traceback goes to error.log
        end = _failed(rundir, e)
    if seed_workers:
        seed_workers.close(end.state is RunState.FINISHED)
    end, saved = _close(rundir, end, done, saved, chains, pending, times)
    if end.error:
        emit(RunFailed(rundir.path, end.error, resumable=end.failure is not Failure.INPUT))
    else:
        emit(RunFinished(rundir.path, end.state, done + 1, time.monotonic() - t_run))
    return end.state


@dataclass(frozen=True)
class Ending:
    """How a run ended: its state and, when it failed, the one-line error and its kind."""

    state: RunState
    error: str | None = None
    failure: Failure | None = None

    def failed(self, error: str) -> Ending:
        """Failed now too (a checkpoint or the status could not be written): the first error is kept."""
        return Ending(RunState.FAILED, self.error or error, self.failure or Failure.FAULT)


def _failed(rundir: RunDir, e: Exception) -> Ending:
    """A failure: an error in the preset or its data (a resume meets it again) or a fault; its traceback in
    error.log."""
    with contextlib.suppress(OSError):  # a full disk: the status may still take the one line
        atomic_write(rundir.path / "error.log", printable(traceback.format_exc()).encode())
    failure = Failure.INPUT if isinstance(e, ConfigError | DataError) else Failure.FAULT
    return Ending(RunState.FAILED, _one_line(e), failure)


def _close(
    rundir: RunDir,
    end: Ending,
    done: int,
    saved: int,
    chains: list[Chain],
    pending: list[dict[str, Any]],
    times: list[float | None],
) -> tuple[Ending, int]:
    """Checkpoint what was finished since the last checkpoint (stopped or failed between two), then record
    the ending and the generations' times in status.json; (the ending, the last checkpointed generation)."""
    if done > saved and chains and chains[0].groups and chains[0].groups[0].rng_states is not None:
        try:
            save_checkpoint(rundir, done, chains, pending)
            saved = done
        except Exception as e:  # e.g. a full disk: the previous checkpoint stays valid
            end = end.failed(f"checkpoint failed: {_one_line(e)}")
    try:
        rundir.write_status(
            state=end.state,
            generation=done,
            checkpoint_generation=saved,
            error=end.error,
            failure=end.failure,
            seconds=times,
        )
    except OSError as e:
        end = end.failed(f"status not written: {_one_line(e)}")
    return end, saved


def _chains(cfg: Config) -> list[Chain]:
    """One chain per [[chains]] table (a single-engine preset: one chain without a name), no groups yet."""
    device, train = cfg.experiment["device"], cfg.train.as_dict()
    return [
        Chain(c.name, engine_class(c.engine_name)(c.params, device=device, train=train), c.seeds)
        for c in chain_specs(cfg)
    ]


def _steps(
    chains: list[Chain], gen: int, cfg: Config, report: Report, rundir: RunDir, keep_preview: bool
) -> list[list[Step]]:
    """Every chain's groups through generation gen in this process (the first group's preview kept)."""
    return [
        [
            one_generation(ch.engine, g, gen, cfg.data, report, rundir, keep_preview and i == 0, ch.name)
            for i, g in enumerate(ch.groups)
        ]
        for ch in chains
    ]


def _kept_times(rundir: RunDir, checkpoint: int) -> list[float | None]:
    """The generation times a resume from the checkpoint keeps; None for those status.json lacks (a run
    made before they were recorded)."""
    kept = rundir.read_status().get("seconds", [])[: checkpoint + 1]
    return kept + [None] * (checkpoint + 1 - len(kept))


def _started(rundir: RunDir, cfg: Config, done: int, threads: Threads | None, emit: Callable[[Event], None]) -> None:
    """status.json says running (since the first start; the threads kept for a resume), and RunStarted."""
    kept_threads = {"threads": threads.count} if threads else {}  # a resume takes the same
    rundir.write_status(  # generations: a resume --generations N changed it
        state=RunState.RUNNING,
        generation=done,
        generations=cfg.generations,
        error=None,
        failure=None,
        started=rundir.read_status().get("started") or now_iso(),
        **kept_threads,
    )
    line = threads.line if threads else ""
    emit(RunStarted(rundir.path, cfg.name, cfg.engine_name, cfg.generations, tuple(cfg.seeds), done + 1, line))


def _commit(chains: list[Chain], steps: list[list[Step]], data_cfg: DataSection) -> list[dict[str, Any]]:
    """The generation is finished: exchange samples between chains, draw each group's next data, then commit
    every group's new state at once. Returns the generation's rows."""
    received = shared_samples(chains, steps) if len(chains) > 1 else None
    if received is not None:
        measure_distances(chains, steps, received)
    mixed = synthetic_data(chains, steps, data_cfg, received)
    rows = []
    for ch, ch_steps, x in zip(chains, steps, mixed):
        for g, step, (data, pool, real) in zip(ch.groups, ch_steps, chain_next_data(ch, ch_steps, data_cfg, x)):
            g.data, g.pool, g.model, g.real_count = data, pool, step.model, real
            g.rng_states = [r.bit_generator.state for r in g.rngs]
            rows += step.rows
    return rows


def _threads(rundir: RunDir, chains: list[Chain], processes: int) -> Threads | None:
    """The threads of each of the run's processes, given to its engines (None: nothing here has a pool
    to size): those it started with when it resumes (the same rows), else the cores free now."""
    if processes == 1 and not any(ch.engine.needs_torch for ch in chains):
        return None
    threads = run_threads(processes, kept=rundir.read_status().get("threads"))
    for ch in chains:
        ch.engine.set_threads(threads.count)
    return threads


def _one_line(e: BaseException) -> str:
    if disk_full(e):
        return f"no space left on device ({getattr(e, 'filename', None) or e}); free some and resume"
    return f"{type(e).__name__}: {e}".splitlines()[0]


def _reporter(gen: int, emit: Callable[[Event], None], control: Control, rundir: RunDir):
    last = [0.0, time.monotonic()]  # last Progress event, last heartbeat

    def report(phase: str, step: int, total: int, loss: float | None, detail: str = "") -> None:
        control.check()
        now = time.monotonic()
        if phase.startswith(NOTE):
            emit(Note(gen, phase.removeprefix(NOTE)))
        elif step >= total or now - last[0] >= PROGRESS_INTERVAL:
            last[0] = now
            emit(Progress(gen, phase, step, total, loss, detail))
        if now - last[1] >= STATUS_INTERVAL:  # long generations keep the heartbeat fresh
            last[1] = now
            rundir.write_status()

    return report

"""The generation loop, engine-agnostic: train, sample, measure, mix the next data, checkpoint.

Generation n's model trains on D_n (D_0 is real data); its samples S_n are measured and, by the
data mode, become D_{n+1}. Seeds run together when the engine is batched, else one at a time.
A checkpoint (metrics rows, data, RNG states, models) is written at most every checkpoint_seconds
(every generation of slow engines) and always at the end, on stop and on failure, so a resumed run
gives the same metrics row for row.

A preset with [[chains]] runs several chains (chains.py) side by side: every chain trains, samples and
is measured as a single chain is; then each chain's next data are drawn from its own, the other chains'
and its other seeds' samples (mixing.py) before the data mode applies, and each chain's rows get its
distance to every other chain (Engine.distance). A single-engine preset is one chain without a name.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .chains import Chain, Group, Step, check_shapes, measure_distances, shared_samples
from .config import chain_specs
from .datamodes import next_data
from .engines import Engine, engine_class
from .events import Event, GenerationDone, Progress, RunFailed, RunFinished, RunStarted
from .mixing import synthetic_data
from .rundir import RunDir, RunDirError, atomic_write, disk_full, now_iso, printable, read_json
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


def sample_saved(generation: int, generations: int) -> bool:
    """Which generations keep their samples for the panes: all of short runs, snapshots of long ones."""
    return generations <= 200 or generation <= 10 or generation % 50 == 0 or generation == generations - 1


def run(
    rundir: RunDir,
    emit: Callable[[Event], None],
    control: Control | None = None,
    resume: bool = False,
    workers: int = 1,
    gpus: list[str] | None = None,
) -> str:
    """Run (or resume) the experiment in rundir. Returns 'finished', 'stopped' or 'failed'. Before anything
    is written: RunDirError (a ConfigError) when another process writes the run or, on resume, when its
    state does not match its preset or its metrics. workers > 1: the groups of seeds train in that many
    processes (seed_workers.py), with the same rows."""
    control = control or Control()
    rundir.acquire()
    cfg = rundir.config()
    ckpt, kept = rundir.check_resumable(cfg) if resume else (None, [])
    mode, data_cfg = cfg.data["mode"], cfg.data
    t_run = time.monotonic()
    done = -1  # last finished generation
    saved = -1  # last checkpointed generation
    chains: list[Chain] = []
    pending: list[dict[str, Any]] = []  # metrics rows since the last checkpoint
    seed_workers: SeedWorkers | None = None
    try:
        device = cfg.experiment["device"]
        chains = [
            Chain(c.name, engine_class(c.engine_name)(c.params, device=device), c.seeds) for c in chain_specs(cfg)
        ]
        processes = min(workers, sum(len(_seed_groups(ch.engine, ch.seeds)) for ch in chains))
        threads = _threads(rundir, chains, processes)
        if ckpt is not None:
            saved = done = ckpt[0]
            _load_chains(rundir, chains, ckpt[1], mode)
        if resume:
            rundir.write_metrics(kept)  # rows after the checkpoint are computed again
        kept_threads = {"threads": threads.count} if threads else {}  # a resume takes the same
        rundir.write_status(  # generations: a resume --generations N changed it
            state="running",
            generation=done,
            generations=cfg.generations,
            error=None,
            started=_started(rundir),
            **kept_threads,
        )
        write_theory(rundir, cfg)  # for the generations asked now (a resume may extend the run)
        line = threads.line if threads else ""
        emit(RunStarted(rundir.path, cfg.name, cfg.engine_name, cfg.generations, tuple(cfg.seeds), done + 1, line))
        for ch in chains:
            ch.groups = ch.groups or [_new_group(ch.engine, seeds) for seeds in _seed_groups(ch.engine, ch.seeds)]
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
            steps = (
                seed_workers.generation(gen, data_cfg, report, control.check, keep_preview)
                if seed_workers
                else [
                    [
                        one_generation(ch.engine, g, gen, data_cfg, report, rundir, keep_preview and i == 0, ch.name)
                        for i, g in enumerate(ch.groups)
                    ]
                    for ch in chains
                ]
            )
            received = shared_samples(chains, steps) if len(chains) > 1 else None
            if received is not None:
                measure_distances(chains, steps, received)
            mixed = synthetic_data(chains, steps, data_cfg, received)
            nexts = [_next_data(ch, st, data_cfg, x) for ch, st, x in zip(chains, steps, mixed)]
            # the generation is finished: commit every group's new state at once
            rows = []
            for ch, ch_steps, ch_next in zip(chains, steps, nexts):
                for g, step, (data, pool) in zip(ch.groups, ch_steps, ch_next):
                    g.data, g.pool, g.model = data, pool, step.model
                    g.rng_states = [r.bit_generator.state for r in g.rngs]
                    rows += step.rows
            done = gen
            pending += rows
            emit(GenerationDone(gen, tuple(rows), control.clock() - t_gen))
            now = time.monotonic()
            if gen == cfg.generations - 1 or now - last_ckpt >= cfg.experiment["checkpoint_seconds"]:
                _checkpoint(rundir, gen, chains, pending)
                saved, last_ckpt = gen, time.monotonic()
            if now - last_status >= STATUS_INTERVAL:
                rundir.write_status(generation=gen, checkpoint_generation=saved)
                last_status = now
        state, error = "finished", None
    except (Stopped, KeyboardInterrupt):
        state, error = "stopped", None
    except Exception as e:  # a failing run is kept resumable; its traceback goes to error.log
        state, error = "failed", _one_line(e)
        with contextlib.suppress(OSError):  # a full disk: the status below may still take the one line
            atomic_write(rundir.path / "error.log", printable(traceback.format_exc()).encode())
    if seed_workers:
        seed_workers.close(state == "finished")
    if done > saved and chains and chains[0].groups and chains[0].groups[0].rng_states is not None:
        try:
            _checkpoint(rundir, done, chains, pending)
            saved = done
        except Exception as e:  # e.g. a full disk: the previous checkpoint stays valid
            state, error = "failed", error or f"checkpoint failed: {_one_line(e)}"
    try:
        rundir.write_status(state=state, generation=done, checkpoint_generation=saved, error=error)
    except OSError as e:
        state, error = "failed", error or f"status not written: {_one_line(e)}"
    seconds = time.monotonic() - t_run
    emit(RunFailed(rundir.path, error) if error else RunFinished(rundir.path, state, done + 1, seconds))
    return state


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


def one_generation(
    engine: Engine, g: Group, gen: int, data_cfg: dict[str, Any], report, rundir: RunDir, keep_preview: bool, chain: str
) -> Step:
    n = g.real.shape[1]
    filtering = data_cfg["filter"] != "none"
    fitted = engine.fit(g.data, g.rngs, report, source=g.model)  # g.model: the previous generation's
    model = fitted.model
    drawn = math.ceil(n / data_cfg["filter_keep"]) if filtering else n
    generated = engine.sample(model, drawn, g.rngs, report, data=g.data)
    samples = generated.samples
    if gen == 0:
        g.reference = model
        _save_reference(rundir, engine, g, chain)
    report("evaluate", 0, 1, None)
    metrics = [m | fitted.losses for m in engine.evaluate(model, samples, g.reference)]
    report("evaluate", 1, 1, None)
    if filtering:  # keep the n samples the generation-0 model finds most typical
        best = np.argsort(engine.score(g.reference, samples), axis=1, kind="stable")[:, :n]
        samples = np.take_along_axis(samples, best.reshape(best.shape + (1,) * (samples.ndim - 2)), axis=1)
    if keep_preview:  # what the model generated (before a filter)
        rundir.save_samples(gen, generated.preview, chain)
    named = {"chain": chain} if chain else {}
    rows = [
        {**named, "seed": seed, "generation": gen, "train_size": int(g.data.shape[1]), **m}
        for seed, m in zip(g.seeds, metrics)
    ]
    return Step(model, samples, rows)


def _next_data(
    ch: Chain, steps: list[Step], data_cfg: dict[str, Any], mixed: np.ndarray | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each group's (training data, pool) for the next generation, by the data mode."""
    out, start = [], 0
    for g, step in zip(ch.groups, steps):
        samples = step.samples if mixed is None else mixed[start : start + len(g.seeds)]
        start += len(g.seeds)
        out.append(
            next_data(
                data_cfg["mode"],
                prev=g.data,
                pool=g.pool,
                real=g.real,
                samples=samples,
                rngs=g.rngs,
                keep_fraction=data_cfg["keep_fraction"],
                fresh_fraction=data_cfg["fresh_fraction"],
                draw_fresh=lambda k, g=g: ch.engine.real_data(g.rngs, k),
                size=None if mixed is None else mixed.shape[1],
            )
        )
    return out


def _seed_groups(engine: Engine, seeds: list[int]) -> list[list[int]]:
    return [seeds] if engine.batched else [[s] for s in seeds]


def _new_group(engine: Engine, seeds: list[int]) -> Group:
    rngs = [np.random.default_rng(s) for s in seeds]
    real = engine.real_data(rngs)
    return Group(seeds, rngs, real, real, real)


def _reporter(gen: int, emit: Callable[[Event], None], control: Control, rundir: RunDir):
    last = [0.0, time.monotonic()]  # last Progress event, last heartbeat

    def report(phase: str, step: int, total: int, loss: float | None) -> None:
        control.check()
        now = time.monotonic()
        if step >= total or now - last[0] >= PROGRESS_INTERVAL:
            last[0] = now
            emit(Progress(gen, phase, step, total, loss))
        if now - last[1] >= STATUS_INTERVAL:  # long generations keep the heartbeat fresh
            last[1] = now
            rundir.write_status()

    return report


def _reference_name(chain: str, seed: int) -> str:
    return f"reference-{chain}-{seed}" if chain else f"reference-{seed}"


def _save_reference(rundir: RunDir, engine: Engine, g: Group, chain: str) -> None:
    """Generation 0's model (the reference scorer) and the real data, once per group."""
    tmp = rundir.new_state_dir(_reference_name(chain, g.seeds[0]))
    engine.save(g.reference, tmp)
    with open(tmp / "real.npz", "wb") as f:
        np.savez(f, real=g.real)
    rundir.publish_state_dir(tmp)


def _checkpoint(rundir: RunDir, gen: int, chains: list[Chain], pending: list[dict[str, Any]]) -> None:
    """Metrics rows, then the state, then the pointer to it: a kill between leaves rows that a
    resume drops and computes again."""
    rundir.append_metrics(pending)
    pending.clear()
    tmp = rundir.new_state_dir(f"ckpt-{gen:06d}")
    try:
        arrays: dict[str, np.ndarray] = {}
        for ch in chains:
            for i, g in enumerate(ch.groups):
                arrays[ch.array_name(f"data{i}")] = g.data
                if g.pool is not g.data and g.pool is not g.real:
                    arrays[ch.array_name(f"pool{i}")] = g.pool
                (tmp / ch.state_name(f"model{i}")).mkdir()
                ch.engine.save(g.model, tmp / ch.state_name(f"model{i}"))
        with open(tmp / "data.npz", "wb") as f:
            np.savez(f, **arrays)
        states = {ch.name: [g.rng_states for g in ch.groups] for ch in chains}
        (tmp / "rng.json").write_text(json.dumps(states.get("", states)))
        ckpt = rundir.publish_state_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk leaves no half checkpoint behind
        raise
    rundir.write_checkpoint(gen, ckpt)


def _load_chains(rundir: RunDir, chains: list[Chain], ckpt: Path, mode: str) -> None:
    """Every chain's groups as the checkpoint holds them."""
    states = read_json(ckpt / "rng.json")
    single = chains[0].name == ""
    if not single and not (isinstance(states, dict) and set(states) == {ch.name for ch in chains}):
        raise RunDirError(f"{ckpt}: its random states are not those of the preset's chains")
    for ch in chains:
        ch.groups = _load_groups(rundir, ch, ckpt, states if single else states[ch.name], mode)


def _load_groups(rundir: RunDir, ch: Chain, ckpt: Path, rng_states: Any, mode: str) -> list[Group]:
    engine, seeds = ch.engine, ch.seeds
    seed_groups = _seed_groups(engine, seeds)
    if not isinstance(rng_states, list) or [len(r) for r in rng_states] != [len(g) for g in seed_groups]:
        raise RunDirError(f"{ckpt}: its random states are not those of the preset's {len(seeds)} seeds")
    groups = []
    with np.load(ckpt / "data.npz", allow_pickle=False) as arrays:
        for i, group_seeds in enumerate(seed_groups):
            ref_dir = rundir.state_dir / _reference_name(ch.name, group_seeds[0])
            with np.load(ref_dir / "real.npz", allow_pickle=False) as z:
                real = z["real"]
            rngs = []
            for state in rng_states[i]:
                rng = np.random.Generator(np.random.PCG64())
                rng.bit_generator.state = state
                rngs.append(rng)
            data = arrays[ch.array_name(f"data{i}")]
            if data.shape[0] != len(group_seeds) or data.shape[2:] != real.shape[2:]:
                raise RunDirError(f"{ckpt}: data of shape {data.shape} do not fit the preset's data {real.shape}")
            pool = arrays.get(ch.array_name(f"pool{i}"), data if mode == "accumulate" else real)
            model = engine.load(ckpt / ch.state_name(f"model{i}"))
            g = Group(group_seeds, rngs, real, data, pool, engine.load(ref_dir), model)
            g.rng_states = rng_states[i]
            groups.append(g)
    return groups


def _started(rundir: RunDir) -> str:
    return rundir.read_status().get("started") or now_iso()

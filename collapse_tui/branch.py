"""Branches: a new run that starts from generation K of another run (`--batch PRESET --from RUN --at K`, or
b on the app's run screen), to try a fix on a model that has already collapsed.

The branch's generations 0..K are RUN's: its rows copied, and its state after generation K restored (each
group's model, the data generation K + 1 trains on, as RUN's data mode drew them, the RNG states, and
generation 0's reference model and real data). From generation K + 1 on it runs PRESET: its [train]
mitigations shape generation K + 1's fit on, its [data] mode and filter take each later generation's
samples to the next one's data. It is resumed from K as any stopped run is (checkpoints.py, loop.run), so
a branch is exactly "RUN's state after K, then PRESET's loop".

PRESET may change [data], [train] and experiment.generations, name, description, device and
checkpoint_seconds; every key that makes the model (the engine, its keys, [[chains]], the seeds) must be
RUN's, or the branch is refused in one line naming them before a run directory exists.

How the state after generation K is had: a run directory keeps the state of its last checkpoint only.
When that is generation K it is copied. Otherwise generations 0..K are computed again from RUN's preset and
seeds in a hidden folder beside the new run (RUN itself a branch of P at A: P's state when K <= A, else P
branched at A again and run on to K), and their rows must equal RUN's, or the branch is refused: on
CPU a run's rows repeat exactly (its RNGs are seeded per seed, and a torch run keeps its thread count), so
this is exact, costs RUN's first K + 1 generations once, and keeps nothing more on disk per generation; a
GPU run that does not repeat its rows bit for bit can be branched at its checkpoint's generation.

The branch's run.json records where it came from: {"parent": RUN's absolute path, "at": K}. A file of its
own, written once when the run is made: status.json is rewritten by whoever writes the run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import locks, loop
from .checkpoints import check_resumable
from .config import Config, ConfigError, chain_names
from .events import Event
from .files import atomic_write, json_lines
from .numbers import short
from .records import RunDirError, RunState, is_int, read_json
from .rundir import RunDir

# the keys of [experiment] a branch may change; [data] and [train] it may change whole
FREE_EXPERIMENT = ("name", "description", "generations", "device", "checkpoint_seconds")
FREE = f"[data], [train], experiment.{{{', '.join(FREE_EXPERIMENT)}}}"
ORIGIN_FILE = "run.json"
SHOWN = 3  # changed keys a refusal names


@dataclass(frozen=True)
class Origin:
    """Where a branch came from: its parent run and the generation it branched at."""

    parent: Path
    at: int


def read_origin(rundir: RunDir) -> Origin | None:
    """run.json, validated: None for a run that is not a branch; RunDirError naming the file otherwise."""
    path = rundir.path / ORIGIN_FILE
    if not path.exists():
        return None
    info = read_json(path)
    ok = isinstance(info, dict) and isinstance(info.get("parent"), str) and is_int(info.get("at"))
    if not ok or info["at"] < 0:
        raise RunDirError(f"{path}: expected {{'parent': RUN_DIR, 'at': K}}, got {short(info)}")
    return Origin(Path(info["parent"]), info["at"])


def shape_changes(parent: Config, cfg: Config) -> list[str]:
    """The keys cfg changes from parent that a branch must keep: what makes the model or its data."""

    def diff(section: str, old: dict[str, Any], new: dict[str, Any], free: tuple[str, ...] = ()) -> list[str]:
        keys = [k for k in {**old, **new} if k not in free and old.get(k) != new.get(k)]
        return [f"{section}.{k} ({short(old.get(k), 30)} -> {short(new.get(k), 30)})" for k in keys]

    changes = diff("experiment", parent.experiment, cfg.experiment, FREE_EXPERIMENT)
    changes += diff("engine", parent.engine, cfg.engine)
    if chain_names(parent) != chain_names(cfg):
        changes.append(
            f"chains ({', '.join(chain_names(parent)) or 'none'} -> {', '.join(chain_names(cfg)) or 'none'})"
        )
    else:
        for a, b in zip(parent.chains, cfg.chains):
            changes += diff(f"chains.{a['name']}", a, b)
    return changes


def check_branch(parent: RunDir, cfg: Config, at: int) -> tuple[Config, list[dict[str, Any]]]:
    """(RUN's preset, its rows of generations 0..at) when cfg can branch from parent at generation at;
    ConfigError (one line) otherwise. Reads only."""
    parent_cfg = parent.config()
    if changes := shape_changes(parent_cfg, cfg):
        more = f" and {len(changes) - SHOWN} more" if len(changes) > SHOWN else ""
        raise ConfigError(
            f"--from {parent.path}: a branch keeps the keys that make the model, and this preset changes "
            f"{'; '.join(changes[:SHOWN])}{more} (a branch may change {FREE})"
        )
    check_resumable(parent, parent_cfg)  # RUN's state and rows are this tool's and match its preset
    rows = parent.read_metrics()
    last = max((r["generation"] for r in rows), default=-1)
    if not 0 <= at <= last:
        done = f"generations 0..{last}" if last >= 0 else "no generation"
        raise ConfigError(f"--at {at}: {parent.path} has finished {done}")
    if cfg.generations <= at + 1:
        raise ConfigError(
            f"experiment.generations: {cfg.generations} leaves no generation after {at} to run "
            f"(--set experiment.generations=N with N > {at + 1})"
        )
    return parent_cfg, [r for r in rows if r["generation"] <= at]


def create_branch(
    parent_path: Path,
    cfg: Config,
    at: int,
    runs_dir: Path,
    name: str,
    emit: Callable[[Event], None] = lambda _: None,
    say: Callable[[str], None] = lambda _: None,
) -> RunDir:
    """A new run directory in runs_dir (named name-<timestamp>) holding RUN's generations 0..at and its
    state after generation at, with cfg as its preset, ready to resume (loop.run(resume=True)) from at + 1.
    Takes RUN's lock while it reads RUN (RunDirError when another process writes it). Everything is checked,
    and generations 0..at computed again when RUN's checkpoint is at another generation (emit gets that
    run's events; say gets one line on it), before the run directory exists: a refusal or a failure makes
    none. KeyboardInterrupt when the recomputation was stopped."""
    parent = RunDir.open(parent_path)
    with _reading(parent):
        parent_cfg, rows = check_branch(parent, cfg, at)
        with _state_after(parent, parent_cfg, at, rows, runs_dir, emit, say) as source:
            return _make(runs_dir, name, cfg, parent, source, at, rows)


@contextlib.contextmanager
def _reading(run: RunDir) -> Iterator[None]:
    """Hold run's lock while it is read (RunDirError when another process writes it); a lock this process
    held before stays held."""
    held = locks.held_here(run.path)
    run.acquire()
    try:
        yield
    finally:
        if not held:
            run.release()


@contextlib.contextmanager
def _state_after(
    run: RunDir, run_cfg: Config, at: int, rows: list[dict[str, Any]], runs_dir: Path, emit, say
) -> Iterator[RunDir]:
    """A run directory whose checkpoint holds run's state after generation at (rows: run's rows up to it):
    run itself when its checkpoint is there; else, for a branch of a parent at A >= at, the parent's; else
    generations 0..at computed again in a hidden folder of runs_dir, removed afterwards: from the start
    with run's preset, or for a branch, as a branch of its parent at A continued with run's preset."""
    ckpt = run.read_checkpoint()
    if ckpt is not None and ckpt[0] == at:
        yield run
        return
    origin = read_origin(run)
    if origin is not None and at <= origin.at:  # generations 0..A of a branch are its parent's
        parent = RunDir.open(origin.parent)
        with _reading(parent):
            check_resumable(parent, parent_cfg := parent.config())
            with _state_after(parent, parent_cfg, at, rows, runs_dir, emit, say) as source:
                yield source
        return
    say(
        f"{run.path} keeps the state of generation {ckpt[0] if ckpt else 'none'} only: "
        f"computing generations 0..{at} again (on CPU they repeat its rows)"
    )
    runs_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".branch-", dir=runs_dir) as tmp:
        again = run_cfg.with_generations(at + 1)
        if origin is None:
            replay = RunDir.create(Path(tmp), again)
        else:
            replay = create_branch(origin.parent, again, origin.at, Path(tmp), run_cfg.name, emit, say)
        try:  # its lock let go whatever happens: a later folder may get its inode
            _replay(run, replay, rows, emit, resume=origin is not None)
            yield replay
        finally:
            replay.release()


def _replay(
    run: RunDir, replay: RunDir, rows: list[dict[str, Any]], emit: Callable[[Event], None], resume: bool
) -> None:
    """Run's first generations computed again in replay (run's preset, as long as rows go; resume: from the
    state replay holds), with run's thread count for torch; RunDirError unless their rows are run's."""
    if (threads := run.read_status().get("threads")) is not None:
        replay.write_status(threads=threads)
    state = loop.run(replay, emit, resume=resume)
    if state == RunState.STOPPED:
        raise KeyboardInterrupt
    if state != RunState.FINISHED:
        raise ConfigError(f"--from {run.path}: computing its generations again failed: {replay.read_status()['error']}")
    again = replay.read_metrics()
    if json_lines(again) != json_lines(rows):
        first = next((a for a, b in zip(again, rows) if a != b), rows[-1])
        raise RunDirError(
            f"--from {run.path}: its generations computed again differ from its rows (generation "
            f"{first['generation']}, seed {first['seed']} first), as a GPU run's may: branch at the generation "
            f"of its checkpoint ({run.read_status().get('checkpoint_generation', 'none')})"
        )


def _make(
    runs_dir: Path, name: str, cfg: Config, parent: RunDir, source: RunDir, at: int, rows: list[dict[str, Any]]
) -> RunDir:
    """The branch's directory: cfg, RUN's rows up to at and its previews, and the state of source (RUN, or
    its generations computed again), whose checkpoint is at generation at."""
    found = source.read_checkpoint()
    if found is None or found[0] != at:  # RUN's checkpoint was found at `at`, and a recomputation ends there
        raise RunDirError(f"{source.state_dir}: no checkpoint at generation {at}")
    ckpt = found[1]

    def fill(new: RunDir) -> None:
        for ref in source.state_dir.glob("reference-*"):
            _copy_state(ref, new)
        new.write_checkpoint(at, _copy_state(ckpt, new))
        new.write_metrics(rows)
        for chain in chain_names(cfg) or [""]:
            for g in parent.sample_generations(chain):
                if g <= at:
                    new.save_samples(g, parent.load_samples(g, chain), chain)
        status = parent.read_status()
        kept = {"threads": t} if (t := status.get("threads")) is not None else {}
        kept["seconds"] = status.get("seconds", [])[: at + 1]  # generations 0 .. at took what they took RUN
        new.write_status(generation=at, checkpoint_generation=at, **kept)
        origin = {"parent": str(parent.path.resolve()), "at": at}
        atomic_write(new.path / ORIGIN_FILE, json.dumps(origin).encode())

    return RunDir.create(runs_dir, cfg, name=name, extra=fill)


def _copy_state(folder: Path, new: RunDir) -> Path:
    """A folder of another run's state/ copied into new's, published whole (rundir.publish_state_dir)."""
    tmp = new.new_state_dir(folder.name)
    shutil.copytree(folder, tmp, dirs_exist_ok=True)
    return new.publish_state_dir(tmp)

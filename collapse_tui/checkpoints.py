"""A run's state on disk, beyond its rows: generation 0's models (the reference every generation is measured
against), checkpoints (each chain's data, pools, models and RNG states after a generation), and whether a
run can resume from what its directory holds.

A checkpoint is written rows first, then the state, then the pointer to it (state/checkpoint.json): a kill
between leaves rows that a resume drops and computes again, so a resumed run's rows equal an uninterrupted
run's. Models are saved by their engines without pickle; arrays load with allow_pickle=False.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .chains import Chain, Group, rng_from, row_key
from .config import Config, DataSection, chain_specs
from .datamodes import real_count
from .engines import Engine
from .files import atomic_write
from .preflight import check_runnable
from .preset_files import load_preset
from .records import RunDirError, read_json
from .rundir import RunDir


def _reference_name(chain: str, seed: int) -> str:
    return f"reference-{chain}-{seed}" if chain else f"reference-{seed}"


def save_reference(rundir: RunDir, engine: Engine, g: Group, chain: str) -> None:
    """Generation 0's model (the reference scorer) and the real data, once per group."""
    tmp = rundir.new_state_dir(_reference_name(chain, g.seeds[0]))
    engine.save(g.reference, tmp)
    with open(tmp / "real.npz", "wb") as f:
        np.savez(f, real=g.real)
    rundir.publish_state_dir(tmp)


def save_checkpoint(rundir: RunDir, gen: int, chains: list[Chain], pending: list[dict[str, Any]]) -> None:
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
                if g.real_count is not None:
                    arrays[ch.array_name(f"real{i}")] = np.array(g.real_count)
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


def load_chains(rundir: RunDir, chains: list[Chain], ckpt: Path, data_cfg: DataSection) -> None:
    """Every chain's groups as the checkpoint holds them."""
    states = read_json(ckpt / "rng.json")
    single = chains[0].name == ""
    if not single and not (isinstance(states, dict) and set(states) == {ch.name for ch in chains}):
        raise RunDirError(f"{ckpt}: its random states are not those of the preset's chains")
    for ch in chains:
        ch.groups = _load_groups(rundir, ch, ckpt, states if single else states[ch.name], data_cfg)


def _load_groups(rundir: RunDir, ch: Chain, ckpt: Path, rng_states: Any, data_cfg: DataSection) -> list[Group]:
    engine, seeds = ch.engine, ch.seeds
    seed_groups = ch.seed_groups()
    if not isinstance(rng_states, list) or [len(r) for r in rng_states] != [len(g) for g in seed_groups]:
        raise RunDirError(f"{ckpt}: its random states are not those of the preset's {len(seeds)} seeds")
    groups = []
    with np.load(ckpt / "data.npz", allow_pickle=False) as arrays:
        for i, group_seeds in enumerate(seed_groups):
            ref_dir = rundir.state_dir / _reference_name(ch.name, group_seeds[0])
            with np.load(ref_dir / "real.npz", allow_pickle=False) as z:
                real = z["real"]
            rngs = [rng_from(state) for state in rng_states[i]]
            data = arrays[ch.array_name(f"data{i}")]
            if data.shape[0] != len(group_seeds) or data.shape[2:] != real.shape[2:]:
                raise RunDirError(f"{ckpt}: data of shape {data.shape} do not fit the preset's data {real.shape}")
            pool = arrays.get(ch.array_name(f"pool{i}"), data if data_cfg.mode == "accumulate" else real)
            model = engine.load(ckpt / ch.state_name(f"model{i}"))
            g = Group(group_seeds, rngs, real, data, pool, engine.load(ref_dir), model)
            g.rng_states = rng_states[i]
            g.real_count = _real_count(arrays, ch.array_name(f"real{i}"), data_cfg, real.shape[1], data.shape[1])
            groups.append(g)
    return groups


def _real_count(arrays: Any, name: str, data_cfg: DataSection, n_real: int, n: int) -> int:
    """How many of a checkpoint's data's first examples are real: as saved, or (a checkpoint written before
    they were saved) as the run's data mode lays its training sets out."""
    if name in arrays:
        return int(arrays[name])
    return real_count(data_cfg.mode, n_real, n, data_cfg.keep_fraction, data_cfg.fresh_fraction)


def check_resumable(rundir: RunDir, cfg: Config) -> tuple[tuple[int, Path] | None, list[dict[str, Any]]]:
    """(checkpoint, the metrics rows a resume keeps), or RunDirError when the state is missing, is not
    this tool's, or does not match the preset the run started with. Changes nothing. Only the preset's
    experiment.generations may differ from the start's (--generations N; no engine sees it, so a run
    extended to N has the rows of a run of N), and not below the generations the run has finished."""
    status = rundir.read_status()  # valid, or the refusal names it
    if not rundir.state_dir.is_dir():
        raise RunDirError(f"{rundir.state_dir}: missing, so there is nothing to resume from")
    for folder in (rundir.state_dir, rundir.samples_dir, *(rundir.samples_dir / c.name for c in chain_specs(cfg))):
        if folder.is_symlink():  # what a resume writes there would land outside the run directory
            raise RunDirError(f"{folder}: a link; a run writes only in folders of its own directory")
    started = rundir.state_dir / "preset.toml"
    if started.is_file() and started.read_text() != cfg.to_toml():
        before = load_preset(str(started)).with_generations(cfg.generations)
        changes = [
            f"{s}.{k}: {before.section(s).get(k)!r} -> {cfg.section(s).get(k)!r}"
            for s in ("experiment", "data", "engine")
            for k in {**before.section(s), **cfg.section(s)}
            if before.section(s).get(k) != cfg.section(s).get(k)
        ]
        changes += [
            f"chains.{a['name']}.{k}: {a.get(k)!r} -> {b.get(k)!r}"
            for a, b in zip(before.chains, cfg.chains)
            for k in {**a, **b}
            if a.get(k) != b.get(k)
        ]
        if changes or before.to_toml() != cfg.to_toml():
            what = "; ".join(changes[:3]) or "reformatted"
            raise RunDirError(
                f"{rundir.path / 'preset.toml'}: changed since the run started ({what}); resume needs the preset"
                " it started with (a copy is in state/preset.toml)"
            )
    ends = rundir.read_metrics_ends()
    finished = max(status.get("generation", -1), ends[-1]["generation"] if ends else -1) + 1
    if cfg.generations < finished:
        raise RunDirError(
            f"{rundir.path}: {finished} generations are finished, more than the {cfg.generations} asked "
            f"(--generations N extends a run: N >= {finished})"
        )
    ckpt = rundir.read_checkpoint()
    if ckpt is not None and ckpt[0] >= cfg.generations:
        raise RunDirError(
            f"{rundir.state_dir / 'checkpoint.json'}: claims generation {ckpt[0]} of a run of {cfg.generations}"
        )
    keys = [(c.name, s) for c in chain_specs(cfg) for s in c.seeds]
    return ckpt, _rows_to_resume(rundir, ckpt[0] if ckpt else -1, keys)


def _rows_to_resume(rundir: RunDir, checkpoint: int, seeds: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """The rows a resume from the checkpoint keeps: exactly one per (chain, seed) (chains.row_key) and
    generation up to it. Rows after it must be whole generations that a checkpoint interrupted (this
    tool's, computed again); anything else is RunDirError, with the file left as it is."""
    rows = rundir.read_metrics()
    kept = [r for r in rows if r["generation"] <= checkpoint]
    want = {(s, g) for s in seeds for g in range(checkpoint + 1)}
    got = [(row_key(r), r["generation"]) for r in kept]
    if len(got) != len(set(got)) or set(got) != want:
        missing, extra = len(want - set(got)), len(got) - len(set(got) & want)
        raise RunDirError(
            f"{rundir.metrics_path}: does not match the checkpoint at generation {checkpoint} "
            f"({missing} of its {len(want)} rows missing, {extra} unexpected); resume leaves it as it is"
        )
    later = {(row_key(r), r["generation"]) for r in rows if r["generation"] > checkpoint}
    gens = sorted({g for _, g in later})
    whole = {(s, g) for s in seeds for g in gens} == later and len(later) == len(rows) - len(kept)
    if not whole or gens != list(range(checkpoint + 1, checkpoint + 1 + len(gens))):
        raise RunDirError(
            f"{rundir.metrics_path}: rows after the checkpoint at generation {checkpoint} are not whole "
            "generations this run wrote; resume leaves the file as it is"
        )
    return kept


def open_for_resume(rundir: RunDir, generations: int | None = None) -> RunDir:
    """Open a run directory to continue it: take its lock first (RunDirError if another process writes
    it), then check that its state matches its preset and that it can run here. generations: the run's
    new length (--generations N), written to preset.toml once all of that holds."""
    rundir.acquire()
    cfg = rundir.config()
    resumed = cfg if generations is None else cfg.with_generations(generations)
    check_resumable(rundir, resumed)
    check_runnable(resumed)  # e.g. accumulate's memory grows with the generations
    if resumed != cfg:
        atomic_write(rundir.path / "preset.toml", resumed.to_toml().encode())
        rundir.keep_config(resumed)
    return rundir

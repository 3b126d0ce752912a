"""The read model of a run: a run directory read once (its preset, metrics rows, status and state), a run of
several chains as one Run per chain, and labels that tell runs apart. What compare, report, export and the
app read runs through; it reads through rundir.py's validating readers and writes nothing."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, chain_names
from .files import printable
from .numbers import short
from .records import RunState
from .rundir import RunDir, run_state
from .summary import log_keys_of, scalar_keys
from .theory import read_theory

MAX_LABEL_KEYS = 3  # config differences named in a run's label
HIDDEN_KEYS = ("experiment.name", "experiment.description", "experiment.engine")  # name or preset tell these
LABEL_ORDER = ("data", "train", "engine", "experiment")  # which differences name a run first


@dataclass
class Run:
    """One run directory read once: its preset, metrics rows and state."""

    rundir: RunDir
    config: Config
    rows: list[dict[str, Any]]
    status: dict[str, Any]
    state: RunState
    label: str = ""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def engine(self) -> str:
        return self.config.engine_name

    @functools.cached_property
    def log_keys(self) -> set[str]:
        """The metrics the run's engine summarises in log space (summary.py)."""
        return log_keys_of(self.engine)

    @functools.cached_property
    def theory(self) -> dict[str, np.ndarray]:
        """What theory expects of the mean over seeds of some metrics, per generation (theory.py; {}: none)."""
        return read_theory(self.rundir.path)

    @property
    def last_generation(self) -> int:
        """The last generation with metrics on disk (-1: none)."""
        return max((r["generation"] for r in self.rows), default=-1)

    def progress(self) -> str:
        """How far the run got, for titles: 'finished, 20 generations', 'stopped at generation 37 of 200'."""
        last, total = self.last_generation, self.config.generations
        if last < 0:
            return f"{self.state}, no generation finished yet"
        if self.state == RunState.FINISHED:
            return f"finished, {last + 1} generations"
        where = "running, at" if self.state == RunState.RUNNING else f"{self.state} at"
        return f"{where} generation {last} of {total - 1}"


def load_run(path: Path | str | RunDir) -> Run:
    rundir = path if isinstance(path, RunDir) else RunDir.open(Path(path))
    status = rundir.read_status()
    cfg = rundir.config()
    return Run(rundir, cfg, rundir.read_metrics(), status, run_state(rundir, status), label=cfg.name)


def load_runs(paths: Sequence[Path | str | RunDir]) -> list[Run]:
    """The runs, labelled; a run of several chains as one Run per chain ('label · chain'): reports draw a
    line per chain and compare puts chains side by side as it does runs."""
    runs = [load_run(p) for p in paths]
    for run, label in zip(runs, run_labels(runs)):
        run.label = label
    return [c for run in runs for c in chain_runs(run)]


def chain_runs(run: Run) -> list[Run]:
    if not run.config.chains:
        return [run]
    return [
        Run(
            run.rundir.chain_view(name),
            run.config.chain(name),
            [r for r in run.rows if r.get("chain") == name],
            run.status,
            run.state,
            label=f"{run.label} · {name}",
        )
        for name in chain_names(run.config)
    ]


def _flat_config(cfg: Config) -> dict[str, Any]:
    return {f"{s}.{k}": v for s in ("experiment", "data", "train", "engine") for k, v in cfg.section(s).items()}


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Short names that tell the runs apart: the preset name plus the settings that differ
    (e.g. 'mode=replace' and 'mode=accumulate'); directory names when nothing else does."""
    flats = [_flat_config(r.config) for r in runs]
    one_engine = len({r.engine for r in runs}) == 1  # else engine.* keys differ by construction: noise
    keys = [k for f in flats for k in f if k not in HIDDEN_KEYS and (one_engine or not k.startswith("engine."))]
    keys = sorted(set(keys), key=lambda k: (LABEL_ORDER.index(k.split(".")[0]), keys.index(k)))
    differ = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1][:MAX_LABEL_KEYS]
    same_name = len({r.name for r in runs}) == 1
    labels = []
    for run, flat in zip(runs, flats):
        parts = [f"{k.split('.')[-1]}={short(flat.get(k), width=20, quote=False)}" for k in differ]
        if not (same_name and parts):
            parts.insert(0, run.name)
        labels.append(" ".join(parts))
    if len(set(labels)) < len(labels):  # printable: a label is drawn and written as UTF-8 text
        labels = [printable(r.rundir.path.name) for r in runs]
    if len(set(labels)) < len(labels):
        labels = [printable(str(r.rundir.path)) for r in runs]
    return labels


def shared_metrics(runs: Sequence[Run]) -> list[str]:
    """Scalar metrics present in every run, in the first run's order."""
    keys = [scalar_keys(r.rows) for r in runs]
    return [k for k in keys[0] if all(k in other for other in keys[1:])] if keys else []

"""Chains: the model lineages of one run. A single-engine preset is one chain with no name (its rows, files
and state are as they always were); a preset with [[chains]] declares several, each with a name, an
engine, that engine's keys and its seeds (the experiment's unless it gives its own). Seed i of every
chain is one replicate of the population: chains exchange samples and are compared seed by seed.

Run directory of a multi-chain run: every metrics row has a `chain` field (the chain's name);
samples/<chain>/gen-NNNNNN.* per chain; state/reference-<chain>-<seed>/ and, in a checkpoint,
<chain>.data<i> / <chain>.pool<i> / <chain>.real<i> (how many of the data's first examples are real)
arrays, <chain>-model<i>/ folders and rng.json as {chain: states}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engines import DataError, Engine

CHAIN_KEYS = ("name", "engine", "seeds")  # a [[chains]] table's own keys; the rest are its engine's
CHAIN_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
DISTANCE_PREFIX = "dist_"  # row key of a chain's distance to another chain: dist_<other chain's name>


@dataclass(frozen=True)
class ChainSpec:
    name: str  # "" for the one chain of a single-engine preset
    engine_name: str
    params: dict[str, Any]
    seeds: list[int]


def row_key(row: dict[str, Any]) -> tuple[str, int]:
    """What identifies a metrics row within a generation: its chain ("" for none) and seed."""
    return row.get("chain", ""), row["seed"]


def rng_from(state: dict[str, Any]) -> np.random.Generator:
    """The generator a seed had when its state was taken (bit_generator.state): a checkpoint's, a worker's."""
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = state
    return rng


@dataclass
class Group:
    """The seeds that train together, and what they carry from one generation to the next."""

    seeds: list[int]
    rngs: list[np.random.Generator]
    real: np.ndarray
    data: np.ndarray
    pool: np.ndarray
    reference: Any = None
    model: Any = None
    rng_states: list[dict[str, Any]] | None = None  # as at the end of the last finished generation
    real_count: int | None = None  # how many of data's first examples are real (None: all, generation 0's)
    detector_real: Any = None  # features of the detector's held-apart real examples, once computed (detector.py)


@dataclass
class Chain:
    """One chain at run time: its engine and its groups of seeds."""

    name: str
    engine: Engine
    seeds: list[int]
    groups: list[Group] = field(default_factory=list)

    def state_name(self, what: str) -> str:
        """A file or folder name in state/ ('model0'; 'a-model0' for chain a of a multi-chain run)."""
        return f"{self.name}-{what}" if self.name else what

    def array_name(self, what: str) -> str:
        """A key in a checkpoint's data.npz ('data0'; 'a.data0')."""
        return f"{self.name}.{what}" if self.name else what

    @property
    def rngs(self) -> list[np.random.Generator]:
        return [r for g in self.groups for r in g.rngs]

    def seed_groups(self) -> list[list[int]]:
        """The seeds that train together: all of them for a batched engine, else one at a time."""
        return [self.seeds] if self.engine.batched else [[s] for s in self.seeds]

    def start(self) -> None:
        """Groups at generation 0: each seed's RNG seeded with the seed, the real data drawn with it."""
        for seeds in self.seed_groups():
            rngs = [np.random.default_rng(s) for s in seeds]
            real = self.engine.real_data(rngs)
            self.groups.append(Group(seeds, rngs, real, real, real))


def check_shapes(chains: list[Chain]) -> None:
    """Chains that exchange arrays (the default to_shared) must hold examples of one shape: DataError, one
    line, at the start of the run when the shapes were not known before (images from the hub)."""
    arrays = [ch for ch in chains if type(ch.engine).to_shared is Engine.to_shared]
    shapes = {ch.name: ch.groups[0].real.shape[2:] for ch in arrays}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise DataError(f"chains: examples of different shapes cannot feed each other ({described})")


@dataclass
class Step:
    """One group's generation: its model, the samples the next data are drawn from, its metrics rows."""

    model: Any
    samples: np.ndarray
    rows: list[dict[str, Any]]


def shared_samples(chains: list[Chain], steps: list[list[Step]]) -> list[list[np.ndarray | None]]:
    """received[c][d]: chain d's samples of this generation in chain c's data form (None for d = c), through
    to_shared and from_shared: text re-tokenised, arrays as they are."""
    samples = [np.concatenate([s.samples for s in ch_steps]) for ch_steps in steps]
    shared = [ch.engine.to_shared(x) for ch, x in zip(chains, samples)]
    return [
        [None if d == c else ch.engine.from_shared(shared[d]) for d in range(len(chains))]
        for c, ch in enumerate(chains)
    ]


def measure_distances(chains: list[Chain], steps: list[list[Step]], received: list[list[Any]]) -> None:
    """Add to each chain's rows its engine's distance to every other chain, seed by seed (groups pair up:
    chains of one kind of data group their seeds alike)."""
    for c, ch in enumerate(chains):
        if ch.engine.DISTANCE is None:
            continue
        for d, other in enumerate(chains):
            if d == c or len(steps[d]) != len(steps[c]):
                continue
            start = 0
            for step, other_step in zip(steps[c], steps[d]):
                k = len(step.rows)
                values = ch.engine.distance(step.model, other_step.model, received[c][d][start : start + k])
                start += k
                for row, v in zip(step.rows, values):
                    row[DISTANCE_PREFIX + other.name] = float(v) if np.isfinite(v) else None  # JSON has no inf

"""What a chain's next training set is drawn from: its own samples, the other chains' samples and, among
its own seeds, the other seeds' samples. The data modes (datamodes.py) then apply to the result as they
apply to a single chain's samples (keep and fresh still add real data).

- data.mix = P (chains x chains, row = receiving chain, column = source, rows sum to 1): seed i of chain c
  takes P[c][d] of its n synthetic examples from seed i of chain d (counts by largest remainder), drawn
  without replacement (with replacement only when d gave fewer examples than asked), its own among them.
- data.share_others = s: P = 1 - s on the diagonal and s split equally among the other chains.
- data.share_seeds = s: seed i adds round(s * n) of each other seed's samples (of its population, the
  data.population consecutive seeds it belongs to) to its own n. At s = 1 every seed of a population trains
  on the same pooled P x n examples: the population is one chain of sample size P x n.
A chain whose row is its own (P[c][c] = 1) and share_seeds = 0 draw nothing: such a chain's numbers are
those of a run of that chain alone. All draws use the receiving seed's own Generator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .chains import Chain, Step
from .config import DataSection


def proportions(data: DataSection, chains: int) -> np.ndarray:
    """The (chains, chains) matrix of what each chain's synthetic data are drawn from."""
    if data.mix:
        return np.array(data.mix, dtype=float)
    s = data.share_others
    if chains < 2:
        return np.eye(chains)
    return np.full((chains, chains), s / (chains - 1)) * (1 - np.eye(chains)) + (1 - s) * np.eye(chains)


def counts(shares: np.ndarray, n: int) -> np.ndarray:
    """n split by shares (summing to 1) into integers summing to n: floors, then the largest remainders."""
    raw = shares * n
    out = np.floor(raw).astype(int)
    order = np.argsort(-(raw - out), kind="stable")
    out[order[: n - out.sum()]] += 1
    return out


def draw(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k examples of x (n, ...): without replacement when x has them, else with."""
    if not len(x):  # e.g. generated text that tokenises to less than one block
        raise ValueError(f"{k} examples to draw from a chain that gave none")
    return x[rng.choice(len(x), k, replace=k > len(x))]


def mix_chain(
    c: int, own: np.ndarray, received: list[np.ndarray | None], shares: np.ndarray, rngs: list[np.random.Generator]
) -> np.ndarray:
    """Chain c's synthetic data (S, n, ...) from its own samples own (S, n, ...) and received[d], chain d's
    samples in chain c's data form (None for c itself), by the row shares of proportions()."""
    if shares[c] == 1:
        return own
    k = counts(shares, own.shape[1])
    out = []
    for i, rng in enumerate(rngs):
        parts = [draw(own[i] if d == c else received[d][i], k[d], rng) for d in range(len(k)) if k[d]]
        out.append(np.concatenate(parts))
    return np.stack(out)


def pool_seeds(samples: np.ndarray, share: float, population: int, rngs: list[np.random.Generator]) -> np.ndarray:
    """Each seed's samples (S, n, ...) and round(share * n) of every other seed's of its population:
    (S, n + (population - 1) * round(share * n), ...)."""
    s, n = samples.shape[:2]
    k = round(share * n)
    if k == 0:
        return samples
    size = population or s
    out = []
    for i, rng in enumerate(rngs):
        start = i - i % size
        others = [j for j in range(start, start + size) if j != i]
        out.append(np.concatenate([samples[i]] + [samples[j] if k == n else draw(samples[j], k, rng) for j in others]))
    return np.stack(out)


def synthetic_data(
    chains: list[Chain], steps: list[list[Step]], data: DataSection, received: list[list[Any]] | None
) -> list[np.ndarray | None]:
    """Each chain's synthetic data for its next generation, (S, n', ...), its samples mixed by the preset's
    proportions and shares; None for a chain that draws nothing (its groups' own samples, as they are).
    received: chains.shared_samples() (None for a single chain)."""
    shares = proportions(data, len(chains))
    out: list[np.ndarray | None] = []
    for c, (ch, ch_steps) in enumerate(zip(chains, steps)):
        if shares[c, c] == 1 and not data.share_seeds:
            out.append(None)
            continue
        own = np.concatenate([s.samples for s in ch_steps])
        mixed = own if shares[c, c] == 1 else mix_chain(c, own, received[c], shares[c], ch.rngs)
        out.append(pool_seeds(mixed, data.share_seeds, data.population, ch.rngs))
    return out

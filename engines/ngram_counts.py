"""Word n-gram models, every seed at once, in numpy: counts, probabilities and sampling (no Python loop
over tokens or sequences; generation loops over the new positions only). Beam search: engines/ngram_search.py.

An m-gram is keyed by (rank of its first m-1 words among the (m-1)-grams) * V + its last word, where the
0-gram of a seed is the seed itself: the keys of one order, sorted, hold the continuations of each
context contiguously, seeds apart, and every key fits in int64 whatever the order. Counts are taken
inside each block (sliding windows), so a block's first words have shorter histories.

Smoothing (Chen & Goodman 1998):
- "kneser-ney": interpolated Kneser-Ney with one discount per order and seed, D = n1 / (n1 + 2 n2) from
  the count-of-counts of the counts that order uses (raw counts at the top order of the recursion,
  continuation counts N1+(. w) below it), floored at D_MIN so that every word keeps some mass;
  unigrams interpolate with the uniform distribution over the vocabulary.
- "add-k": (c(h w) + k) / (c(h) + k V) with the longest history available; an unseen history gives 1/V.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

D_MIN = 0.05  # a floor on the Kneser-Ney discount: collapsed data can have no singletons at some order
CHUNK_ELEMS = 1 << 23  # dense (rows, V) blocks are cut to about this many float64s (64 MiB)


@dataclass
class Level:
    """The m-grams of all seeds for one m >= 1; contexts are the (m-1)-grams (the seeds for m = 1)."""

    keys: np.ndarray  # (K,) int64 sorted: context rank * V + last word
    raw: np.ndarray  # (K,) int64 occurrences (float64 weighted occurrences when the blocks were weighted)
    cont: np.ndarray  # (K,) int64 distinct words seen before it (N1+(. g)); zeros at the model's order
    seed: np.ndarray  # (K,) int64 the seed each m-gram belongs to
    starts: np.ndarray  # (P + 1,) int64: context r's continuations are keys[starts[r]:starts[r + 1]]
    # weighted blocks: the occurrences, each block once (int64), whose count-of-counts give the discounts
    tally: np.ndarray | None = None

    @property
    def occurrences(self) -> np.ndarray:
        """(K,) int64: how often each m-gram occurs in the blocks counted, whatever their weights."""
        return self.raw if self.tally is None else self.tally


@dataclass
class NgramModel:
    order: int
    vocab: int
    smoothing: str
    k: float
    levels: list[Level]  # levels[m - 1]: the m-grams
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # what is derived from the counts

    @property
    def seeds(self) -> int:
        return len(self.levels[0].starts) - 1

    def unigram_counts(self) -> np.ndarray:
        """(S, V) int64: each seed's word counts in its training data."""
        lv = self.levels[0]
        out = np.zeros(self.seeds * self.vocab, dtype=np.int64)
        out[lv.keys] = lv.occurrences
        return out.reshape(self.seeds, self.vocab)

    # --- derived per context (cheap, recomputed on load) -----------------------------------------
    def context_sums(self, m: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """Per context of order m: the sum of its continuations' counts and how many have a count > 0."""
        cache = self.cache.setdefault("_sums", {})
        if (m, kind) not in cache:
            lv = self.levels[m - 1]
            counts = lv.raw if kind == "raw" else lv.cont
            ctx = lv.keys // self.vocab
            n = len(lv.starts) - 1
            cache[m, kind] = (
                np.bincount(ctx, weights=counts, minlength=n),
                np.bincount(ctx, weights=counts > 0, minlength=n),
            )
        return cache[m, kind]

    def discount(self, m: int, kind: str) -> np.ndarray:
        """(S,) Kneser-Ney discount of order m for each seed: n1 / (n1 + 2 n2), floored at D_MIN."""
        cache = self.cache.setdefault("_d", {})
        if (m, kind) not in cache:
            lv = self.levels[m - 1]
            counts = lv.occurrences if kind == "raw" else lv.cont  # weighted: Kneser-Ney's D of the blocks
            n1 = np.bincount(lv.seed, weights=counts == 1, minlength=self.seeds)
            n2 = np.bincount(lv.seed, weights=counts == 2, minlength=self.seeds)
            with np.errstate(invalid="ignore", divide="ignore"):
                d = n1 / (n1 + 2 * n2)
            cache[m, kind] = np.clip(np.nan_to_num(d, nan=D_MIN), D_MIN, 1.0)
        return cache[m, kind]

    def base(self, top: int) -> np.ndarray:
        """(S, V): what the levels above 1 interpolate with, for histories whose top order is top."""
        cache = self.cache.setdefault("_base", {})
        if top not in cache:
            S, V = self.seeds, self.vocab
            if self.smoothing == "add-k" and top > 1:
                cache[top] = np.full((S, V), 1.0 / V)
            else:
                lv, kind = self.levels[0], "raw" if top == 1 else "cont"
                counts = np.zeros(S * V)
                counts[lv.keys] = lv.raw if kind == "raw" else lv.cont
                counts = counts.reshape(S, V)
                total = counts.sum(axis=1, keepdims=True)
                if self.smoothing == "add-k":
                    cache[top] = (counts + self.k) / (total + self.k * V)
                else:
                    d = self.discount(1, kind)[:, None]
                    seen = (counts > 0).sum(axis=1, keepdims=True)
                    cache[top] = (np.maximum(counts - d, 0) + d * seen / V) / total
        return cache[top]

    # --- save / load --------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        arrays = {"meta": np.array([self.order, self.vocab, self.k], dtype=np.float64)}
        arrays["smoothing"] = np.array(self.smoothing)
        for m, lv in enumerate(self.levels, 1):
            for f in ("keys", "raw", "cont", "seed", "starts"):
                arrays[f"{f}{m}"] = getattr(lv, f)
            if lv.tally is not None:
                arrays[f"tally{m}"] = lv.tally
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> NgramModel:
        with np.load(path, allow_pickle=False) as z:
            order, vocab, k = z["meta"]
            levels = [
                Level(
                    *(z[f"{f}{m}"] for f in ("keys", "raw", "cont", "seed", "starts")),
                    z.get(f"tally{m}"),
                )
                for m in range(1, int(order) + 1)
            ]
            return cls(int(order), int(vocab), str(z["smoothing"]), float(k), levels)


def count(
    data: np.ndarray, vocab: int, order: int, smoothing: str, k: float, weights: np.ndarray | None = None
) -> NgramModel:
    """The n-gram counts of orders 1..order of each seed's blocks, data (S, N, L) int word ids. weights
    (S, N) > 0: each block's n-grams count that much (float counts; Kneser-Ney's discounts still come
    from the count-of-counts of the blocks counted once, the type statistics they estimate: Level.tally)."""
    S, N, L = data.shape
    if order > L:
        raise ValueError(f"blocks of {L} words hold no {order}-gram")
    tokens = np.asarray(data, dtype=np.int64)
    prev = np.broadcast_to(np.arange(S, dtype=np.int64)[:, None, None], (S, N, L + 1))  # the 0-grams: seeds
    prev_seed = np.arange(S, dtype=np.int64)
    levels: list[Level] = []
    for m in range(1, order + 1):
        keys = prev[:, :, : L - m + 1] * vocab + tokens[:, :, m - 1 :]
        uniq, inv, raw = np.unique(keys.ravel(), return_inverse=True, return_counts=True)
        n_ctx = len(prev_seed)
        ctx = uniq // vocab
        starts = np.concatenate([[0], np.cumsum(np.bincount(ctx, minlength=n_ctx))])
        seed = prev_seed[ctx]
        if levels:  # N1+(. g) of the (m-1)-grams: distinct m-grams that end with them
            suffix = np.empty(len(uniq), dtype=np.int64)
            suffix[inv] = prev[:, :, 1 : L - m + 2].ravel()
            levels[-1].cont = np.bincount(suffix, minlength=len(levels[-1].keys))
        level = Level(uniq, raw.astype(np.int64), np.zeros(len(uniq), np.int64), seed, starts)
        if weights is not None:
            per_window = np.broadcast_to(weights[:, :, None], keys.shape).ravel()
            level.raw, level.tally = np.bincount(inv, weights=per_window, minlength=len(uniq)), level.raw
        levels.append(level)
        prev, prev_seed = inv.reshape(S, N, L - m + 1), seed
    return NgramModel(order, vocab, smoothing, k, levels)


def _contexts(model: NgramModel, seed: np.ndarray, hist: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """For j = 0..c: (found, rank) of the last j words of each history among the j-grams (j = 0: the seed)."""
    out = [(np.ones(len(seed), bool), seed.astype(np.int64))]
    c = hist.shape[1]
    for j in range(1, c + 1):
        rank, found = seed.astype(np.int64), np.ones(len(seed), bool)
        for i, tok in enumerate(hist[:, c - j :].T.astype(np.int64)):
            keys = model.levels[i].keys
            key = rank * model.vocab + tok
            idx = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
            found &= keys[idx] == key
            rank = np.where(found, idx, 0)
        out.append((found, rank))
    return out


def _terms(model: NgramModel, seed: np.ndarray, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """The interpolation as (top, weight of the base distribution (R,), [(m, rows, ctx rank, scale, D,
    counts)]): P(w | h) = weight * base[seed, w] + sum over terms of scale * max(counts[m-gram h_m w] - D, 0)."""
    R, c = hist.shape
    top = c + 1
    ctxs = _contexts(model, seed, hist)
    weight = np.ones(R)
    terms = []
    for m in range(top, 1, -1):
        kind = "raw" if m == top else "cont"
        found, rank = ctxs[m - 1]
        total, seen = model.context_sums(m, kind)
        c_h = np.where(found, total[rank], 0.0)
        rows = np.flatnonzero(c_h > 0)
        lv = model.levels[m - 1]
        counts = lv.raw if kind == "raw" else lv.cont
        if model.smoothing == "add-k":  # the longest history only
            denom = c_h[rows] + model.k * model.vocab
            terms.append((m, rows, rank[rows], 1.0 / denom, np.zeros(len(rows)), counts))
            weight[rows] = model.k * model.vocab / denom
            break
        d = model.discount(m, kind)[seed[rows]]
        terms.append((m, rows, rank[rows], weight[rows] / c_h[rows], d, counts))
        weight[rows] *= d * seen[rank[rows]] / c_h[rows]
    return top, weight, terms


def prob_of(model: NgramModel, seed: np.ndarray, hist: np.ndarray, word: np.ndarray) -> np.ndarray:
    """P(word | history) for each row: seed (R,), hist (R, c) the c words before (c < order), word (R,)."""
    top, weight, terms = _terms(model, seed, hist)
    p = weight * model.base(top)[seed, word]
    for m, rows, rank, scale, d, counts in terms:
        keys = model.levels[m - 1].keys
        key = rank * model.vocab + word[rows]
        idx = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        hit = keys[idx] == key
        p[rows] += np.where(hit, scale * np.maximum(counts[idx] - d, 0), 0.0)
    return p


def dense(model: NgramModel, seed: np.ndarray, hist: np.ndarray, dtype=np.float64) -> np.ndarray:
    """(R, V): the whole next-word distribution of each row (rows: seed (R,), hist (R, c))."""
    top, weight, terms = _terms(model, seed, hist)
    out = weight.astype(dtype)[:, None] * model.base(top).astype(dtype, copy=False)[seed]
    for m, rows, rank, scale, d, counts in terms:
        starts = model.levels[m - 1].starts
        lo, n = starts[rank], starts[rank + 1] - starts[rank]
        at = np.repeat(rows, n)
        pos = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
        words = model.levels[m - 1].keys[pos] % model.vocab
        out[at, words] += np.repeat(scale, n) * np.maximum(counts[pos] - np.repeat(d, n), 0)
    return out


def block_nll(model: NgramModel, blocks: np.ndarray) -> np.ndarray:
    """(S, n) mean NLL per predicted word (words 2..L given the ones before in the block) of blocks (S, n, L);
    inf where a word has probability 0 (add-k with k = 0)."""
    S, n, L = blocks.shape
    blocks = np.asarray(blocks, dtype=np.int64)
    seeds = np.repeat(np.arange(S), n)
    c = model.order - 1
    logp = np.zeros((S * n,))
    with np.errstate(divide="ignore"):
        for t in range(1, min(c, L)):  # a block's first words: shorter histories
            flat = blocks.reshape(S * n, L)
            logp += np.log(prob_of(model, seeds, flat[:, :t], flat[:, t]))
        if c < L:  # every later word: the full history, all at once
            win = np.lib.stride_tricks.sliding_window_view(blocks, c + 1, axis=2)[:, :, 1 if c == 0 else 0 :]
            w = win.shape[2]
            rows = np.repeat(seeds, w)
            p = prob_of(model, rows, win[..., :c].reshape(len(rows), c), win[..., c].ravel())
            logp += np.log(p).reshape(S * n, w).sum(axis=1)
    return (-logp / (L - 1)).reshape(S, n)


def row_chunks(rows: int, vocab: int, per_row: int = 1) -> Iterator[slice]:
    """Slices of rows whose dense (rows * per_row, vocab) arrays stay near CHUNK_ELEMS."""
    step = max(1, CHUNK_ELEMS // (vocab * per_row))
    for i in range(0, rows, step):
        yield slice(i, min(rows, i + step))


def _history(prompts: np.ndarray, new: np.ndarray, t: int, c: int) -> np.ndarray:
    """The last c words of prompt + the first t new words, (..., c); prompts (..., L), new (..., >= t)."""
    seq = np.concatenate([prompts[..., prompts.shape[-1] - c :], new[..., :t]], axis=-1)
    return seq[..., seq.shape[-1] - c :]


def _penalise(p: np.ndarray, seen: np.ndarray, penalty: float) -> None:
    """generate's repetition penalty, which multiplies the log-probability (<= 0) of every word already in
    the row's prompt or continuation by penalty (once however often it occurs): here p ** penalty."""
    rows = np.arange(len(p))[:, None]
    p[rows, seen] = p[rows, seen] ** penalty

"""Beam search and ancestral sampling of the n-gram models (engines/ngram_counts.py), compiled (numba):
each beam search step ranks a beam's next words over sorted successor tables, not a dense row of the vocabulary.

The interpolated distribution of a history h = (..., b) is P(w) = T_n(w) + L_n Q_{n-1}(w), where T_n is the
top order's discounted counts (the successors of h only) and Q_m the lower orders' distribution, which
depends on the last m - 1 words alone: Q_m(w) = T_m(w) + L_m Q_{m-1}(w), down to the base distribution. So
once per model each context's successors are sorted (the top order's by count, the lower orders' by Q_m)
and the base words by probability, and a step takes words from those lists best first (Fagin's threshold
algorithm: from the list that holds the larger share of the highest bound), until none can beat the
beam's width-th best; the seen words, penalised, get a second such walk.

Every value a step ranks is the one the dense rows gave (ngram_counts.dense in float32, then generate's
penalty and the log), computed the same way: float32 products and float64 additions rounded to float32, in
the same order; the penalty's power and the log stay numpy's (its SIMD power and log may differ from libm's
in a last bit), applied to the few candidates. Ties: the lower word id, as the dense argmax passes. The
bounds carry a relative margin (BOUND_MARGIN) far above float32 rounding, so the words ranked are exactly
those the dense search ranked: the rows are identical (tests/test_ngram.py, bench/ngram_generation.py).
Sampling builds each row's float64 distribution and inverts its cumulative sum as numpy did.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit

from . import numba_cache  # noqa: F401 (numba's cache in collapse-tui's folder)
from .ngram_counts import NgramModel, _penalise, row_chunks

BOUND_MARGIN = 1e-5  # relative; float32 rounding of a value is below 4e-7


class Tables:
    """A model's levels as flat arrays for the kernels (what the top order of histories of order - 1 words
    uses: raw counts at the top, continuation counts below), with the sorted lists of the lower orders."""

    def __init__(self, model: NgramModel) -> None:
        n, V, S = model.order, model.vocab, model.seeds
        kinds = {m: "raw" if m == n else "cont" for m in range(1, n + 1)}
        lv = model.levels
        self.keys = np.concatenate([x.keys for x in lv])
        self.koff = np.cumsum([0] + [len(x.keys) for x in lv])
        self.starts = np.concatenate([x.starts for x in lv])
        self.soff = np.cumsum([0] + [len(x.starts) for x in lv])
        counts = [(x.raw if kinds[m] == "raw" else x.cont).astype(np.float64) for m, x in enumerate(lv, 1)]
        self.counts = np.concatenate(counts)
        sums = [model.context_sums(m, kinds[m]) for m in range(1, n + 1)]
        self.total = np.concatenate([s[0] for s in sums])
        self.seen = np.concatenate([s[1] for s in sums])
        self.coff = np.cumsum([0] + [len(s[0]) for s in sums])
        kn = model.smoothing == "kneser-ney"
        self.d = np.zeros((n + 1, S))
        if kn:
            for m in range(2, n + 1):
                self.d[m] = model.discount(m, kinds[m])
        base = model.base(n)
        self.base = base
        self.base32 = base.astype(np.float32)
        self.border = np.lexsort((np.broadcast_to(np.arange(V), (S, V)), -self.base32), axis=1).astype(np.int64)
        self.unigram = np.full((S, V), -1, np.int64)  # each seed's word's rank among the unigrams (-1: unseen)
        self.unigram.ravel()[lv[0].keys] = np.arange(len(lv[0].keys))
        self.kv = float(model.k * model.vocab) if not kn else 0.0
        self.addk = not kn
        self.qv, self.words, self.chain = self._sorted_lists(model, base)

    def _sorted_lists(self, model: NgramModel, base: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each context's successors best first (ties: the lower word), in place of its keys: at the orders
        2..n-1 (Kneser-Ney) by Q_m (qv), at the top order by count; their words, and their counts (the
        order's kind) with those of their last m - 1, m - 2, ... words at the orders below (chain), read in
        sequence by the walks."""
        n, V = model.order, model.vocab
        order = np.zeros(len(self.keys), np.int64)
        qv = np.zeros(len(self.keys))
        suffixes = np.zeros(len(self.keys), np.int64)
        lv = model.levels
        suffix = lv[0].seed  # per m-gram, the index of its last m - 1 words among the (m-1)-grams
        q = base[lv[0].seed, lv[0].keys % V]  # Q_1 of each unigram
        for m in range(2, n + 1):
            keys, ctx, word = lv[m - 1].keys, lv[m - 1].keys // V, lv[m - 1].keys % V
            suffix = np.searchsorted(lv[m - 2].keys, suffix[ctx] * V + word)
            lo = self.koff[m - 1]
            suffixes[lo : lo + len(keys)] = suffix + self.koff[m - 2]
            if m == n:  # the top order by count
                order[lo:] = np.lexsort((word, -lv[m - 1].raw, ctx))
            elif model.smoothing == "kneser-ney":
                total, seen = model.context_sums(m, "cont")
                d = model.discount(m, "cont")[lv[m - 1].seed]
                ch = total[ctx]
                with np.errstate(divide="ignore", invalid="ignore"):
                    own = np.maximum(lv[m - 1].cont - d, 0) / ch + d * seen[ctx] / ch * q[suffix]
                q = np.where(ch > 0, own, q[suffix])
                order[lo : lo + len(keys)] = np.lexsort((word, -q, ctx))
                qv[lo : lo + len(keys)] = q[order[lo : lo + len(keys)]]
        chain = np.zeros((len(self.keys), max(n - 1, 1)))  # each key's count, then its last words' below
        at = np.arange(len(self.keys))
        for j in range(n - 1):
            chain[:, j] = self.counts[at]
            at = suffixes[at]
        where = order + np.repeat(self.koff[:-1], np.diff(self.koff))  # the sorted lists' keys, as key indices
        return qv, self.keys[where] % V, chain[where]

    def args(self) -> tuple:
        """(the arrays as the kernels unpack them: tab), addk, kv."""
        tab = (
            self.keys,
            self.koff,
            self.starts,
            self.soff,
            self.counts,
            self.total,
            self.seen,
            self.coff,
            self.d,
            self.base32,
            self.border,
            self.words,
            self.qv,
            self.chain,
            self.unigram,
            self.base,
        )
        return tab, self.addk, self.kv


def tables(model: NgramModel) -> Tables:
    if "_tables" not in model.cache:
        model.cache["_tables"] = Tables(model)
    return model.cache["_tables"]


KERNEL = {"cache": True, "nogil": True, "error_model": "numpy"}
INLINE = {**KERNEL, "inline": "always"}  # numba's own inlining: no call, no reference counts of the arrays


@njit(**INLINE)
def _work(n):
    """A row's work arrays: the active orders (order, context rank, scale, discount), lam, the context
    ranks, and the walks' places and ends in each list."""
    return (
        np.empty(n, np.int64),
        np.empty(n, np.int64),
        np.empty(n),
        np.empty(n),
        np.empty(n + 1),
        np.empty(n, np.int64),
        np.empty(n + 1, np.int64),
        np.empty(n + 1, np.int64),
    )


@njit(**INLINE)
def _find(keys, lo, hi, key):
    """The index of key in the sorted keys[lo:hi], or -1."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(keys) and keys[lo] == key else -1


@njit(**INLINE)
def _segment(tab, m, r):
    """The keys of context r among the m-grams: keys[lo:hi]."""
    koff, starts, soff = tab[1], tab[2], tab[3]
    return koff[m - 1] + starts[soff[m - 1] + r], koff[m - 1] + starts[soff[m - 1] + r + 1]


@njit(**INLINE)
def _terms(hist, s, V, n, tab, addk, kv, work):
    """The interpolation of history hist (n - 1 words) of seed s, as ngram_counts._terms computes it: the
    active orders (work's act_*: order, context rank, scale, discount, from the top down; they are
    consecutive), lam[m] the weight of the order-m distribution in P; returns the base distribution's
    weight and the number of active orders."""
    keys, koff, total, seen, coff, d, unigram = tab[0], tab[1], tab[5], tab[6], tab[7], tab[8], tab[14]
    act_m, act_r, act_scale, act_d, lam, ranks = work[0], work[1], work[2], work[3], work[4], work[5]
    c = n - 1
    for j in range(1, c + 1):  # the rank of the last j words among the j-grams (-1: unseen)
        rank = unigram[s, hist[c - j]]
        for i in range(1, j):
            if rank < 0:
                break
            lo, hi = _segment(tab, i + 1, rank)
            pos = _find(keys, lo, hi, rank * V + hist[c - j + i])
            rank = pos - koff[i] if pos >= 0 else -1
        ranks[j] = rank
    weight = 1.0
    nact = 0
    lam[:] = 0.0
    for m in range(n, 1, -1):
        if addk and m < n:
            break
        r = ranks[m - 1]
        lam[m] = weight
        if r < 0 or total[coff[m - 1] + r] <= 0:
            continue
        ch = total[coff[m - 1] + r]
        act_m[nact], act_r[nact] = m, r
        if addk:
            denom = ch + kv
            act_scale[nact], act_d[nact] = 1.0 / denom, 0.0
            weight = kv / denom
        else:
            dm = d[m, s]
            act_scale[nact], act_d[nact] = weight / ch, dm
            weight = weight * (dm * seen[coff[m - 1] + r] / ch)
        nact += 1
    lam[1] = weight
    return weight, nact


@njit(**INLINE)
def _value(w, s, w32, V, tab, nact, work, at, i):
    """P(w) in float32 exactly as the dense rows: the weighted base, then each active order's term added
    in float64 and rounded to float32, from the top down. at: the active order whose sorted list holds w
    at i (-1: none), where its counts at that order and below are (the active orders are consecutive)."""
    keys, counts, base32, chain = tab[0], tab[4], tab[9], tab[13]
    act_m, act_r, act_scale, act_d = work[0], work[1], work[2], work[3]
    v = w32 * base32[s, w]
    for a in range(nact):
        if at >= 0 and a >= at:
            count = chain[i, a - at]
        else:
            lo, hi = _segment(tab, act_m[a], act_r[a])
            pos = _find(keys, lo, hi, act_r[a] * V + w)
            if pos < 0:
                continue
            count = counts[pos]
        v = np.float32(np.float64(v) + act_scale[a] * max(count - act_d[a], 0.0))
    return v


@njit(**INLINE)
def _insert(w, v, top_w, top_v, filled):
    """Put (w, v) into the best-first lists (value, then the lower id) of at most len(top_w); new fill."""
    width = len(top_w)
    i = filled
    if filled == width:
        if v < top_v[width - 1] or (v == top_v[width - 1] and w > top_w[width - 1]):
            return filled
        i = width - 1
    while i > 0 and (v > top_v[i - 1] or (v == top_v[i - 1] and w < top_w[i - 1])):
        if i < width:
            top_w[i], top_v[i] = top_w[i - 1], top_v[i - 1]
        i -= 1
    top_w[i], top_v[i] = w, v
    return min(filled + 1, width)


@njit(**INLINE)
def _bound(a, i, s, n, nact, w32, lower, tab, work):
    """The most the word at i of active order a's list (a = nact: the base order) can be worth: at the top
    order its term and the most the lower orders still give (lower), below it lam[m] Q_m, at the base its
    value."""
    if a == nact:
        return np.float64(w32 * tab[9][s, tab[10][s, i]])
    m = work[0][a]
    if m == n:
        return work[2][a] * max(tab[13][i, 0] - work[3][a], 0.0) + lower
    return work[4][m] * tab[12][i]


@njit(**INLINE)
def _walk(seen_pass, marks, penalty, out, filled, n_seen, s, n, V, w32, nact, tab, work, cur, end):
    """Take the words of the active orders' lists and the base order best first (Fagin's threshold
    algorithm), until the highest bound cannot beat the width-th best: the words not yet evaluated into
    top_w, the seen ones (stamped told when penalised; else -2) left out; or in the seen pass those alone,
    unpenalised, into seen_w. cur, end: each list's place and end. Returns (filled, n_seen)."""
    border, words = tab[10], tab[11]
    stamp, done, told = marks
    top_w, top_v, seen_w, seen_v = out
    width = len(top_w)
    limit = (top_v[width - 1] * (1 - BOUND_MARGIN)) ** (1 / penalty) if seen_pass else 0.0  # top_v stays
    while True:
        lower, low_at = 0.0, -1  # the most a word not yet taken gets below the top order, and its list
        for a in range(nact + 1):
            if cur[a] < end[a] and (a == nact or work[0][a] < n):
                b = _bound(a, cur[a], s, n, nact, w32, 0.0, tab, work)
                if b > lower:
                    lower, low_at = b, a
        best, most = -1, -1.0
        for a in range(nact + 1):
            if cur[a] < end[a]:
                b = _bound(a, cur[a], s, n, nact, w32, lower, tab, work)
                if b > most:
                    best, most = a, b
        if best < 0:
            break
        if filled == width:
            if not seen_pass and best == nact:  # the base values are exact: ties go to the lower id
                w = border[s, cur[best]]
                if most < top_v[width - 1] or (most == top_v[width - 1] and w > top_w[width - 1]):
                    break
            elif most * (1 + BOUND_MARGIN) < (limit if seen_pass else top_v[width - 1]) * (1 - BOUND_MARGIN):
                break
        # The stop test above takes the highest bound; a word may come from any list. The top order's bound
        # is its own term plus lower: when lower is the larger share, take that list's word, or the walk
        # drains every successor of a frequent context before the bound can fall (102 words a step on
        # WikiText-2, 15 so).
        if low_at >= 0 and best < nact and work[0][best] == n and most - lower < lower:
            best = low_at
        i = cur[best]
        cur[best] += 1
        w = border[s, i] if best == nact else words[i]
        if (stamp[w] != told) if seen_pass else (stamp[w] == done or stamp[w] == told):
            continue
        v = _value(w, s, w32, V, tab, nact, work, best if best < nact else -1, i)
        if seen_pass:
            seen_w[n_seen], seen_v[n_seen] = w, v
            n_seen += 1
        else:
            filled = _insert(w, v, top_w, top_v, filled)
        stamp[w] = done
    return filled, n_seen


@njit(**INLINE)
def _candidates(seq, seq_len, s, n, V, penalised, penalty, stamp, mark, out, tab, addk, kv, work):
    """The best len(top_w) words after the words seq[:seq_len] (prompt and continuation) by their unpenalised
    value, the seen words left out when penalised; and the seen words that may beat them once penalised
    (value ** penalty), with their unpenalised values (out = (top_w, top_v, seen_w, seen_v); the count of
    seen words returned)."""
    top_w, top_v = out[0], out[1]
    width = len(top_w)
    weight, nact = _terms(seq[seq_len - (n - 1) : seq_len], s, V, n, tab, addk, kv, work)
    w32 = np.float32(weight)
    done, told = mark, mark + 1  # stamps: evaluated, and (penalised) seen
    if penalised:
        for i in range(seq_len):
            stamp[seq[i]] = told
    cur, end = work[6], work[7]
    for a in range(nact + 1):
        cur[a], end[a] = _segment(tab, work[0][a], work[1][a]) if a < nact else (0, V)
    filled, n_seen = 0, 0
    marks = (stamp, done, told if penalised else -2)  # stamps start at -1
    filled, n_seen = _walk(False, marks, penalty, out, filled, n_seen, s, n, V, w32, nact, tab, work, cur, end)
    if penalised:  # the seen words that may still beat the width-th once penalised
        for a in range(nact + 1):
            cur[a], end[a] = _segment(tab, work[0][a], work[1][a]) if a < nact else (0, V)
        filled, n_seen = _walk(True, marks, penalty, out, filled, n_seen, s, n, V, w32, nact, tab, work, cur, end)
    for i in range(filled, width):
        top_w[i], top_v[i] = -1, -1.0
    return n_seen


@njit(**KERNEL)
def _step(
    prompts, gen, t, seeds, penalised, penalty, stamp, mark, top_w, top_v, seen_w, seen_v, n_seen, n, V, tab, addk, kv
):
    """One step of every beam of prompts (q, L) with continuations gen (q, beams, >= t): _candidates."""
    q, L = prompts.shape
    beams = gen.shape[1]
    seq = np.empty(L + gen.shape[2], np.int64)
    work = _work(n)
    for i in range(q):
        for j in range(L):  # element by element: a slice assigned whole compiles numba's shape checks (1.6 s)
            seq[j] = prompts[i, j]
        for b in range(beams):
            row = i * beams + b
            for j in range(t):
                seq[L + j] = gen[i, b, j]
            out = (top_w[row], top_v[row], seen_w[row], seen_v[row])
            n_seen[row] = _candidates(
                seq, L + t, seeds[i], n, V, penalised, penalty, stamp, mark + 2 * row, out, tab, addk, kv, work
            )


@njit(**KERNEL)
def _merge(top_w, top_v, seen_w, seen_p, n_seen, cand, prob):
    """Each row's best words among its unpenalised best and its penalised seen words (value, then the lower
    id), best first: cand and prob (float64 of the float32 values)."""
    width = top_w.shape[1]
    tw = np.empty(width, np.int64)
    tv = np.empty(width, np.float32)
    for row in range(len(top_w)):
        filled = 0
        for k in range(width):
            if top_w[row, k] >= 0:
                tw[k], tv[k] = top_w[row, k], top_v[row, k]
                filled += 1
        for k in range(n_seen[row]):
            filled = _insert(seen_w[row, k], seen_p[row, k], tw, tv, filled)
        for k in range(width):  # element by element, as _step
            cand[row, k], prob[row, k] = tw[k], tv[k]


@njit(**KERNEL)
def _select(score, logp, cand, gen, t):
    """Each prompt's best beams among its beams' candidates (beams x width, by summed log-probability, ties:
    the earlier candidate, as a stable sort), in place: score (q, beams), gen (q, beams, new) gets word t."""
    q, beams = score.shape
    width = cand.shape[1]
    total = np.empty(beams * width)
    chosen = np.empty(beams, np.int64)
    kept = np.empty((beams, gen.shape[2]), np.int64)
    for i in range(q):
        for k in range(beams * width):
            total[k] = score[i, k // width] + logp[i * beams + k // width, k % width]
        taken = np.zeros(beams * width, np.bool_)
        for b in range(beams):  # the b-th best: the highest total, the earliest among equal ones
            best = -1
            for k in range(beams * width):
                if not taken[k] and (best < 0 or total[k] > total[best]):
                    best = k
            chosen[b], taken[best] = best, True
        for b in range(beams):
            for j in range(t):
                kept[b, j] = gen[i, chosen[b] // width, j]
        for b in range(beams):
            k = chosen[b]
            for j in range(t):
                gen[i, b, j] = kept[b, j]
            gen[i, b, t] = cand[i * beams + k // width, k % width]
            score[i, b] = total[k]


CHUNK_PROMPTS = 1024  # prompts searched together: the buffers stay small (the seen words: L + new a beam)


def _search(
    pr: np.ndarray, seeds: np.ndarray, new: int, beams: int, penalty: float, model: NgramModel, step
) -> np.ndarray:
    """The best beam of each prompt of one chunk; step(t) after each word."""
    V, width, (tab, addk, kv) = model.vocab, min(beams, model.vocab), tables(model).args()
    q, rows = len(pr), len(pr) * beams
    stamp = np.full(V, -1, np.int64)
    gen = np.zeros((q, beams, new), dtype=np.int64)
    score = np.full((q, beams), -np.inf)
    score[:, 0] = 0.0
    top_w, top_v = np.empty((rows, width), np.int64), np.empty((rows, width), np.float32)
    seen_w, seen_v = np.zeros((rows, pr.shape[1] + new), np.int64), np.zeros((rows, pr.shape[1] + new), np.float32)
    n_seen = np.zeros(rows, np.int64)
    cand, prob = np.empty((rows, width), np.int64), np.empty((rows, width))
    penalised = penalty != 1.0
    for t in range(new):
        mark = 2 * rows * t
        _step(
            pr,
            gen,
            t,
            seeds,
            penalised,
            penalty,
            stamp,
            mark,
            top_w,
            top_v,
            seen_w,
            seen_v,
            n_seen,
            model.order,
            V,
            tab,
            addk,
            kv,
        )
        seen_p = seen_v
        if penalised:  # generate's penalty: p ** penalty for a word already in the row (numpy's float32 power)
            at = np.repeat(np.arange(rows), n_seen)
            col = np.arange(len(at)) - np.repeat(np.cumsum(n_seen) - n_seen, n_seen)
            seen_p = np.zeros_like(seen_v)
            seen_p[at, col] = seen_v[at, col] ** penalty
        _merge(top_w, top_v, seen_w, seen_p, n_seen, cand, prob)
        with np.errstate(divide="ignore"):
            logp = np.log(prob)  # numpy's log, as the dense search took it
        _select(score, logp, cand, gen, t)
        step(t + 1)
    return gen[:, 0]


def beam_search(
    model: NgramModel, seed: np.ndarray, prompts: np.ndarray, new: int, beams: int, penalty: float, report=None
) -> np.ndarray:
    """(R, new) int32: exactly new words continuing each prompt (R, L) of seed (R,), by beam search on summed
    (penalised) log-probabilities as generate(num_beams, repetition_penalty) does; the best beam is kept.
    The best beams of a step lie among each beam's own best words: only those are ranked across beams.
    Chunks of prompts run on NUMBA_NUM_THREADS threads (the kernels release the GIL); the calling thread
    reports the progress of all."""
    R = len(prompts)
    threads = min(numba.config.NUMBA_NUM_THREADS, -(-R // 64))
    bounds = np.linspace(0, R, max(threads, -(-R // CHUNK_PROMPTS)) + 1).astype(int)
    spans = [slice(a, b) for a, b in zip(bounds, bounds[1:])]
    out = np.zeros((R, new), dtype=np.int32)
    done = [0] * len(spans)
    total, reported = len(spans) * new, [0]
    claim = itertools.count()  # next() on it is atomic under the GIL
    caller = threading.get_ident()

    def take_chunks() -> None:
        while (j := next(claim)) < len(spans):
            ch = spans[j]

            def step(t: int, j: int = j, ch: slice = ch) -> None:
                done[j] = t
                if report is not None and threading.get_ident() == caller:
                    where = f"generating {ch.stop if t == new else ch.start}/{R} prompts, word {t}/{new}"
                    reported[0] = sum(done)
                    report("sample", reported[0], total, None, where)

            pr = np.ascontiguousarray(prompts[ch], dtype=np.int64)
            out[ch] = _search(pr, np.ascontiguousarray(seed[ch], dtype=np.int64), new, beams, penalty, model, step)

    tables(model)  # once, before the threads
    with ThreadPoolExecutor(threads - 1) if threads > 1 else contextlib.nullcontext() as pool:
        helpers = [pool.submit(take_chunks) for _ in range(threads - 1)] if pool else []
        take_chunks()
        for f in helpers:
            f.result()
    if report is not None and reported[0] < total:  # a helper thread ran the last words: the end, said once
        report("sample", total, total, None, f"generating {R}/{R} prompts, word {new}/{new}")
    return out


@njit(**KERNEL)
def _dense_rows(prompts, out, t, seeds, p, n, V, tab, addk, kv):
    """Each row's whole next-word distribution after its prompt and out[:, :t], into p (q, V) float64, as
    ngram_counts.dense computes it: the weighted base, then the active orders' terms, from the top down."""
    keys, counts, base = tab[0], tab[4], tab[15]
    q, L = prompts.shape
    seq = np.empty(L + out.shape[1], np.int64)
    work = _work(n)
    for i in range(q):
        for j in range(L):  # element by element, as _step
            seq[j] = prompts[i, j]
        for j in range(t):
            seq[L + j] = out[i, j]
        s = seeds[i]
        weight, nact = _terms(seq[L + t - (n - 1) : L + t], s, V, n, tab, addk, kv, work)
        for w in range(V):
            p[i, w] = weight * base[s, w]
        for a in range(nact):
            r = work[1][a]
            lo, hi = _segment(tab, work[0][a], r)
            for pos in range(lo, hi):
                p[i, keys[pos] - r * V] += work[2][a] * max(counts[pos] - work[3][a], 0.0)


@njit(**KERNEL)
def _inverse_cdf(p, u, words):
    """Each row's word where its cumulative sum (in order, as numpy's cumsum) first reaches u x the total
    (the count of partial sums below it, as the dense sampler took it), at most V - 1."""
    q, V = p.shape
    for i in range(q):
        cum = 0.0
        for w in range(V):
            cum += p[i, w]
            p[i, w] = cum
        target = u[i] * cum
        lo, hi = 0, V
        while lo < hi:
            mid = (lo + hi) >> 1
            if p[i, mid] < target:
                lo = mid + 1
            else:
                hi = mid
        words[i] = min(lo, V - 1)


def ancestral(
    model: NgramModel,
    seed: np.ndarray,
    prompts: np.ndarray,
    new: int,
    u: np.ndarray,
    penalty: float,
    temperature: float,
    report=None,
) -> np.ndarray:
    """(R, new) int32: new words continuing each prompt, each drawn from the (penalised, tempered) next-word
    distribution by inverting its CDF at u (R, new) uniform in [0, 1); the rows are built compiled, the
    penalty's and the temperature's powers stay numpy's."""
    R, V = len(prompts), model.vocab
    tab, addk, kv = tables(model).args()
    out = np.zeros((R, new), dtype=np.int64)
    chunks = list(row_chunks(R, V))
    for j, ch in enumerate(chunks):
        pr = np.ascontiguousarray(prompts[ch], dtype=np.int64)
        seeds = np.ascontiguousarray(seed[ch], dtype=np.int64)
        mine = np.zeros((len(pr), new), dtype=np.int64)
        p = np.empty((len(pr), V))
        for t in range(new):
            _dense_rows(pr, mine, t, seeds, p, model.order, V, tab, addk, kv)
            if penalty != 1.0:
                _penalise(p, np.concatenate([pr, mine[:, :t]], axis=1), penalty)
            if temperature != 1.0:
                p = p ** (1.0 / temperature)
            _inverse_cdf(p, np.ascontiguousarray(u[ch, t]), mine[:, t])
            if report is not None:
                where = f"generating {ch.stop if t + 1 == new else ch.start}/{R} prompts, word {t + 1}/{new}"
                report("sample", j * new + t + 1, len(chunks) * new, None, where)
        out[ch] = mine
    return out.astype(np.int32)

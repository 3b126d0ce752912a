"""What the text engines measure of generated token blocks: per-sequence perplexity under the
generation-0 model (the paper's figure 1) and n-gram diversity. numpy only."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import DETECTOR_AUC, DOWN, UP, Metric

HIST_EDGES = 10 ** np.linspace(0, 4, 41)  # log-spaced per-sequence perplexity bins, 1 .. 10^4
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
HASH_BUCKETS = 64  # bins of each n-gram order in the detector's features
GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: Fibonacci hashing's multiplier (Knuth, TAOCP 6.4)

TEXT_METRICS = {
    "perplexity": Metric("perplexity of the real test blocks", "per token", log=True),
    "variance": Metric("variance of log perplexity of generated blocks", "generation-0 model"),
    "nll": Metric("mean NLL of the real test blocks", "nats per token"),
    **{
        f"seq_ppl_q{round(q * 100):02d}": Metric(
            f"{round(q * 100)}th percentile of generated blocks' perplexity", log=True
        )
        for q in QUANTILES
    },
    "seq_ppl_mean": Metric("mean perplexity of generated blocks", "generation-0 model", log=True),
    **{f"distinct_{n}": Metric(f"distinct {n}-grams among generated ones", "fraction") for n in (1, 2, 3)},
    "rep4": Metric("4-grams repeating an earlier one in their block", "fraction"),
    "rare_mass": Metric("generated tokens among the real text's rarest", "fraction"),
    "detector_auc": DETECTOR_AUC,
}
# the real text's perplexity rises as the model drifts from it, and its words narrow to fewer: distinct_1
# falls whether it decodes by beam search (opt-tiny, 60k characters of tests/data: 0.0056 -> 0.0033 in 5
# generations) or samples
# (ngram-quick: 0.176 -> 0.126 in 8). Not variance, the spread of the generated blocks' log perplexities:
# it rises when sampled (0.33 -> 0.52) and falls under beam search (0.74 -> 0.02)
TEXT_HEADLINE = (("perplexity", UP), ("distinct_1", DOWN))
METRICS = {  # the trained engines' (OPT): what training measured too
    **TEXT_METRICS,
    "train_loss": Metric("training loss", "nats per token"),
    "val_loss": Metric("validation loss of the kept weights", "nats per token"),
}


def seq_ppl_stats(seq_nll: np.ndarray) -> dict[str, Any]:
    """Quantiles, mean and log-spaced histogram of the per-sequence perplexities exp(seq_nll)."""
    ppl = np.exp(seq_nll)
    q = np.quantile(ppl, QUANTILES)
    hist = np.histogram(np.clip(ppl, HIST_EDGES[0], HIST_EDGES[-1]), bins=HIST_EDGES)[0]
    return {
        **{f"seq_ppl_q{round(k * 100):02d}": float(v) for k, v in zip(QUANTILES, q)},
        "seq_ppl_mean": float(ppl.mean()),
        "seq_ppl_hist": [int(c) for c in hist],
    }


def ngrams(blocks: np.ndarray, n: int) -> np.ndarray:
    """All n-grams inside each block, (blocks, L - n + 1, n)."""
    return np.lib.stride_tricks.sliding_window_view(blocks, n, axis=1)


def text_metrics(blocks: np.ndarray, rare: np.ndarray) -> dict[str, float]:
    """distinct_1/2/3 (unique n-grams / all n-grams inside blocks), rep4 (share of a block's 4-grams
    that repeat an earlier one of the same block, mean over blocks) and rare_mass (share of tokens
    marked rare)."""
    blocks = np.asarray(blocks, dtype=np.int64)
    out: dict[str, float] = {}
    for n in (1, 2, 3):
        g = np.ascontiguousarray(ngrams(blocks, n)).reshape(-1, n).view(np.dtype((np.void, 8 * n)))  # a row: an item
        out[f"distinct_{n}"] = float(len(np.unique(g)) / len(g)) if len(g) else 0.0
    rep = []
    for b in ngrams(blocks, 4):
        if len(b):
            rep.append(1.0 - len(np.unique(b, axis=0)) / len(b))
    out["rep4"] = float(np.mean(rep)) if rep else 0.0
    ids = blocks.ravel()
    out["rare_mass"] = float(rare[np.clip(ids, 0, len(rare) - 1)].mean()) if len(ids) else 0.0
    return out


def type_metrics(samples: np.ndarray, train_counts: np.ndarray, first_counts: np.ndarray) -> list[dict[str, Any]]:
    """Per seed, what the generated blocks samples (S, n, L) keep of the vocabulary: support (distinct
    tokens), types_lost (share of the tokens of generation 0's training data, first_counts (S, V), absent
    from them), singletons_lost and doubletons_lost (share of the tokens seen once / twice in this
    generation's training data, train_counts (S, V), absent from them; None when there are none)."""
    S, V = train_counts.shape
    ids = np.asarray(samples, dtype=np.int64).reshape(S, -1) + np.arange(S)[:, None] * V
    generated = np.bincount(ids.ravel(), minlength=S * V).reshape(S, V) > 0
    rows = []
    for s in range(S):
        row: dict[str, Any] = {"support": int(generated[s].sum())}
        for key, have in (
            ("types_lost", first_counts[s] > 0),
            ("singletons_lost", train_counts[s] == 1),
            ("doubletons_lost", train_counts[s] == 2),
        ):
            row[key] = float((have & ~generated[s]).sum() / have.sum()) if have.any() else None
        rows.append(row)
    return rows


def hashed_ngrams(blocks: np.ndarray, buckets: int = HASH_BUCKETS) -> np.ndarray:
    """The detector's features of token blocks (S, n, L): log(1 + count) of each block's tokens and of its
    token pairs, each order hashed into `buckets` bins (the hashing trick, Weinberger et al. 2009, with
    Fibonacci hashing of the ids), (S, n, 2 buckets) floats. Rare tokens that collapse loses, and the
    common ones and pairs it repeats, move the counts of their bins."""
    s, n, _ = blocks.shape
    t = blocks.astype(np.uint64)
    shift = np.uint64(64 - int(np.log2(buckets)))
    with np.errstate(over="ignore"):  # the products wrap around modulo 2^64, as hashing wants
        uni = (t * GOLDEN) >> shift
        bi = (((t[..., :-1] * GOLDEN) ^ t[..., 1:]) * GOLDEN >> shift) + np.uint64(buckets)
    bins = np.concatenate([uni, bi], axis=-1).astype(np.int64) + 2 * buckets * np.arange(s * n).reshape(s, n, 1)
    counts = np.bincount(bins.ravel(), minlength=s * n * 2 * buckets).reshape(s, n, 2 * buckets)
    return np.log1p(counts.astype(np.float64))

"""What the text engines measure ACROSS one generation's continuations (one per prompt): collapse that the
per-block metrics miss, when every prompt is continued by the same sentence. numpy, and Self-BLEU's
clipped counts compiled (engines/bleu_kernel.py).

Continuations are token-id sequences of equal length, (n, L): words for the n-gram engine, the tokenizer's
tokens for the language models.
- cross_rep: the share of the continuations' runs of CROSS_N tokens (all positions) that also occur in
  another prompt's continuation;
- distinct_conts: distinct continuations / continuations;
- self_bleu: BLEU-4 (Papineni et al. 2002, corpus form: clipped n-gram counts summed over hypotheses, then
  the geometric mean of the four precisions) of up to BLEU_HYPOTHESES continuations, each against up to
  BLEU_REFERENCES others as its references (Zhu et al. 2018, Texygen's Self-BLEU), both drawn by a fixed
  seed from the count of continuations alone, so a generation's row is the same on every run and resume;
- unigram_js: the Jensen-Shannon divergence, in bits (0 to 1), between the token distributions of the
  continuations and of the real test text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Metric

CROSS_N = 16  # tokens in a run that cross_rep looks for in the other continuations
BLEU_ORDER = 4
BLEU_HYPOTHESES = 200
BLEU_REFERENCES = 100
BLEU_SEED = 2024  # the fixed draw of hypotheses and references

CROSS_PROMPT_METRICS = {
    "cross_rep": Metric(f"runs of {CROSS_N} tokens also in another prompt's continuation", "fraction"),
    "distinct_conts": Metric("distinct continuations among the prompts'", "fraction"),
    "self_bleu": Metric("BLEU-4 of a continuation against the other prompts'", "0 to 1"),
    "unigram_js": Metric("Jensen-Shannon divergence of generated and real test tokens", "bits"),
}


def gram_ids(conts: np.ndarray, n: int) -> np.ndarray:
    """Every run of n tokens inside each continuation as an integer id, equal runs equal ids: (k, L - n + 1)."""
    conts = np.ascontiguousarray(conts, dtype=np.int64)
    grams = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(conts, n, axis=1))
    rows = grams.reshape(-1, n).view(np.dtype((np.void, 8 * n))).ravel()  # one comparable item per run
    return np.unique(rows, return_inverse=True)[1].reshape(grams.shape[:2])


def cross_rep(conts: np.ndarray, n: int = CROSS_N) -> float | None:
    """The share of runs of n tokens that also occur in another continuation; None without two continuations
    of n tokens."""
    k, L = np.shape(conts)
    if k < 2 or n > L:
        return None
    ids = gram_ids(conts, n)
    owner = np.repeat(np.arange(k), ids.shape[1])
    pairs = np.unique(ids.ravel() * k + owner)  # (run, continuation) once each
    holders = np.bincount(pairs // k, minlength=int(ids.max()) + 1)
    return float((holders[ids] > 1).mean())


def distinct_conts(conts: np.ndarray) -> float | None:
    """Distinct continuations / continuations."""
    k = len(conts)
    return float(len(np.unique(np.asarray(conts), axis=0)) / k) if k else None


def bleu_sample(k: int) -> list[tuple[int, np.ndarray]]:
    """The fixed sample of Self-BLEU: (hypothesis, its references) for up to BLEU_HYPOTHESES of k continuations,
    each with up to BLEU_REFERENCES others, drawn by BLEU_SEED from k alone."""
    rng = np.random.default_rng(BLEU_SEED)
    out = []
    for h in np.sort(rng.choice(k, size=min(BLEU_HYPOTHESES, k), replace=False)):
        refs = rng.choice(k - 1, size=min(BLEU_REFERENCES, k - 1), replace=False)
        out.append((int(h), refs + (refs >= h)))  # the others: indices past h move up by one
    return out


def self_bleu(conts: np.ndarray) -> float | None:
    """Corpus BLEU-4 of the sampled continuations, each against its references; None without two
    continuations of BLEU_ORDER tokens. Every continuation has the same length: the brevity penalty is 1."""
    k, L = np.shape(conts)
    if k < 2 or L < BLEU_ORDER:
        return None
    from .bleu_kernel import clipped_matches  # numba loads for a run, not when a preset is validated

    sample = bleu_sample(k)
    hyps, refs = np.array([h for h, _ in sample]), np.stack([r for _, r in sample])
    log_p = 0.0
    for n in range(1, BLEU_ORDER + 1):
        ids = gram_ids(conts, n)
        clipped = clipped_matches(np.sort(ids, axis=1), hyps, refs)
        if clipped == 0:
            return 0.0
        log_p += np.log(clipped / (len(sample) * ids.shape[1])) / BLEU_ORDER
    return float(np.exp(log_p))


def unigram_js(generated: np.ndarray, real: np.ndarray) -> float | None:
    """Jensen-Shannon divergence, in bits, between the token frequencies of generated and real (any shapes)."""
    a, b = np.asarray(generated, dtype=np.int64).ravel(), np.asarray(real, dtype=np.int64).ravel()
    if not len(a) or not len(b):
        return None
    size = int(max(a.max(), b.max())) + 1
    p, q = np.bincount(a, minlength=size) / len(a), np.bincount(b, minlength=size) / len(b)
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        seen = x > 0
        return float(np.sum(x[seen] * np.log2(x[seen] / m[seen])))

    return max(0.0, (kl(p) + kl(q)) / 2)


def cross_prompt_metrics(conts: np.ndarray, real: np.ndarray) -> dict[str, Any]:
    """The four metrics of one seed's continuations (k, L) against the real test tokens."""
    return {
        "cross_rep": cross_rep(conts),
        "distinct_conts": distinct_conts(conts),
        "self_bleu": self_bleu(conts),
        "unigram_js": unigram_js(conts, real),
    }

"""The metrics across one generation's continuations (engines/cross_prompt.py) against independent
computations: Self-BLEU against a BLEU-4 written from Papineni et al.'s definition over Counters, the
Jensen-Shannon divergence against scipy's, cross_rep and distinct_conts on continuations whose answer is
counted by hand; and on the shipped WikiText-2 text, the n-gram engine's collapse across prompts."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from conftest import WIKI_TEST, WIKI_TRAIN
from scipy.spatial.distance import jensenshannon

from collapse_tui.engines import cross_prompt
from collapse_tui.engines.cross_prompt import (
    CROSS_PROMPT_METRICS,
    bleu_sample,
    cross_prompt_metrics,
    cross_rep,
    distinct_conts,
    self_bleu,
    unigram_js,
)
from collapse_tui.engines.ngram import NgramEngine


def quiet(*_: object) -> None:
    pass


def real_blocks(block_size: int, max_chars: int = 30000) -> tuple[np.ndarray, np.ndarray]:
    data = NgramEngine({"train": WIKI_TRAIN, "test": WIKI_TEST, "max_chars": max_chars, "block_size": block_size})
    return data.dataset().train, data.dataset().test


def plain_bleu4(pairs: list[tuple[list[int], list[list[int]]]]) -> float:
    """Corpus BLEU-4 by its definition: per order, clipped n-gram counts (each n-gram at most as often as in
    the reference that has it most) summed over the hypotheses, over all their n-grams; the geometric mean of
    the four precisions times the brevity penalty (closest reference length)."""
    counted: dict[tuple[tuple[int, ...], int], Counter] = {}

    def grams_of(seq: list[int], n: int) -> Counter:
        key = (tuple(seq), n)
        if key not in counted:
            counted[key] = Counter(tuple(seq[i : i + n]) for i in range(len(seq) - n + 1))
        return counted[key]

    log_p = 0.0
    for n in range(1, 5):
        clipped = total = 0
        for hyp, refs in pairs:
            grams = grams_of(hyp, n)
            most: Counter = Counter()
            for ref in refs:
                for g, c in grams_of(ref, n).items():
                    most[g] = max(most[g], c)
            clipped += sum(min(c, most[g]) for g, c in grams.items())
            total += sum(grams.values())
        if clipped == 0:
            return 0.0
        log_p += math.log(clipped / total) / 4
    hyp_len = sum(len(h) for h, _ in pairs)
    ref_len = sum(min((len(r) for r in refs), key=lambda r_len: (abs(r_len - len(h)), r_len)) for h, refs in pairs)
    penalty = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return penalty * math.exp(log_p)


def with_shared_sentence(blocks: np.ndarray, every: int) -> np.ndarray:
    """The blocks with words 4..14 of the first block written over the same place of every every-th one."""
    out = blocks.copy()
    out[::every, 4:14] = blocks[0, 4:14]
    return out


def test_self_bleu_equals_a_plain_bleu4_on_all_pairs_and_on_the_fixed_sample(monkeypatch):
    train, _ = real_blocks(24)
    few = with_shared_sentence(train[:60], 3)  # 60 continuations: each against all 59 others
    pairs = [(few[i].tolist(), [few[j].tolist() for j in range(60) if j != i]) for i in range(60)]
    expected = plain_bleu4(pairs)
    assert 0.05 < expected < 0.9  # the shared sentence makes 4-grams match, not all of them
    assert self_bleu(few) == pytest.approx(expected, rel=1e-12)

    monkeypatch.setattr(cross_prompt, "BLEU_HYPOTHESES", 50)  # a smaller sample: the plain BLEU is slow
    monkeypatch.setattr(cross_prompt, "BLEU_REFERENCES", 30)
    many = with_shared_sentence(train[:150], 2)  # more than the sample holds
    sample = bleu_sample(len(many))
    assert [(h, r.tolist()) for h, r in sample] == [
        (h, r.tolist()) for h, r in bleu_sample(len(many))
    ]  # fixed by the count alone: a resumed run's row is the same
    assert len(sample) == 50 and {len(refs) for _, refs in sample} == {30}
    assert all(h not in refs and len(set(refs.tolist())) == len(refs) for h, refs in sample)
    pairs = [(many[h].tolist(), [many[r].tolist() for r in refs]) for h, refs in sample]
    assert self_bleu(many) == pytest.approx(plain_bleu4(pairs), rel=1e-12)
    assert self_bleu(np.repeat(train[:1], 5, axis=0)) == pytest.approx(1.0)


def test_unigram_js_equals_scipys_squared_distance_in_bits():
    train, test = real_blocks(32)
    generated = train[:80]
    size = int(max(generated.max(), test.max())) + 1
    p, q = np.bincount(generated.ravel(), minlength=size), np.bincount(test.ravel(), minlength=size)
    assert unigram_js(generated, test) == pytest.approx(jensenshannon(p, q, base=2) ** 2, rel=1e-10)
    assert 0.05 < unigram_js(generated, test) < 0.5
    assert unigram_js(test, test) == pytest.approx(0.0, abs=1e-12)
    assert unigram_js(np.array([[0, 1]]), np.array([[2, 3, 3]])) == pytest.approx(1.0)  # disjoint: 1 bit


def test_cross_rep_and_distinct_conts_count_runs_shared_with_other_prompts():
    rng = np.random.default_rng(0)
    a, b = rng.permutation(1000)[:20], 1000 + rng.permutation(1000)[:20]
    b[4:20] = a[2:18]  # one of b's five runs of 16 is a's third
    loop = np.tile([7, 8, 9, 10], 5) + 3000  # a run repeated inside one continuation only: not shared
    conts = np.stack([a, a, b, loop])
    # runs of 16 in 20 tokens: 5 each; a's and its copy's all shared, b's one, the loop's none
    assert cross_rep(conts) == pytest.approx((5 + 5 + 1 + 0) / 20)
    assert distinct_conts(conts) == pytest.approx(3 / 4)
    assert cross_rep(conts[:, :15]) is None  # no run of 16 tokens
    assert cross_rep(conts[2:]) == 0.0


def test_the_ngram_engine_collapses_across_prompts_on_the_shipped_text():
    """Setting A in small (replace mode, beam search with the repetition penalty): the continuations of the
    prompts grow alike, generation after generation."""
    e = NgramEngine(
        {"train": WIKI_TRAIN, "test": WIKI_TEST, "max_chars": 40000, "block_size": 32, "num_beams": 3, "order": 3}
    )
    rngs = [np.random.default_rng(0)]
    data = e.real_data(rngs)
    rows, reference = [], None
    for _ in range(4):
        model = e.fit(data, rngs, quiet).model
        reference = model if reference is None else reference
        data = e.sample(model, data.shape[1], rngs, quiet).samples
        rows.append(e.evaluate(model, data, reference)[0])
    distinct = [r["distinct_conts"] for r in rows]
    cross = [r["cross_rep"] for r in rows]
    print("distinct_conts", distinct, "cross_rep", cross)
    assert distinct[-1] < distinct[0] and cross[-1] > cross[0]
    last = cross_prompt_metrics(data[0], e.dataset().test)  # what the row holds is the module's
    assert {k: rows[-1][k] for k in CROSS_PROMPT_METRICS} == last


def test_the_opt_engine_rows_carry_the_metrics_across_prompts():
    pytest.importorskip("transformers")
    from conftest import tiny_opt

    e = tiny_opt(max_chars=2000, tiny_hidden=16, tiny_layers=1, num_beams=2, gen_batch=16)
    model, rngs = e.new_model(), [np.random.default_rng(0)]
    samples = e.sample(model, 20, rngs, quiet).samples
    row = e.evaluate(model, samples, model)[0]
    assert {k: row[k] for k in CROSS_PROMPT_METRICS} == cross_prompt_metrics(samples[0], e.dataset().test)
    assert set(CROSS_PROMPT_METRICS) <= e.METRICS.keys() and 0 < row["unigram_js"] <= 1

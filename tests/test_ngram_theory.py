"""The n-gram engine against the discrete-case theory (paper.md, section 1), and its collapse over five
generations against setting B's.

A maximum-likelihood unigram model of M words draws M new ones: a word seen c times appears among them
with probability 1 - (1 - c/M)^M (about 1 - e^-c), each word's count being Binomial(M, c/M)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import WIKI_TEST, WIKI_TRAIN, run_preset

from collapse_tui.engines.ngram import NgramEngine

SEEDS = 16


def quiet(*_: object) -> None:
    pass


def test_singletons_and_doubletons_survive_a_generation_as_theory_says():
    e = NgramEngine(
        {
            "train": WIKI_TRAIN,
            "test": WIKI_TEST,
            "max_chars": 40000,
            "block_size": 32,
            "order": 1,
            "smoothing": "add-k",
            "k": 0.0,
            "do_sample": True,
            "num_beams": 1,
            "repetition_penalty": 1.0,
        }
    )
    rngs = [np.random.default_rng(s) for s in range(SEEDS)]
    real = e.real_data(rngs)
    model = e.fit(real, rngs, quiet).model
    samples = e.sample(model, real.shape[1], rngs, quiet).samples
    rows = e.evaluate(model, samples, model)
    M = real[0].size
    counts = model.unigram_counts()[0]
    for c, key in ((1, "singletons_lost"), (2, "doubletons_lost")):
        survive = 1 - (1 - c / M) ** M
        n_types = int((counts == c).sum())
        measured = 1 - np.mean([r[key] for r in rows])
        # independent Bernoulli(survive) per type and seed (the types' slight negative correlation only
        # narrows the spread): 4 standard errors
        tol = 4 * math.sqrt(survive * (1 - survive) / (n_types * SEEDS))
        assert measured == pytest.approx(survive, abs=tol), (c, n_types, measured, survive, tol)
        assert tol < 0.025  # narrow enough to tell 1 - e^-1 from 1 - e^-1.1
    assert {r["support"] for r in rows} != {len(e.dataset().words)}


def test_five_generations_collapse_in_replace_mode_and_far_less_keeping_10_percent(tmp_path):
    # beam search is deterministic: in replace mode every seed gives the same run, so one seed will do
    sets = ("engine.max_chars=60000", "engine.block_size=32", "experiment.generations=5", "experiment.seeds=1")
    replace = run_preset(tmp_path / "a", "ngram", *sets)
    keep = run_preset(tmp_path / "b", "ngram-keep10", *sets)
    last = 4
    for runs in (replace, keep):
        assert runs[last]["perplexity"].min() > runs[0]["perplexity"].max()
    r = {k: [replace[g][k].mean() for g in range(5)] for k in ("perplexity", "types_lost", "distinct_2")}
    assert all(np.diff(r["perplexity"]) > 0) and all(np.diff(r["types_lost"]) > 0)
    assert all(np.diff(r["distinct_2"]) < 0)
    low = [low_mass(replace[g]["seq_ppl_hist"]) for g in range(5)]  # blocks the first model finds very likely
    assert min(low[1:]) > low[0] + 0.1
    # keeping a tenth of the real blocks: the test perplexity rises far less
    assert (
        keep[last]["perplexity"].mean() - keep[0]["perplexity"].mean()
        < (replace[last]["perplexity"].mean() - replace[0]["perplexity"].mean()) / 3
    )


def low_mass(hists: np.ndarray) -> float:
    """Share of blocks (mean over seeds) in the lowest-perplexity bins of the log histogram (ppl < 10^0.6)."""
    h = np.asarray(hists, dtype=float)
    return float((h[:, :6].sum(axis=1) / h.sum(axis=1)).mean())

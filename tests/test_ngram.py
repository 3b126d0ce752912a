"""The n-gram engine against independent computations: add-k perplexity from plain counts, Kneser-Ney
from its textbook recursion over dictionaries, distributions that sum to 1, beam search that is greedy
at width 1 and respects the repetition penalty, and text that crosses to other engines and back."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import WIKI_TEST, WIKI_TRAIN, run_process

from collapse_tui.engines.ngram import NgramEngine
from collapse_tui.engines.ngram_counts import D_MIN, count, dense, prob_of
from collapse_tui.engines.ngram_search import beam_search


def engine(**params: object) -> NgramEngine:
    return NgramEngine({"train": WIKI_TRAIN, "test": WIKI_TEST, "max_chars": 30000, "block_size": 16, **params})


def quiet(*_: object) -> None:
    pass


@pytest.fixture(scope="module")
def kn():
    """A trigram Kneser-Ney model of two seeds: the real blocks, and the real blocks reversed."""
    e = engine(order=3)
    train = e.dataset().train
    data = np.stack([train, train[::-1, ::-1]])
    return e, data, e.fit(data, [np.random.default_rng(0)] * 2, quiet).model


def test_add_k_bigram_perplexity_equals_a_direct_count(tmp_path):
    k = 0.5
    e = engine(order=2, smoothing="add-k", k=k)
    data = e.dataset()
    V = len(data.words)
    pairs = Counter((int(a), int(b)) for block in data.train for a, b in zip(block[:-1], block[1:]))
    first = Counter()
    for (a, _), c in pairs.items():
        first[a] += c
    nll = [
        -math.log((pairs[a, b] + k) / (first[a] + k * V))
        for block in data.test
        for a, b in zip(block[:-1].tolist(), block[1:].tolist())
    ]
    real = e.real_data([np.random.default_rng(0)])
    model = e.fit(real, [np.random.default_rng(0)], quiet).model
    row = e.evaluate(model, real[:, :5], model)[0]
    assert row["perplexity"] == pytest.approx(math.exp(np.mean(nll)), rel=1e-6)


def kn_reference(blocks: np.ndarray, order: int, V: int):
    """Interpolated Kneser-Ney (Chen & Goodman) straight from its definition, over dictionaries."""
    raw = [Counter() for _ in range(order + 1)]
    for b in blocks.tolist():
        for m in range(1, order + 1):
            for i in range(len(b) - m + 1):
                raw[m][tuple(b[i : i + m])] += 1
    cont = [Counter() for _ in range(order + 1)]
    for m in range(1, order):
        for g in raw[m + 1]:
            cont[m][g[1:]] += 1

    def discount(counts: Counter) -> float:
        n1 = sum(c == 1 for c in counts.values())
        n2 = sum(c == 2 for c in counts.values())
        return min(1.0, max(D_MIN, n1 / (n1 + 2 * n2)))

    def p(w: int, h: tuple[int, ...], top: bool) -> float:
        """P(w | h); top: the highest order of the recursion (raw counts), else continuation counts."""
        counts = raw[len(h) + 1] if top else cont[len(h) + 1]
        d = discount(counts)
        ctx = {g: c for g, c in counts.items() if g[:-1] == h and c > 0}
        total = sum(ctx.values())
        lower = p(w, h[1:], False) if h else 1.0 / V  # unigrams interpolate with the uniform distribution
        if total == 0:
            return lower
        return (max(counts.get((*h, w), 0) - d, 0) + d * len(ctx) * lower) / total

    return p


def test_kneser_ney_matches_its_definition_and_sums_to_one(kn):
    e, data, model = kn
    V = len(e.dataset().words)
    rng = np.random.default_rng(1)
    # histories: seen ones (from the data), and random ones (mostly unseen), of every length the model uses
    for c in (0, 1, 2):
        seen = data[0, rng.integers(0, data.shape[1], 6), :c]
        hist = np.concatenate([seen, rng.integers(0, V, (6, c))])
        seed = np.zeros(len(hist), dtype=np.int64)
        P = dense(model, seed, hist)
        np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-9)
        ref = kn_reference(data[0], 3, V)
        words = rng.integers(0, V, 3).tolist() + data[0, 0, :3].tolist()
        for r, h in enumerate(hist.tolist()):
            for w in words:
                assert P[r, w] == pytest.approx(ref(w, tuple(h), True), rel=1e-9)
        w = rng.integers(0, V, len(hist))
        np.testing.assert_allclose(prob_of(model, seed, hist, w), P[np.arange(len(hist)), w], rtol=1e-12)
    # the second seed is a model of its own blocks
    hist = data[1, :5, :2]
    np.testing.assert_allclose(dense(model, np.ones(5, np.int64), hist).sum(axis=1), 1.0, rtol=1e-9)
    assert not np.allclose(dense(model, np.ones(5, np.int64), hist), dense(model, np.zeros(5, np.int64), hist))


def test_width_one_beam_search_is_greedy_and_the_penalty_forbids_repeats(kn):
    e, data, model = kn
    V = len(e.dataset().words)
    prompts = data[0, :4]
    seed = np.zeros(4, dtype=np.int64)
    greedy = beam_search(model, seed, prompts, 6, 1, 1.0)
    seq = np.concatenate([prompts, greedy], axis=1)
    for t in range(16, 22):  # each word is the most probable one by prob_of, word by word (ties: lowest id)
        for r in range(4):
            p = prob_of(model, np.zeros(V, np.int64), np.repeat(seq[r : r + 1, t - 2 : t], V, 0), np.arange(V))
            assert seq[r, t] == int(np.argmax(p))
    wide = beam_search(model, seed, prompts, 6, 4, 1.0)
    nll = [
        -sum(np.log(prob_of(model, seed, s[:, t - 2 : t], s[:, t])) for t in range(16, 22))
        for s in (seq, np.concatenate([prompts, wide], axis=1))
    ]
    assert (nll[1] <= nll[0] + 1e-9).mean() >= 0.75  # wider beams find likelier continuations
    strict = beam_search(model, seed, prompts, 8, 3, 1e3)
    for p_row, s_row in zip(prompts, strict):
        assert len(set(s_row)) == len(s_row) and not set(s_row) & set(p_row)


def dense_beams(model, seed: int, prompt: np.ndarray, new: int, beams: int, penalty: float) -> list[int]:
    """Beam search one prompt at a time from whole float32 rows of dense(): each beam's best words (value,
    then the lower id), generate's penalty, then the best beams by summed log-probability (stable)."""
    c = model.order - 1
    seqs, scores = [list(prompt)], [0.0]
    for _ in range(new):
        ranked = []
        for b, seq in enumerate(seqs):
            p = dense(model, np.array([seed]), np.array([seq[len(seq) - c :]]).reshape(1, c), np.float32)[0]
            if penalty != 1.0:
                p[np.unique(seq)] = p[np.unique(seq)] ** penalty
            best = np.lexsort((np.arange(len(p)), -p))[:beams]
            ranked += [(scores[b] + np.log(np.float64(p[w])), b, w) for w in best]
        if len(seqs) == 1:  # generate's first step: the other beams start at -inf
            ranked += [(-np.inf, b, w) for b in range(1, beams) for _, _, w in ranked[:beams]]
        ranked = sorted(ranked, key=lambda r: -r[0])[:beams]
        seqs, scores = [seqs[b] + [int(w)] for _, b, w in ranked], [r[0] for r in ranked]
    return seqs[0][len(prompt) :]


@pytest.mark.parametrize(
    ("order", "smoothing", "penalty"), [(3, "kneser-ney", 3.0), (2, "kneser-ney", 1.0), (3, "add-k", 3.0)]
)
def test_the_sparse_beam_search_equals_one_over_dense_rows(kn, order, smoothing, penalty):
    e, data, _ = kn
    model = count(data, len(e.dataset().words), order, smoothing, 0.5)
    prompts = data[:, :3].reshape(6, -1)
    seed = np.repeat([0, 1], 3)
    got = beam_search(model, seed, prompts, 8, 4, penalty)
    want = [dense_beams(model, s, p, 8, 4, penalty) for s, p in zip(seed, prompts)]
    assert got.tolist() == want


def test_a_save_load_round_trip_and_text_shared_with_other_engines(kn, tmp_path):
    e, data, model = kn
    rngs = [np.random.default_rng(s) for s in range(2)]
    generated = e.sample(model, 7, rngs, quiet, data=data).samples
    texts = e.to_shared(generated)
    assert len(texts) == 2 and len(texts[0]) == 7 and all("  " not in t and "<eos>" not in t for t in texts[0])
    assert np.array_equal(e.from_shared(texts), generated)
    e.save(model, tmp_path)
    loaded = e.load(tmp_path)
    again = [e.sample(m, 7, [np.random.default_rng(3)] * 2, quiet).samples for m in (model, loaded)]
    assert np.array_equal(*again)
    unknown = e.from_shared([["zzqx " * 16], ["<unk> " * 16]])
    assert (unknown == e.dataset().index["<unk>"]).all()


def test_counts_are_taken_inside_blocks():
    data = np.array([[[0, 1, 2], [2, 0, 1]]])
    model = count(data, 3, 2, "kneser-ney", 0.0)
    assert model.unigram_counts().tolist() == [[2, 2, 2]]
    bigrams = {int(k): int(c) for k, c in zip(model.levels[1].keys, model.levels[1].raw)}
    assert sum(bigrams.values()) == 4  # (0 1) twice, (1 2), (2 0); not (2 2) across the blocks


def test_bad_settings_get_one_line():
    from collapse_tui.engines import DataError

    with pytest.raises(DataError, match="engine.num_beams"):
        NgramEngine.check_params(NgramEngine.Params(do_sample=True, num_beams=5))
    with pytest.raises(DataError, match="engine.block_size"):
        NgramEngine.check_params(NgramEngine.Params(order=5, block_size=4))


def test_the_types_lost_figure_draws_the_medians_of_a_real_run(tmp_path):
    pytest.importorskip("matplotlib")
    import json

    from conftest import make_run

    from collapse_tui.engines.figures.ngram import LOST, types_lost_figure
    from collapse_tui.report.figures import Options
    from collapse_tui.runs import load_run

    path = make_run(tmp_path, "ngram-quick", "experiment.generations=3", "experiment.seeds=3")
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    fig = types_lost_figure(load_run(path), Options())
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == list(LOST.values())
    for key, line in zip(LOST, lines):
        want = [np.median([r[key] for r in rows if r["generation"] == g]) for g in range(3)]
        np.testing.assert_allclose(line.get_ydata(), want)
    assert np.all(np.diff(lines[0].get_ydata()) > 0)  # sampling loses more of the real words every generation


def test_without_local_text_an_unreachable_hub_is_one_line_before_a_run_directory(tmp_path):
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {"HF_ENDPOINT": "http://127.0.0.1:9"}
    args = [sys.executable, "-m", "collapse_tui", "--batch", "ngram", "--runs-dir", str(tmp_path / "runs")]
    args += ["--set", "engine.train=''", "--set", "engine.test=''"]
    proc = run_process(args, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("collapse-tui: engine.dataset: wikitext/wikitext-2-raw-v1 comes from the Hugging")
    assert "engine.text_dir" in proc.stderr and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("engine", ["ngram", "opt"])
def test_a_folder_given_as_the_training_file_is_refused_before_a_run_directory(tmp_path, capsys, engine):
    from collapse_tui.cli import main

    preset = "ngram-quick" if engine == "ngram" else "opt-tiny"
    test = Path(__file__).parent / "data" / "wikitext-2" / "test.txt"
    sets = [f'engine.train="{tmp_path}"', f'engine.test="{test}"']
    argv = ["--batch", preset, *(a for s in sets for a in ("--set", s)), "--runs-dir", str(tmp_path / "runs")]
    assert main(argv) == 2
    assert f"engine.train: no such file: {tmp_path}" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()

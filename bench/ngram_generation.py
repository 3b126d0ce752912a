"""Benchmark: one generation of the `ngram` preset (word trigram, Kneser-Ney, 5 seeds, every block of the
shipped WikiText-2 text continued by 5-beam search with 64 new words) as the engine runs it, against
baselines measured in the same run for the same steps:
- counting: collections.Counter over each seed's n-gram tuples (orders 1..3, inside blocks), the plain way;
- beam search: the previous engine's dense search, kept below (each step builds every beam's whole
  next-word distribution, (rows, V) float32, and takes its best words by argmax passes); its
  continuations must equal the engine's sparse search's, word for word.

    .venv/bin/python bench/ngram_generation.py             # about a minute on 2 cores
    .venv/bin/python bench/ngram_generation.py --text-dir DIR --seeds 1 --dense 300   # other text
    .venv/bin/python bench/ngram_generation.py --quick OTHER_PYTHON   # ngram-quick, launch to exit

--quick times `python -m collapse_tui --batch ngram-quick` end to end (process start to exit, numba's
cache warm), this checkout's against another installation's python (e.g. main's .venv), interleaved,
--repeat times each, medians.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

import machine
import numpy as np

from collapse_tui.engines.ngram import NgramEngine
from collapse_tui.engines.ngram_counts import NgramModel, _history, _penalise, dense, row_chunks
from collapse_tui.engines.ngram_search import beam_search
from collapse_tui.preset_files import load_preset


def quiet(*_: object) -> None:
    pass


def _best(p: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The dense search's: the width most probable words of each row of p (R, V), best first (ties: the
    lower id), and their log-probabilities, by width passes of argmax. Overwrites p."""
    rows = np.arange(len(p))
    cand = np.empty((len(p), width), dtype=np.int64)
    prob = np.empty((len(p), width))
    for i in range(width):
        cand[:, i] = p.argmax(axis=1)
        prob[:, i] = p[rows, cand[:, i]]
        p[rows, cand[:, i]] = -1.0
    with np.errstate(divide="ignore"):
        return cand, np.log(prob)


def dense_beam_search(
    model: NgramModel, seed: np.ndarray, prompts: np.ndarray, new: int, beams: int, penalty: float
) -> np.ndarray:
    """The engine's beam search until issue 30, over dense (rows, V) float32 distributions."""
    R, V, c = len(prompts), model.vocab, model.order - 1
    width = min(beams, V)
    out = np.zeros((R, new), dtype=np.int32)
    for ch in row_chunks(R, V, beams):
        pr = np.asarray(prompts[ch], dtype=np.int64)
        q = len(pr)
        rows_seed = np.repeat(seed[ch], beams)
        gen = np.zeros((q, beams, new), dtype=np.int64)
        score = np.full((q, beams), -np.inf)
        score[:, 0] = 0.0
        pr_b = np.broadcast_to(pr[:, None, :], (q, beams, pr.shape[1]))
        for t in range(new):
            p = dense(model, rows_seed, _history(pr_b, gen, t, c).reshape(q * beams, c), np.float32)
            if penalty != 1.0:
                _penalise(p, np.concatenate([pr_b, gen[:, :, :t]], axis=2).reshape(q * beams, -1), penalty)
            cand, logp = _best(p, width)
            total = (score.reshape(-1, 1) + logp).reshape(q, beams * width)
            order = np.lexsort((np.arange(beams * width)[None].repeat(q, 0), -total), axis=1)[:, :beams]
            score = np.take_along_axis(total, order, axis=1)
            word = np.take_along_axis(cand.reshape(q, beams * width), order, axis=1)
            gen = np.take_along_axis(gen, (order // width)[:, :, None], axis=1)
            gen[:, :, t] = word
        out[ch] = gen[:, 0]
    return out


def launch_to_exit(python: str, runs: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [python, "-m", "collapse_tui", "--batch", "ngram-quick", "--runs-dir", runs], check=True, capture_output=True
    )
    return time.perf_counter() - t


def quick(other: str, repeat: int) -> None:
    """ngram-quick launch to exit, this checkout's python against other's, interleaved (one warm-up each)."""
    with tempfile.TemporaryDirectory() as runs:
        times: dict[str, list[float]] = {sys.executable: [], other: []}
        for i in range(repeat + 1):
            for python in times:
                took = launch_to_exit(python, runs)
                if i:
                    times[python].append(took)
    mine, theirs = (statistics.median(times[p]) for p in (sys.executable, other))
    print(f"machine: {machine.cpu()}")
    print(f"ngram-quick, launch to exit: {mine:.2f} s ({', '.join(f'{t:.2f}' for t in times[sys.executable])})")
    print(f"  {other}: {theirs:.2f} s ({', '.join(f'{t:.2f}' for t in times[other])}); {theirs / mine:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", default="", help="another installation's python: time ngram-quick against it")
    ap.add_argument("--repeat", type=int, default=3, help="--quick: runs of each")
    ap.add_argument("--dense", type=int, default=0, help="prompts the dense baseline continues (0: all)")
    ap.add_argument("--text-dir", default="", help="local text (train.txt, test.txt) instead of the preset's")
    ap.add_argument("--seeds", type=int, default=0, help="seeds (0: the preset's)")
    args = ap.parse_args()
    if args.quick:
        return quick(args.quick, args.repeat)
    sets = [f"engine.text_dir={args.text_dir!r}", "engine.train=''", "engine.test=''"] if args.text_dir else []
    cfg = load_preset("ngram", sets + ([f"experiment.seeds={args.seeds}"] if args.seeds else []))
    engine = NgramEngine(cfg.engine)
    p = engine.params
    rngs = [np.random.default_rng(s) for s in cfg.seeds]
    t = time.perf_counter()
    real = engine.real_data(rngs)
    t_read = time.perf_counter() - t
    S, N, L = real.shape
    print(f"machine: {machine.cpu()}")
    print(
        f"ngram preset: {S} seeds x {N} blocks of {L} words, vocabulary {len(engine.dataset().words)}, order {p.order}"
    )

    t = time.perf_counter()
    model = engine.fit(real, rngs, quiet).model
    t_fit = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(S):
        for m in range(1, p.order + 1):
            Counter(tuple(b[i : i + m]) for b in real[s].tolist() for i in range(L - m + 1))
    t_counter = time.perf_counter() - t

    beam_search(model, np.zeros(1, np.int64), real[0, :1], 2, p.num_beams, p.repetition_penalty)  # numba's cache
    t = time.perf_counter()
    samples = engine.sample(model, N, rngs, quiet).samples
    t_sample = time.perf_counter() - t
    k = args.dense or N
    prompts, seed = real[:, :k].reshape(S * k, L), np.repeat(np.arange(S), k)
    t = time.perf_counter()
    base = dense_beam_search(model, seed, prompts, L, p.num_beams, p.repetition_penalty)
    t_dense = (time.perf_counter() - t) * N / k
    same = np.array_equal(base.reshape(S, k, L), samples[:, :k])

    t = time.perf_counter()
    engine.evaluate(model, samples, model)
    t_eval = time.perf_counter() - t

    print("| step | engine | baseline | speed-up |")
    print("|---|---|---|---|")
    print(f"| read the text | {t_read:.2f} s | | |")
    print(f"| count (fit) | {t_fit:.2f} s | {t_counter:.2f} s (Counter of tuples) | {t_counter / t_fit:.0f}x |")
    print(
        f"| beam search, {S * N} prompts | {t_sample:.2f} s | {t_dense:.1f} s (dense rows"
        f"{'' if k == N else f', from {S * k} prompts'}) | {t_dense / t_sample:.1f}x |"
    )
    print(f"| evaluate | {t_eval:.2f} s | | |")
    print(f"| one generation (fit, sample, evaluate) | {t_fit + t_sample + t_eval:.1f} s | | |")
    print(f"dense continuations equal the sparse ones, word for word: {same} ({S * k} prompts)")


if __name__ == "__main__":
    main()

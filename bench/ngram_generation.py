"""Benchmark: one generation of the `ngram` preset (word trigram, Kneser-Ney, 5 seeds, every block of the
shipped WikiText-2 text continued by 5-beam search with 64 new words) as the engine runs it, against
baselines measured in the same run for the same steps:
- counting: collections.Counter over each seed's n-gram tuples (orders 1..3, inside blocks), the plain way;
- generation: the engine's own beam search called one prompt at a time (a Python loop over sequences, the
  same numpy maths per step), on the first --loop prompts, extrapolated to all of them; its continuations
  must equal the batched ones.

    .venv/bin/python bench/ngram_generation.py             # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import machine
import numpy as np

from collapse_tui.engines.ngram import NgramEngine
from collapse_tui.engines.ngram_counts import beam_search
from collapse_tui.preset_files import load_preset


def quiet(*_: object) -> None:
    pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", type=int, default=24, help="prompts the one-at-a-time baseline continues")
    args = ap.parse_args()
    cfg = load_preset("ngram")
    engine = NgramEngine(cfg.engine)
    p = engine.params
    rngs = [np.random.default_rng(s) for s in cfg.seeds]
    real = engine.real_data(rngs)
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

    t = time.perf_counter()
    samples = engine.sample(model, N, rngs, quiet).samples
    t_sample = time.perf_counter() - t
    k = min(args.loop, N)
    t = time.perf_counter()
    one = [
        beam_search(model, np.zeros(1, np.int64), real[0, i : i + 1], L, p.num_beams, p.repetition_penalty)
        for i in range(k)
    ]
    t_one = (time.perf_counter() - t) / k * S * N
    same = np.array_equal(np.concatenate(one), samples[0, :k])

    t = time.perf_counter()
    engine.evaluate(model, samples, model)
    t_eval = time.perf_counter() - t

    print("| step | engine | baseline | speed-up |")
    print("|---|---|---|---|")
    print(f"| count (fit) | {t_fit:.2f} s | {t_counter:.2f} s (Counter of tuples) | {t_counter / t_fit:.0f}x |")
    print(
        f"| beam search, {S * N} prompts | {t_sample:.1f} s | {t_one:.0f} s (one prompt at a time, from {k}) "
        f"| {t_one / t_sample:.1f}x |"
    )
    print(f"| evaluate | {t_eval:.2f} s | | |")
    print(f"| one generation | {t_fit + t_sample + t_eval:.1f} s | | |")
    print(f"one-at-a-time continuations equal the batched ones: {same}")


if __name__ == "__main__":
    main()

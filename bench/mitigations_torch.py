"""Benchmark: what the torch engines' learning-algorithm mitigations cost per generation and what they buy, against
replace (and weighted real data against keep by count), on CPU, for a vae-quick-sized and an opt-tiny-sized run.

Every variant starts from the same generation-0 model (the reference) and runs generations 1..G through the
engine as the loop calls it (fit, sample, evaluate); the variants take turns within each generation, so the
box's load swings hit them alike. Prints seconds per generation (fit, and fit + sample + evaluate), the ratio to
replace's, and the perplexity on the real test set at the last generation against generation 0's. Times are
the process's CPU seconds (one torch thread), not wall time: on a shared box other processes' load swings
wall time by more than the differences measured here.

    OMP_NUM_THREADS=1 .venv/bin/python bench/mitigations_torch.py --engine vae     # about 2 min on 1 core
    OMP_NUM_THREADS=1 .venv/bin/python bench/mitigations_torch.py --engine opt     # opt-tiny: several minutes
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import machine
import numpy as np
import torch

from collapse_tui.engines import engine_class
from collapse_tui.preset_files import load_preset

ROOT = Path(__file__).resolve().parents[1]
WIKI = ROOT / "tests" / "data" / "wikitext-2"
KEEP = 0.1  # keep's share of real examples
REAL_WEIGHT = 0.5  # real_weight's share of the fit for those examples

# name: ([train] keys, data mode, real_weight or None)
VARIANTS = {
    "replace": ({}, "replace", None),
    "start at gen 0 only (l2 1e-9)": ({"anchor": "l2", "anchor_strength": 1e-9}, "replace", None),
    "l2 0.1": ({"anchor": "l2", "anchor_strength": 0.1}, "replace", None),
    "ewc 10": ({"anchor": "ewc", "anchor_strength": 10.0}, "replace", None),
    "distill 0.5": ({"distill": 0.5}, "replace", None),
    "keep 10%": ({}, "keep", None),
    "keep 10% + real_weight 0.5": ({}, "keep", REAL_WEIGHT),
}


def quiet(*_: object) -> None:
    pass


def weights_for(n: int, k: int, w: float) -> np.ndarray:
    """(1, n) weights, mean 1: the first k (real) examples carry the share w of the fit, the rest 1 - w."""
    out = np.full(n, (1 - w) * n / (n - k))
    out[:k] = w * n / k
    return out[None]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", choices=("vae", "opt"), default="vae")
    p.add_argument("--generations", type=int, default=4, help="generations after generation 0")
    args = p.parse_args()
    sets = (
        [f"engine.train='{WIKI / 'valid.txt'}'", f"engine.test='{WIKI / 'test.txt'}'"] if args.engine == "opt" else []
    )
    cfg = load_preset("vae-quick" if args.engine == "vae" else "opt-tiny", sets)
    cls = engine_class(args.engine)
    print(f"machine: {machine.torch_device(torch.device('cpu'))}; torch threads {torch.get_num_threads()}")
    engines = {v: cls(cfg.engine, device="cpu", train=keys) for v, (keys, _, _) in VARIANTS.items()}
    base = engines["replace"]
    rng = np.random.default_rng(0)
    real = base.real_data([rng])
    ref = base.fit(real, [rng], quiet).model
    base.evaluate(ref, base.sample(ref, 8, [rng], quiet).samples, ref)  # warms up (the VAE's classifier)
    ppl0 = base.evaluate(ref, base.sample(ref, real.shape[1], [rng], quiet).samples, ref)[0]["perplexity"]
    for e in engines.values():
        e._data, e._start_state = base._data, getattr(base, "_start_state", None)  # the same real data
    n = real.shape[1]
    k = round(KEEP * n)
    prev = {v: ref for v in VARIANTS}
    rngs = {v: [np.random.default_rng(1)] for v in VARIANTS}
    fit_s, gen_s, ppl = defaultdict(list), defaultdict(list), {}
    for g in range(1, args.generations + 1):
        for v, (_, mode, w) in VARIANTS.items():
            e, r = engines[v], rngs[v]
            samples = e.sample(prev[v], n, r, quiet, data=real).samples
            data = samples if mode == "replace" else np.concatenate([real[:, :k], samples[:, : n - k]], axis=1)
            weights = None if w is None else weights_for(n, k, w)
            t = time.process_time()
            model = e.fit(data, r, quiet, source=prev[v], reference=ref, weights=weights).model
            t_fit = time.process_time()
            out = e.sample(model, n, r, quiet, data=data).samples
            row = e.evaluate(model, out, ref)[0]
            fit_s[v].append(t_fit - t)
            gen_s[v].append(time.process_time() - t)
            prev[v], ppl[v] = model, row["perplexity"]
        print(f"generation {g} done", flush=True)
    print(f"\n{args.engine}: {cfg.engine}")
    print(f"generation 0 perplexity {ppl0:.4g}; medians over {args.generations} generations")
    print("(x base: against replace; real_weight against keep by count. gen 1 s: the first, EWC's Fisher in it)")
    print(f"{'variant':<30} {'gen 1 s':>7} {'fit s':>7} {'gen s':>7} {'x base':>7} {'ppl last':>9} {'vs gen 0':>9}")
    for v in VARIANTS:
        ref_v = "keep 10%" if VARIANTS[v][2] is not None else "replace"
        fs, gs = np.median(fit_s[v]), np.median(gen_s[v])
        ratio = gs / np.median(gen_s[ref_v])
        print(f"{v:<30} {gen_s[v][0]:7.2f} {fs:7.2f} {gs:7.2f} {ratio:6.2f}x {ppl[v]:9.4g} {ppl[v] / ppl0:8.3f}x")


if __name__ == "__main__":
    main()

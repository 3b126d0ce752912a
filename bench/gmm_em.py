"""Benchmark: the paper's recursive GMM (fit K=2 full-covariance mixture to 1000 2-D points, sample 1000
from the fit, replace the data) as the notebook runs it (sklearn, one seed at a time) and as the gmm
engine runs it (all seeds in one compiled call). Prints speed and the component-std collapse of both.

    .venv/bin/python bench/gmm_em.py                     # 32 seeds x 2000 generations; sklearn 4 x 351
    .venv/bin/python bench/gmm_em.py --cold              # also measure numba's compile from scratch
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import time
import warnings
from types import ModuleType

import machine
import numpy as np

SNAPSHOTS = (0, 50, 100, 200, 350)
M = 1000  # points per generation, as the paper
K = 2


def engine_module(name: str = "gmm") -> ModuleType:
    """engines/<name>.py of the installed package (`pip install -e .`: a bare checkout does not import)."""
    return importlib.import_module(f"collapse_tui.engines.{name}")


def component_std(covs: np.ndarray) -> np.ndarray:
    """Mean over components of sqrt(trace(cov_k) / d): (..., K, d, d) -> (...)."""
    d = covs.shape[-1]
    return np.sqrt(np.trace(covs, axis1=-2, axis2=-1) / d).mean(axis=-1)


def run_sklearn(seeds: int, generations: int) -> tuple[float, dict[int, np.ndarray]]:
    """The notebook's loop. Returns seconds and {generation: component std per seed}."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    stds = np.empty((generations, seeds))
    start = time.perf_counter()
    for s in range(seeds):
        x = np.random.default_rng(s).standard_normal((M, 2))
        for g in range(generations):
            gmm = GaussianMixture(K, covariance_type="full", tol=1e-5, max_iter=2000, random_state=s * 100_003 + g)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gmm.fit(x)
            stds[g, s] = component_std(gmm.covariances_)
            x = gmm.sample(M)[0]
    return time.perf_counter() - start, stds


def run_engine(seeds: int, generations: int, evaluate: bool) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """The engine's batched loop. Returns seconds per phase, component std (G, S) and EM iterations."""
    GMMEngine = engine_module().GMMEngine

    eng = GMMEngine()
    rngs = [np.random.default_rng(s) for s in range(seeds)]

    def report(*_: object) -> None:
        pass

    times = {"fit": 0.0, "sample": 0.0, "evaluate": 0.0}
    stds = np.empty((generations, seeds))
    iters = np.empty((generations, seeds))
    x = eng.real_data(rngs)
    reference = None
    for g in range(generations):
        t0 = time.perf_counter()
        model = eng.fit(x, rngs, report).model
        t1 = time.perf_counter()
        x = eng.sample(model, M, rngs, report).samples  # replace: the next generation trains on these only
        t2 = time.perf_counter()
        if evaluate:
            reference = model if reference is None else reference
            eng.evaluate(model, x, reference)
        times["fit"] += t1 - t0
        times["sample"] += t2 - t1
        times["evaluate"] += time.perf_counter() - t2
        stds[g] = component_std(model["covs"])
        iters[g] = eng.last_info[:, 0]
    return times, stds, iters


def warm_up() -> tuple[float, str]:
    """Compile (or load from numba's cache) every kernel a generation uses; returns seconds and which."""
    start = time.perf_counter()
    gmm = engine_module()
    eng = gmm.GMMEngine()
    rngs = [np.random.default_rng(0)]
    x = eng.real_data(rngs, 50)
    model = eng.fit(x, rngs, lambda *_: None).model
    eng.evaluate(model, eng.sample(model, 50, rngs, lambda *_: None).samples, model)
    seconds = time.perf_counter() - start
    k = engine_module("gmm_kernels")
    kernels = (k.fit_batch, k.mean_log_density_batch, k.place_samples)
    misses = sum(sum(f.stats.cache_misses.values()) for f in kernels)
    return seconds, "compiled" if misses else "loaded from numba's cache"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--generations", type=int, default=2000)
    ap.add_argument("--sk-seeds", type=int, default=4, help="seeds for the sklearn loop")
    ap.add_argument("--sk-generations", type=int, default=351, help="generations for the sklearn loop")
    ap.add_argument("--threads", type=int, default=0, help="engine threads (0: all cores)")
    ap.add_argument("--evaluate", action="store_true", help="also time engine.evaluate every generation")
    ap.add_argument("--cold", action="store_true", help="compile into an empty numba cache (first-run cost)")
    args = ap.parse_args()

    if args.cold:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cold-")
    print(f"machine: {machine.cpu()}")

    # sklearn first: numba's OpenMP workers, once started, could compete with sklearn's own threads
    sk_s, sk_std = run_sklearn(args.sk_seeds, args.sk_generations)
    sk_rate = args.sk_seeds * args.sk_generations / sk_s
    print(
        f"sklearn loop: {args.sk_seeds} seeds x {args.sk_generations} generations in {sk_s:.1f} s: "
        f"{sk_rate:.1f} seed-gens/s"
    )

    if args.threads:  # read by numba at its import: the engine's thread pool takes its size from it
        os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    compile_s, how = warm_up()
    import numba

    print(f"numba {numba.__version__}: {numba.config.NUMBA_NUM_THREADS} threads (the engine's chunks of seeds)")
    print(f"engine warm-up (import + kernels {how}): {compile_s:.2f} s, not in the timings below")

    times, en_std, iters = run_engine(args.seeds, args.generations, args.evaluate)
    total = times["fit"] + times["sample"]
    en_rate = args.seeds * args.generations / total
    print(
        f"engine: {args.seeds} seeds x {args.generations} generations in {total:.1f} s "
        f"(fit {times['fit']:.1f} s, sample {times['sample']:.1f} s): {en_rate:.0f} seed-gens/s, "
        f"{en_rate / sk_rate:.1f}x the sklearn loop"
    )
    if args.evaluate:
        print(f"engine.evaluate every generation: {times['evaluate']:.1f} s more")
    mean, median, top = iters.mean(), np.median(iters), iters.max()
    print(f"EM iterations per fit: mean {mean:.1f}, median {median:.0f}, max {top:.0f}")

    print("\nmedian over seeds of the mean component std")
    print(f"{'generation':>10} {'sklearn':>9} {'engine':>9}   engine 25-75%")
    for g in sorted({*SNAPSHOTS, args.generations - 1}):
        if g >= args.generations:
            continue
        sk = f"{np.median(sk_std[g]):9.4f}" if g < args.sk_generations else f"{'':9}"
        q1, q3 = np.percentile(en_std[g], [25, 75])
        print(f"{g:>10} {sk} {np.median(en_std[g]):9.4f}   {q1:.4f}-{q3:.4f}")
    print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

"""Benchmark: the `gmm` preset end to end through the CLI (`collapse-tui --batch gmm`: process start,
imports, numba cache load, fitting, sampling, every metric, metrics rows, checkpoints, the summary
table) against the notebook's loop (sklearn, one seed at a time, fit and sample only), both run from
this one process. Prints both rates in seed-generations/s and their ratio; with --profile also where
the CLI run's time goes, function by function (cProfile of the same command, so slower than the timed
run).

    .venv/bin/python bench/gmm_end_to_end.py              # the gmm preset, 32 seeds x 2001 generations
    .venv/bin/python bench/gmm_end_to_end.py --quick      # 32 x 201 and a shorter sklearn loop (~20 s)
    .venv/bin/python bench/gmm_end_to_end.py --profile    # also the breakdown
    .venv/bin/python bench/gmm_end_to_end.py --set 'data.mode="accumulate"' --generations 101
    .venv/bin/python bench/gmm_end_to_end.py --against /tmp/old   # also another version's CLI, same run
"""

from __future__ import annotations

import argparse
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine
from gmm_em import run_sklearn

ROOT = Path(__file__).resolve().parents[1]

# the functions whose cumulative time the breakdown shows: (label, file suffix, function name)
PHASES = (
    ("engine import (numpy; numba loads at the first fit)", "engines/__init__.py", "engine_class"),
    ("EM fit (compiled, threads; numba's cache load)", "engines/gmm.py", "fit"),
    ("sample", "engines/gmm.py", "sample"),
    ("evaluate: all metrics", "engines/mixture.py", "evaluate"),
    ("  of which closed-form L2", "engines/gmm.py", "density_l2"),
    ("  of which W2", "engines/mixture.py", "w2_to_standard"),
    ("  of which sample stats (variance, tail)", "engines/gmm.py", "sample_stats"),
    ("  of which rows (dicts per seed)", "engines/mixture.py", "_rows"),
    ("detector (detector_auc, every generation)", "detector.py", "measure"),
    ("  of which the logistic fits (compiled)", "detector.py", "fit_logistic"),
    ("next data (data mode)", "datamodes.py", "next_data"),
    ("sample previews saved", "rundir.py", "save_samples"),
    ("events (batch view)", "batch.py", "handle"),
    ("checkpoints (rows appended, state saved)", "loop.py", "_checkpoint"),
    ("  of which metrics rows (JSON)", "rundir.py", "append_metrics"),
    ("status heartbeats", "rundir.py", "write_status"),
    ("summary table at the end (reads metrics)", "batch.py", "summary"),
)


def cli_command(generations: int, runs: Path, sets: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "collapse_tui", "--batch", "gmm", "--runs-dir", str(runs)]
    for s in [f"experiment.generations={generations}", *sets]:
        cmd += ["--set", s]
    return cmd


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_cli(cmd: list[str], env: dict[str, str], cwd: Path = ROOT, cpu: list[float] | None = None) -> float:
    """The command's wall seconds; its CPU seconds appended to cpu."""
    start, start_cpu = time.perf_counter(), children_cpu()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    if cpu is not None:
        cpu.append(children_cpu() - start_cpu)
    return time.perf_counter() - start


def breakdown(profile: Path, total: float) -> None:
    stats = pstats.Stats(str(profile)).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    print(f"\nwhere the CLI run's {total:.1f} s go (cProfile, cumulative per function):")
    for label, suffix, name in PHASES:
        found = [v[3] for (f, _, n), v in stats.items() if n == name and f.endswith(suffix)]
        if found:
            print(f"  {label:<44} {max(found):6.2f} s  {100 * max(found) / total:5.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="201 generations, sklearn 4 x 51: a check, not the table")
    ap.add_argument("--generations", type=int, help="generations of the CLI run (default: the preset's 2001)")
    ap.add_argument("--sk-seeds", type=int, default=4, help="seeds for the sklearn loop")
    ap.add_argument("--sk-generations", type=int, help="generations for the sklearn loop (default 351)")
    ap.add_argument("--profile", action="store_true", help="also profile the CLI run and print the breakdown")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set for the CLI run")
    ap.add_argument(
        "--against", type=Path, help="another version, installed with `pip install --no-deps --target DIR`: its CLI too"
    )
    ap.add_argument("--repeat", type=int, default=3, help="CLI runs (the median counts): this box's speed swings")
    args = ap.parse_args()
    generations = args.generations or (201 if args.quick else 2001)
    sk_generations = args.sk_generations or (51 if args.quick else 351)
    seeds = 32  # the gmm preset's

    print(f"machine: {machine.cpu()}")
    sk_cpu = time.process_time()
    sk_s, _ = run_sklearn(args.sk_seeds, sk_generations)
    sk_cpu = time.process_time() - sk_cpu
    sk_rate = args.sk_seeds * sk_generations / sk_s
    print(
        f"notebook loop (sklearn): {args.sk_seeds} x {sk_generations} in {sk_s:.1f} s ({sk_cpu:.1f} s of CPU): "
        f"{sk_rate:.1f} seed-gens/s"
    )

    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="gmm-e2e-") as tmp:
        runs = Path(tmp) / "runs"
        cmd = cli_command(generations, runs, args.sets)
        # warm numba's cache (a first run on this machine compiles; that cost is bench/gmm_em.py --cold's)
        subprocess.run(cli_command(2, runs, args.sets), cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        other = None
        if args.against:  # its own numba cache, warmed the same way
            other = {**env, "PYTHONPATH": str(args.against), "NUMBA_CACHE_DIR": str(Path(tmp) / "numba-other")}
            run_cli(cli_command(2, runs, args.sets), other, args.against)
        times, other_times, cpus = [], [], []
        for _ in range(args.repeat):  # interleaved, so that both see the box's same minutes
            times.append(run_cli(cmd, env, cpu=cpus))
            if other is not None:
                other_times.append(run_cli(cmd, other, args.against))
        cli_s = statistics.median(times)
        cli_rate = seeds * generations / cli_s
        print(
            f"CLI `collapse-tui --batch gmm` ({seeds} seeds x {generations} generations, {' '.join(args.sets)}): "
            f"{cli_s:.1f} s end to end (median of {', '.join(f'{t:.1f}' for t in times)}): {cli_rate:.0f} seed-gens/s"
        )
        print(f"ratio: {cli_rate / sk_rate:.0f}x the notebook loop end to end")
        # on a machine other processes share, CPU seconds swing less than wall seconds (the CLI's use 2 threads)
        cli_cpu = statistics.median(cpus)
        sk_cpu_rate = args.sk_seeds * sk_generations / sk_cpu
        print(
            f"CPU seconds: CLI {cli_cpu:.1f} (median of {', '.join(f'{t:.1f}' for t in cpus)}), "
            f"{seeds * generations / cli_cpu / sk_cpu_rate:.0f}x the notebook loop's per seed-generation"
        )
        if other_times:
            other_s = statistics.median(other_times)
            runs_text = ", ".join(f"{t:.1f}" for t in other_times)
            print(
                f"{args.against}: {other_s:.1f} s (median of {runs_text}), {other_s / cli_s:.2f}x this version's time"
            )
        if args.profile:
            prof = Path(tmp) / "cli.prof"
            prof_cmd = [cmd[0], "-m", "cProfile", "-o", str(prof), *cmd[1:]]
            prof_s = run_cli(prof_cmd, env)
            breakdown(prof, prof_s)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

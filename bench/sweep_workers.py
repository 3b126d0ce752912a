"""Benchmark: a 4-cell sweep of vae-quick (keep_fraction 0, 0.1, 0.2, 0.5) with --workers 2 against the
same cells run one after another in one process (the sequential executor, torch on every core), in the
same run. Prints both wall times and the ratio (the issue's target: at most 0.6 on 2 cores).

    .venv/bin/python bench/sweep_workers.py                    # 4 generations a cell, about a minute
    .venv/bin/python bench/sweep_workers.py --generations 8    # vae-quick as it is
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine

from collapse_tui.seed_workers import worker_env

SWEEP = """
[experiment]
description = "bench: vae-quick over keep_fraction"
engine = "vae"
generations = {generations}
seeds = 1
device = "cpu"

[data]
mode = "keep"

[engine]
source = "digits"
latent = 20
capacity = 32
epochs = 20
batch = 64

[sweep]
"data.keep_fraction" = [0, 0.1, 0.2, 0.5]
"""


def timed(preset: Path, runs: Path, *args: str, env: dict[str, str] | None = None) -> float:
    cmd = [sys.executable, "-m", "collapse_tui", "--batch", str(preset), "--runs-dir", str(runs), *args]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    print(f"machine: {machine.cpu()}")
    with tempfile.TemporaryDirectory() as tmp:
        preset = Path(tmp) / "vae-keep4.toml"
        preset.write_text(SWEEP.format(generations=args.generations))
        many = timed(preset, Path(tmp) / "workers", "--workers", str(args.workers))
        # the same cells one after another with one thread per pool: what the workers' speed-up is over
        # when the machine is busy and torch's threads would otherwise spin-wait for cores
        single = timed(preset, Path(tmp) / "one-thread", env=worker_env(1))
        one = timed(preset, Path(tmp) / "sequential")
    print(f"4 cells x {args.generations} generations of vae-quick")
    print(f"one after another (this process, every core): {one:.1f} s")
    print(f"one after another, one thread per pool: {single:.1f} s")
    print(f"--workers {args.workers} (a process each, cores shared out): {many:.1f} s")
    print(f"ratio to one after another: {many / one:.2f}; to one after another with one thread: {many / single:.2f}")
    print(f"machine at the end: {machine.cpu()}")


if __name__ == "__main__":
    main()

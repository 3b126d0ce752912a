"""Benchmark: a 2-seed vae-quick run (one seed at a time) with --workers 2 against the same run in one
process, in the same run of the script, each as its own `collapse-tui --batch` process. Prints the wall
times and the ratios.

    .venv/bin/python bench/seed_workers.py                  # 2 generations, one thread per pool baseline
    .venv/bin/python bench/seed_workers.py --every-core     # also one process with torch on every core
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


def timed(runs: Path, generations: int, *args: str, env: dict[str, str] | None = None) -> float:
    sets = ["--set", "experiment.seeds=2", "--set", f"experiment.generations={generations}"]
    sets += ["--set", 'experiment.device="cpu"']
    cmd = [sys.executable, "-m", "collapse_tui", "--batch", "vae-quick", *sets, "--runs-dir", str(runs), *args]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--every-core", action="store_true", help="also one process with torch's default threads")
    args = ap.parse_args()
    print(f"machine: {machine.cpu()}")
    with tempfile.TemporaryDirectory() as tmp:
        many = timed(Path(tmp) / "workers", args.generations, "--workers", "2")
        single = timed(Path(tmp) / "one-thread", args.generations, env=worker_env(1))
        every = timed(Path(tmp) / "every-core", args.generations) if args.every_core else None
    print(f"vae-quick, 2 seeds x {args.generations} generations")
    print(f"one process, one thread per pool: {single:.1f} s")
    if every is not None:
        print(f"one process, torch on every core: {every:.1f} s (ratio {many / every:.2f})")
    print(f"--workers 2 (a seed each, one thread per pool): {many:.1f} s")
    print(f"ratio to one process with one thread per pool: {many / single:.2f}")
    print(f"machine at the end: {machine.cpu()}")


if __name__ == "__main__":
    main()

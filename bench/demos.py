"""Benchmark: the quick demos launch to exit. Each `collapse-tui --batch PRESET` is its own process, timed from
its start to its exit (interpreter, imports, data, training, sampling, evaluation, the detector, the writes, the
summary), against baselines measured in the same run, interleaved with it so that all see the box's same
minutes: `python -c pass` (an interpreter's start), `python -c "import torch"` (the floor of any torch run)
and, with --against, the same presets run by another version of the code (e.g. main's), whose ratio is the
speed-up. Wall seconds are what a user waits; CPU seconds (the process's and its children's user + system)
swing less with other work on the machine. One warm-up round first (numba's and the classifier's caches, the
page cache), not counted; then the median of --repeat rounds.

    .venv/bin/python bench/demos.py                                  # the four quick presets, 3 rounds
    .venv/bin/python bench/demos.py vae-quick --against /tmp/main    # and main's code, installed there with
        # git archive main | tar -x -C /tmp/main-src && pip install --no-deps --target /tmp/main /tmp/main-src
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import machine

ROOT = Path(__file__).resolve().parents[1]
QUICK = ("vae-quick", "ngram-quick", "gmm-quick", "gaussian-quick")
TARGETS = {"vae-quick": 10.0, "ngram-quick": 3.0, "gmm-quick": 1.5, "gaussian-quick": 1.0}  # issue 30, seconds
BASELINES = {"python -c pass": "pass", "python -c 'import torch'": "import torch"}


@dataclass
class Timings:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    threads: str = ""  # the run's own line about its threads

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)

    def text(self) -> str:
        runs = ", ".join(f"{w:.2f}" for w in self.wall)
        return f"{statistics.median(self.wall):6.2f} s wall ({runs}), {statistics.median(self.cpu):6.2f} s CPU"


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds of cmd, start to exit (its children's CPU included), and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, out


def preset_cmd(preset: str, runs: Path) -> list[str]:
    return [sys.executable, "-m", "collapse_tui", "--batch", preset, "--runs-dir", str(runs)]


def threads_line(out: str) -> str:
    found = re.search(r"threads: [^\n]*", out)
    return found.group(0) if found else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("presets", nargs="*", default=list(QUICK), help=f"default: {' '.join(QUICK)}")
    ap.add_argument("--repeat", type=int, default=3, help="rounds after the warm-up (the median counts)")
    ap.add_argument("--against", type=Path, help="another version installed with pip install --no-deps --target DIR")
    args = ap.parse_args()
    print(f"machine: {machine.cpu()}")
    env = dict(os.environ)
    other_env = {**env, "PYTHONPATH": str(args.against)} if args.against else None
    with tempfile.TemporaryDirectory(prefix="demos-") as tmp:
        runs = Path(tmp) / "runs"
        jobs: dict[str, tuple[list[str], dict[str, str], Path]] = {
            name: ([sys.executable, "-c", code], env, ROOT) for name, code in BASELINES.items()
        }
        for preset in args.presets:
            jobs[preset] = (preset_cmd(preset, runs), env, ROOT)
            if other_env is not None:
                jobs[f"{preset} ({args.against})"] = (preset_cmd(preset, runs), other_env, args.against)
        results = {name: Timings() for name in jobs}
        for round_ in range(args.repeat + 1):  # round 0 warms the caches
            for name, (cmd, job_env, cwd) in jobs.items():
                wall, cpu, out = timed(cmd, job_env, cwd)
                if round_:
                    results[name].add(wall, cpu)
                    results[name].threads = threads_line(out)
    print(f"launch to exit, median of {args.repeat} rounds after a warm-up:")
    for name, t in results.items():
        print(f"  {name:<36} {t.text()}  {t.threads}")
    for preset in args.presets:
        mine = statistics.median(results[preset].wall)
        target = f"target {TARGETS[preset]:.1f} s" if preset in TARGETS else "no target"
        line = f"{preset}: {mine:.2f} s ({target})"
        if args.against:
            other = results[f"{preset} ({args.against})"]
            line += (
                f"; {args.against}: {statistics.median(other.wall):.2f} s, this version takes "
                f"{mine / statistics.median(other.wall):.2f}x its wall time, "
                f"{statistics.median(results[preset].cpu) / statistics.median(other.cpu):.2f}x its CPU"
            )
        print(line)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

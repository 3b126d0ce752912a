"""Benchmark: vae-quick with its default threads against OMP_NUM_THREADS=1, on a machine that two busy background
processes (pure-Python spin loops, one core each) share with it. The default takes the cores that are free when
the run starts (collapse_tui/threads.py); torch's own default, every core, would wait on its descheduled
threads. Each run is `collapse-tui --batch vae-quick` as its own process, timed launch to exit, the two variants
interleaved round after round, each first in every other round (the median counts); the spinners start before
the first round (--settle seconds before it: 0, so that the 1-minute load average has not seen them yet) and are
killed at the end, on an error too (their own process group, try/finally).

    .venv/bin/python bench/threads.py                  # 3 rounds, spinners started right before
    .venv/bin/python bench/threads.py --settle 60      # after the load average has caught up with them
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import machine
from demos import ROOT, Timings, preset_cmd, threads_line, timed

THREAD_VARS = ("COLLAPSE_TUI_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SPIN = "while True: pass"


@contextmanager
def spinners(count: int) -> Iterator[None]:
    """count processes spinning in pure Python, in one process group of their own, killed however the block
    ends (SIGTERM to this script included: it becomes SystemExit, so the finally runs)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    first = subprocess.Popen([sys.executable, "-c", SPIN], process_group=0)  # a group of its own, this session
    try:
        for _ in range(count - 1):
            subprocess.Popen([sys.executable, "-c", SPIN], process_group=first.pid)
        yield
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of both variants (the median counts)")
    ap.add_argument("--busy", type=int, default=2, help="background processes spinning")
    ap.add_argument("--settle", type=float, default=0.0, help="seconds between starting them and the first round")
    ap.add_argument("--preset", default="vae-quick")
    args = ap.parse_args()
    print(f"machine before the spinners: {machine.cpu()}")
    default_env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    variants = {"default": default_env, "OMP_NUM_THREADS=1": default_env | {"OMP_NUM_THREADS": "1"}}
    results = {name: Timings() for name in variants}
    with tempfile.TemporaryDirectory(prefix="threads-") as tmp, spinners(args.busy):
        runs = Path(tmp) / "runs"
        time.sleep(args.settle)
        for round_ in range(args.repeat):
            for name, env in list(variants.items())[:: 1 - 2 * (round_ % 2)]:  # ABBA: each goes first as often
                wall, cpu, out = timed(preset_cmd(args.preset, runs), env, ROOT)
                results[name].add(wall, cpu)
                results[name].threads = threads_line(out)
                print(f"  {name:<18} {wall:6.2f} s wall, {cpu:6.2f} s CPU  {threads_line(out)}", flush=True)
        print(f"machine with {args.busy} spinning: {machine.cpu()}")
    print(f"{args.preset} with {args.busy} busy processes, launch to exit, median of {args.repeat} rounds:")
    for name, t in results.items():
        print(f"  {name:<18} {t.text()}  {t.threads}")
    default, one = (statistics.median(results[name].wall) for name in variants)
    cpu_default, cpu_one = (statistics.median(results[name].cpu) for name in variants)
    print(
        f"default / OMP_NUM_THREADS=1: {default / one:.2f} wall, {cpu_default / cpu_one:.2f} CPU "
        "(the default must not lose: at most 1, within the noise of equal runs)"
    )


if __name__ == "__main__":
    main()

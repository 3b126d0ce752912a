"""Benchmark: launch to first frame of the app (`collapse-tui`, its start screen with the preset table)
in a tmux pane of 100x30, against a bare Textual app drawing a DataTable of the same names, launched
the same way in the same run (the floor: Python, Textual and a terminal). Prints the medians of a few
launches of each and the ratio. Also `python -X importtime` of the app's start, for where time goes.

    .venv/bin/python bench/app_first_frame.py            # 5 launches of each
    .venv/bin/python bench/app_first_frame.py --quick    # 2 launches of each
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine

ROOT = Path(__file__).resolve().parents[1]
MARKER = "gmm-quick"  # a row of the preset table: the first frame is drawn when it shows

BARE = """
from textual.app import App
from textual.widgets import DataTable

class Bare(App):
    def compose(self):
        yield DataTable(id="presets")

    def on_mount(self):
        table = self.query_one(DataTable)
        table.add_columns("preset", "engine")
        for name in ("gmm", "gmm-quick", "gaussian-quick", "vae-quick"):
            table.add_row(name, "engine")

Bare().run()
"""


def first_frame(cmd: list[str], cwd: Path, path: Path | None = None, timeout: float = 60.0) -> float:
    """Seconds from starting cmd in a fresh detached tmux session (100x30) until MARKER is on screen;
    path: a folder holding another version of collapse_tui (see --against) to run instead of this one."""
    session = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    env = ["env", f"PYTHONPATH={path}"] if path else []
    start = time.perf_counter()
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", "-c", str(cwd), *env, *cmd], check=True
    )
    try:
        while time.perf_counter() - start < timeout:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True)
            if MARKER in screen.stdout:
                return time.perf_counter() - start
            time.sleep(0.01)
        raise TimeoutError(f"{cmd}: no {MARKER!r} on screen after {timeout} s")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)


def import_profile(runs: Path, top: int = 8) -> None:
    """The slowest imports of building the app (python -X importtime), cumulative."""
    code = "from pathlib import Path; from collapse_tui.tui.app import build_app; "
    code += f"build_app(None, [], Path({str(runs)!r}))"
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True, text=True)
    rows = []
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    print(f"\nslowest imports of building the app (cumulative, of {len(rows)} modules):")
    for us, name in sorted(rows, reverse=True)[:top]:
        print(f"  {us / 1e6:6.3f} s {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 launches of each")
    ap.add_argument("--launches", type=int, default=5)
    ap.add_argument(
        "--against", type=Path, help="another version, installed with `pip install --no-deps --target DIR`: timed too"
    )
    args = ap.parse_args()
    launches = 2 if args.quick else args.launches
    if shutil.which("tmux") is None:
        sys.exit("bench/app_first_frame.py needs tmux")
    print(f"machine: {machine.cpu()}")
    # one tmux server for all launches: a session started while the server that the last one's end
    # shut down is exiting fails ("server exited unexpectedly") and leaves its app running
    keeper = f"bench-keeper-{os.getpid()}"
    subprocess.run(["tmux", "new-session", "-d", "-s", keeper], check=True)
    try:
        measure(args, launches)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", keeper], check=False, capture_output=True)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def measure(args: argparse.Namespace, launches: int) -> None:
    with tempfile.TemporaryDirectory(prefix="first-frame-") as tmp:
        runs = Path(tmp) / "runs"
        app = [sys.executable, "-m", "collapse_tui", "--runs-dir", str(runs)]
        bare = [sys.executable, "-c", BARE]
        first_frame(app, ROOT)  # warm the OS's file cache for both
        first_frame(bare, ROOT)
        app_s, bare_s, other_s = [], [], []
        for _ in range(launches):  # interleaved: a change of load hits all
            app_s.append(first_frame(app, ROOT))
            bare_s.append(first_frame(bare, ROOT))
            if args.against:
                other_s.append(first_frame(app, args.against, args.against))
        a, b = statistics.median(app_s), statistics.median(bare_s)
        print(f"collapse-tui start screen: median {a:.2f} s of {launches} ({', '.join(f'{x:.2f}' for x in app_s)})")
        print(f"bare Textual DataTable app: median {b:.2f} s ({', '.join(f'{x:.2f}' for x in bare_s)})")
        print(f"ratio: {a / b:.2f}x the bare app; the app's own part {a - b:.2f} s")
        if other_s:
            o = statistics.median(other_s)
            print(f"{args.against}: median {o:.2f} s ({', '.join(f'{x:.2f}' for x in other_s)}): {o / a:.2f}x this one")
        import_profile(runs)


if __name__ == "__main__":
    main()

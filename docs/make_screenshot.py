"""Regenerate docs/run-screen.svg: the run screen of a real gmm-quick run (300 generations), at
100x30, mid-run; and docs/plot-pane.svg: the plot pane (g) of a finished gaussian-quick run, at 80x24.

    .venv/bin/python docs/make_screenshot.py
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from collapse_tui.preset_files import load_preset
from collapse_tui.rundir import RunDir
from collapse_tui.testing import run_in_process
from collapse_tui.tui.app import build_app

OUT = Path(__file__).parent / "run-screen.svg"
PLOT_OUT = Path(__file__).parent / "plot-pane.svg"
GENERATIONS, AT_GENERATION = 300, 120  # long enough to catch it mid-run


async def main() -> None:
    with tempfile.TemporaryDirectory() as runs:
        app = build_app("gmm-quick", [f"experiment.generations={GENERATIONS}"], Path(runs))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            app.screen.action_start()  # not pilot.press: it would wait for the app to go idle, i.e. the run's end
            await pilot.pause()
            screen = app.screen
            deadline = time.monotonic() + 300
            while screen.run_state.done < AT_GENERATION and time.monotonic() < deadline:
                await pilot.pause(0.02)
            await pilot.press("p")  # hold the run still while the screenshot is taken
            await pilot.pause(0.3)
            app.save_screenshot(filename=OUT.name, path=str(OUT.parent))
            await pilot.press("s")
            while screen.live:
                await pilot.pause(0.05)
    print(f"wrote {OUT}")


async def plot_pane() -> None:
    with tempfile.TemporaryDirectory() as runs:
        rundir = RunDir.create(Path(runs), load_preset("gaussian-quick", []))
        assert run_in_process(rundir) == "finished"
        app = build_app(str(rundir.path))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("g")
            await pilot.pause(0.5)
            app.save_screenshot(filename=PLOT_OUT.name, path=str(PLOT_OUT.parent))
    print(f"wrote {PLOT_OUT}")


if __name__ == "__main__":
    asyncio.run(main())
    asyncio.run(plot_pane())

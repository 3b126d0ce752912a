"""Import rules, each checked in a fresh interpreter: the core never imports textual, and the app
draws its start screen without importing torch or transformers, nor numba, scipy, scikit-learn or
matplotlib (a run or a report loads them: the first frame waits for none of them)."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import run_process

ROOT = Path(__file__).parents[1]

START_SCREEN = """
import asyncio, sys
from pathlib import Path
from collapse_tui.tui.app import build_app
from collapse_tui.tui.start import StartScreen

async def main():
    app = build_app(None, [], Path(sys.argv[1]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, StartScreen), app.screen
        assert app.screen.query_one("#presets").row_count >= 5

asyncio.run(main())
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "datasets"))
print("HEAVY", heavy)
later = ("numba", "llvmlite", "scipy", "sklearn", "matplotlib")
print("LATER", sorted({m.split(".")[0] for m in sys.modules} & set(later)))
"""

CORE = """
import sys
import collapse_tui.batch, collapse_tui.cli, collapse_tui.config, collapse_tui.loop, collapse_tui.phrases
import collapse_tui.rundir, collapse_tui.summary
from collapse_tui.engines import EngineError, engine_class, engine_names
for name in engine_names():
    try:
        engine_class(name)
    except EngineError:
        pass  # an engine whose optional dependencies are missing: not this test's business
print("TEXTUAL", sorted(m for m in sys.modules if m.split(".")[0] == "textual"))
"""


def run_python(code: str, *args: str) -> str:
    out = run_process(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_start_screen_imports_no_torch(tmp_path):
    out = run_python(START_SCREEN, str(tmp_path / "runs"))
    assert "HEAVY []" in out
    assert "LATER []" in out


def test_core_imports_no_textual():
    assert "TEXTUAL []" in run_python(CORE)

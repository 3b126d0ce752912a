"""An engine from outside the package, installed the way pip installs one (a dist-info folder with its
entry points on sys.path), found by `presets`, run end to end by `--batch`, drawn by `report` with its
own figure module, and listed by the app's start screen. Its numbers are checked against theory: a KDE
with bandwidth 0 resamples its own points, so the mean variance of generation n's samples is
((M - 1) / M)^(n + 1) (tests/plugin/collapse_kde.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_process

from collapse_tui import engines, preset_files
from collapse_tui.config import ConfigError
from collapse_tui.testing import check_engine

PLUGIN = Path(__file__).with_name("plugin")
ENTRY_POINTS = """[collapse_tui.engines]
kde = collapse_kde:KDEEngine

[collapse_tui.presets]
kde = collapse_kde:PRESETS
"""


def install(site: Path) -> Path:
    """The plugin's files and its distribution metadata in site, as `pip install collapse-kde` leaves them."""
    site.mkdir()
    for f in PLUGIN.iterdir():
        if f.suffix in (".py", ".toml"):
            shutil.copy(f, site / f.name)
    dist = site / "collapse_kde-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: collapse-kde\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def register(site: Path, module: str, code: str, entry_points: str) -> None:
    """Another distribution in site: one module and its entry points."""
    (site / f"{module}.py").write_text(code)
    dist = site / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)


def clear_caches() -> None:
    engines.entry_points.cache_clear()
    engines.engine_class.cache_clear()
    preset_files.builtin_presets.cache_clear()


def cli(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return run_process(
        [sys.executable, "-m", "collapse_tui", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_an_installed_plugin_is_listed_run_and_reported(tmp_path):
    site = install(tmp_path / "site")
    listed = cli(site, tmp_path, "presets")
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:2] == ["kde", "kde"] for line in listed.stdout.splitlines())
    assert listed.stdout.splitlines()[-1] == "engines: categorical, gaussian, gmm, kde, linreg, lm, ngram, opt, vae"

    run = cli(site, tmp_path, "--batch", "kde", "--runs-dir", "runs")
    assert run.returncode == 0, run.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    seeds, m = 400, 100
    assert len(rows) == 51 * seeds
    a = (m - 1) / m
    for gen in (0, 25, 50):
        v = np.array([r["variance"] for r in rows if r["generation"] == gen])
        se = v.std(ddof=1) / np.sqrt(len(v))
        assert abs(v.mean() - a ** (gen + 1)) < 4 * se, (gen, v.mean(), a ** (gen + 1), se)
    assert 1 - a**51 > 8 * se  # the tolerance tells this collapse from no collapse

    report = cli(site, tmp_path, "report", str(run_dir), "--format", "png")
    assert report.returncode == 0, report.stderr[-2000:]
    index = (run_dir / "report" / "index.md").read_text()
    assert "## kde-variance-theory" in index and (run_dir / "report" / "kde-variance-theory.png").stat().st_size


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(install(tmp_path / "site")))
    monkeypatch.delitem(sys.modules, "collapse_kde", raising=False)  # each test imports its own copy
    clear_caches()
    yield
    clear_caches()
    sys.modules.pop("collapse_kde", None)


def test_the_plugin_and_its_preset_appear_in_the_start_screen(plugin_on_path, tmp_path):
    import asyncio

    from collapse_tui.tui.app import build_app

    assert "kde" in engines.engine_names() and "kde" in preset_files.builtin_presets()

    async def names() -> list[str]:
        app = build_app(None, [], tmp_path / "runs")
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            table = app.screen.query_one("#presets")
            return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]

    assert "kde" in asyncio.run(names())


def test_a_broken_plugin_gives_one_line_and_leaves_the_others_working(plugin_on_path, tmp_path):
    (Path(sys.path[0]) / "collapse_kde.py").write_text("raise ImportError('numpy 3 needed')\n")
    assert "kde" not in preset_files.builtin_presets()  # its presets cannot be read, the built-ins can
    assert "gmm" in preset_files.builtin_presets()
    preset = tmp_path / "kde.toml"
    shutil.copy(PLUGIN / "kde.toml", preset)
    with pytest.raises(ConfigError) as err:
        preset_files.load_preset(str(preset))
    assert (
        str(err.value)
        == "experiment.engine: engine 'kde' (collapse_kde:KDEEngine) does not load: ImportError: numpy 3 needed"
    )


TINY_KDE = {"samples": 50, "test_samples": 100}


def test_the_plugin_keeps_the_engine_contract(plugin_on_path):
    check_engine("kde", TINY_KDE)


BROKEN = {  # the KDE engine broken in one method -> the part of the contract check_engine names
    "load": (
        "load(self, directory):\n        return {'points': super().load(directory)['points'][:, 1:]}",
        "checkpoint",
    ),
    "evaluate": (
        "evaluate(self, *args):\n        return [{'perplexity': r['perplexity']} for r in super().evaluate(*args)]",
        "rows",
    ),
}


@pytest.mark.parametrize("method", sorted(BROKEN))
def test_check_engine_names_what_a_broken_engine_breaks(plugin_on_path, monkeypatch, method):
    code, part = BROKEN[method]
    engine = (
        f"from collapse_kde import KDEEngine\n\n\nclass Broken(KDEEngine):\n    name = 'broken'\n\n    def {code}\n"
    )
    register(Path(sys.path[0]), "broken_kde", engine, "[collapse_tui.engines]\nbroken = broken_kde:Broken\n")
    monkeypatch.delitem(sys.modules, "broken_kde", raising=False)
    clear_caches()
    with pytest.raises(AssertionError, match=f"^engine 'broken', {part}: "):
        check_engine("broken", TINY_KDE)

from __future__ import annotations

import os

# Under pytest-xdist each worker gets one core: torch's thread pool would otherwise
# oversubscribe the machine, and OpenMP spin-waiting then slows training tenfold.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from collapse_tui import batch
from collapse_tui.cli import main
from collapse_tui.preset_files import load_preset
from collapse_tui.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"  # real subsets shipped with the tests (tests/data/README.md)
WIKI = DATA / "wikitext-2"
MNIST = DATA / "mnist"
# the OPT tests' text: WikiText-2's validation split trains, its test split tests
WIKI_TRAIN, WIKI_TEST = str(WIKI / "valid.txt"), str(WIKI / "test.txt")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel` builds from this checkout, built from a copy of what the build reads (so
    that parallel workers share no setuptools build/ folder and the checkout gets none)."""
    src = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    for name in ("collapse_tui", "engines", "presets"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    (path,) = out.glob("*.whl")
    return path


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the package as `pip install` lays it out (the wheel unpacked): collapse_tui/
    with engines/ and presets/ in it."""
    site = tmp_path_factory.mktemp("site")
    zipfile.ZipFile(wheel).extractall(site)
    return site


@pytest.fixture
def write_preset(tmp_path: Path):
    """Write a preset file in tmp_path and return its path."""

    def write(text: str | bytes, name: str = "preset.toml") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return write


def run_preset(tmp_path: Path, preset: str, *overrides: str) -> dict[int, dict[str, np.ndarray]]:
    """Run a preset headless; return generation -> metric -> array over seeds."""
    rundir = RunDir.create(tmp_path / "runs", load_preset(preset, list(overrides)))
    with open(tmp_path / "out.txt", "w") as out:
        assert batch.run_batch(rundir, out=out) == 0
    by_gen: dict[int, dict[str, list]] = {}
    for line in rundir.metrics_path.read_text().splitlines():
        row = json.loads(line)
        cols = by_gen.setdefault(row["generation"], {})
        for k, v in row.items():
            cols.setdefault(k, []).append(np.inf if v is None else v)
    return {g: {k: np.array(v) for k, v in cols.items() if k != "component_stds"} for g, cols in by_gen.items()}


def make_run(root: Path, preset: str, *sets: str) -> Path:
    """Run a preset with the batch CLI in a fresh runs folder under root; return the run directory."""
    runs = root / f"runs-{len(list(root.iterdir()))}"
    args = ["--batch", preset, "--runs-dir", str(runs)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    (path,) = runs.iterdir()
    return path


def run_loop(tmp_path: Path, preset: str, overrides: list[str], stop_after: int | None = None, resume_dir=None):
    """Run a preset through the loop in this process; stop after a generation, or resume a run directory.
    Returns (run directory, final state)."""
    from collapse_tui.testing import run_in_process

    rundir = resume_dir or RunDir.create(tmp_path / "runs", load_preset(preset, overrides))
    return rundir, run_in_process(rundir, stop_after, resume=resume_dir is not None)


def tiny_opt(**params: object):
    """An OPT engine on the tiny config and the first 20,000 characters of the WikiText-2 files."""
    from collapse_tui.engines.opt import OPTEngine

    base = dict(model="tiny", train=WIKI_TRAIN, test=WIKI_TEST, max_chars=20000, block_size=16, vocab_size=500)
    return OPTEngine({**base, **params})

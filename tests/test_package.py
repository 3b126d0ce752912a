"""The package installs whole: the wheel holds collapse_tui/ with the top-level engines/ and presets/
mapped into it (pyproject.toml's package-dir), runs from another folder, and reads no pyproject.toml."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from conftest import ROOT


def test_the_wheel_holds_every_file_of_the_package_engines_and_presets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, inside in (
        ("collapse_tui", "collapse_tui"),
        ("engines", "collapse_tui/engines"),
        ("presets", "collapse_tui/presets"),
    ):
        files = [f for f in (ROOT / folder).rglob("*") if f.is_file() and "__pycache__" not in f.parts]
        missing = [f"{inside}/{f.relative_to(ROOT / folder).as_posix()}" for f in files]
        assert not [name for name in missing if name not in names], folder
    for name in (
        "collapse_tui/engines/gmm.py",
        "collapse_tui/engines/figures/gmm.py",
        "collapse_tui/presets/gmm.toml",
        "collapse_tui/presets/sweeps/gmm-keep-sweep.toml",
        "collapse_tui/tui/app.tcss",
    ):
        assert name in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "gmm = collapse_tui.engines.gmm:GMMEngine" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_nothing_reads_pyproject_at_runtime(installed):
    assert not [p for p in (installed / "collapse_tui").rglob("*.py") if "pyproject" in p.read_text()]


def test_the_installed_package_runs_a_preset_from_another_folder(installed, tmp_path):
    code = (
        "import sys, collapse_tui.engines as e; from collapse_tui.cli import main; print(e.__file__); "
        f"sys.exit(main(['--batch', 'gaussian-quick', '--runs-dir', r'{tmp_path / 'runs'}']))"
    )
    env = os.environ | {"PYTHONPATH": str(installed)}  # ahead of this checkout's editable install
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(installed / "collapse_tui" / "engines"))

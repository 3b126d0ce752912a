"""A preset is read and parsed once per batch run: the Config goes down to the run directory, the loop
and the summary; a resume parses the run's preset.toml once (and, extended by --generations, the copy in
state/ of the preset it started with, to tell that from an edit)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from collapse_tui import preset_files, sweep
from collapse_tui.cli import main
from collapse_tui.preset_files import builtin_presets


@pytest.fixture
def reads(monkeypatch) -> list[Path]:
    """The files read_toml parses from now on (the one reader of preset files, where each module looks it up)."""
    read_toml, paths = preset_files.read_toml, []

    def counted(path: Path) -> dict:
        paths.append(Path(path))
        return read_toml(path)

    for module in (preset_files, sweep):
        monkeypatch.setattr(module, "read_toml", counted)
    return paths


def test_a_batch_run_parses_its_preset_once(tmp_path, reads, capsys):
    runs = tmp_path / "runs"
    sets = ["--set", "experiment.generations=3", "--set", "experiment.seeds=2"]  # a run name from what they change
    assert main(["--batch", "gaussian-quick", "--runs-dir", str(runs), *sets]) == 0
    assert reads == [builtin_presets()["gaussian-quick"]]
    (run,) = runs.iterdir()
    assert run.name.startswith("gaussian-quick-generations3-seeds2-")

    reads.clear()
    assert main(["--batch", "--resume", str(run), "--generations", "5"]) == 0
    assert reads.count(run / "preset.toml") == 1  # and state/preset.toml, the preset as the run started


def test_a_batch_run_of_a_preset_file_parses_it_once(tmp_path, reads, capsys):
    preset = shutil.copy(builtin_presets()["gaussian-quick"], tmp_path / "mine.toml")
    assert (
        main(["--batch", str(preset), "--runs-dir", str(tmp_path / "runs"), "--set", "experiment.generations=2"]) == 0
    )
    assert reads == [preset]

"""Hostile input: presets, --set values and sweep files that once became a traceback, a crash after the run
directory existed, or 12 GB of memory. Each is refused before anything is created (exit 2, one line on
stderr naming the key or file), or, where it means something, does what the README says."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MNIST

from collapse_tui.cli import main
from collapse_tui.sweep import builtin_sweeps, load_sweep
from collapse_tui.sweepdir import SweepDir

GAUSS = """
[experiment]
engine = "gaussian"
generations = 2
seeds = 2
[engine]
samples = 10
"""
POINTS = builtin_sweeps()["gaussian-m-sweep"].parent.parent / "points-ecosystem.toml"
VAE_CHAIN = """
[experiment]
generations = 2
seeds = 1
[data]
share_others = 0.5
[[chains]]
name = "digits"
engine = "vae"
source = "digits"
[[chains]]
name = "mnist"
engine = "vae"
source = "files"
images = "{images}"
"""


def nested(depth: int) -> str:
    return "[" * depth + "0" + "]" * depth


def refused(args: list[str], tmp_path: Path, capsys, words: list[str]) -> None:
    """The CLI exits 2 with one line on stderr holding words, and made nothing in the runs folder."""
    runs = tmp_path / "runs"
    code = main(["--batch", *args, "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("collapse-tui: "), err
    assert all(w in err for w in words), (words, err)
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


def test_a_sweep_too_large_is_refused_before_its_cells_are_listed(write_preset, tmp_path):
    """40 swept keys of two values (2^40 cells): refused in one line, in a process limited to 1 GB of
    address space (the cells once were listed before they were counted: 12.5 GB)."""
    keys = "".join(f'"engine.k{i}" = [1, 2]\n' for i in range(40))
    path = write_preset(GAUSS + "[sweep]\n" + keys, "big.toml")
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"
        "from collapse_tui.cli import main\n"
        f"sys.exit(main(['--batch', {str(path)!r}, '--runs-dir', {str(tmp_path / 'runs')!r}]))"
    )
    env = os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}  # thread stacks count as address space
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 2 and out == "", err
    assert err == f"collapse-tui: [sweep]: {2**40} cells, more than a sweep's 1000\n"
    assert not (tmp_path / "runs").exists()


def test_swept_seeds_are_a_count_or_a_list_each(write_preset):
    """A swept experiment.seeds lists values of experiment.seeds: 2 is seeds 0 and 1, [0, 5] seeds 0 and 5
    (once a TypeError)."""
    path = write_preset(GAUSS + '[sweep]\n"experiment.seeds" = [2, 4, [0, 5]]\n', "seeds.toml")
    cells = [(c.name, c.config.seeds) for c in load_sweep(path).cells]
    assert cells == [("seeds2", [0, 1]), ("seeds4", [0, 1, 2, 3]), ("seeds0.5", [0, 5])]


def test_a_chains_key_is_swept_as_chains_name_key(write_preset):
    """chains.NAME.KEY sweeps one chain's key, as --set sets it."""
    sweep = load_sweep(write_preset(POINTS.read_text() + '\n[sweep]\n"chains.gauss.samples" = [10, 20]\n'))
    assert [c.name for c in sweep.cells] == ["gauss.samples10", "gauss.samples20"]
    assert [[ch["samples"] for ch in c.config.chains] for c in sweep.cells] == [[1000, 10], [1000, 20]]


@pytest.mark.parametrize(
    "text, words",
    [
        # once TypeErrors: a section that is no table under a swept key, a chain swept as a whole
        ("data = 5\n" + GAUSS + '[sweep]\n"data.keep_fraction" = [0.1, 0.2]\n', ["data: expected a table"]),
        (GAUSS + '[sweep]\n"experiment.seeds" = [2, "x"]\n', ["sweep cell x", "experiment.seeds", "'x'"]),
        (POINTS.read_text() + '\n[sweep]\n"chains.gmm" = [1, 2]\n', ["sweep.chains.gmm", "chains.NAME.KEY"]),
        # once a RecursionError in the TOML parser
        (GAUSS + f'[sweep]\n"engine.samples" = [{nested(500)}]\n', ["sweep.toml", "nested deeper than"]),
    ],
    ids=["section-not-table", "bad-swept-seeds", "chain-as-a-whole", "nested-500"],
)
def test_bad_sweep_files_are_one_line(text, words, write_preset, tmp_path, capsys):
    """Sweep files whose bad values once raised TypeError or RecursionError."""
    refused([str(write_preset(text, "sweep.toml"))], tmp_path, capsys, words)


@pytest.mark.parametrize(
    "args, words",
    [
        # nested 500 deep: a RecursionError in the TOML parser
        (["{nested}"], ["nested.toml", "nested deeper than a preset's 8 levels"]),
        (["gaussian-quick", "--set", f"engine.samples={nested(500)}"], ["--set engine.samples", "nested deeper"]),
        # seeds that numpy took, and the metrics file (2^64) or export (2^63, int64) did not
        (["gaussian-quick", "--set", f"experiment.seeds=[1, {2**64}]"], ["experiment.seeds", str(2**64)]),
        (["gaussian-quick", "--set", f"experiment.seeds=[{2**63}]"], ["experiment.seeds", "2^63 - 1"]),
        (["points-ecosystem", "--set", "chains.gauss.seeds=[0, 1, 2, -3]"], ["chains.gauss.seeds", "-3"]),
        # inf in float keys without a maximum: a run that failed, or ran on a meaningless value
        (["gmm-quick", "--set", "engine.reg_covar=inf"], ["engine.reg_covar", "finite", "inf"]),
        (["ngram-quick", "--set", "engine.k=inf"], ["engine.k", "finite", "inf"]),
        (["gaussian-quick", "--set", "experiment.checkpoint_seconds=inf"], ["experiment.checkpoint_seconds", "inf"]),
        # a VAE chain of 28x28 images beside one of 8x8: once found after the run directory existed
        (["{vae}"], ["chains.mnist", "(28, 28)", "(8, 8)"]),
    ],
    ids=[
        "preset-500",
        "set-500",
        "seed-2^64",
        "seed-2^63",
        "chain-seed",
        "inf-reg_covar",
        "inf-k",
        "inf-checkpoint_seconds",
        "vae",
    ],
)
def test_bad_presets_and_sets_are_one_line(args, words, tmp_path, capsys):
    """Presets and --set values refused before a run directory exists (each once crashed or ran)."""
    files = {
        "{nested}": ("nested.toml", f'[experiment]\nengine = "gaussian"\nseeds = {nested(500)}\n'),
        "{vae}": ("vae.toml", VAE_CHAIN.format(images=MNIST / "t10k-images-idx3-ubyte.gz")),
    }
    for i, a in enumerate(args):
        if a in files:
            name, text = files[a]
            (tmp_path / name).write_text(text)
            args[i] = str(tmp_path / name)
    refused([*args, "--set", "experiment.generations=1"], tmp_path, capsys, words)


def test_a_sweep_resumes_without_its_logs_folder(tmp_path, capsys):
    """A sweep directory whose logs/ was deleted resumes with workers, and has logs/ again (it was a
    FileNotFoundError; with Ray, failing tasks and a sweep forever to be resumed)."""
    sets = ["experiment.generations=2", "experiment.seeds=2"]
    sweep = SweepDir.create(tmp_path / "runs", load_sweep(builtin_sweeps()["gaussian-m-sweep"], sets))
    shutil.rmtree(sweep.logs)
    assert main(["--batch", "--resume", str(sweep.path), "--workers", "2"]) == 0
    assert "4 of 4 cells finished" in capsys.readouterr().out
    assert sorted(p.name for p in sweep.logs.iterdir()) == sorted(f"{c.name}.log" for c in sweep.cells)

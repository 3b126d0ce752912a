"""`--workers N` on a single run: the seeds of an engine that trains one seed at a time in N processes give
the one-process run's files row for row, and a run killed with -9 resumes (with workers) to the same.

Every process has the same thread counts (max(1, cores // 2), set by COLLAPSE_TUI_THREADS): torch's and
BLAS's reductions split by thread, so runs with other thread counts differ in the last bits of float32
metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import all_end, children, run_process, spawn

from collapse_tui.cli import main
from collapse_tui.rundir import RunDir
from collapse_tui.seed_workers import worker_env
from collapse_tui.threads import VARIABLE, cores

pytest.importorskip("torch")

# tests/test_engine_contract.py's tiny VAE, 2 seeds, 3 generations, a checkpoint every generation
SETS = [
    "experiment.seeds=2",
    "experiment.generations=3",
    "experiment.checkpoint_seconds=0",
    'engine.source="digits"',
    "engine.train_count=300",
    "engine.test_count=100",
    "engine.latent=4",
    "engine.capacity=4",
    "engine.epochs=1",
]
ARGS = [arg for s in SETS for arg in ("--set", s)]
THREADS = max(1, cores() // 2)
ENV = worker_env(THREADS) | {VARIABLE: str(THREADS)}  # a resume keeps the count its run started with


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("one") / "runs"
    cli = [sys.executable, "-m", "collapse_tui", "--batch", "vae-quick", *ARGS, "--runs-dir", str(runs)]
    done = run_process(cli, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (run,) = runs.iterdir()
    return run


def files(run: Path) -> dict[str, bytes]:
    """What a run leaves that must not depend on how many processes ran it: rows and sample previews."""
    out = {"metrics": run.joinpath("metrics.jsonl").read_bytes()}
    out |= {p.name: p.read_bytes() for p in sorted((run / "samples").glob("gen-*"))}
    return out


def test_two_workers_killed_with_9_and_resumed_with_workers_give_the_one_process_run_row_for_row(tmp_path, one_process):
    """Every row comes from the workers: generation 0's before the kill, the rest after the resume (their
    models shipped from the checkpoint); the workers die with their killed parent."""
    runs = tmp_path / "runs"
    proc = spawn(
        [
            sys.executable,
            "-m",
            "collapse_tui",
            "--batch",
            "vae-quick",
            *ARGS,
            "--workers",
            "2",
            "--runs-dir",
            str(runs),
        ],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    metrics = None
    while proc.poll() is None and not (metrics and metrics.exists() and metrics.read_bytes().count(b"\n") >= 2):
        found = list(runs.glob("[!.]*")) if runs.exists() else []
        metrics = found[0] / "metrics.jsonl" if found else None
        time.sleep(0.02)
    workers = children(proc.pid, b"spawn_main")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(workers) == 2, "the run had finished, or its workers had not started"
    assert all_end(workers), "a worker outlived its killed parent"
    run = RunDir(metrics.parent)
    assert main(["--batch", "--resume", str(run.path), "--workers", "2"]) == 0
    assert files(run.path) == files(one_process)
    assert len(files(run.path)["metrics"].splitlines()) == 2 * 3
    references = sorted(p.name for p in run.state_dir.glob("reference-*"))
    assert references == ["reference-0", "reference-1"]  # each worker wrote its group's


def test_workers_on_a_batched_single_chain_run_exit_2_before_anything_exists(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["--batch", "gmm-quick", "--workers", "2", "--runs-dir", str(runs)]) == 2
    assert "trains its seeds together" in capsys.readouterr().err and not runs.exists()

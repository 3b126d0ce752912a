"""What the tool withstands on the file system: export and report never write over a file of a run or
sweep directory, whatever path or link leads there; logs, cells and a run's folders are never written
through a link out of their directory; a report works under a directory whose name is not UTF-8."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_run, run_loop

from collapse_tui.cli import main
from collapse_tui.preset_files import load_preset
from collapse_tui.rundir import RunDir
from collapse_tui.sweep import load_sweep
from collapse_tui.sweepdir import LOGS, SweepDir

TINY = ("experiment.generations=3", "experiment.seeds=2")
SWEEP = """
[experiment]
engine = "gaussian"
generations = 3
seeds = 2

[engine]
samples = 20

[sweep]
"engine.samples" = [20]
"""


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path, "gaussian-quick", *TINY)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder (links not followed) and its bytes: what must stay as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(capsys, *args: str) -> str:
    """Run the CLI in this process; assert exit 2 with one line on stderr and return it."""
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("collapse-tui: ") and err.count("\n") == 1, err
    return err


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m collapse_tui ARGS` in its own process group, killed with it whatever happens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "collapse_tui", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # xdist's workers have COLUMNS=80 and LINES=24: a command's width is not theirs to choose here
        env={**{k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}, **(env or {})},
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("target", ["metrics.jsonl", "status.json", "samples/../preset.toml", "new.csv"])
def test_export_never_writes_into_a_run(run_dir: Path, target: str, capsys):
    """`export RUN --csv RUN/metrics.jsonl` (or any file of the run, '..' included, or a new one in it) is
    refused in one line, exit 2, with the run exactly as it was."""
    before = snapshot(run_dir)
    err = refused(capsys, "export", str(run_dir), "--csv", str(run_dir / target))
    assert f"the run directory {run_dir}" in err
    assert snapshot(run_dir) == before


def test_export_never_writes_through_a_link_to_a_run_file(run_dir: Path, tmp_path: Path, capsys, monkeypatch):
    """A link elsewhere to RUN/status.json, a relative path from inside the run, and a path through a
    link to the run's folder all lead to the run's files: refused, nothing written (the link stays)."""
    before = snapshot(run_dir)
    (tmp_path / "out.csv").symlink_to(run_dir / "status.json")
    (tmp_path / "linked").symlink_to(run_dir, target_is_directory=True)
    refused(capsys, "export", str(run_dir), "--csv", str(tmp_path / "out.csv"))
    refused(capsys, "export", str(run_dir), "--csv", str(tmp_path / "linked" / "metrics.jsonl"))
    monkeypatch.chdir(run_dir / "samples")
    refused(capsys, "export", str(run_dir), "--csv", "../status.json")
    assert (tmp_path / "out.csv").is_symlink() and snapshot(run_dir) == before


def test_export_writes_both_files_or_neither(run_dir: Path, tmp_path: Path, capsys):
    """With --parquet outside and --csv on the run's metrics, neither is written."""
    pytest.importorskip("pyarrow")
    refused(capsys, "export", str(run_dir), "--parquet", str(tmp_path / "m.parquet"), "--csv", str(run_dir / "x.csv"))
    assert not (tmp_path / "m.parquet").exists() and not (run_dir / "x.csv").exists()


def test_report_never_writes_into_a_run(run_dir: Path, tmp_path: Path, capsys):
    """`report RUN --out RUN` (or RUN/state, or a link to RUN/state) is refused with nothing written (its
    default, RUN/report, the folder report owns, still takes the figures: test_report.py)."""
    pytest.importorskip("matplotlib")
    before = snapshot(run_dir)
    (tmp_path / "figs").symlink_to(run_dir / "state", target_is_directory=True)
    for out in (run_dir, run_dir / "state", tmp_path / "figs"):
        assert "leads into the run directory" in refused(capsys, "report", str(run_dir), "--out", str(out))
    assert snapshot(run_dir) == before


def test_report_never_follows_a_link_out_of_a_run(run_dir: Path, tmp_path: Path, capsys):
    """RUN/report left as a link to a folder elsewhere: `report RUN` is refused in one line (exit 2) and
    writes nothing there."""
    pytest.importorskip("matplotlib")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run_dir / "report").symlink_to(elsewhere, target_is_directory=True)
    assert "is a link out of the run directory" in refused(capsys, "report", str(run_dir))
    assert list(elsewhere.iterdir()) == []


def make_sweep(tmp_path: Path) -> SweepDir:
    """A sweep of two gaussian cells, created and not yet run."""
    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP)
    return SweepDir.create(tmp_path / "runs", load_sweep(spec))


def test_report_and_export_never_write_into_a_sweep_but_its_report_folder(tmp_path: Path, capsys):
    """`report SWEEP --out SWEEP` (which would drop figures into every cell's run) and `export SWEEP --csv
    SWEEP/sweep.toml` are refused with the sweep as it was; the default SWEEP/report still works."""
    pytest.importorskip("matplotlib")
    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP)
    assert main(["--batch", str(spec), "--runs-dir", str(tmp_path / "runs")]) == 0
    (sweep,) = (tmp_path / "runs").iterdir()
    before = snapshot(sweep)
    assert "leads into the sweep directory" in refused(capsys, "report", str(sweep), "--out", str(sweep))
    assert "leads into the sweep directory" in refused(capsys, "export", str(sweep), "--csv", str(sweep / "sweep.toml"))
    assert snapshot(sweep) == before
    assert main(["report", str(sweep), "--format", "png", "--metrics", "variance"]) == 0
    assert (sweep / "report" / "cells" / "samples20" / "index.md").is_file()


def test_resume_never_appends_to_a_linked_log(tmp_path: Path):
    """A link left at a cell's log name, pointing at a file outside, is replaced by the log on --resume
    --workers 2: the file it pointed to keeps its content, the log has the worker's lines."""
    sweep = make_sweep(tmp_path)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    cell = sweep.cells[0].name
    (sweep.logs / f"{cell}.log").symlink_to(outside)
    done = cli("--batch", "--resume", str(sweep.path), "--workers", "2")
    assert done.returncode == 0, done.stderr.decode()
    assert outside.read_text() == "keep me\n"
    log = sweep.logs / f"{cell}.log"
    assert not log.is_symlink() and "finished" in log.read_text()


def test_resume_refuses_a_cell_that_links_out(tmp_path: Path, capsys):
    """A sweep's cells/NAME that is a link to a run elsewhere: --resume is refused in one line, exit 2,
    and the run elsewhere is left as it was."""
    sweep = make_sweep(tmp_path)
    cell = sweep.path / "cells" / sweep.cells[0].name
    elsewhere = tmp_path / "elsewhere"
    cell.rename(elsewhere)
    cell.symlink_to(elsewhere, target_is_directory=True)
    before = snapshot(elsewhere)
    err = refused(capsys, "--batch", "--resume", str(sweep.path))
    assert f"{cell}: a link out of the sweep directory" in err
    assert snapshot(elsewhere) == before


def test_resume_refuses_a_logs_folder_that_links_out(tmp_path: Path, capsys):
    """A sweep whose logs/ is a link to a folder elsewhere: refused in one line, nothing written there."""
    sweep = make_sweep(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    os.rmdir(sweep.logs)
    sweep.logs.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    err = refused(capsys, "--batch", "--resume", str(sweep.path), "--workers", "2")
    assert f"{sweep.path / LOGS}: a link out of the sweep directory" in err
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize("folder", ["samples", "state"])
def test_resume_refuses_a_run_folder_that_links_out(tmp_path: Path, folder: str, capsys):
    """A stopped run whose samples/ or state/ was replaced by a link to a folder elsewhere: --resume is
    refused in one line (exit 2) and writes nothing there."""
    cfg = load_preset("gaussian-quick", list(TINY))
    run = RunDir.create(tmp_path / "runs", cfg)
    run.release()
    elsewhere = tmp_path / "elsewhere"
    (run.path / folder).rename(elsewhere)
    (run.path / folder).symlink_to(elsewhere, target_is_directory=True)
    before = snapshot(elsewhere)
    err = refused(capsys, "--batch", "--resume", str(run.path))
    assert f"{run.path / folder}: a link" in err
    assert snapshot(elsewhere) == before


def test_report_under_a_non_utf8_directory(tmp_path: Path):
    """A run under a folder named with the byte 0xff: report writes index.md (the path shown as \\xff)
    and prints the files, with a strict UTF-8 stdout, exit 0."""
    pytest.importorskip("matplotlib")
    root = tmp_path / os.fsdecode(b"runs-\xff")
    root.mkdir()
    run = make_run(root, "gaussian-quick", *TINY)
    done = cli("report", str(run), "--format", "png", env={"PYTHONIOENCODING": "utf-8:strict"})
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    index = (run / "report" / "index.md").read_bytes().decode("utf-8")
    assert f"| {tmp_path}/runs-\\xff/{run.parent.name}/{run.name} |" in index
    assert done.stdout.splitlines()[-1] == os.fsencode(f"index: {run / 'report' / 'index.md'}")


@pytest.mark.parametrize("name", [".ckpt-000002.tmp", "ckpt-000002", "reference-0"])
def test_resume_replaces_a_link_planted_in_state(tmp_path: Path, name: str):
    """A link to a folder elsewhere, left in state/ at the name of a checkpoint (or its temp folder, or
    the reference model): resume removes the link, never what it points to, and finishes."""
    cfg = load_preset("gaussian-quick", list(TINY))
    run = RunDir.create(tmp_path / "runs", cfg)
    run.release()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep me\n")
    (run.state_dir / name).symlink_to(elsewhere, target_is_directory=True)
    done = cli("--batch", "--resume", str(run.path))
    assert done.returncode == 0, done.stderr.decode()
    assert snapshot(elsewhere) == {"keep.txt": b"keep me\n"}
    assert not (run.state_dir / name).is_symlink() and RunDir(run.path).read_status()["state"] == "finished"


def test_compare_runs_told_apart_by_non_utf8_paths(tmp_path: Path):
    """Two copies of a run under folders named with the bytes 0xff and 0xfe: compare labels them by their
    paths (shown as \\xff, \\xfe) and prints, with a strict UTF-8 stdout, exit 0."""
    run = make_run(tmp_path, "gaussian-quick", *TINY)
    copies = [tmp_path / os.fsdecode(name) / run.name for name in (b"a-\xff", b"b-\xfe")]
    for copy in copies:
        shutil.copytree(run, copy)
    done = cli("compare", *map(str, copies), env={"PYTHONIOENCODING": "utf-8:strict"})
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    printed = done.stdout.decode("utf-8", "surrogateescape")  # the paths printed as their bytes, as ls does
    for label, folder in (("A", "a-\\xff"), ("B", "b-\\xfe")):
        assert f"{label} = {tmp_path}/{folder}/{run.name}" in printed


def test_a_failure_naming_a_non_utf8_path_is_recorded(tmp_path: Path, monkeypatch):
    """An engine error whose message holds a non-UTF-8 file name (as an OSError on such a path would):
    the run still ends 'failed' with error.log written (the name's byte as \\xff), not a crash."""
    from collapse_tui.engines.gaussian import GaussianEngine

    def fail(*args, **kwargs):
        raise OSError("cannot read " + os.fsdecode(b"data-\xff.npy"))

    monkeypatch.setattr(GaussianEngine, "fit", fail)
    run, state = run_loop(tmp_path, "gaussian-quick", list(TINY))
    assert state == "failed" and RunDir(run.path).read_status()["state"] == "failed"
    assert "OSError: cannot read data-\\xff.npy" in (run.path / "error.log").read_text()

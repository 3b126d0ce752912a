"""Sweeps: cells validated before anything exists, run here, in worker processes and on Ray with the same
metrics as the runs made one by one, resumed after kill -9 without touching finished cells."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import all_end, children, make_run, run_process, spawn

from collapse_tui.cli import main
from collapse_tui.executors import ray_resources
from collapse_tui.preset_files import load_preset
from collapse_tui.report.sweep import sweep_points
from collapse_tui.runs import load_run
from collapse_tui.seed_workers import THREAD_VARS, worker_env
from collapse_tui.sweep import VARIANT, builtin_sweeps, load_sweep
from collapse_tui.sweepdir import SweepDir

BASE = """
[experiment]
engine = "gmm"
generations = 6
seeds = 3
checkpoint_seconds = 0

[data]
mode = "keep"

[engine]
samples = 200
components = 2
"""
SWEEP = (
    BASE
    + """
[sweep]
"data.keep_fraction" = [0, 0.5]
"engine.samples" = [100, 200]
"""
)
SWEEP_ONE = """
[sweep]
"engine.samples" = [200]
"""
CELLS = {  # cell name -> its --set overrides of BASE
    "keep_fraction0-samples100": ["data.keep_fraction=0", "engine.samples=100"],
    "keep_fraction0-samples200": ["data.keep_fraction=0", "engine.samples=200"],
    "keep_fraction0.5-samples100": ["data.keep_fraction=0.5", "engine.samples=100"],
    "keep_fraction0.5-samples200": ["data.keep_fraction=0.5", "engine.samples=200"],
}


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def new_sweep(tmp: Path, *args: str) -> Path:
    assert main(["--batch", str(tmp / "sweep.toml"), "--runs-dir", str(tmp / "sweeps"), *args]) == 0
    (path,) = (tmp / "sweeps").iterdir()
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """The sweep's four runs made one by one from the plain preset, and the sweep run in this process."""
    tmp = tmp_path_factory.mktemp("sweep")
    (tmp / "base.toml").write_text(BASE)
    (tmp / "sweep.toml").write_text(SWEEP)
    one_by_one = tmp / "one-by-one"
    one_by_one.mkdir()
    runs = {name: make_run(one_by_one, str(tmp / "base.toml"), *sets) for name, sets in CELLS.items()}
    return {"tmp": tmp, "here": new_sweep(tmp), **runs}


def assert_cells_equal_runs(sweep: Path, made: dict[str, Path]) -> None:
    cells = SweepDir.open(sweep).cells
    assert [c.name for c in cells] == list(CELLS)
    for cell in cells:
        got, want = rows(cell.rundir.path), rows(made[cell.name])
        assert len(got) == 6 * 3 and got == want  # rows hold no timings: equal to the last bit


def test_a_sweep_in_this_process_gives_the_runs_made_one_by_one(made):
    assert_cells_equal_runs(made["here"], made)
    sweep = SweepDir.open(made["here"])
    assert sweep.keys == ["data.keep_fraction", "engine.samples"]
    assert {c.values["engine.samples"] for c in sweep.cells} == {100, 200}
    assert all(c.state()[:2] == ("finished", 5) for c in sweep.cells)
    keep = [json.loads(line)["train_size"] for line in (sweep.cells[3].rundir.metrics_path).read_text().splitlines()]
    assert set(keep) == {200}  # engine.samples reached the cell's engine


def test_two_workers_give_the_runs_made_one_by_one(made, tmp_path):
    (tmp_path / "sweep.toml").write_text(SWEEP)
    assert_cells_equal_runs(new_sweep(tmp_path, "--workers", "2"), made)


def test_ray_gives_the_runs_made_one_by_one(made, tmp_path):
    ray = pytest.importorskip("ray")  # the test extra installs it: this runs in CI
    (tmp_path / "sweep.toml").write_text(SWEEP)
    # Ray's session folder (logs, sockets) not in /tmp/ray, where each run would leave one: a path short
    # enough for its sockets (tmp_path is not), removed after
    temp = tempfile.mkdtemp(prefix="ray-")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        assert_cells_equal_runs(new_sweep(tmp_path, "--executor", "ray"), made)
        killed_worker_is_retried(tmp_path / "retry", made["tmp"])
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def killed_worker_is_retried(tmp: Path, base: Path) -> None:
    """kill -9 of the Ray worker running a cell: Ray runs the task again, which resumes the cell."""
    tmp.mkdir()
    sets = ["experiment.generations=60", "engine.samples=200"]
    want = rows(make_run(tmp, str(base / "base.toml"), *sets))
    (tmp / "one.toml").write_text(BASE.replace("generations = 6", "generations = 60") + SWEEP_ONE)
    runner = threading.Thread(
        target=main, args=(["--batch", str(tmp / "one.toml"), "--runs-dir", str(tmp / "s"), "--executor", "ray"],)
    )
    runner.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and runner.is_alive():
        with contextlib.suppress(StopIteration, OSError, ValueError):
            cell = SweepDir.open(next((tmp / "s").iterdir())).cells[0]
            status = cell.rundir.read_status()
            if status.get("state") == "running" and cell.rundir.read_checkpoint():  # past a checkpoint
                worker = int(Path(f"/proc/{status['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1])
                os.kill(worker, signal.SIGKILL)  # the Ray worker, and the cell's process with it
                os.kill(status["pid"], signal.SIGKILL)  # (as PR_SET_PDEATHSIG does: not waited for here)
                killed = cell
        time.sleep(0.002)
    runner.join(120)
    assert killed is not None and killed.state()[0] == "finished"
    log = (killed.rundir.path.parents[1] / "logs" / f"{killed.name}.log").read_text()
    assert log.count("resuming at generation") == 1, log  # the retry took up the checkpoint
    assert rows(killed.rundir.path) == want


def snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(run)): (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()}


def test_kill_9_mid_sweep_then_resume(made, tmp_path):
    (tmp_path / "sweep.toml").write_text(SWEEP.replace("generations = 6", "generations = 6\nname = 'killed'"))
    cmd = [sys.executable, "-m", "collapse_tui", "--batch", str(tmp_path / "sweep.toml")]
    proc = spawn([*cmd, "--runs-dir", str(tmp_path / "sweeps"), "--workers", "2"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it once a cell is finished and another is not
        try:
            states = [c.state()[0] for c in SweepDir.open(next((tmp_path / "sweeps").iterdir())).cells]
        except (StopIteration, OSError, ValueError):
            states = []
        if "finished" in states and set(states) != {"finished"} and children(proc.pid, b"--resume"):
            break  # (a cell's worker alive: the check below has one to see die)
        time.sleep(0.005)
    cells = children(proc.pid, b"--resume")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert all_end(cells), "a cell's worker outlived its killed sweep"  # they die with it, their locks too
    sweep = SweepDir.open(next((tmp_path / "sweeps").iterdir()))
    states = {c.name: c.state()[0] for c in sweep.cells}
    assert "finished" in states.values() and set(states.values()) != {"finished"}, states
    finished = {c.name: snapshot(c.rundir.path) for c in sweep.cells if states[c.name] == "finished"}
    assert main(["--batch", "--resume", str(sweep.path)]) == 0  # the dead workers' locks do not block it
    for name, files in finished.items():
        assert snapshot(sweep.path / "cells" / name) == files  # bytes and mtimes
    assert_cells_equal_runs(sweep.path, made)


def test_a_bad_value_in_one_cell_exits_2_before_any_directory(write_preset, tmp_path, capsys):
    bad = write_preset(SWEEP.replace("[0, 0.5]", "[0, 0.5, 1.5]"), "bad.toml")
    assert main(["--batch", str(bad), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sweep cell keep_fraction1.5-samples100: data.keep_fraction" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "table, words",
    [
        ('"data.keep_fraction" = []', ["sweep.data.keep_fraction", "non-empty list"]),
        ('"keep_fraction" = [0, 1]', ["sweep.keep_fraction", "SECTION.KEY"]),
        ('"experiment.engine" = ["gmm", "gaussian"]', ["cannot be swept"]),
        ('mode = "zip"\n"data.keep_fraction" = [0, 1]\n"engine.samples" = [10]', ["zip", "one length"]),
        ('mode = "cross"\n"data.keep_fraction" = [0]', ["sweep.mode", "'cross'"]),
        ('"data.kep_fraction" = [0, 1]', ["sweep cell kep_fraction0", "data.kep_fraction", "did you mean"]),
    ],
)
def test_bad_sweep_tables(write_preset, tmp_path, capsys, table, words):
    path = write_preset(BASE + "[sweep]\n" + table + "\n", "bad.toml")
    assert main(["--batch", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert not (tmp_path / "runs").exists()


def test_set_applies_to_every_cell_but_not_to_a_swept_key(write_preset):
    path = write_preset(SWEEP)
    sweep = load_sweep(path, ["experiment.generations=2"])
    assert [c.config.generations for c in sweep.cells] == [2] * 4
    with pytest.raises(ValueError, match="is swept"):
        load_sweep(path, ["engine.samples=5"])


def test_a_failing_cell_is_recorded_and_the_others_go_on(made, tmp_path, monkeypatch, capsys):
    from collapse_tui.engines.gmm import GMMEngine

    fit = GMMEngine.fit

    def failing_fit(self, data, rngs, report, source=None):
        if self.params.samples == 100 and data.shape[1] == 100:
            raise RuntimeError("injected fault")
        return fit(self, data, rngs, report, source)

    monkeypatch.setattr(GMMEngine, "fit", failing_fit)
    (tmp_path / "sweep.toml").write_text(SWEEP)
    assert main(["--batch", str(tmp_path / "sweep.toml"), "--runs-dir", str(tmp_path / "sweeps")]) == 1
    sweep = SweepDir.open(next((tmp_path / "sweeps").iterdir()))
    states = {c.name: c.state() for c in sweep.cells}
    assert [s[0] for s in states.values()] == ["failed", "finished", "failed", "finished"]
    assert states["keep_fraction0-samples100"][2] == "RuntimeError: injected fault"
    out = capsys.readouterr().out
    assert "2 of 4 cells finished, 2 failed" in out and "keep_fraction0-samples100: failed" in out
    assert rows(sweep.path / "cells" / "keep_fraction0-samples200") == rows(made["keep_fraction0-samples200"])


def test_worker_threads_and_gpus():
    env = worker_env(3, "1")
    assert all(env[v] == "3" for v in THREAD_VARS) and env["CUDA_VISIBLE_DEVICES"] == "1"
    code = "import torch, numba; print(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)"
    out = run_process([sys.executable, "-c", code], env=worker_env(1), capture_output=True, text=True).stdout
    assert out.split() == ["1", "1"]


def test_builtin_sweeps_are_valid():
    mitigations = {
        f"{e}-mitigations" for e in ("gaussian", "gmm", "ngram", "vae", "opt125m")
    }  # test_mitigations_report
    sweeps = {name: load_sweep(path) for name, path in builtin_sweeps().items() if name not in mitigations}
    assert set(sweeps) == {"gmm-keep-sweep", "gaussian-m-sweep", "vae-keep-sweep", "opt125m-sweep"}
    assert set(builtin_sweeps()) == set(sweeps) | mitigations
    gmm = sweeps["gmm-keep-sweep"]
    assert [c.config.data.keep_fraction for c in gmm.cells] == [0, 0.05, 0.1, 0.2, 0.5]
    assert all(len(c.config.seeds) == 8 and c.config.data.mode == "keep" for c in gmm.cells)
    assert [c.config.engine["samples"] for c in sweeps["gaussian-m-sweep"].cells] == [100, 500, 1000, 10000]
    a, b = sweeps["opt125m-sweep"].cells  # the paper's settings A and B, as their own presets have them
    for cell, preset in ((a, "opt125m-replace"), (b, "opt125m-keep10")):
        want = load_preset(preset)
        assert (cell.config.engine, cell.config.data.mode) == (want.engine, want.data.mode)
        assert cell.config.experiment | {"name": "", "description": ""} == want.experiment | {
            "name": "",
            "description": "",
        }
    assert b.config.data == load_preset("opt125m-keep10").data
    assert os.path.basename(builtin_sweeps()["gmm-keep-sweep"]) == "gmm-keep-sweep.toml"


def test_the_sweep_figure_shows_the_cells_final_metrics(made, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    import collapse_tui.report.sweep

    cells = []  # the per-cell reports are the runs' ordinary ones (test_report.py): recorded, not drawn
    monkeypatch.setattr(collapse_tui.report.sweep, "write_report", lambda runs, out, opts: cells.append((runs, out)))
    out = tmp_path / "report"
    args = ["report", str(made["here"]), "--out", str(out), "--metrics", "perplexity,variance", "--format", "png"]
    assert main([*args, "--dpi", "30"]) == 0
    assert {"sweep-perplexity.png", "sweep-variance.png", "sweep-perplexity-heatmap.png"} <= {
        p.name for p in out.iterdir()
    }
    assert [(run.rundir.path.name, path) for (run,), path in cells] == [(n, out / "cells" / n) for n in CELLS]
    points = json.loads((out / "sweep-points.json").read_text())
    assert len(points) == 4 * 2
    for p in points:  # against the cells' last generation, computed here from their metrics.jsonl
        last = [r for r in rows(made[p["cell"]]) if r["generation"] == 5]
        if p["metric"] == "perplexity":  # a log-quantity: in log10, from the natural log the rows hold
            x = np.array([r["nll"] for r in last]) / np.log(10)
        else:
            x = np.array([r["variance"] for r in last])
        assert p["generation"] == 5 and p["seeds"] == 3 and p["log10"] == (p["metric"] == "perplexity")
        assert [p["median"], p["p16"], p["p84"]] == pytest.approx(np.percentile(x, [50, 16, 84]), rel=1e-12)
        assert p["engine.samples"] == (100 if "samples100" in p["cell"] else 200)
    sweep = SweepDir.open(made["here"])
    at2 = sweep_points(sweep, [load_run(c.rundir) for c in sweep.cells], ["variance"], 2)
    assert [p["median"] for p in at2] == [
        np.median([r["variance"] for r in rows(made[c.name]) if r["generation"] == 2]) for c in sweep.cells
    ]


def test_compare_and_export_a_sweep(made, tmp_path, capsys):
    from collapse_tui.export import read_csv

    assert main(["compare", str(made["here"])]) == 0
    out = capsys.readouterr().out
    assert "A = keep_fraction=0.0 samples=100" in out and "D = keep_fraction=0.5 samples=200" in out
    assert main(["export", str(made["here"]), "--csv", str(tmp_path / "m.csv")]) == 0
    table = read_csv(tmp_path / "m.csv")
    assert list(table[0])[:5] == ["run", "seed", "generation", "data.keep_fraction", "engine.samples"]
    for name, run in CELLS.items():
        mine = [r for r in table if r["run"] == name]
        assert [r["variance"] for r in mine] == [r["variance"] for r in rows(made[name])]
        assert {(r["data.keep_fraction"], r["engine.samples"]) for r in mine} == {
            (float(run[0].split("=")[1]), int(run[1].split("=")[1]))
        }


def test_executor_options_are_for_sweeps(tmp_path, capsys):
    assert main(["--batch", "gmm-quick", "--executor", "ray", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "run a sweep's cells" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_a_ray_cell_asks_for_a_gpu_when_any_of_its_chains_runs_torch_on_cuda():
    """Not only the first chain's engine decides: an ngram chain before an OPT chain still needs the GPU."""
    cfg = load_preset("text-ecosystem")
    ngram_first = dataclasses.replace(cfg, chains=cfg.chains[::-1])
    assert ngram_first.engine_name == "ngram" and ngram_first.engine_names == ["ngram", "opt"]
    on_cuda = dataclasses.replace(ngram_first, experiment=cfg.experiment | {"device": "cuda"})
    assert ray_resources(on_cuda) == {"num_cpus": 1, "num_gpus": 1}
    assert ray_resources(ngram_first) == {"num_cpus": 1, "num_gpus": 0}  # the preset's device is cpu
    assert ray_resources(load_preset("gmm-quick", ["experiment.device='cuda'"]))["num_gpus"] == 0  # no torch


VARIANTS = """
[variants.replace]
"data.mode" = "replace"
[variants.keep50]
"data.mode" = "keep"
"data.keep_fraction" = 0.5
[variants.accumulate]
data.mode = "accumulate"  # unquoted: a nested table in TOML, the same key
"""
VARIANT_SETS = {  # variant -> its keys as --set overrides of BASE
    "replace": ["data.mode=replace"],
    "keep50": ["data.mode=keep", "data.keep_fraction=0.5"],
    "accumulate": ["data.mode=accumulate"],
}


@pytest.mark.parametrize(
    "grid, axes",
    [
        ("", {}),
        ('[sweep]\n"engine.samples" = [100, 200]', {"engine.samples": [100, 200]}),
        (
            '[sweep]\nmode = "zip"\n"engine.samples" = [100, 200]\n"experiment.seeds" = [2, 3]',
            {"engine.samples": [100, 200], "experiment.seeds": [2, 3]},
        ),
    ],
)
def test_variants_cross_the_grid(write_preset, grid, axes):
    """A cell per variant and combination of the [sweep] lists (zip: per zipped position), each the preset
    that --set of the variant's keys and the cell's swept values gives; named by the variant first."""
    sweep = load_sweep(write_preset(BASE + VARIANTS + grid))
    combos = [dict(zip(axes, c)) for c in (zip(*axes.values()) if "zip" in grid else itertools.product(*axes.values()))]
    assert len(sweep.cells) == 3 * len(combos)
    assert sweep.axes == {VARIANT: list(VARIANT_SETS), **axes}
    assert sweep.variants["accumulate"] == {"data.mode": "accumulate"}
    base = write_preset(BASE, "base.toml")
    for cell, (variant, combo) in zip(sweep.cells, itertools.product(VARIANT_SETS, combos)):
        assert cell.values == {VARIANT: variant, **combo}
        assert cell.name.split("-")[0] == variant and len(cell.name.split("-")) == 1 + len(combo)
        sets = VARIANT_SETS[variant] + [f"{k}={v}" for k, v in combo.items()] + ["experiment.name=preset"]
        assert cell.config == load_preset(str(base), sets)


def test_a_sweep_with_variants_round_trips_its_directory(write_preset, tmp_path):
    (tmp_path / "sweep.toml").write_text(BASE.replace("generations = 6", "generations = 2") + VARIANTS)
    sweep = SweepDir.open(new_sweep(tmp_path))
    assert sweep.variants == load_sweep(tmp_path / "sweep.toml").variants and sweep.keys == [VARIANT]
    assert [(c.name, c.values) for c in sweep.cells] == [(v, {VARIANT: v}) for v in VARIANT_SETS]
    assert [c.rundir.config().data.mode for c in sweep.cells] == ["replace", "keep", "accumulate"]


@pytest.mark.parametrize(
    "table, words",
    [
        ('[variants.keep10]\n"data.kep_fraction" = 0.1', ["sweep cell keep10:", "data.kep_fraction", "did you mean"]),
        ('[variants.keep10]\n"data.keep_fraction" = 1.5', ["sweep cell keep10:", "data.keep_fraction"]),
        ('[variants.keep10]\n"data.keep_fraction" = 0.1\n[sweep]\n"data.keep_fraction" = [0, 1]', ["swept by"]),
        ("[variants.replace]", ["variants.replace: sets no key", '"data.mode" = "replace"']),
        ('[variants.keep10]\n"keep_fraction" = 0.1', ["variants.keep10.keep_fraction", "SECTION.KEY"]),
        ('[variants.keep10]\n"experiment.engine" = "gaussian"', ["cannot be swept"]),
        ('[variants."keep 10"]\n"data.mode" = "keep"', ["variants.keep 10", "name"]),
        ("[variants]", ["[variants]: expected tables [variants.NAME]"]),
        ("[variants]\nkeep10 = 5", ["variants.keep10: expected a table of keys"]),
        ('[variants.ewc]\n"train.anchor" = "ewc"', ["sweep cell ewc:", "has no such mitigation"]),  # a torch one
    ],
)
def test_bad_variants_exit_2_before_any_directory(write_preset, tmp_path, capsys, table, words):
    path = write_preset(BASE + table + "\n", "bad.toml")
    assert main(["--batch", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert not (tmp_path / "runs").exists()


def test_set_cannot_change_a_variants_key(write_preset, tmp_path, capsys):
    path = write_preset(BASE + VARIANTS)
    assert main(["--batch", str(path), "--runs-dir", str(tmp_path / "runs"), "--set", "data.keep_fraction=0.2"]) == 2
    err = capsys.readouterr().err
    assert "data.keep_fraction is set by [variants.keep50]" in err and not (tmp_path / "runs").exists()
    assert [c.config.generations for c in load_sweep(path, ["experiment.generations=2"]).cells] == [2] * 3

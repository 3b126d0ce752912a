"""What each fix buys and costs: a sweep with variants reported as mitigations.csv and one figure per value
of the other swept keys, and the same table on the app's sweep screen. Every number is checked against
one computed here from the cells' metrics.jsonl and status.json with numpy and scipy, not summary.py."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from conftest import run_async

from collapse_tui.cli import main
from collapse_tui.engines import engine_class
from collapse_tui.mitigations import baseline, compute_seconds, outcomes, texts
from collapse_tui.preset_files import PresetFile
from collapse_tui.records import RunDirError, valid_status
from collapse_tui.runs import load_run
from collapse_tui.sweep import VARIANT, expand, read_target
from collapse_tui.sweepdir import SweepDir

GENERATIONS = 12
SWEEP = f"""
[experiment]
engine = "gaussian"
generations = {GENERATIONS}
seeds = 64
checkpoint_seconds = 0
[engine]
dim = 1
[variants.keep10]  # not first: the baseline is the variant named replace
"data.mode" = "keep"
"data.keep_fraction" = 0.1
[variants.replace]
"data.mode" = "replace"
[variants.accumulate]
"data.mode" = "accumulate"
[variants.ppl_filter]
"data.filter" = "perplexity"
[sweep]
"engine.samples" = [10, 40]
"""
VARIANTS = ["keep10", "replace", "accumulate", "ppl_filter"]
LN10 = math.log(10)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> SweepDir:
    tmp = tmp_path_factory.mktemp("mitigations")
    (tmp / "m.toml").write_text(SWEEP)
    assert main(["--batch", str(tmp / "m.toml"), "--runs-dir", str(tmp / "sweeps")]) == 0
    return SweepDir.open(next((tmp / "sweeps").iterdir()))


def rows_of(cell_path: Path) -> list[dict]:
    return [json.loads(line) for line in (cell_path / "metrics.jsonl").read_text().splitlines()]


def log10_perplexity(rows: list[dict], gen: int) -> np.ndarray:
    """log10 of the perplexity over seeds at gen, from the natural-log nll every row holds."""
    return np.array([r["nll"] for r in rows if r["generation"] == gen]) / LN10


def report(sweep: SweepDir, out: Path, monkeypatch, *args: str) -> list[dict]:
    """`report SWEEP`, the per-cell reports left out (test_report.py draws those); mitigations.csv's rows."""
    import collapse_tui.report.sweep

    monkeypatch.setattr(collapse_tui.report.sweep, "write_report", lambda runs, folder, opts: None)
    args = ("--metrics", "perplexity", *args)  # the sweep figures of one metric: test_sweep.py draws those
    assert main(["report", str(sweep.path), "--out", str(out), "--format", "png", "--dpi", "30", *args]) == 0
    with open(out / "mitigations.csv") as f:
        return list(csv.DictReader(f))


def test_the_csv_against_the_cells_metrics(sweep, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    table = report(sweep, tmp_path / "report", monkeypatch)
    assert {p.name for p in (tmp_path / "report").glob("mitigations-*.png")} == {
        "mitigations-samples-10.png",
        "mitigations-samples-40.png",
    }
    assert [(r["variant"], int(r["engine.samples"])) for r in table] == [(v, m) for v in VARIANTS for m in (10, 40)]
    cells = {c.name: c for c in sweep.cells}
    gen = GENERATIONS - 1
    for m in (10, 40):  # each group: the variants at one value of engine.samples
        group = [r for r in table if int(r["engine.samples"]) == m]
        x = {r["variant"]: log10_perplexity(rows_of(cells[r["cell"]].rundir.path), gen) for r in group}
        x0 = {r["variant"]: log10_perplexity(rows_of(cells[r["cell"]].rundir.path), 0) for r in group}
        status = {r["variant"]: cells[r["cell"]].rundir.read_status() for r in group}
        seconds = {v: sum(s["seconds"]) for v, s in status.items()}
        ranks = scipy.stats.rankdata([np.median(x[r["variant"]]) for r in group], method="min")
        for r, rank in zip(group, ranks):
            v = r["variant"]
            assert len(x[v]) == 64 and int(r["generation"]) == gen and int(r["seeds"]) == 64
            assert float(r["final_log10"]) == pytest.approx(np.median(x[v]), rel=1e-12)
            assert [float(r["final_p16_log10"]), float(r["final_p84_log10"])] == pytest.approx(
                np.percentile(x[v], [16, 84]), rel=1e-12
            )
            assert float(r["start_log10"]) == pytest.approx(np.median(x0[v]), rel=1e-12)
            assert float(r["change_log10"]) == pytest.approx(np.median(x[v]) - np.median(x0[v]), rel=1e-9)
            assert float(r["ratio_log10"]) == pytest.approx(np.median(x[v]) - np.median(x["replace"]), abs=1e-12)
            assert r["baseline"] == "replace" and int(r["rank"]) == rank
            assert len(status[v]["seconds"]) == GENERATIONS and min(status[v]["seconds"]) > 0
            assert float(r["seconds"]) == pytest.approx(seconds[v], rel=1e-12)
            assert float(r["seconds_ratio"]) == pytest.approx(seconds[v] / seconds["replace"], rel=1e-9)


def test_an_earlier_generation_and_a_cell_without_recorded_seconds(sweep, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    copy = SweepDir.open(shutil.copytree(sweep.path, tmp_path / "copy"))
    status = copy.cells[0].rundir.read_status()  # a run made before generation times were recorded
    del status["seconds"]
    copy.cells[0].rundir.status_path.write_text(json.dumps(status))
    table = report(copy, tmp_path / "report", monkeypatch, "--generation", "4")
    first = rows_of(copy.cells[0].rundir.path)
    assert {int(r["generation"]) for r in table} == {4}
    assert float(table[0]["final_log10"]) == pytest.approx(np.median(log10_perplexity(first, 4)), rel=1e-12)
    assert table[0]["seconds"] == table[0]["seconds_ratio"] == ""  # unknown, never a number
    kept = copy.cells[2].rundir.read_status()["seconds"]
    assert float(table[2]["seconds"]) == pytest.approx(sum(kept[:5]), rel=1e-12)  # generations 0 .. 4
    assert math.isnan(compute_seconds({"seconds": [0.1, None, 0.2]}, 2))


def test_the_figure_has_a_line_per_variant_and_the_table(sweep):
    pytest.importorskip("matplotlib")
    from collapse_tui.report.mitigations import groups, mitigations_figure

    runs = {c.name: load_run(c.rundir) for c in sweep.cells}
    outs = outcomes(sweep, runs)
    group = groups(outs)["samples=40"]
    fig = mitigations_figure(sweep, runs, group, "samples=40")
    lines, table = fig.axes
    drawn = [line for line in lines.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in drawn] == VARIANTS
    for line, o in zip(drawn, group):  # the medians over seeds, generation by generation
        cell_rows = rows_of(sweep.path / "cells" / o.cell)
        want = [np.median(log10_perplexity(cell_rows, g)) for g in range(GENERATIONS)]
        assert list(line.get_xdata()) == list(range(GENERATIONS))
        assert np.log10(line.get_ydata()) == pytest.approx(want, rel=1e-9)
    shown = table.tables[0].get_celld()
    assert [shown[(1 + i, 0)].get_text().get_text() for i in range(len(group))] == VARIANTS
    assert [[shown[(1 + i, j)].get_text().get_text() for j in range(7)] for i, o in enumerate(group)] == [
        texts(o, cell=False) for o in group
    ]


def test_a_variant_past_floats_range_leaves_the_others_apart(sweep):
    """A filter can shrink a Gaussian to a point: its log10 perplexity reaches 1e10 and more. The axis
    then shows log10 values on a symlog scale, on which the other variants stay apart."""
    pytest.importorskip("matplotlib")
    from collapse_tui.report.mitigations import groups, mitigations_figure

    runs = {c.name: load_run(c.rundir) for c in sweep.cells}
    far = runs["ppl_filter-samples40"]
    far.rows = [r | {"nll": r["nll"] * 1e10 ** min(r["generation"], 1), "perplexity": None} for r in far.rows]
    group = groups(outcomes(sweep, runs))["samples=40"]
    lines = mitigations_figure(sweep, runs, group).axes[0]
    assert lines.get_yscale() == "symlog"
    drawn = [line for line in lines.get_lines() if not line.get_label().startswith("_")]
    for line, o in zip(drawn, group):  # log10 values themselves now
        want = [np.median(log10_perplexity(runs[o.cell].rows, g)) for g in range(GENERATIONS)]
        assert list(line.get_ydata()) == pytest.approx(want, rel=1e-9)
    assert group[-1].final > 1e9 and texts(group[-1])[1].startswith("10^")


def test_without_a_readable_baseline_nothing_is_measured_against_it(sweep):
    """The app leaves unreadable cells out: with replace's gone, no ratio is a number, and the others still
    rank among themselves. A sweep without a variant named replace measures against its first."""
    runs = {c.name: load_run(c.rundir) for c in sweep.cells if not c.name.startswith("replace")}
    outs = outcomes(sweep, runs)
    assert len(outs) == 6 and all(math.isnan(o.ratio) and math.isnan(o.seconds_ratio) for o in outs)
    assert sorted(o.rank for o in outs if o.others == {"engine.samples": 10}) == [1, 2, 3]
    assert texts(outs[0])[3] == texts(outs[0])[5] == "n/a"
    assert baseline(SweepDir(sweep.path, "s", "grid", {}, [], {"a": {"data.mode": "keep"}, "b": {}})) == "a"


def test_a_sweep_without_variants_has_no_table(sweep, tmp_path):
    (tmp_path / "plain.toml").write_text(SWEEP.split("[variants.keep10]")[0] + '[sweep]\n"engine.samples" = [10]\n')
    assert main(["--batch", str(tmp_path / "plain.toml"), "--runs-dir", str(tmp_path / "s")]) == 0
    plain = SweepDir.open(next((tmp_path / "s").iterdir()))
    assert outcomes(plain, {c.name: load_run(c.rundir) for c in plain.cells}) == []


@pytest.mark.parametrize("seconds", [[0.1, -1.0], "1", [0.1, "x"], [math.inf]])
def test_status_seconds_are_checked(tmp_path, seconds):
    with pytest.raises(RunDirError, match="seconds should be"):
        valid_status({"seconds": seconds}, tmp_path / "status.json")
    assert valid_status({"seconds": [0.5, None]}, tmp_path / "status.json")["seconds"] == [0.5, None]


def test_extending_or_branching_a_run_keeps_its_generation_times(tmp_path):
    """A run extended to 6 generations, and a run branched from it at generation 2, keep the times of the
    generations they took over; their own are measured."""
    base = ["--batch", "gaussian-quick", "--set", "experiment.generations=3", "--runs-dir", str(tmp_path / "a")]
    assert main(base) == 0
    (run,) = (tmp_path / "a").iterdir()
    before = json.loads((run / "status.json").read_text())["seconds"]
    branch = ["--batch", "gaussian-quick", "--from", str(run), "--at", "2", "--runs-dir", str(tmp_path / "b")]
    assert main([*branch, "--set", "experiment.generations=5", "--set", "data.mode=accumulate"]) == 0
    assert main(["--batch", "--resume", str(run), "--generations", "6"]) == 0
    after = json.loads((run / "status.json").read_text())["seconds"]
    assert len(before) == 3 and len(after) == 6 and after[:3] == before and min(after) > 0
    (branched,) = (tmp_path / "b").iterdir()
    times = json.loads((branched / "status.json").read_text())["seconds"]
    assert len(times) == 5 and times[:3] == before and min(times) > 0


@run_async
async def test_the_sweep_screen_shows_the_same_table(sweep):
    from collapse_tui.tui.app import build_app
    from collapse_tui.tui.components.cell_table import CellTable
    from collapse_tui.tui.components.mitigation_table import MitigationTable

    want = outcomes(sweep, {c.name: load_run(c.rundir) for c in sweep.cells})
    app = build_app(str(sweep.path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(MitigationTable)
        assert [str(c.label) for c in table.columns.values()] == [
            "variant",
            "final",
            "change",
            "vs replace",
            "seconds",
            "cost",
            "rank",
        ]
        assert [[str(x) for x in table.get_row_at(i)] for i in range(table.row_count)] == [texts(o) for o in want]
        title = str(app.screen.query_one("#mitigations-title").render())
        assert f"perplexity at generation {GENERATIONS - 1}" in title
        # readable at 80x24: every column in view, and the cells' table keeps rows of its own
        assert table.virtual_size.width <= 80 and table.region.bottom <= 23
        assert table.region.height >= 5 and app.screen.query_one(CellTable).region.height >= 5


def fits(cls: type, variant: str) -> bool:
    """Whether the engine can run the variant's data mode or filter at all (mitigations aside)."""
    return {"fresh10": cls.can_draw_fresh, "ppl_filter": cls.can_score}.get(variant, True)


# what each preset variant needs an engine to declare (Engine.mitigations); the others run everywhere
NEEDS = {
    "detector_filter": "detector",
    "detector_reweight": "detector",
    "prior": "prior",
    "l2": "l2",
    "ewc": "ewc",
    "distill": "distill",
    "keep10_weighted": "real_weight",
}


@pytest.mark.parametrize("name", ["gaussian", "gmm", "ngram", "vae", "opt125m"])
def test_the_mitigation_presets_hold_every_family(name):
    """Every family of fixes the engine can have, each variant alone a valid sweep of one cell."""
    preset = read_target(f"{name}-mitigations")
    cls = engine_class(preset.doc["experiment"]["engine"])
    variants = preset.doc["variants"]
    anchors = {"l2", "ewc"} if cls.needs_torch else {"prior"}
    every = {"replace", "keep10", "fresh10", "accumulate", "ppl_filter", *NEEDS} - ({"l2", "ewc", "prior"} - anchors)
    assert set(variants) == {v for v in every if fits(cls, v)}
    assert list(variants)[0] == "replace"
    for v, keys in variants.items():
        (cell,) = expand(PresetFile(preset.path, preset.doc | {"variants": {v: keys}})).cells
        assert v not in NEEDS or NEEDS[v] in cls.mitigations
        assert cell.values == {VARIANT: v}
        for key, value in keys.items():
            section, _, k = key.partition(".")
            assert cell.config.section(section)[k] == value, (v, key)

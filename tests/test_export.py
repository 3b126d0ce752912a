"""`collapse-tui export`: metrics.jsonl as a flat CSV (and parquet), values exact on the way back."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
from conftest import make_run

from collapse_tui.cli import main
from collapse_tui.export import flatten_row, read_csv, write_csv
from collapse_tui.rundir import RunDir


@pytest.fixture(scope="module")
def gmm_run(tmp_path_factory) -> Path:
    # two components: the list-valued metrics spread into two columns each
    root = tmp_path_factory.mktemp("export")
    return make_run(root, "gmm-quick", "experiment.generations=5", "experiment.seeds=3")


def test_csv_round_trip_is_exact(gmm_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "metrics.csv"
    assert main(["export", str(gmm_run), "--csv", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    rows = RunDir(gmm_run).read_metrics()
    assert len(rows) == 5 * 3
    with open(out, newline="") as f:
        header = next(csv.reader(f))
    assert header[:2] == ["seed", "generation"]
    for name in (
        "perplexity",
        "variance",
        "l2_distance",
        "component_stds_0",
        "component_stds_1",
        "component_weights_1",
    ):
        assert name in header
    assert "component_stds" not in header
    back = read_csv(out)
    assert len(back) == len(rows)
    for got, row in zip(back, rows):
        want = flatten_row(row)
        assert set(got) == set(want)
        for key, value in want.items():
            assert got[key] == value and type(got[key]) is type(value), key  # float-exact, ints stay ints
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # atomic: no temp file left


def test_several_runs_export_as_one_table_with_a_run_column(gmm_run: Path, tmp_path: Path):
    other = make_run(tmp_path, "gaussian-quick", "experiment.generations=4", "experiment.seeds=2")
    out = tmp_path / "both.csv"
    assert main(["export", str(gmm_run), str(other), "--csv", str(out)]) == 0
    back = read_csv(out)
    with open(out, newline="") as f:
        assert next(csv.reader(f))[:3] == ["run", "seed", "generation"]
    for run in (gmm_run, other):
        got = [r for r in back if r["run"] == run.name]
        want = [flatten_row(r) for r in RunDir(run).read_metrics()]
        assert len(got) == len(want)
        for g, w in zip(got, want):  # each run's rows in order, values exact; the other run's columns empty
            assert {k: g[k] for k in w} == w and all(g[k] is None for k in g.keys() - w.keys() - {"run"})
    assert len(back) == 5 * 3 + 4 * 2
    assert main(["export", str(other), str(other), "--csv", str(out)]) == 2  # the same run twice


def test_nulls_are_empty_cells_and_lists_of_other_lengths(tmp_path: Path):
    rows = [
        {"seed": 0, "generation": 0, "perplexity": None, "w": [0.25, 0.75]},
        {"seed": 0, "generation": 1, "perplexity": math.inf, "w": [1.0]},
    ]
    write_csv(rows, tmp_path / "m.csv")
    text = (tmp_path / "m.csv").read_text().splitlines()
    assert text == ["seed,generation,perplexity,w_0,w_1", "0,0,,0.25,0.75", "0,1,,1.0,"]
    back = read_csv(tmp_path / "m.csv")
    assert back[0]["perplexity"] is None and back[1]["perplexity"] is None and back[1]["w_1"] is None


def test_csv_to_stdout(gmm_run: Path, capsys):
    assert main(["export", str(gmm_run), "--csv", "-"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("seed,generation,") and len(out) == 1 + 15


def test_parquet_round_trip(gmm_run: Path, tmp_path: Path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "metrics.parquet"
    assert main(["export", str(gmm_run), "--parquet", str(out)]) == 0
    table = pq.read_table(out).to_pylist()
    assert table == [flatten_row(r) for r in RunDir(gmm_run).read_metrics()]


def test_missing_pyarrow_gives_install_hint(gmm_run: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    assert main(["export", str(gmm_run), "--parquet", str(tmp_path / "m.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install pyarrow" in err
    assert not (tmp_path / "m.parquet").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["RUN"], "give --csv FILE"),
        (["nowhere", "--csv", "x.csv"], "not a run directory"),
        (["RUN", "--csv", "no/such/dir/m.csv"], "no such directory"),
        (["RUN", "--csv", "."], "is a directory"),
        (["RUN", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(gmm_run: Path, args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = [str(gmm_run) if a == "RUN" else a for a in args]
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("collapse-tui: ") and err.count("\n") == 1 and message in err

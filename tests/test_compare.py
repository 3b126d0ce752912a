"""`collapse-tui compare`: runs side by side, numbers checked against metrics.jsonl."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_run, spawn

from collapse_tui.cli import main
from collapse_tui.compare import compare_rows, print_comparison
from collapse_tui.rundir import RunDir, run_state
from collapse_tui.runs import load_run, load_runs, run_labels

GENERATIONS = 30


@pytest.fixture(scope="module")
def two_modes(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compare")
    gens = f"experiment.generations={GENERATIONS}"
    return make_run(root, "gaussian-quick", gens), make_run(root, "gaussian-quick", gens, 'data.mode="accumulate"')


def per_generation_medians(run: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Straight from metrics.jsonl, independent of the code under test."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    gens = sorted({r["generation"] for r in rows})
    return np.array(gens), np.array([np.median([r[key] for r in rows if r["generation"] == g]) for g in gens])


def test_compare_rows_match_metrics_and_difference_has_the_right_sign(two_modes):
    replace, accumulate = two_modes
    rows = compare_rows([replace, accumulate])
    var = [r for r in rows if r["metric"] == "variance"]
    assert [(r["run"], r["kind"]) for r in var] == [
        ("mode=replace", "run"),
        ("mode=accumulate", "run"),
        ("mode=accumulate vs mode=replace", "diff"),
    ]
    for r, path in zip(var, two_modes):
        gens, medians = per_generation_medians(path, "variance")
        last = [json.loads(x)["variance"] for x in (path / "metrics.jsonl").read_text().splitlines()][-20:]
        assert r["generation"] == GENERATIONS - 1 and r["seeds"] == 20
        assert r["final"] == pytest.approx(medians[-1], rel=1e-12)
        assert (r["final_lo"], r["final_hi"]) == pytest.approx(tuple(np.percentile(last, [16, 84])), rel=1e-12)
        assert r["peak"] == pytest.approx(medians.max(), rel=1e-12) and r["peak_generation"] == gens[medians.argmax()]
        assert r["slope"] == pytest.approx(np.polyfit(gens, medians, 1)[0], rel=1e-9, abs=1e-12)
    diff = var[2]
    assert diff["final"] == pytest.approx(var[1]["final"] - var[0]["final"], rel=1e-12)
    assert diff["slope"] == pytest.approx(var[1]["slope"] - var[0]["slope"], rel=1e-12)
    # accumulating keeps the spread; replacing loses it (Gerstgrasser et al.)
    assert diff["final"] > 0.2 and var[1]["final"] > 0.7 and var[0]["final"] < 0.3
    fit_diff = next(r for r in rows if r["metric"] == "fit_std" and r["kind"] == "diff")
    assert fit_diff["final"] > 0
    # train_size: replace keeps M = 20, accumulate grows by M a generation
    size = [r for r in rows if r["metric"] == "train_size"]
    assert size[0]["slope"] == 0 and size[1]["slope"] == pytest.approx(20) and size[2]["final"] == 20 * 29


def test_compare_cli_plain_output_shows_both_runs_and_difference(two_modes, capsys):
    assert main(["compare", *map(str, two_modes)]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # not a TTY: no colours
    assert "+---" in out  # ASCII box for logs and pipes
    for text in ("A = mode=replace", "B = mode=accumulate", "B vs A", "variance", "fit_std", "change / gen"):
        assert text in out
    assert "finished, 30 generations" in out
    var_lines = [line for line in out.splitlines() if "variance" in line]
    assert var_lines and "[" in var_lines[0]  # the median and its band over seeds


def test_labels_fall_back_to_directory_names_for_identical_settings(two_modes, tmp_path):
    copy = tmp_path / "copy-of-replace"
    shutil.copytree(two_modes[0], copy)
    runs = load_runs([two_modes[0], copy])
    assert [r.label for r in runs] == [two_modes[0].name, "copy-of-replace"]
    assert run_labels(load_runs([two_modes[0]])) == ["gaussian-quick"]


def dead_pid() -> int:
    p = spawn([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_states_stopped_failed_crashed(two_modes, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_modes[0], run)
    rows = RunDir(run).read_metrics()
    RunDir(run).write_metrics([r for r in rows if r["generation"] <= 11])  # as a crash leaves it
    status = json.loads((run / "status.json").read_text())
    for state, pid, want in [
        ("stopped", dead_pid(), "stopped at generation 11 of 29"),
        ("failed", dead_pid(), "failed at generation 11 of 29"),
        ("running", dead_pid(), "crashed at generation 11 of 29"),
    ]:
        (run / "status.json").write_text(json.dumps(status | {"state": state, "pid": pid, "generation": 11}))
        assert load_run(run).progress() == want
    assert run_state(RunDir(run), {"state": "finished"}) == "finished"
    assert len(rows) == 20 * GENERATIONS
    # compare reads what is on disk: the crashed run's last generation is 11
    (r,) = [x for x in compare_rows([run]) if x["metric"] == "variance"]
    assert r["generation"] == 11


@pytest.mark.parametrize(
    "args, message",
    [([], "the following arguments are required"), (["nowhere"], "not a run directory"), (["A", "A"], "named twice")],
)
def test_bad_arguments_exit_2(two_modes, args, message, capsys):
    args = [str(two_modes[0]) if a == "A" else a for a in args]
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("collapse-tui: ") and err.count("\n") == 1 and message in err


def test_terminal_output_uses_rich_styles(two_modes):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    print_comparison(load_runs(two_modes), out)
    text = out.getvalue()
    assert "mode=accumulate" in text and "+---" not in text  # box-drawing lines, not ASCII
    assert "\x1b[3m" in text  # the difference rows in italics


def test_compare_at_one_generation_and_at_80_columns(two_modes, monkeypatch):
    """--generation N compares every run at N; two runs read in an 80-column terminal, values unwrapped."""
    rows = compare_rows(list(two_modes), at=9)
    var = [r for r in rows if r["metric"] == "variance" and r["kind"] == "run"]
    for r, path in zip(var, two_modes):
        gens, medians = per_generation_medians(path, "variance")
        assert r["generation"] == 9 and r["final"] == pytest.approx(medians[9], rel=1e-12)
        assert r["peak"] == pytest.approx(medians[:10].max(), rel=1e-12)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("COLUMNS", "80")
    out = Terminal()
    print_comparison(load_runs(two_modes), out, at=9)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # the terminal's styles take no columns
    lines = [line for line in text.splitlines() if "│" in line or "variance" in line]
    table = [line for line in lines if not line.startswith(("A =", "B ="))]
    assert table and all(len(line) <= 80 for line in table)
    (var_line,) = [line for line in table if line.lstrip().startswith("variance")]
    assert var_line.count("[") == 2 and var_line.count("]") == 2  # both runs' median and band on one line
    assert "at generation A 9, B 9" in text

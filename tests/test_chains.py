"""Several chains in one run ([[chains]]): bad presets, chains that do not mix equal separate runs, a
points ecosystem resumes after kill -9 row for row, and its chain distance behaves as mixing implies."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_run
from test_resume import check_whole_lines, cli, count_rows, only_run

from collapse_tui.cli import main
from collapse_tui.config import DataSection
from collapse_tui.engines.mixture import l2_distance
from collapse_tui.mixing import counts, mix_chain, pool_seeds, proportions
from collapse_tui.rundir import RunDir

TWO = """
[experiment]
generations = 6
seeds = 3
[data]
share_others = {share}
[[chains]]
name = "gmm"
engine = "gmm"
samples = 120
test_samples = 200
[[chains]]
name = "gauss"
engine = "gaussian"
dim = 2
samples = 80
test_samples = 200
"""

BAD = {
    "experiment-engine": (TWO.replace("generations = 6", 'engine = "gmm"\ngenerations = 6'), ["experiment.engine"]),
    "engine-table": (TWO + "[engine]\nsamples = 3\n", ["[engine]", "[[chains]]"]),
    "no-name": (TWO.replace('name = "gauss"\n', ""), ["chains[1].name", "None"]),
    "bad-name": (TWO.replace('name = "gauss"', 'name = "a b"'), ["chains[1].name", "'a b'"]),
    "same-name": (TWO.replace('name = "gauss"', 'name = "gmm"'), ["chains[1].name", "names two chains"]),
    "unknown-engine": (TWO.replace('engine = "gaussian"', 'engine = "gausian"'), ["chains.gauss.engine", "gaussian"]),
    "unknown-key": (TWO.replace("dim = 2", "dim = 2\ncomponents = 2"), ["chains.gauss.components", "gmm"]),
    "bad-value": (TWO.replace("samples = 80", "samples = 1"), ["chains.gauss.samples", ">= 2"]),
    "shapes": (TWO.replace("dim = 2", "dim = 3"), ["chains.gauss", "(3,)", "(2,)"]),
    "seed-counts": (TWO.replace("dim = 2", "dim = 2\nseeds = 2"), ["chains.gauss.seeds", "2 seeds"]),
    "share-range": (TWO.replace("{share}", "1.5"), ["data.share_others", "[0, 1]"]),
    "mix-and-share": (TWO.replace("{share}", "0.5\nmix = [[1, 0], [0, 1]]"), ["data.mix", "not both"]),
    "mix-shape": (TWO.replace("{share}", "0\nmix = [[1, 0]]"), ["data.mix", "2 rows of 2"]),
    "mix-sum": (TWO.replace("{share}", "0\nmix = [[0.5, 0.4], [0, 1]]"), ["data.mix", "row 1", "0.9"]),
    "population": (TWO.replace("{share}", "0\npopulation = 2"), ["data.population", "3 seeds"]),
    "set-no-chain": (TWO + "", ["chains.gaus.samples", "no chain named 'gaus'", "gmm, gauss"]),
    "set-chain-value": (TWO + "", ["chains.gauss.samples", "'many'"]),
    "share-one-chain": (
        "[experiment]\nengine = 'gaussian'\n[data]\nshare_others = 0.5\n",
        ["data.share_others", "no [[chains]]"],
    ),
    "chains-not-tables": ("chains = 3\n[experiment]\n", ["chains", "[[chains]]"]),
    "keep-past-real": (
        "[experiment]\nengine = 'gaussian'\nseeds = 4\n[data]\nmode = 'keep'\nkeep_fraction = 0.5\nshare_seeds = 1\n",
        ["data.keep_fraction", "share_seeds"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_chains_preset_exits_2_with_one_line(case, write_preset, tmp_path, capsys):
    text, words = BAD[case]
    path = write_preset(text.replace("{share}", "0"))
    runs = tmp_path / "runs"
    sets = {
        "set-no-chain": ["--set", "chains.gaus.samples=5"],
        "set-chain-value": ["--set", "chains.gauss.samples=many"],
    }
    assert main(["--batch", str(path), "--runs-dir", str(runs), *sets.get(case, [])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("collapse-tui: "), err
    for word in words:
        assert word in err, (word, err)
    assert not runs.exists() or not any(runs.iterdir())


def test_mixing_draws_the_shares_it_is_given():
    assert proportions(DataSection(share_others=0.5), 3).tolist() == [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]] + [
        [0.25, 0.25, 0.5]
    ]
    assert counts(np.array([0.5, 0.25, 0.25]), 10).tolist() == [5, 3, 2]  # the largest remainder first
    own = np.zeros((2, 10, 1))
    other = np.ones((2, 4, 1))  # fewer than asked: drawn with replacement
    mixed = mix_chain(0, own, [None, other], np.array([0.3, 0.7]), [np.random.default_rng(s) for s in (0, 1)])
    assert mixed.shape == (2, 10, 1) and (mixed.sum(axis=(1, 2)) == 7).all()
    x = np.arange(2 * 3 * 4).reshape(2 * 3, 4, 1).astype(float)  # 6 seeds of 4 samples, populations of 3
    pooled = pool_seeds(x, 0.5, 3, [np.random.default_rng(s) for s in range(6)])
    assert pooled.shape == (6, 4 + 2 * 2, 1)
    for i in range(6):  # its own samples, then two of each other seed of its population, none of the other's
        others = {j for j in range(6) if j // 3 == i // 3 and j != i}
        assert (pooled[i, :4] == x[i]).all()
        assert {int(v) // 4 for v in pooled[i, 4:, 0]} == others
        assert len(set(pooled[i, 4:, 0])) == 4


def test_chains_that_do_not_mix_give_the_rows_of_separate_runs(tmp_path, write_preset):
    run = make_run(tmp_path, str(write_preset(TWO.replace("{share}", "0"))))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for name, sets in (
        ("gmm", ["engine.samples=120", "engine.test_samples=200"]),
        ("gauss", ["engine.dim=2", "engine.samples=80", "engine.test_samples=200"]),
    ):
        preset = {"gmm": "gmm-quick", "gauss": "gaussian-quick"}[name]
        alone = make_run(tmp_path, preset, "experiment.generations=6", "experiment.seeds=3", *sets)
        expected = [json.loads(line) for line in (alone / "metrics.jsonl").read_text().splitlines()]
        mine = [
            {k: v for k, v in r.items() if k != "chain" and not k.startswith("dist_")}
            for r in rows
            if r["chain"] == name
        ]
        assert mine == expected
    assert {p.name for p in (run / "samples").iterdir()} == {"gmm", "gauss"}


def points_run(root: Path, share: float, generations: int, seeds: int) -> list[dict]:
    run = make_run(
        root,
        "points-ecosystem",
        f"data.share_others={share}",
        f"experiment.generations={generations}",
        f"experiment.seeds={seeds}",
    )
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_chains_that_feed_each_other_stay_close_and_drift_from_the_real_data_together(tmp_path):
    """L2 between the GMM chain's and the Gaussian chain's densities: apart, it grows from its generation-0
    value (two fits of the same real data) as each chain drifts its own way; sharing half their samples,
    it stays near that value, while the distance to the real data (w2) grows as much as apart."""
    gens, seeds = 30, 8
    by = {share: points_run(tmp_path, share, gens, seeds) for share in (0.0, 0.5)}

    def median(rows, key, gen, chain="gmm"):
        return float(np.median([r[key] for r in rows if r["generation"] == gen and r["chain"] == chain]))

    apart, mixed = by[0.0], by[0.5]
    assert median(apart, "dist_gauss", 0) == median(mixed, "dist_gauss", 0)  # the same generation 0
    assert median(apart, "dist_gauss", gens - 1) > 10 * median(apart, "dist_gauss", 0)
    assert median(mixed, "dist_gauss", gens - 1) < 0.2 * median(apart, "dist_gauss", gens - 1)
    for rows in by.values():  # L2 is symmetric: each chain's rows carry the same number
        last = [r for r in rows if r["generation"] == gens - 1]
        assert [r["dist_gauss"] for r in last if r["chain"] == "gmm"] == [
            r["dist_gmm"] for r in last if r["chain"] == "gauss"
        ]
        assert median(rows, "w2", gens - 1) > 2 * median(rows, "w2", 0)


def test_the_distance_is_the_closed_form_l2_of_the_two_models(tmp_path):
    run = make_run(tmp_path, "points-ecosystem", "experiment.generations=2", "experiment.seeds=2")
    ckpt = json.loads((run / "state" / "checkpoint.json").read_text())["dir"]
    models = {}
    for name in ("gmm", "gauss"):
        with np.load(run / "state" / ckpt / f"{name}-model0" / "model.npz") as z:
            models[name] = {k: z[k] for k in z.files}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    got = [r["dist_gauss"] for r in rows if r["generation"] == 1 and r["chain"] == "gmm"]
    assert np.allclose(got, l2_distance(models["gmm"], models["gauss"]), rtol=1e-12)


SETTINGS = [
    "experiment.generations=40",
    "experiment.seeds=4",
    "experiment.checkpoint_seconds=0.05",
    "chains.gmm.samples=200",
    "chains.gauss.samples=200",
]
ARGS = [a for s in SETTINGS for a in ("--set", s)]


@pytest.mark.parametrize("share", [0.5])
def test_an_ecosystem_killed_then_resumed_equals_the_uninterrupted_run(tmp_path, share):
    ref = tmp_path / "ref"
    ref.mkdir()
    proc = cli("--batch", "points-ecosystem", *ARGS, cwd=ref)
    assert proc.wait(120) == 0, proc.stderr.read()
    expected = only_run(ref / "runs").metrics_path.read_text().splitlines()
    work = tmp_path / "work"
    work.mkdir()
    proc = cli("--batch", "points-ecosystem", *ARGS, cwd=work)
    rows = 0
    while rows < len(expected) // 2 and proc.poll() is None:
        if (work / "runs").exists() and any((work / "runs").glob("[!.]*")):
            rows = count_rows(only_run(work / "runs").metrics_path)
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run: RunDir = only_run(work / "runs")
    assert check_whole_lines(run.metrics_path) < len(expected), "the kill came after the run had finished"
    resumed = cli("--batch", "--resume", str(run.path), cwd=work)
    assert resumed.wait(120) == 0, resumed.stderr.read()
    assert run.metrics_path.read_text().splitlines() == expected


TEXT = [
    "experiment.generations=2",
    "experiment.checkpoint_seconds=0",
    *(f"chains.opt.{k}" for k in ("max_chars=6000", "block_size=16", "epochs=1", "num_beams=1", "vocab_size=300")),
    *(f"chains.opt.{k}" for k in ("tiny_hidden=32", "tiny_heads=2")),
    *(f"chains.ngram.{k}" for k in ("max_chars=6000", "block_size=16", "num_beams=1")),
]
TEXT_ARGS = [a for s in TEXT for a in ("--set", s)]


def test_a_text_ecosystem_resumes_after_kill_9_and_its_models_learn_each_others_text(tmp_path):
    """A tiny OPT and a word trigram, each on half the other's text: kill -9 once generation 0
    is checkpointed, resume, and the rows are the uninterrupted run's. dist_<other> is the cross-perplexity
    (this chain's model on the other's generated text, in its own tokens): trained on that text, it falls
    below its generation-0 value (a model of real text reading the other model's text)."""
    ref = tmp_path / "ref"
    ref.mkdir()
    proc = cli("--batch", "text-ecosystem", *TEXT_ARGS, cwd=ref)
    assert proc.wait(300) == 0, proc.stderr.read()
    expected = only_run(ref / "runs").metrics_path.read_text().splitlines()
    rows = [json.loads(line) for line in expected]
    assert [(r["chain"], r["generation"]) for r in rows] == [(c, g) for g in (0, 1) for c in ("opt", "ngram")]
    for name, other in (("opt", "ngram"), ("ngram", "opt")):
        mine = [r for r in rows if r["chain"] == name]
        assert mine[1][f"dist_{other}"] < mine[0][f"dist_{other}"]
    assert rows[0]["train_size"] != rows[1]["train_size"]  # each reads the text its own way
    work = tmp_path / "work"
    work.mkdir()
    proc = cli("--batch", "text-ecosystem", *TEXT_ARGS, cwd=work)
    while proc.poll() is None:
        if (work / "runs").exists() and any((work / "runs").glob("[!.]*")):
            run = only_run(work / "runs")
            if count_rows(run.metrics_path) >= 2 and (run.state_dir / "checkpoint.json").exists():
                break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert check_whole_lines(run.metrics_path) < len(expected), "the kill came after the run had finished"
    resumed = cli("--batch", "--resume", str(run.path), cwd=work)
    assert resumed.wait(300) == 0, resumed.stderr.read()
    assert run.metrics_path.read_text().splitlines() == expected


def test_compare_export_and_report_go_chain_by_chain(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from collapse_tui.compare import compare_rows
    from collapse_tui.export import read_csv
    from collapse_tui.report.figures import Options
    from collapse_tui.report.generic import variance_figure
    from collapse_tui.runs import load_runs

    run = make_run(tmp_path, "points-ecosystem", "experiment.generations=5", "experiment.seeds=3")
    rows = RunDir(run).read_metrics()
    runs = load_runs([run])
    assert [r.label for r in runs] == ["points-ecosystem · gmm", "points-ecosystem · gauss"]
    assert [r.engine for r in runs] == ["gmm", "gaussian"]
    fig = variance_figure(runs, Options())
    (ax,) = fig.axes
    assert len(ax.lines) == 2  # a line per chain: its medians over seeds
    for line, chain in zip(ax.lines, ("gmm", "gauss")):
        want = [
            np.median([r["variance"] for r in rows if r["generation"] == g and r["chain"] == chain]) for g in range(5)
        ]
        np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)
    got = {r["run"]: r["final"] for r in compare_rows(runs) if r["metric"] == "w2"}
    for chain in ("gmm", "gauss"):  # chains as columns: each chain's median at the last generation
        w2 = [r["w2"] for r in rows if r["generation"] == 4 and r["chain"] == chain]
        assert got[f"points-ecosystem · {chain}"] == pytest.approx(np.median(w2), rel=1e-12)
    assert main(["export", str(run), "--csv", str(tmp_path / "out.csv")]) == 0
    exported = read_csv(tmp_path / "out.csv")
    assert list(exported[0])[:3] == ["chain", "seed", "generation"]
    assert [(r["chain"], r["seed"], r["generation"]) for r in exported] == [
        (r["chain"], r["seed"], r["generation"]) for r in rows
    ]


def test_arrays_of_different_shapes_are_refused_in_one_line():
    """Shapes not known from the params (image files) are checked when the run starts."""
    from collapse_tui.chains import Chain, Group, check_shapes
    from collapse_tui.engines import DataError
    from collapse_tui.engines.gaussian import GaussianEngine

    def chain(name: str, shape: tuple[int, ...]) -> Chain:
        real = np.zeros((1, 5, *shape))
        return Chain(name, GaussianEngine(), [0], [Group([0], [np.random.default_rng(0)], real, real, real)])

    check_shapes([chain("a", (8, 8)), chain("b", (8, 8))])
    with pytest.raises(DataError, match=r"chains: examples of different shapes .*a \(8, 8\), b \(28, 28\)"):
        check_shapes([chain("a", (8, 8)), chain("b", (28, 28))])

"""`collapse-tui report`: figures from real runs, their plotted data checked against metrics.jsonl."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import sys
import warnings
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import make_run, run_loop, run_process, spawn

from collapse_tui.records import RunState

pytest.importorskip("matplotlib")

from collapse_tui.cli import main  # noqa: E402
from collapse_tui.config import Config  # noqa: E402
from collapse_tui.engines import engine_class  # noqa: E402
from collapse_tui.engines.figures.gaussian import gaussian_errors_figure  # noqa: E402
from collapse_tui.engines.figures.gmm import FIGURES as GMM_FIGURES  # noqa: E402
from collapse_tui.engines.figures.gmm import density_snapshots_figure, l2_figure  # noqa: E402
from collapse_tui.report.figures import Options, pick_generations  # noqa: E402
from collapse_tui.report.generic import GENERIC, metrics_figure, perplexity_figure, variance_figure  # noqa: E402
from collapse_tui.report.runs import plan, write_report  # noqa: E402
from collapse_tui.rundir import RunDir  # noqa: E402
from collapse_tui.runs import load_run, load_runs  # noqa: E402

VAE_TINY = """
[experiment]
engine = "vae"
generations = 3
seeds = 1
device = "cpu"
[engine]
source = "digits"
latent = 4
capacity = 4
epochs = 1
train_count = 300
test_count = 100
"""


def stopped_run(root: Path, stop_after: int) -> Path:
    """A gaussian-quick run stopped (as by Ctrl-C) after generation stop_after of 20."""
    rundir, state = run_loop(root / "stopped", "gaussian-quick", ["experiment.generations=20"], stop_after)
    assert state == RunState.STOPPED
    return rundir.path


def crashed_copy(run: Path, dest: Path) -> Path:
    """The run as a killed process leaves it: status 'running', its pid gone."""
    shutil.copytree(run, dest)
    p = spawn([sys.executable, "-c", "pass"])
    p.wait()
    status = json.loads((dest / "status.json").read_text())
    (dest / "status.json").write_text(json.dumps(status | {"state": "running", "pid": p.pid}))
    return dest


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    gens = "experiment.generations=20"
    out = {
        "replace": make_run(root, "gaussian-quick", gens),
        "accumulate": make_run(root, "gaussian-quick", gens, 'data.mode="accumulate"'),
        "gmm": make_run(root, "gmm-quick", "experiment.generations=12", "experiment.seeds=2", "engine.samples=1000"),
        "stopped": stopped_run(root, 7),
    }
    out["crashed"] = crashed_copy(out["stopped"], root / "crashed")
    return out


def medians(run: Path, key: str, f=None) -> tuple[list[int], list[float]]:
    """Per-generation medians over seeds straight from metrics.jsonl (f applied per row first);
    perplexity's in log space, from nll: exp of the median NLL."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    gens = sorted({r["generation"] for r in rows})
    if key == "perplexity":
        return gens, [float(np.exp(np.median([r["nll"] for r in rows if r["generation"] == g]))) for g in gens]
    f = f or (lambda v: v)
    return gens, [float(np.median([f(r[key]) for r in rows if r["generation"] == g])) for g in gens]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check_files(out: Path, stem: str) -> None:
    png, svg = out / f"{stem}.png", out / f"{stem}.svg"
    w, h = png_size(png)
    assert 600 <= w <= 4000 and 400 <= h <= 4000, (stem, w, h)
    assert 10_000 < png.stat().st_size < 5_000_000
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert 10_000 < svg.stat().st_size < 5_000_000


def labelled(fig) -> None:
    for ax in fig.axes:
        if ax.images and not ax.get_xticks().size:  # image grids: no axes to label, the title says it
            continue
        if ax.get_label() == "<colorbar>":
            assert ax.get_ylabel()
            continue
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()


def test_overlaid_series_match_metrics(runs):
    loaded = load_runs([runs["replace"], runs["accumulate"]])
    for build, key in ((perplexity_figure, "perplexity"), (variance_figure, "variance")):
        fig = build(loaded, Options())
        (ax,) = fig.axes
        solid = [line for line in ax.lines if line.get_linestyle() == "-"]  # theory's are dashed and dotted
        assert len(solid) == 2  # one line per run
        assert [line.get_label() for line in solid] == ["mode=replace", "mode=accumulate"]
        for line, run in zip(solid, (runs["replace"], runs["accumulate"])):
            gens, want = medians(run, key)
            np.testing.assert_array_equal(line.get_xdata(), gens)
            np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)
        assert "gaussian-quick" in fig.get_suptitle()
        labelled(fig)
    assert "data units²" in ax.get_ylabel()


def test_bands_of_non_negative_metrics_stay_non_negative(runs):
    """mean ± std went below zero for variances; the 16-84th percentile band stays within the values."""
    for run in (runs["gmm"], runs["replace"]):
        fig = variance_figure([load_run(run)], Options())
        (ax,) = fig.axes
        (band,) = ax.collections
        ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
        assert ys.min() >= 0
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert ys.min() >= min(r["variance"] for r in rows) - 1e-12


def test_gaussian_errors_are_the_papers_figure(runs):
    loaded = load_runs([runs["replace"], runs["accumulate"]])
    fig = gaussian_errors_figure(loaded, Options())
    mu_ax, sigma_ax = fig.axes
    for ax, key, f in ((mu_ax, "mean_shift", None), (sigma_ax, "fit_std", lambda v: abs(1 - v))):
        assert ax.get_xscale() == "symlog" and ax.get_yscale() == "log"
        assert len(ax.lines) == 2
        for line, run in zip(ax.lines, (runs["replace"], runs["accumulate"])):
            gens, want = medians(run, key, f)
            np.testing.assert_array_equal(line.get_xdata(), gens)
            np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)
            assert "M=20" in line.get_label()
    # replace drifts further from the original than accumulate
    assert sigma_ax.lines[0].get_ydata()[-1] > sigma_ax.lines[1].get_ydata()[-1]
    labelled(fig)


def test_gmm_density_snapshots_and_l2(runs):
    run = load_run(runs["gmm"])
    assert pick_generations(range(12), None) == [0, 2, 3, 5, 6, 8, 9, 11]
    assert pick_generations(range(0, 2001, 50), None) == [0, 50, 100, 150, 200, 350, 2000]
    fig = density_snapshots_figure(run, Options(generations=[0, 5, 11, 99]))  # 99 was never saved
    panels = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == [f"generation {g} (1000 points)" for g in (0, 5, 11)]
    for ax, g in zip(panels, (0, 5, 11)):
        dens = ax.images[0].get_array().filled(0)
        x0, x1, y0, y1 = ax.images[0].get_extent()
        cell = (x1 - x0) / dens.shape[1] * (y1 - y0) / dens.shape[0]
        assert dens.sum() * cell == pytest.approx(1.0)  # every saved point lies on the shared extent
        pts = RunDir(runs["gmm"]).load_samples(g)
        assert max(abs(x0), abs(x1)) >= np.abs(pts[:, :2]).max()
    assert "gmm-quick" in fig.get_suptitle()
    labelled(fig)

    fig = l2_figure([run], Options())
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and len(ax.lines) == 1
    gens, want = medians(runs["gmm"], "l2_distance")
    assert want[0] == 0  # generation 0 is the reference: left off the log axis
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), gens[1:])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), want[1:], rtol=1e-12)
    labelled(fig)


def test_stopped_and_crashed_runs_say_so(runs):
    stopped, crashed = load_runs([runs["stopped"], runs["crashed"]])
    fig = perplexity_figure([stopped], Options())
    assert "stopped at generation 7 of 19" in fig.get_suptitle()
    assert len(fig.axes[0].lines[0].get_xdata()) == 8
    fig = variance_figure([stopped, crashed], Options())
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("crashed at generation 7 of 19" in t for t in legend)
    assert gaussian_errors_figure([crashed], Options()).get_suptitle().endswith("crashed at generation 7 of 19")


def test_engines_choose_their_figures_unknown_ones_get_the_generic_set(runs):
    gauss, gmm = load_runs([runs["replace"], runs["gmm"]])
    names = [stem for stem, _, _ in plan([gauss, gmm], Options())]
    assert names == ["perplexity", "variance", "metrics", "gaussian-errors", "gmm-density", "gmm-l2"]
    cfg = gauss.config
    future = replace(gauss, config=Config({**cfg.experiment, "engine": "diffusion"}, cfg.data, cfg.engine))
    assert [stem for stem, _, _ in plan([future], Options())] == [s.name for s in GENERIC]
    fig = metrics_figure([future], Options())
    assert {ax.get_title() for ax in fig.axes} >= {"perplexity", "variance", "w2", "l2_distance"}


def test_an_engines_figures_come_from_the_module_its_class_names(runs, tmp_path, monkeypatch):
    gmm = load_run(runs["gmm"])
    own = [(stem, build.func) for stem, _, build in plan([gmm], Options()) if stem.startswith("gmm-")]
    assert own == [(f"gmm-{s.name}", s.build) for s in GMM_FIGURES]
    (ax,) = perplexity_figure([gmm], Options()).axes
    assert ax.get_ylabel() == engine_class("gmm").METRICS["perplexity"].axis + " (log scale)"
    monkeypatch.setattr(engine_class("gmm"), "figures", "")  # names no figures module: the generic ones
    assert [stem for stem, _, _ in plan([gmm], Options())] == [s.name for s in GENERIC]
    monkeypatch.setattr(engine_class("gmm"), "figures", "collapse_tui.engines.figures.nowhere")
    assert [stem for stem, _, _ in plan([gmm], Options())] == [s.name for s in GENERIC]
    written = write_report([gmm], tmp_path / "rep", Options(formats=("png",)))
    assert written[-1].name == "gmm figures" and "ModuleNotFoundError" in written[-1].skipped
    assert (
        "Not drawn: engine 'gmm': its figures (collapse_tui.engines.figures.nowhere) do not load"
        in (tmp_path / "rep" / "index.md").read_text()
    )


def test_runs_told_apart_by_their_paths_keep_their_layout(runs, tmp_path):
    """Two copies of a run differ only in their folders: their labels are full paths, which wrap in the
    legends instead of squeezing the panels to nothing (constrained_layout's 'axes sizes collapsed')."""
    copies = [str(shutil.copytree(runs["replace"], tmp_path / ("x" * 80) / name / "run")) for name in "ab"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["report", *copies, str(runs["crashed"]), "--out", str(tmp_path / "rep"), "--format", "png"]) == 0
    assert (tmp_path / "rep" / "gaussian-errors.png").is_file()


def test_report_cli_writes_valid_files_and_index(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    dirs = [str(runs[k]) for k in ("replace", "accumulate", "gmm", "crashed")]
    assert main(["report", *dirs, "--out", str(out), "--generations", "0,6,11"]) == 0
    printed = capsys.readouterr().out
    stems = ["perplexity", "variance", "metrics", "gaussian-errors", "gmm-density", "gmm-l2"]
    index = (out / "index.md").read_text()
    for stem in stems:
        check_files(out, stem)
        assert f"({stem}.png)" in index and f"({stem}.svg)" in index and f"{stem}:" in printed
    assert "crashed at generation 7 of 19" in index
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.{x}" for s in stems for x in ("png", "svg")] + ["index.md"]
    )


def test_single_run_report_goes_into_the_run_without_pyplot_or_display(runs, tmp_path):
    """A fresh interpreter with no display: the figures render, pyplot is never imported."""
    run = tmp_path / "run"
    shutil.copytree(runs["stopped"], run)
    code = (
        "import sys; from collapse_tui.cli import main; "
        f"rc = main(['report', {str(run)!r}, '--format', 'png']); "
        "assert 'matplotlib.pyplot' not in sys.modules; sys.exit(rc)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    done = run_process([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in (run / "report").iterdir())
    assert files == ["gaussian-errors.png", "index.md", "metrics.png", "perplexity.png", "variance.png"]


def test_missing_matplotlib_gives_install_hint(runs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", str(runs["replace"]), "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install matplotlib" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["RUN", "--generations", "a,b"], "--generations: expected comma-separated integers"),
        (["RUN", "--format", "pdf"], "--format: expected png, svg"),
        (["nowhere"], "not a run directory"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_arguments_exit_2(runs, args, message, capsys):
    args = [str(runs["replace"]) if a == "RUN" else a for a in args]
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("collapse-tui: ") and err.count("\n") == 1 and message in err


def vae_available() -> str:
    try:
        import torch  # noqa: F401

        from collapse_tui.engines import engine_class

        engine_class("vae")
    except Exception as e:  # the engine is being written: say why the VAE figures were not tested
        return f"VAE engine not usable here: {type(e).__name__}: {e}"
    return ""


@pytest.mark.skipif(bool(vae_available()), reason=vae_available() or "-")
def test_vae_sample_grids_latent_density_and_classes(tmp_path):
    from collapse_tui.engines.figures.vae import class_shares_figure, latent_density_figure, sample_grid_figure

    preset = tmp_path / "vae-tiny.toml"
    preset.write_text(VAE_TINY)
    run_path = make_run(tmp_path, str(preset))
    run = load_run(run_path)
    samples = RunDir(run_path).load_samples(2)
    assert samples.ndim == 3

    fig = sample_grid_figure(run, Options())
    assert [ax.get_title() for ax in fig.axes] == ["generation 0", "generation 1", "generation 2"]
    grid = fig.axes[2].images[0].get_array()
    h, w = samples.shape[1:]
    np.testing.assert_array_equal(grid[:h, :w], samples[0])  # the first tile is the first saved image
    assert grid.mask[h, 0]  # the gap between tiles

    fig = latent_density_figure(run, Options())
    (ax,) = fig.axes
    assert len(ax.lines) == 3  # one density per generation
    for line in ax.lines:
        y, x = line.get_ydata(), line.get_xdata()
        assert np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) == pytest.approx(1.0, abs=0.05)
    labelled(fig)

    fig = class_shares_figure(run, Options())
    stacks = fig.axes[0].collections
    assert len(stacks) == 10  # digits 0-9
    labelled(fig)

    out = tmp_path / "rep"
    assert main(["report", str(run_path), "--out", str(out)]) == 0
    for stem in ("vae-samples", "vae-latents", "vae-classes", "perplexity"):
        check_files(out, stem)


def test_perplexity_past_float_overflow_is_drawn_over_the_whole_run(runs, tmp_path):
    """From generation 10 every seed's model gives the real data e^(800+) less density: perplexity
    overflows (null in metrics.jsonl), its log (nll) does not. The line spans every generation, on a
    log10 axis, at log10 of the median perplexity."""
    run = tmp_path / "run"
    shutil.copytree(runs["replace"], run)
    rows = RunDir(run).read_metrics()
    for r in rows:
        if r["generation"] >= 10:
            r["nll"], r["perplexity"] = 800.0 + r["generation"] + r["seed"], None
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = perplexity_figure([load_run(run)], Options())
        fig.savefig(io.BytesIO(), format="png")
    (ax,) = fig.axes
    gens = sorted({r["generation"] for r in rows})
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), gens)  # no generation left out
    want = [np.median([r["nll"] for r in rows if r["generation"] == g]) / np.log(10) for g in gens]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), want, rtol=1e-12)
    assert ax.get_yscale() == "linear" and ax.get_ylabel().startswith("log10 of") and "infinite" not in ax.get_title()


def test_opt_sequence_perplexity_histograms(tmp_path):
    from conftest import WIKI

    from collapse_tui.engines.figures.opt import sequence_perplexity_figure

    text = WIKI
    sets = ("experiment.generations=2", "engine.pretrain_epochs=0", "engine.max_chars=30000", "engine.num_beams=2")
    run_path = make_run(
        tmp_path, "opt-tiny", *sets, f"engine.train={text / 'valid.txt'}", f"engine.test={text / 'test.txt'}"
    )
    run = load_run(run_path)
    fig = sequence_perplexity_figure(run, Options())
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    stairs = [p for p in ax.patches]
    assert len(stairs) == 2  # one histogram per generation run
    for g, patch in enumerate(stairs):
        (row,) = [r for r in run.rows if r["generation"] == g]
        counts = np.array(row["seq_ppl_hist"], dtype=float)
        np.testing.assert_allclose(patch.get_data().values, counts / counts.sum())
    labelled(fig)
    out = tmp_path / "rep"
    assert main(["report", str(run_path), "--out", str(out)]) == 0
    check_files(out, "opt-sequence-perplexity")

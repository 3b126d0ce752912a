"""`export --tensorboard`, `--mlflow` and `--samples`, read back with TensorBoard's and MLflow's own readers
and Pillow's PNG decoder; and `o` on the run screen, which names the compared generation's samples."""

from __future__ import annotations

import io
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import make_run, run_async, wait_for

from collapse_tui.cli import main
from collapse_tui.rundir import RunDir
from collapse_tui.summary import log_keys_of
from collapse_tui.tui.app import build_app
from collapse_tui.tui.components import SamplesView

Image = pytest.importorskip("PIL.Image")
SEEDS, GENERATIONS = 3, 5


@pytest.fixture(scope="module")
def gmm_run(tmp_path_factory) -> Path:
    return make_run(
        tmp_path_factory.mktemp("tools"),
        "gmm-quick",
        f"experiment.generations={GENERATIONS}",
        f"experiment.seeds={SEEDS}",
    )


@pytest.fixture(scope="module")
def ngram_run(tmp_path_factory) -> Path:
    sets = ("experiment.generations=2", "experiment.seeds=2", "engine.max_chars=10000")
    return make_run(tmp_path_factory.mktemp("tools"), "ngram-quick", *sets)


@pytest.fixture
def digits_run(gmm_run: Path, tmp_path: Path) -> Path:
    """A run of an engine not installed here whose previews are real digits (scikit-learn's, (64, 8, 8) in
    [0, 1] as the VAE saves them): export reads its files, never the engine."""
    from sklearn.datasets import load_digits

    run = tmp_path / "plugin-run"
    shutil.copytree(gmm_run, run)
    preset = run / "preset.toml"
    preset.write_text(preset.read_text().replace('engine = "gmm"', 'engine = "no-such-plugin"'))
    digits = (load_digits().images / 16.0).astype(np.float32)
    for gen in range(GENERATIONS):
        RunDir(run).save_samples(gen, digits[gen * 64 : (gen + 1) * 64])
    return run


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def flat_metrics(row: dict) -> dict[str, float]:
    """A row's metrics, lists spread as name_0, name_1, ...: written here again, as a reader would."""
    out = {}
    for k, v in row.items():
        if k in ("seed", "generation"):
            continue
        for name, x in [(f"{k}_{i}", x) for i, x in enumerate(v)] if isinstance(v, list) else [(k, v)]:
            if x is not None:
                out[name] = x
    return out


def accumulator(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    return acc


def scalars(acc) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.util.tensor_util import make_ndarray

    return {t: [(e.step, float(make_ndarray(e.tensor_proto))) for e in acc.Tensors(t)] for t in acc.Tags()["tensors"]}


def test_tensorboard_scalars_are_the_rows_and_their_median(gmm_run: Path, tmp_path: Path, capsys):
    pytest.importorskip("tensorboard")
    assert main(["export", str(gmm_run), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().err
    root = tmp_path / "tb" / gmm_run.name
    rows = RunDir(gmm_run).read_metrics()
    names = set(flat_metrics(rows[0]))
    assert {"perplexity", "variance", "component_stds_1"} <= names
    for seed in range(SEEDS):
        got = scalars(accumulator(root / f"seed-{seed}"))
        assert set(got) == names
        for name in names:
            want = [(r["generation"], flat_metrics(r)[name]) for r in rows if r["seed"] == seed]
            assert got[name] == [(g, float(np.float32(v))) for g, v in want], name  # float32: TensorBoard's scalars
    median = scalars(accumulator(root / "median"))
    logs = log_keys_of("gmm") | {"perplexity"}
    for name in names:
        by_gen = [[flat_metrics(r)[name] for r in rows if r["generation"] == g] for g in range(GENERATIONS)]
        want = [float(np.float32(np.median(v))) for v in by_gen]  # 3 seeds: the middle value, log or not
        got = [v for _, v in median[name]]
        assert [g for g, _ in median[name]] == list(range(GENERATIONS))
        if name in logs:  # a log-quantity's median is taken in log10: the same value but its last bits
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
        else:
            assert got == want, name
    images = accumulator(root / "samples").Images("samples")
    assert [e.step for e in images] == list(range(GENERATIONS))
    first, last = (png(e.encoded_image_string) for e in (images[0], images[-1]))
    assert first.shape == (128, 128) and (images[0].width, images[0].height) == (128, 128)
    # generation 0's range padded by a twentieth a side: its extreme points in bins 128 * 0.05 / 1.1 = 5.8
    # and 128 * 1.05 / 1.1 = 122.2 of each axis; a later generation on that same scale
    ys, xs = np.nonzero(first)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (5, 122, 5, 122)
    assert np.count_nonzero(last) > 0 and last.shape == first.shape
    # what TensorBoard's pages list: the data provider its server reads through
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path / "tb"))
    multiplexer.Reload()
    provider, ctx = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path / "tb")), context.RequestContext()
    listed = provider.list_scalars(ctx, experiment_id="", plugin_name="scalars")
    assert set(listed) == {f"{gmm_run.name}/{r}" for r in ("seed-0", "seed-1", "seed-2", "median")}
    assert set(listed[f"{gmm_run.name}/median"]) == names
    images = provider.list_blob_sequences(ctx, experiment_id="", plugin_name="images")
    assert list(images) == [f"{gmm_run.name}/samples"] and images[f"{gmm_run.name}/samples"]["samples"].max_step == 4
    assert main(["export", str(gmm_run), "--tensorboard", str(tmp_path / "tb")]) == 2  # never mixed into an old one
    assert "exists" in capsys.readouterr().err


def test_tensorboard_text_samples(ngram_run: Path, tmp_path: Path):
    pytest.importorskip("tensorboard")
    from tensorboard.util.tensor_util import make_ndarray

    assert main(["export", str(ngram_run), "--tensorboard", str(tmp_path / "tb")]) == 0
    root = tmp_path / "tb" / ngram_run.name
    texts = accumulator(root / "samples").Tensors("samples")
    rundir = RunDir(ngram_run)
    assert [e.step for e in texts] == rundir.sample_generations() == [0, 1]
    for e in texts:
        assert [t.decode() for t in make_ndarray(e.tensor_proto)] == rundir.load_samples(e.step)
    seed1 = scalars(accumulator(root / "seed-1"))
    assert seed1["perplexity"] == [
        (r["generation"], float(np.float32(r["perplexity"]))) for r in rundir.read_metrics() if r["seed"] == 1
    ]


def test_digits_of_an_engine_not_installed_as_grids(digits_run: Path, tmp_path: Path):
    """TensorBoard's images and `export --samples` both hold the 64 digits in a grid of 8 x 8, each digit
    drawn 3 times its size, one grey pixel between them."""
    pytest.importorskip("tensorboard")
    assert main(["export", str(digits_run), "--tensorboard", str(tmp_path / "tb"), "--samples", "2"]) == 0
    rundir = RunDir(digits_run)

    def check(grid: np.ndarray, digits: np.ndarray) -> None:
        assert grid.shape == (8 * 25 - 1, 8 * 25 - 1)
        for i in (0, 9, 63):
            r, c = divmod(i, 8)
            cell = grid[r * 25 : r * 25 + 24, c * 25 : c * 25 + 24]
            assert np.array_equal(cell, np.kron(np.round(digits[i] * 255), np.ones((3, 3))).astype(np.uint8))
        assert (grid[24, :] == grid[24, 0]).all() and grid[24, 0] not in (0, 255)  # the gap row

    images = accumulator(tmp_path / "tb" / digits_run.name / "samples").Images("samples")
    assert [e.step for e in images] == list(range(GENERATIONS))
    check(png(images[3].encoded_image_string), rundir.load_samples(3))
    check(png((digits_run / "report" / "samples" / "gen-000002.png").read_bytes()), rundir.load_samples(2))


def test_mlflow_logs_a_run_per_seed(gmm_run: Path, tmp_path: Path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    pytest.importorskip("matplotlib")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    store = tmp_path / "mlruns"
    assert main(["export", str(gmm_run), "--mlflow", str(store)]) == 0  # a plain path: a local file store
    assert "3 seeds" in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store only when allowed
    client = MlflowClient(store.resolve().as_uri())
    experiment = client.get_experiment_by_name("gmm-quick")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {
        int(r.data.tags["seed"]): r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert sorted(children) == list(range(SEEDS))
    doc = tomllib.loads((gmm_run / "preset.toml").read_text())
    want = {f"{section}.{k}": str(v) for section, table in doc.items() for k, v in table.items()}
    assert want["experiment.seeds"] == "3" and want["engine.components"] == "2"
    assert parent.data.params == want
    rows = RunDir(gmm_run).read_metrics()
    for seed, child in children.items():
        assert child.data.params == want and child.info.status == "FINISHED"
        mine = [r for r in rows if r["seed"] == seed]
        for name in ("perplexity", "variance", "component_weights_0", "detector_auc"):
            history = sorted((m.step, m.value) for m in client.get_metric_history(child.info.run_id, name))
            assert history == [(r["generation"], flat_metrics(r)[name]) for r in mine], name  # float64: exact
        assert set(child.data.metrics) == set(flat_metrics(rows[0]))
    figures = [a.path for a in client.list_artifacts(parent.info.run_id, "figures")]
    assert "figures/perplexity.png" in figures and all(f.endswith(".png") for f in figures)
    local = client.download_artifacts(parent.info.run_id, "figures/perplexity.png", str(tmp_path))
    assert png(Path(local).read_bytes()).ndim == 3  # a picture the report drew
    # a run with a report: its figures as they are, not export --samples's pictures beside them
    copy = tmp_path / "reported"
    shutil.copytree(gmm_run, copy)
    (copy / "report" / "samples").mkdir(parents=True)
    (copy / "report" / "index.md").write_text("# collapse-tui report\n")
    shutil.copy(local, copy / "report" / "drawn-before.png")
    shutil.copy(local, copy / "report" / "samples" / "gen-000001.png")
    assert main(["export", str(copy), "--mlflow", str(store)]) == 0
    (again,) = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == "reported"]
    assert [a.path for a in client.list_artifacts(again.info.run_id, "figures")] == ["figures/drawn-before.png"]


def test_samples_as_png_and_text(gmm_run: Path, ngram_run: Path, tmp_path: Path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    assert main(["export", str(gmm_run), "--samples", "2", "--to", str(tmp_path / "s")]) == 0
    assert "a scatter of 100 points" in capsys.readouterr().err
    assert png((tmp_path / "s" / "gen-000002.png").read_bytes()).shape[:2] == (480, 640)  # 6.4 x 4.8 in at 100 dpi
    assert main(["export", str(ngram_run), "--samples", "1"]) == 0  # default: the run's report/samples/
    stored = RunDir(ngram_run).load_samples(1)
    files = sorted((ngram_run / "report" / "samples" / "gen-000001").iterdir())
    assert [f.read_text() for f in files] == stored and len(stored) > 1
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # no matplotlib: a density image, said so
    assert main(["export", str(gmm_run), "--samples", "4", "--to", str(tmp_path / "s")]) == 0
    assert "pip install matplotlib" in capsys.readouterr().err
    image = png((tmp_path / "s" / "gen-000004.png").read_bytes())
    points = RunDir(gmm_run).load_samples(4)
    assert image.shape == (128, 128) and 0 < np.count_nonzero(image) <= len(points)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--samples", "99"], "no samples of generation 99 (saved: 0..4, 5 generations)"),
        (["--samples", "1", "--to", "RUN/samples"], "leads into the run directory"),
        (["--to", "x"], "--to DIR goes with --samples GEN"),
        (["--mlflow", "RUN/mlruns"], "leads into the run directory"),
        (["--tensorboard", "RUN/tb"], "leads into the run directory"),
    ],
)
def test_bad_outputs_exit_2_with_one_line(gmm_run: Path, args, message, capsys):
    args = [a.replace("RUN", str(gmm_run)) for a in args]
    before = sorted(p.name for p in gmm_run.iterdir())
    assert main(["export", str(gmm_run), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert sorted(p.name for p in gmm_run.iterdir()) == before


def test_a_missing_generation_is_refused_before_the_tables_are_written(gmm_run: Path, tmp_path: Path, capsys):
    assert main(["export", str(gmm_run), "--csv", str(tmp_path / "m.csv"), "--samples", "99"]) == 2
    assert "no samples of generation 99" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # not even the CSV


@pytest.mark.parametrize(
    "option, module, extra", [("--tensorboard", "tensorboard", "[tensorboard]"), ("--mlflow", "mlflow", "[mlflow]")]
)
def test_a_missing_package_is_one_line(gmm_run: Path, tmp_path: Path, option, module, extra, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    out = tmp_path / "out"
    assert main(["export", str(gmm_run), "--csv", str(tmp_path / "m.csv"), option, str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pip install 'collapse-tui{extra}'" in err
    assert list(tmp_path.iterdir()) == []  # not even the CSV


@run_async
async def test_o_names_the_compared_generations_samples(gmm_run: Path, tmp_path: Path):
    app = build_app(str(gmm_run), [], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        shown = lambda: app.screen.query(SamplesView) and app.screen.query_one(SamplesView).n == GENERATIONS - 1  # noqa: E731
        await wait_for(pilot, shown, what="the newest samples")
        await pilot.press("[", "[", "o")  # from the newest saved generation (4) to 2
        want = str((gmm_run / "samples" / "gen-000002.npy").resolve())
        await wait_for(pilot, lambda: any(want in n.message for n in app._notifications), what="the notification")
        assert Path(want).is_file() and app.clipboard == want
        assert any("generation 2's samples" in (n.title or "") for n in app._notifications)
        await pilot.press("4")  # the log pane: the line, wrapped at the pane's width
        log = app.screen.query_one("#log-view")
        await wait_for(pilot, lambda: want in "".join(line.text.strip() for line in log.lines), what="the log line")

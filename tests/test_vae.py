"""The VAE engine: its data readers, the paper's model, checkpoints, the loop (failure and resume)
and the layering rule that validating a preset never imports torch. Real code on small settings."""

from __future__ import annotations

import gzip
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import MNIST, run_loop, run_process

from collapse_tui.engines.base import DataError
from collapse_tui.engines.vae import VAEEngine, class_metrics
from collapse_tui.engines.vae_data import load_files, read_idx

IMAGES, LABELS = str(MNIST / "t10k-images-idx3-ubyte.gz"), str(MNIST / "t10k-labels-idx1-ubyte.gz")
T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # tests/data/README.md


def engine(**params: object) -> VAEEngine:
    return VAEEngine(params)


def needs_torch() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")


# --- data ---------------------------------------------------------------------------------------
def test_idx_reader_matches_the_known_facts_of_mnist_t10k(tmp_path):
    images, labels = read_idx(IMAGES), read_idx(LABELS)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert np.bincount(labels).tolist() == T10K_COUNTS
    assert images.max() == 255 and images.min() == 0
    plain = tmp_path / "t10k-labels-idx1-ubyte"  # the same file, not compressed
    plain.write_bytes(gzip.decompress(Path(LABELS).read_bytes()))
    assert np.array_equal(read_idx(plain), labels)


def test_files_source_splits_one_file_into_train_and_test():
    d = load_files(IMAGES, LABELS, "", "", 8000, 2000)
    assert d.train.shape == (8000, 28, 28) and d.test.shape == (2000, 28, 28)
    assert d.train.dtype == np.float32 and d.train.min() >= 0.0 and d.train.max() == 1.0
    assert np.bincount(d.train_labels).sum() + np.bincount(d.test_labels).sum() == 10000
    assert np.array_equal(d.test[-1], read_idx(IMAGES)[-1] / np.float32(255))
    with pytest.raises(DataError, match="exceed its 10000 images"):
        load_files(IMAGES, LABELS, "", "", 9000, 2000)


def test_npz_source_reads_images_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "set.npz"
    np.savez(path, images=rng.integers(0, 256, (60, 12, 10), dtype=np.uint8), labels=np.arange(60) % 3)
    d = load_files(str(path), "", "", "", 0, 0)
    assert d.train.shape == (50, 12, 10) and d.test.shape == (10, 12, 10)  # a sixth to test
    assert d.test_labels.tolist() == [i % 3 for i in range(50, 60)]
    np.savez(path, pictures=np.zeros((3, 4, 4)))
    with pytest.raises(DataError, match="'images'"):
        load_files(str(path), "", "", "", 0, 0)


def test_class_metrics_show_a_vanished_class():
    m = class_metrics(np.array([0, 0, 1, 1]), np.arange(3))
    assert m["class_shares"] == [0.5, 0.5, 0.0] and m["min_class_share"] == 0.0
    assert m["class_entropy"] == pytest.approx(np.log(2))


# --- layering: validating a preset or importing the engine leaves torch out ------------------------
def test_vae_presets_validate_without_importing_torch():
    code = (
        "import sys; import collapse_tui.engines.vae; from collapse_tui.preset_files import load_preset; "
        "cfgs = [load_preset(n) for n in ('vae-mnist', 'vae-digits', 'vae-quick')]; "
        "print([c.engine_name for c in cfgs], [m for m in ('torch', 'datasets', 'sklearn') if m in sys.modules])"
    )
    out = run_process([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "['vae', 'vae', 'vae'] []"


# --- the model and checkpoints ---------------------------------------------------------------------
def test_the_papers_vae_has_647081_parameters_and_adapts_to_the_image_size():
    needs_torch()
    import torch

    from collapse_tui.engines.vae_torch import VAE

    assert sum(p.numel() for p in VAE(28, 28, 20, 64).parameters()) == 647_081
    for h, w in ((8, 8), (30, 17)):
        model = VAE(h, w, 5, 4)
        mu, logvar = model.encode(torch.rand(3, h, w))
        assert mu.shape == logvar.shape == (3, 5)
        assert model.decode_logits(mu).shape == (3, h, w)


def test_the_cpu_decoders_last_layer_is_the_transposed_convolution_forward_and_backward():
    """On the CPU the last layer runs the gemm + col2im kernel, not the layer's own (oneDNN's): the same
    function, checked against the layer itself, its gradients too, in float64 (differences are rounding)."""
    needs_torch()
    import torch
    import torch.nn.functional as F

    from collapse_tui.engines.vae_torch import VAE

    torch.manual_seed(0)
    model = VAE(28, 28, 20, 16).double()
    z = torch.randn(7, 20, dtype=torch.float64)
    layer = F.relu(model.deconv2(model.fc_dec(z).view(-1, *model.grid)))
    by_layer = model.deconv1(layer)[:, 0]
    torch.testing.assert_close(model.decode_logits(z), by_layer, rtol=0, atol=1e-12)
    weight = torch.randn(7, 28, 28, dtype=torch.float64)
    grads = []
    for out in (lambda: model.decode_logits(z), lambda: model.deconv1(layer.detach())[:, 0]):
        model.zero_grad()
        (out() * weight).sum().backward()
        grads.append((model.deconv1.weight.grad.clone(), model.deconv1.bias.grad.clone()))
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert grads[0][0].abs().sum() > 0


def test_a_checkpoint_loads_back_and_gives_the_same_metrics(tmp_path):
    needs_torch()
    eng = engine(source="digits", capacity=8, epochs=2, batch=64)
    rng = [np.random.default_rng(0)]
    real = eng.real_data(rng)
    ref = eng.fit(real, rng, lambda *a: None).model
    model = eng.fit(eng.sample(ref, 500, rng, lambda *a: None).samples, rng, lambda *a: None).model
    generated = eng.sample(model, 500, rng, lambda *a: None)
    samples = generated.samples
    eng.save(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae.json", "vae.safetensors"]  # no pickle
    loaded = engine(source="digits").load(tmp_path)
    before = eng.evaluate(model, samples, ref)
    assert eng.evaluate(loaded, samples, ref) == before
    again = [eng.sample(m, 50, [np.random.default_rng(1)], lambda *a: None).samples for m in (loaded, model)]
    assert np.array_equal(*again)
    row = before[0]
    assert {"perplexity", "variance", "nll", "latent_spread", "pixel_variance", "class_entropy"} <= row.keys()
    assert row["perplexity"] == pytest.approx(np.exp(row["nll"]))
    assert len(row["class_shares"]) == 10 and sum(row["class_shares"]) == pytest.approx(1.0)
    assert generated.preview.shape == (64, 8, 8) and generated.preview.dtype == np.float32


# --- through the loop --------------------------------------------------------------------------------
def test_an_unreachable_hub_fails_the_run_with_one_line_naming_the_local_alternative(tmp_path, monkeypatch):
    fake = types.ModuleType("datasets")

    def load_dataset(name: str, *args: object, **kwargs: object) -> None:
        raise ConnectionError(f"Couldn't reach 'ylecun/{name}' on the Hub (LocalEntryNotFoundError)\nmore detail")

    fake.load_dataset = load_dataset
    fake.disable_progress_bars = lambda: None
    monkeypatch.setitem(sys.modules, "datasets", fake)
    rundir, state = run_loop(tmp_path, "vae-quick", ["engine.source='hub'", "experiment.generations=2"])
    assert state == "failed"
    error = rundir.read_status()["error"]
    assert "\n" not in error and error.startswith("DataError: cannot load 'mnist' from the Hugging Face hub")
    assert 'engine.source = "files"' in error and 'engine.source = "digits"' in error
    assert rundir.read_metrics() == []


def test_hub_source_reads_a_dataset_in_the_hubs_layout(tmp_path):
    """load_dataset on a local folder of parquet splits, as the hub serves mnist (no network)."""
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    from collapse_tui.engines.vae_data import load_hub

    x, y = read_idx(IMAGES)[:60], read_idx(LABELS)[:60]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    (tmp_path / "data").mkdir()
    for name, part in (("train", slice(0, 50)), ("test", slice(50, 60))):
        rows = {"image": [Image.fromarray(im) for im in x[part]], "label": y[part].tolist()}
        ds = datasets.Dataset.from_dict(rows, features=features)
        ds.to_parquet(tmp_path / "data" / f"{name}-00000-of-00001.parquet")
    d = load_hub(str(tmp_path), 40, 5)
    assert d.train.shape == (40, 28, 28) and d.test.shape == (5, 28, 28)
    assert np.array_equal(d.train_labels, y[:40]) and np.array_equal(d.test_labels, y[55:60])
    assert np.array_equal(d.test, x[55:60] / np.float32(255))


def test_file_settings_are_checked_before_any_data_is_read(tmp_path):
    def check(**keys):
        VAEEngine.check_params(VAEEngine.Params(source="files", **keys))

    with pytest.raises(DataError, match='engine.images: source "files" needs a path'):
        check()
    check(images=IMAGES, labels=str(tmp_path / "missing"))  # a preset may name files another machine has
    missing = engine(source="files", images=IMAGES, labels=str(tmp_path / "missing")).preflight()
    assert missing == [f"engine.labels: no such file: {tmp_path / 'missing'}"]
    assert engine(source="files", images=IMAGES, labels=LABELS).preflight() == []
    with pytest.raises(DataError, match="engine.images: no such file"):
        engine(source="files", images=str(tmp_path / "nope.gz")).real_data([np.random.default_rng(0)])


def test_stream_trains_on_the_previous_decoder_not_on_the_data():
    """synthetic = "stream" (the official notebook): every step decodes a fresh batch from the source
    model. A source whose decoder paints every pixel 0.9 teaches a model that samples near 0.9,
    whatever the data passed to fit; "fixed" learns the data (real digits: mostly background)."""
    needs_torch()
    import torch

    from collapse_tui.engines import vae_torch as vt

    rngs = [np.random.default_rng(0)]
    kw = dict(source="digits", capacity=8, epochs=8, batch=64, latent=4)
    real = engine(**kw).real_data(rngs)
    source = vt.new_vae(8, 8, 4, 8, 0, torch.device("cpu"))
    with torch.no_grad():
        for p in source.parameters():
            p.zero_()
        source.deconv1.bias.fill_(float(np.log(0.9 / 0.1)))  # sigmoid -> 0.9 everywhere
    steps = {}
    means = {}
    for mode in ("stream", "fixed"):
        eng = engine(**kw, synthetic=mode)
        calls: list[tuple] = []

        def report(*args, calls=calls) -> None:
            calls.append(args)

        model = eng.fit(real, [np.random.default_rng(1)], report, source=source).model
        steps[mode] = calls[-1][2]
        means[mode] = float(eng.sample(model, 200, [np.random.default_rng(2)], lambda *a: None).samples.mean())
    assert steps["stream"] == steps["fixed"]  # as many optimizer steps as the data would take
    assert means["stream"] > 0.75 and means["fixed"] < 0.5, means


def test_stream_needs_replace_mode(tmp_path, capsys):
    from collapse_tui.cli import main

    sets = ["--set", "engine.synthetic=stream", "--set", "data.mode=keep"]
    assert main(["--batch", "vae-quick", *sets, "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert 'engine.synthetic: "stream"' in err and "data.mode" in err and err.count("\n") == 1

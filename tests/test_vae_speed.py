"""What makes vae-quick a demo of seconds computes what it replaced: the digits read without scikit-learn's
import, the class-share classifier kept in the user's cache, the foreach Adam without torch.optim; and a later
run imports neither scikit-learn nor torch._dynamo, with the same rows as the run that filled the cache."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from conftest import MNIST, run_preset, run_process

from collapse_tui.engines import vae_classifier
from collapse_tui.engines.vae_data import load_digits, load_files

TINY = [
    "experiment.generations=2",
    "engine.train_count=300",
    "engine.test_count=100",
    "engine.capacity=4",
    "engine.epochs=1",
    "data.detector_auc=false",
]


def test_digits_are_read_as_scikit_learn_reads_them():
    from sklearn.datasets import load_digits as sk_digits

    d, sk = load_digits(0, 0), sk_digits()
    assert np.array_equal(np.concatenate([d.train, d.held, d.test]), (sk.images / 16.0).astype(np.float32))
    assert np.array_equal(np.concatenate([d.train_labels, d.test_labels]), sk.target[np.r_[0:1498, 1498:1797]])
    assert d.train.shape == (1498, 8, 8) and d.train_labels.dtype == np.int64


def test_the_adam_update_is_torch_optims_bit_for_bit():
    torch = pytest.importorskip("torch")
    from collapse_tui.engines import vae_torch as vt

    x = torch.rand(256, 8, 8, generator=torch.Generator().manual_seed(5))

    def weights(make, weight_decay: float) -> list:
        model = vt.new_vae(8, 8, 2, 4, 0, torch.device("cpu"))
        gen, opt = vt.generator(1, torch.device("cpu")), make(model, weight_decay)
        for _ in range(40):
            loss = vt.neg_elbo(model, x[torch.randint(0, 256, (32,), generator=gen)], gen).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return list(model.parameters())

    for wd in (1e-5, 0.0):
        ours = weights(lambda m, wd: vt.optimizer(m, 1e-3, wd, cuda=False), wd)
        theirs = weights(lambda m, wd: torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=wd), wd)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
        assert not torch.equal(ours[0], vt.new_vae(8, 8, 2, 4, 0, torch.device("cpu")).conv1.weight)  # it moved


@pytest.mark.parametrize("classes", [10, 2])
def test_the_cached_classifier_labels_as_the_fitted_estimator_does(tmp_path, monkeypatch, classes):
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = load_files(str(MNIST / "t10k-images-idx3-ubyte.gz"), str(MNIST / "t10k-labels-idx1-ubyte.gz"), "", "", 0, 0)
    keep, test = d.train_labels < classes, d.test.reshape(len(d.test), -1)
    x, y = d.train[keep][:1500].reshape(-1, 784), d.train_labels[keep][:1500]
    expected = LogisticRegression(max_iter=vae_classifier.MAX_ITER).fit(x, y).predict(test)
    known = d.test_labels < classes
    assert len(set(expected)) == classes and np.mean(expected[known] == d.test_labels[known]) > 0.8  # it learned

    fitted = vae_classifier.classifier(x, y)  # fitted here, then kept
    (kept,) = (tmp_path / "collapse-tui" / "classifiers").iterdir()
    assert np.array_equal(fitted.predict(test), expected)
    monkeypatch.setattr(vae_classifier, "fit", lambda *a: pytest.fail("fitted again despite the cache"))
    assert np.array_equal(vae_classifier.classifier(x, y).predict(test), expected)

    other = vae_classifier.cache_path(x[:-1], y[:-1])  # other images: another file
    assert other != kept and other.parent == kept.parent
    kept.write_bytes(kept.read_bytes()[:100])  # a cut file is fitted again, not trusted
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert np.array_equal(vae_classifier.classifier(x, y).predict(test), expected)
    assert vae_classifier.read(kept, 784) is not None


def test_a_later_run_imports_neither_scikit_learn_nor_dynamo_and_gives_the_same_rows(tmp_path, monkeypatch):
    """The first run fits the classifier and keeps it; the second, in a fresh process, loads it."""
    pytest.importorskip("torch")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "first").mkdir()
    first = run_preset(tmp_path / "first", "vae-quick", *TINY)
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from collapse_tui.cli import main\n"
        f"args = ['--batch', 'vae-quick', '--runs-dir', {str(tmp_path / 'runs')!r}]\n"
        f"assert main(args + [a for s in {TINY!r} for a in ('--set', s)]) == 0\n"
        "(run,) = Path(args[3]).iterdir()\n"
        "print('imported', json.dumps([m in sys.modules for m in ('sklearn', 'torch._dynamo', 'scipy', 'torch')]))\n"
        "print((run / 'metrics.jsonl').read_text(), end='')\n"
    )
    proc = run_process([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    imported = json.loads(next(line.removeprefix("imported ") for line in lines if line.startswith("imported ")))
    assert imported == [False, False, False, True]
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    assert [r["generation"] for r in rows] == [0, 1]
    for r in rows:
        for key in ("variance", "class_entropy", "min_class_share", "nll"):
            assert r[key] == first[r["generation"]][key][0], key
        assert r["class_shares"] == first[r["generation"]]["class_shares"][0].tolist()

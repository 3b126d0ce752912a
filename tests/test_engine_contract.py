"""The engine contract (engines/base.py), checked on every registered engine on a tiny config: what it
declares, what fit, sample, score and evaluate return, a save/load round trip, and a stopped and resumed
run equal to an uninterrupted one. A new engine without a tiny config here fails test_every_engine_is_tested."""

from __future__ import annotations

import dataclasses
import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from conftest import WIKI_TEST, WIKI_TRAIN, run_loop

from collapse_tui.engines import Engine, Fitted, Generated, engine_class, engine_names
from collapse_tui.engines.base import PREVIEW_KINDS

TINY: dict[str, dict[str, object]] = {
    "gaussian": {"samples": 50, "test_samples": 200},
    "gmm": {"samples": 200, "test_samples": 200},
    "vae": {"source": "digits", "train_count": 300, "test_count": 100, "latent": 4, "capacity": 4, "epochs": 1},
    "opt": {
        "model": "tiny",
        "train": WIKI_TRAIN,
        "test": WIKI_TEST,
        "max_chars": 6000,
        "block_size": 16,
        "vocab_size": 300,
        "tiny_layers": 1,
        "tiny_hidden": 16,
        "tiny_heads": 2,
        "epochs": 1,
        "batch": 16,
        "gen_batch": 64,
    },
    "ngram": {"train": WIKI_TRAIN, "test": WIKI_TEST, "max_chars": 6000, "block_size": 16, "order": 3},
}
NEEDS = {"vae": ("torch",), "opt": ("torch", "transformers")}


def quiet(*_: object) -> None:
    pass


def available(name: str) -> type[Engine]:
    for module in NEEDS.get(name, ()):
        pytest.importorskip(module)
    return engine_class(name)


def test_every_engine_is_tested():
    assert set(engine_names()) == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_declarations(name):
    cls = engine_class(name)  # no torch needed to read what an engine declares
    assert cls.name == name and issubclass(cls, Engine)
    assert cls.preview_kind in PREVIEW_KINDS
    assert {"perplexity", "variance"} <= cls.METRICS.keys()
    assert all(m.label for m in cls.METRICS.values())
    # Params: one typed, frozen field per preset key, with its default
    params = cls.Params()
    assert {f.name for f in dataclasses.fields(params)} == cls.PARAMS.keys()
    assert all(getattr(params, k) == p.default for k, p in cls.PARAMS.items())
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.__setattr__(next(iter(cls.PARAMS)), None)
    if cls.figures:
        assert isinstance(importlib.import_module(cls.figures).FIGURES, tuple)


def check_preview(kind: str, preview: object, samples: np.ndarray) -> None:
    if kind == "text":
        assert isinstance(preview, list) and preview and all(isinstance(t, str) for t in preview)
        return
    assert isinstance(preview, np.ndarray) and preview.dtype == np.float32 and len(preview)
    assert preview.shape[1:] == samples.shape[2:]  # examples of the first seed, as generated
    if kind == "images":
        assert preview.ndim == 3 and preview.min() >= 0.0 and preview.max() <= 1.0
    else:
        assert preview.ndim == 2


@pytest.mark.parametrize("name", sorted(TINY))
def test_fit_sample_score_evaluate_and_a_save_load_round_trip(name, tmp_path):
    cls = available(name)
    engine = cls(TINY[name])
    seeds = 3 if cls.batched else 1
    rngs = [np.random.default_rng(s) for s in range(seeds)]
    real = engine.real_data(rngs)
    assert real.ndim >= 3 and real.shape[0] == seeds

    fitted = engine.fit(real, rngs, quiet)
    assert isinstance(fitted, Fitted) and all(v is None or math.isfinite(v) for v in fitted.losses.values())
    n = 40
    generated = engine.sample(fitted.model, n, rngs, quiet)
    assert isinstance(generated, Generated)
    samples = generated.samples
    assert samples.shape[:2] == (seeds, n) and samples.shape[2:] == real.shape[2:]
    check_preview(cls.preview_kind, generated.preview, samples)

    rows = engine.evaluate(fitted.model, samples, fitted.model)
    assert len(rows) == seeds
    for row in rows:
        assert {"perplexity", "variance"} <= row.keys()
        assert row["perplexity"] is None or row["perplexity"] > 0
        assert row["variance"] >= 0
    if cls.can_score:
        nll = engine.score(fitted.model, samples)
        assert nll.shape == (seeds, n) and np.isfinite(nll).all()
    else:
        with pytest.raises(NotImplementedError):
            engine.score(fitted.model, samples)

    # what other chains receive of these samples, and back: arrays as they are, text re-tokenised
    back = engine.from_shared(engine.to_shared(samples))
    assert back.shape[0] == seeds and back.shape[2:] == samples.shape[2:] and back.dtype.kind == samples.dtype.kind
    if cls.preview_kind != "text":
        assert np.array_equal(back, samples)
    if (shape := engine.example_shape()) is not None:
        assert shape == real.shape[2:]
    if cls.DISTANCE is not None:  # a model against itself, on its own samples
        d = engine.distance(fitted.model, fitted.model, back)
        assert d.shape == (seeds,) and np.isfinite(d).all() and (d >= 0).all()
        if not cls.DISTANCE.log:
            assert np.allclose(d, 0, atol=1e-12)
    else:
        with pytest.raises(NotImplementedError):
            engine.distance(fitted.model, fitted.model, back)

    engine.save(fitted.model, tmp_path)
    loaded = cls(TINY[name]).load(tmp_path)
    assert engine.evaluate(loaded, samples, loaded) == rows
    again = [engine.sample(m, n, [np.random.default_rng(9)] * seeds, quiet).samples for m in (loaded, fitted.model)]
    assert np.array_equal(*again)


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(name, tmp_path):
    available(name)
    preset = tmp_path / f"{name}-tiny.toml"
    raw = {"experiment": {"engine": name, "generations": 3, "seeds": 2, "device": "cpu"}, "engine": TINY[name]}
    preset.write_text(tomli_w.dumps(raw))
    whole, state = run_loop(tmp_path / "a", str(preset), [])
    assert state == "finished"
    part, state = run_loop(tmp_path / "b", str(preset), [], stop_after=0)
    assert state == "stopped" and {r["generation"] for r in part.read_metrics()} == {0}
    _, state = run_loop(tmp_path / "b", str(preset), [], resume_dir=part)
    assert state == "finished"
    assert part.metrics_path.read_text() == whole.metrics_path.read_text()
    assert len(whole.read_metrics()) == 3 * 2
    for gen in whole.sample_generations():
        a, b = (Path(r.samples_dir).glob(f"gen-{gen:06d}.*") for r in (whole, part))
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]

"""A plugin author's test kit: `check_engine(name, params)` runs the engine contract (engines/base.py)
on a registered engine and raises AssertionError naming the part that broke. The built-in engines
and the in-repo KDE plugin pass it in the suite (tests/test_engine_contract.py, tests/test_plugin.py).

    from collapse_tui.testing import check_engine

    def test_kde_keeps_the_engine_contract():
        check_engine("kde", {"samples": 50, "test_samples": 100})  # small params: the check is quick

The parts, in order, as the message names them: declarations (HEADLINE: metrics of METRICS, each with
a direction, engines.base.UP or DOWN); keys (its PARAMS' defaults and the params validate as a
preset); theory (in every data mode, expected() gives only its METRICS, one value
per generation); one generation (real_data, fit, sample, score, evaluate, what other
chains receive, distance); rows (perplexity and variance for every seed: None or a number, inf when
it overflowed, never NaN); preview (what preview_kind promises); checkpoint (load(save(model)) gives
the same rows, and the same samples for the same RNG state); resume (a run of 3 generations stopped
after the first and resumed writes an uninterrupted run's rows and samples; every row holds the HEADLINE
metrics). Everything runs on the CPU in a temporary folder; an engine whose optional packages are
missing fails (pytest.importorskip them first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import numbers
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .config import MODES, Config
from .engines import Engine, Fitted, Generated, engine_class
from .engines.base import DIRECTIONS, PREVIEW_KINDS
from .events import Event, GenerationDone
from .loop import Control, run
from .records import RunState
from .rundir import RunDir
from .theory import expected
from .validation import validate

N = 40  # examples sampled per seed in the one-generation check


def check_engine(name: str, params: dict[str, Any] | None = None) -> None:
    """Run the engine contract on the registered engine name with these [engine] keys (None: its
    defaults). Raises AssertionError "engine 'NAME', PART: what broke"; returns None when all holds."""
    with _part(name, "declarations"):
        cls = engine_class(name)
        _check_declarations(cls, name)
    with _part(name, "keys"):
        _preset(name, {k: p.default for k, p in cls.PARAMS.items()})
        cfg = _preset(name, dict(params or {}))
    with _part(name, "theory"):
        for mode in MODES:  # theory.expected checks what the engine's expected() gives
            expected(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, mode=mode)))
    with _part(name, "one generation"):
        engine = cls(cfg.engine)
        seeds = 3 if cls.batched else 1
        rngs = [np.random.default_rng(s) for s in range(seeds)]
        fitted, generated, rows = _one_generation(engine, rngs)
    with _part(name, "rows"):
        _check_rows(rows, seeds)
    with _part(name, "preview"):
        _check_preview(cls.preview_kind, generated.preview, generated.samples)
    with tempfile.TemporaryDirectory(prefix=f"check-{name}-") as tmp:
        with _part(name, "checkpoint"):
            (model_dir := Path(tmp) / "model").mkdir()
            engine.save(fitted.model, model_dir)
            loaded = cls(cfg.engine).load(model_dir)
            _expect(engine.evaluate(loaded, generated.samples, loaded) == rows, "the loaded model's rows differ")
            again = [engine.sample(m, N, [np.random.default_rng(9)] * seeds, _quiet) for m in (loaded, fitted.model)]
            _expect(np.array_equal(*(g.samples for g in again)), "the loaded model samples otherwise, same RNG state")
        with _part(name, "resume"):
            _check_resume(cfg, Path(tmp))


def run_in_process(rundir: RunDir, stop_after: int | None = None, resume: bool = False) -> str:
    """Run (or resume) rundir's experiment in this process, stopped once generation stop_after is done
    if given; the run's final state ('finished', 'stopped' or 'failed')."""
    control = Control()

    def emit(event: Event) -> None:
        if stop_after is not None and isinstance(event, GenerationDone) and event.generation == stop_after:
            control.stop()

    return run(rundir, emit, control, resume=resume)


@contextlib.contextmanager
def _part(name: str, part: str) -> Iterator[None]:
    """Any failure inside as AssertionError naming the engine and the part of the contract."""
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"engine {name!r}, {part}: {e}") from e
    except Exception as e:
        raise AssertionError(f"engine {name!r}, {part}: {type(e).__name__}: {e}") from e


def _expect(ok: object, what: str) -> None:
    if not ok:
        raise AssertionError(what)


def _raises(error: type[Exception], call: Callable[[], object]) -> bool:
    try:
        call()
    except error:
        return True
    return False


def _preset(name: str, keys: dict[str, Any]) -> Config:
    """A 2-seed, 3-generation preset of the engine with these [engine] keys, validated (paths relative
    to the current folder)."""
    experiment = {"name": f"check-{name}", "engine": name, "generations": 3, "seeds": 2, "device": "cpu"}
    return validate({"experiment": experiment, "engine": keys}, base_dir=Path.cwd())


def _quiet(*_: object) -> None:
    pass


def _check_declarations(cls: type[Engine], name: str) -> None:
    _expect(cls.name == name, f"name is {cls.name!r}")
    _expect(isinstance(cls.preview_kind, str) and cls.preview_kind, f"preview_kind {cls.preview_kind!r}")
    _expect({"perplexity", "variance"} <= cls.METRICS.keys(), "METRICS lacks perplexity or variance")
    _expect(all(m.label for m in cls.METRICS.values()), "a metric without a label")
    heads = dict(cls.HEADLINE)
    _expect(len(heads) == len(cls.HEADLINE) > 0, f"HEADLINE {cls.HEADLINE!r}: none, or a metric twice")
    _expect(heads.keys() <= cls.METRICS.keys(), f"HEADLINE names metrics not in METRICS: {heads.keys() - cls.METRICS}")
    _expect(set(heads.values()) <= set(DIRECTIONS), f"HEADLINE: directions {set(heads.values())}, not of {DIRECTIONS}")
    params = cls.Params()
    _expect({f.name for f in dataclasses.fields(params)} == cls.PARAMS.keys(), "Params does not match PARAMS")
    _expect(all(getattr(params, k) == p.default for k, p in cls.PARAMS.items()), "Params' defaults are not PARAMS'")
    if cls.PARAMS:
        _expect(
            _raises(dataclasses.FrozenInstanceError, lambda: setattr(params, next(iter(cls.PARAMS)), None)),
            "Params is not frozen",
        )
    if cls.figures:
        _expect(isinstance(importlib.import_module(cls.figures).FIGURES, tuple), f"{cls.figures}.FIGURES: not a tuple")


def _one_generation(engine: Engine, rngs: list[np.random.Generator]) -> tuple[Fitted, Generated, list[dict]]:
    """Fit, sample and evaluate one generation, checking what each returns; also score, the form other
    chains receive samples in, and the distance of the model to itself."""
    seeds = len(rngs)
    real = engine.real_data(rngs)
    _expect(real.ndim >= 3 and real.shape[0] == seeds, f"real_data: shape {real.shape} for {seeds} seeds")
    fitted = engine.fit(real, rngs, _quiet)
    _expect(isinstance(fitted, Fitted), "fit: not a Fitted")
    _expect(all(v is None or math.isfinite(v) for v in fitted.losses.values()), f"fit: losses {fitted.losses}")
    generated = engine.sample(fitted.model, N, rngs, _quiet)
    _expect(isinstance(generated, Generated), "sample: not a Generated")
    samples = generated.samples
    _expect(samples.shape == (seeds, N, *real.shape[2:]), f"sample: shape {samples.shape}, real data {real.shape}")
    rows = engine.evaluate(fitted.model, samples, fitted.model)
    if "detector" in engine.mitigations:
        f = engine.features(samples, fitted.model)
        _expect(f.shape[:2] == (seeds, N) and f.ndim == 3 and np.isfinite(f).all(), f"features: shape {f.shape}")
    if engine.can_score:
        nll = engine.score(fitted.model, samples)
        _expect(nll.shape == (seeds, N) and np.isfinite(nll).all(), f"score: shape {nll.shape} or not finite")
    else:
        _expect(_raises(NotImplementedError, lambda: engine.score(fitted.model, samples)), "score: can_score is False")
    back = engine.from_shared(engine.to_shared(samples))
    same_form = back.shape[0] == seeds and back.shape[2:] == samples.shape[2:] and back.dtype.kind == samples.dtype.kind
    _expect(same_form, f"from_shared(to_shared(samples)): shape {back.shape} {back.dtype}")
    if engine.preview_kind != "text":  # text is re-tokenised
        _expect(np.array_equal(back, samples), "from_shared(to_shared(samples)) changes the samples")
    if (shape := engine.example_shape()) is not None:
        _expect(shape == real.shape[2:], f"example_shape {shape}, real data {real.shape}")
    if engine.DISTANCE is not None:  # a model against itself, on its own samples
        d = engine.distance(fitted.model, fitted.model, back)
        _expect(d.shape == (seeds,) and np.isfinite(d).all() and (d >= 0).all(), f"distance: {d}")
        _expect(engine.DISTANCE.log or np.allclose(d, 0, atol=1e-12), f"distance of a model to itself: {d}")
    else:
        measured = not _raises(NotImplementedError, lambda: engine.distance(fitted.model, fitted.model, back))
        _expect(not measured, "distance: DISTANCE is None, yet it measures one")
    return fitted, generated, rows


def _check_rows(rows: list[dict], seeds: int) -> None:
    """Perplexity and variance in every row: None (undefined), else a number, inf when it overflowed
    (metrics.jsonl stores both as null), never NaN."""
    _expect(len(rows) == seeds, f"{len(rows)} rows for {seeds} seeds")
    for row in rows:
        _expect({"perplexity", "variance"} <= row.keys(), f"a row without perplexity or variance: {sorted(row)}")
        p, v = row["perplexity"], row["variance"]
        _expect(p is None or _number(p) and p > 0, f"perplexity {p!r}: expected None or a number > 0")
        _expect(v is None or _number(v) and v >= 0, f"variance {v!r}: expected None or a number >= 0")


def _number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_preview(kind: str, preview: object, samples: np.ndarray) -> None:
    """What the app's sample panes draw for the built-in kinds; a plugin's own kind the app does not draw."""
    if kind not in PREVIEW_KINDS:
        return
    if kind == "text":
        _expect(
            isinstance(preview, list) and preview and all(isinstance(t, str) for t in preview),
            "text: not a list of str",
        )
        return
    _expect(
        isinstance(preview, np.ndarray) and preview.dtype == np.float32 and len(preview),
        f"{kind}: not float32 examples",
    )
    _expect(preview.shape[1:] == samples.shape[2:], f"{kind}: shape {preview.shape}, samples {samples.shape}")
    if kind == "images":
        _expect(preview.ndim == 3 and preview.min() >= 0.0 and preview.max() <= 1.0, "images: not (n, H, W) in [0, 1]")
    elif kind == "points":
        _expect(preview.ndim == 2, f"points: shape {preview.shape}, expected (n, d)")


def _check_resume(cfg: Config, runs: Path) -> None:
    """3 generations straight, and stopped after the first and resumed: the same rows and samples."""
    whole = RunDir.create(runs / "whole", cfg)
    _expect(run_in_process(whole) == RunState.FINISHED, f"an uninterrupted run: {whole.read_status()['error']}")
    part = RunDir.create(runs / "part", cfg)
    _expect(
        run_in_process(part, stop_after=0) == RunState.STOPPED,
        f"a run stopped after generation 0: {part.read_status()['error']}",
    )
    _expect({r["generation"] for r in part.read_metrics()} == {0}, "a stopped run's rows are not generation 0's")
    _expect(run_in_process(part, resume=True) == RunState.FINISHED, f"the resumed run: {part.read_status()['error']}")
    _expect(part.metrics_path.read_text() == whole.metrics_path.read_text(), "a resumed run's rows differ")
    _expect(len(whole.read_metrics()) == cfg.generations * len(cfg.seeds), "rows missing")
    heads = dict(engine_class(cfg.engine_name).HEADLINE)
    _expect(
        all(heads.keys() <= r.keys() for r in whole.read_metrics()), f"a row without a HEADLINE metric {list(heads)}"
    )
    aucs = [r.get("detector_auc", "missing") for r in whole.read_metrics()]
    _expect(all(a is None or _number(a) and 0 <= a <= 1 for a in aucs), f"detector_auc: {aucs}")
    for gen in whole.sample_generations():
        a, b = (sorted(Path(r.samples_dir).glob(f"gen-{gen:06d}.*")) for r in (whole, part))
        _expect([p.read_bytes() for p in a] == [p.read_bytes() for p in b], f"generation {gen}'s samples differ")

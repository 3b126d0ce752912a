"""Each engine's headline metrics and the way each moves as the model collapses (Engine.HEADLINE): declared
by every built-in engine, true of a short run of its quick preset (the medians over seeds move that way
from generation 0 to the last), checked by the plugin test kit, and drawn on the run screen at 80x24 under
the metric's own name with an arrow that needs no colour."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_run, run_async

from collapse_tui.engines import Engine, Metric, engine_class, engine_names
from collapse_tui.engines.base import DIRECTIONS, DOWN, UP
from collapse_tui.engines.gaussian import GaussianEngine
from collapse_tui.summary import headline_of
from collapse_tui.testing import check_engine

# engine -> a short run in which it collapses: its preset and overrides
RUNS = {
    "gaussian": ("gaussian-quick", "experiment.generations=20", "experiment.seeds=5"),
    "linreg": ("linreg", "experiment.generations=6", "experiment.seeds=20"),
    # V = 20 and a held-out sample of 200: generation 0 sees every symbol (a finite perplexity), then loses some
    "categorical": ("categorical-zipf", "experiment.generations=20", "experiment.seeds=5", "engine.vocab=20"),
    "ngram": ("ngram-quick", "experiment.generations=4", "experiment.seeds=2", "engine.max_chars=20000"),
}


def test_every_built_in_engine_declares_its_headline():
    for name in engine_names():
        cls = engine_class(name)
        owner = next(k for k in cls.__mro__ if "HEADLINE" in vars(k))
        assert owner is not Engine, f"{name} takes the contract's default"
        heads = dict(cls.HEADLINE)
        assert heads.keys() <= cls.METRICS.keys() and set(heads.values()) <= set(DIRECTIONS)
        assert heads["perplexity"] == UP  # the real data's perplexity rises (Gibbs' inequality: mitigations.py)
        if cls.preview_kind == "text":  # their variance moves either way (engines/text_metrics.py)
            assert "variance" not in heads and heads["distinct_1"] == DOWN
    assert dict(GaussianEngine.HEADLINE)["variance"] == DOWN
    assert headline_of("no-such-engine") == dict(Engine.HEADLINE) == {"perplexity": UP, "variance": DOWN}


def medians(run, key: str) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    gens = sorted({r["generation"] for r in rows})
    values = [[np.inf if r[key] is None else r[key] for r in rows if r["generation"] == g] for g in gens]
    return [float(np.median(v)) for v in values]


@pytest.mark.parametrize("engine", sorted(RUNS))
@run_async
async def test_the_headline_moves_as_declared_and_the_run_screen_says_so(engine, tmp_path):
    from collapse_tui.tui.app import build_app
    from collapse_tui.tui.components import Trend
    from collapse_tui.tui.components.trend import ARROWS

    preset, *sets = RUNS[engine]
    run = make_run(tmp_path, preset, *sets)
    heads = dict(engine_class(engine).HEADLINE)
    for key, direction in heads.items():
        first, last = medians(run, key)[0], medians(run, key)[-1]
        assert (last > first) if direction == UP else (last < first), (key, direction, first, last)
    app = build_app(str(run), [], tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        trends = [t for t in app.screen.query(Trend).results(Trend) if t.display]
        assert [t.label for t in trends][: len(heads)] == list(heads)  # the engine's own metrics, in its order
        for trend, (key, direction) in zip(trends, heads.items()):
            name, sub = trend.render().plain.splitlines()
            assert name.startswith(f"{key} {ARROWS[direction]} ")
            # what the arrow means, where the second row holds neither the log scale nor the theory mark's key
            meaning = (
                "(log10)" if key == "perplexity" else "─ theory" if trend.expected else f"{ARROWS[direction]} collapse"
            )
            assert sub.startswith(meaning), sub


@pytest.mark.parametrize(
    ("headline", "metrics", "part", "what"),
    [
        ((("perplexity", "sideways"),), {}, "declarations", "HEADLINE: directions {'sideways'}"),
        ((("perplexity", UP), ("entropy", DOWN)), {}, "declarations", "HEADLINE names metrics not in METRICS"),
        ((("perplexity", UP), ("entropy", DOWN)), {"entropy": Metric("x")}, "resume", "a row without a HEADLINE"),
    ],
)
def test_check_engine_names_a_headline_it_cannot_draw(monkeypatch, headline, metrics, part, what):
    monkeypatch.setattr(GaussianEngine, "HEADLINE", headline)
    monkeypatch.setattr(GaussianEngine, "METRICS", {**GaussianEngine.METRICS, **metrics})
    with pytest.raises(AssertionError, match=f"^engine 'gaussian', {part}: {what}"):
        check_engine("gaussian", {"samples": 50, "test_samples": 200})

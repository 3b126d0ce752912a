"""The engine contract (engines/base.py), checked on every registered engine on a tiny config with the
plugin test kit, collapse_tui.testing.check_engine: what it declares, what fit, sample, score and
evaluate return, a save/load round trip, and a stopped and resumed run equal to an uninterrupted one.
A new engine without a tiny config here fails test_every_engine_is_tested."""

from __future__ import annotations

import pytest
from conftest import WIKI_TEST, WIKI_TRAIN

from collapse_tui.engines import engine_class, engine_names
from collapse_tui.engines.base import PREVIEW_KINDS
from collapse_tui.testing import check_engine

TINY_LM = {
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
}
TINY: dict[str, dict[str, object]] = {
    "gaussian": {"samples": 50, "test_samples": 200},
    "gmm": {"samples": 200, "test_samples": 200},
    "vae": {"source": "digits", "train_count": 300, "test_count": 100, "latent": 4, "capacity": 4, "epochs": 1},
    "opt": TINY_LM,
    # the lm engine (opt is its alias) on another architecture: rotary positions, a bos per line, no pad token
    "lm": {**TINY_LM, "tiny_arch": "llama", "generator": "hf", "num_beams": 2},
    "linreg": {"dim": 3, "samples": 20, "test_samples": 200},
    "ngram": {"train": WIKI_TRAIN, "test": WIKI_TEST, "max_chars": 6000, "block_size": 16, "order": 3},
    "categorical": {"vocab": 20, "samples": 50, "test_samples": 200},
}
NEEDS = {"vae": ("torch",), "opt": ("torch", "transformers"), "lm": ("torch", "transformers")}


def test_every_engine_is_tested():
    assert set(engine_names()) == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_engine_keeps_the_contract(name):
    for module in NEEDS.get(name, ()):
        pytest.importorskip(module)
    assert engine_class(name).preview_kind in PREVIEW_KINDS  # the app draws every built-in engine's samples
    check_engine(name, TINY[name])

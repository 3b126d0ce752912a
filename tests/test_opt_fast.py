"""The OPT engine's fast paths on the CPU in fp32 (issue 6): its beam search emits transformers' generate
tokens for the same beams and penalty, and its training loop (device-resident data, fused AdamW, deferred
host syncs, torch.compile) gives a plain loop's loss curve. The GPU speed itself is bench/opt_generation.py's."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import WIKI_TEST, WIKI_TRAIN, tiny_opt

from collapse_tui.engines.base import DataError
from collapse_tui.engines.lm import OPTEngine
from collapse_tui.engines.lm_train import cosine_lambda

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from collapse_tui.engines.opt_beam import beam_search  # noqa: E402

TRAIN, TEST = WIKI_TRAIN, WIKI_TEST
FIT = dict(batch=16, epochs=2, lr=5e-3, lr_min=1e-4, warmup_steps=3)


def engine(**params: object) -> OPTEngine:
    return tiny_opt(**{**FIT, **params})


def train(e: OPTEngine, rng_seed: int, blocks: np.ndarray | None = None):
    """(model, what training measured) of OPTEngine.train on blocks (default: the training set), seeded as
    fit seeds it from np.random.default_rng."""
    blocks = e.dataset().train if blocks is None else blocks
    return e.train(blocks[None], int(np.random.default_rng(rng_seed).integers(2**63)), lambda *a: None)


@pytest.fixture(scope="module")
def trained() -> tuple[OPTEngine, object, object]:
    """A tiny OPT trained for two epochs: peaked next-token distributions, as beam search meets in a run."""
    e = engine()
    return e, *train(e, 1)


def hf_generate(e: OPTEngine, model, prompts: np.ndarray, beams: int, k: int, penalty: float) -> np.ndarray:
    tok = e.dataset().tokenizer
    ids = torch.from_numpy(prompts.astype(np.int64))
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        num_beams=beams,
        min_new_tokens=k,
        max_new_tokens=k,
        repetition_penalty=penalty,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return out[:, ids.shape[1] :].numpy()


# --- generation -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "beams, new_tokens, penalty",
    [(5, 16, 3.0), (3, 16, 1.0), (4, 40, 1.3), (1, 16, 1.5)],  # the paper's; no penalty; long; greedy
)
def test_fast_beam_search_emits_generates_tokens(trained, beams, new_tokens, penalty):
    e, model, _ = trained
    prompts = e.dataset().train[:48]
    ours = beam_search(
        model,
        torch.from_numpy(prompts.astype(np.int64)),
        beams,
        new_tokens,
        penalty,
        [e.dataset().tokenizer.eos_token_id],
    ).numpy()
    theirs = hf_generate(e, model, prompts, beams, new_tokens, penalty)
    assert ours.shape == theirs.shape == (48, new_tokens)
    assert np.array_equal(ours, theirs), f"{(ours != theirs).any(1).sum()} of 48 continuations differ"
    if penalty > 1:  # the penalty keeps this model off its one favourite token: continuations differ
        assert len({tuple(r) for r in ours}) > 24


def test_untrained_model_too():
    e = engine()
    model = e.new_model().eval()
    prompts = e.dataset().train[100:132]
    ours = beam_search(
        model, torch.from_numpy(prompts.astype(np.int64)), 5, 16, 3.0, [e.dataset().tokenizer.eos_token_id]
    )
    assert np.array_equal(ours.numpy(), hf_generate(e, model, prompts, 5, 16, 3.0))


def test_engine_fast_and_hf_generators_agree_across_batches(trained):
    e, model, _ = trained
    prompts = e.dataset().train[:37]
    fast = engine(gen_batch=16).continue_blocks(model, prompts, seed=0)  # 16 + 16 + 5 prompts
    hf = engine(gen_batch=16, generator="hf").continue_blocks(model, prompts, seed=0)
    assert fast.dtype == np.int32 and fast.shape == (37, 16)
    assert np.array_equal(fast, hf)


def test_settings_the_fast_search_lacks_are_refused(trained):
    e, model, _ = trained
    model.generation_config.no_repeat_ngram_size = 3
    try:
        with pytest.raises(DataError, match="no_repeat_ngram_size.*hf"):
            e.continue_blocks(model, e.dataset().train[:4], seed=0)
    finally:
        model.generation_config.no_repeat_ngram_size = None


# --- training -------------------------------------------------------------------------------------
def plain_loop_losses(
    e: OPTEngine, seed_rng: np.random.Generator, no_dropout: bool = False, blocks: np.ndarray | None = None
) -> list[float]:
    """fit's recipe written the plain way: blocks (default: the training set) on the host, unfused AdamW,
    loss.item() every step."""
    p = e.params
    train_seed = int(seed_rng.integers(2**63))
    model = e.new_model()
    if no_dropout:
        switch_off_dropout(model)
    x = torch.from_numpy((e.dataset().train if blocks is None else blocks).astype(np.int64))
    total = math.ceil(len(x) / p.batch) * p.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda(total, p.warmup_steps, p.lr, p.lr_min))
    gen = torch.Generator().manual_seed(train_seed)
    torch.manual_seed(train_seed)
    losses = []
    for _ in range(p.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), p.batch):
            ids = x[order[i : i + p.batch]]
            loss = model(input_ids=ids, labels=ids).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
    return losses


def switch_off_dropout(model) -> None:
    for m in model.modules():
        if isinstance(getattr(m, "dropout", None), float):
            m.dropout = 0.0


def test_training_loop_gives_the_plain_loops_loss_curve(trained):
    e, _, result = trained
    plain = plain_loop_losses(e, np.random.default_rng(1))
    assert len(result.step_losses) == len(plain) == 2 * math.ceil(len(e.dataset().train) / 16)
    np.testing.assert_allclose(result.step_losses, plain, rtol=2e-4)
    assert plain[-1] < plain[0] - 0.5  # it learns
    assert result.train_loss == pytest.approx(plain[-1], rel=2e-4)


def test_compiled_training_gives_the_plain_loops_loss_curve(tmp_path, monkeypatch):
    """torch.compile on the CPU (inductor; about 25 s on 2 cores): the path CUDA runs by default. Dropout
    is off on both sides, since compiled dropout draws other random numbers."""
    import torch._inductor.codecache

    # inductor's precompiled headers (~150 MB) go to /tmp/torchinductor_USER whatever its cache folder
    # (conftest points that at the session's): here, this test's folder
    monkeypatch.setattr(torch._inductor.codecache, "_HEADER_DIR", str(tmp_path / "headers"))
    monkeypatch.setattr(torch._inductor.codecache, "_HEADER_LOCK_DIR", str(tmp_path / "headers" / "locks"))
    e = engine(compile="on")
    build = e.new_model

    def new_model():
        m = build()
        switch_off_dropout(m)
        return m

    e.new_model = new_model
    # whole batches: static shapes compile a last, shorter batch apart (twice the ~20 s compile)
    blocks = e.dataset().train[: len(e.dataset().train) // FIT["batch"] * FIT["batch"]]
    compiled = train(e, 2, blocks)[1].step_losses
    plain = plain_loop_losses(e, np.random.default_rng(2), no_dropout=True, blocks=blocks)
    # fused kernels round otherwise and training amplifies it: 1e-6 at first, 1.2e-3 at worst by step 62
    np.testing.assert_allclose(compiled[:10], plain[:10], rtol=1e-5)
    np.testing.assert_allclose(compiled, plain, rtol=2e-3)
    assert plain[-1] < plain[0] - 0.5


def test_bf16_autocast_path_runs_on_the_cpu_and_stays_close_to_fp32(trained):
    """precision = "bf16" is what a CUDA run takes by default: bf16 forward passes and KV cache, fp32 scores."""
    e32, _, fp32_result = trained
    e = engine(precision="bf16")
    model, result = train(e, 1)
    np.testing.assert_allclose(result.step_losses, fp32_result.step_losses, rtol=0.02)
    prompts = e.dataset().train[:64]
    bf16, fp32 = e.continue_blocks(model, prompts, seed=0), e32.continue_blocks(model, prompts, seed=0)
    assert bf16.shape == fp32.shape == (64, 16)
    assert (bf16 == fp32).mean() > 0.6  # rounding moves near-ties, not the search


@pytest.mark.parametrize("epochs, steps_per_epoch", [(5, 7), (10, 3)])
def test_epoch_schedule_is_the_official_codes_cosine_annealing(epochs, steps_per_epoch):
    """schedule = "epoch": the lr of every step equals torch's CosineAnnealingLR(T_max=epochs, eta_min) stepped
    at each epoch's end, as the official code's Lightning loop does."""
    lr, lr_min, total = 2e-5, 1e-6, epochs * steps_per_epoch
    w = torch.nn.Parameter(torch.zeros(1))
    ours = torch.optim.AdamW([w], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(ours, cosine_lambda(total, 0, lr, lr_min, epochs))
    theirs = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    official = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=epochs, eta_min=lr_min)
    got, want = [], []
    for step in range(total):
        got.append(ours.param_groups[0]["lr"])
        want.append(theirs.param_groups[0]["lr"])
        sched.step()
        if (step + 1) % steps_per_epoch == 0:
            official.step()
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert got[0] == lr and got[-1] < 0.2 * lr and len(set(got)) == epochs


def test_a_failing_compile_says_which_key_turns_it_off(monkeypatch):
    def broken_backend(graph, inputs):
        raise RuntimeError("no working compiler here")

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend=broken_backend))
    e = engine(compile="on")
    with pytest.raises(DataError) as err:
        e.fit(e.dataset().train[None], [np.random.default_rng(0)], lambda *a: None)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("engine.compile:") and "no working compiler here" in msg
    assert msg.endswith('set engine.compile = "off"')

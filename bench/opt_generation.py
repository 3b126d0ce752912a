"""Benchmark: one generation of the paper's OPT-125m on WikiText-2 experiment, per phase, as the plain
Hugging Face recipe runs it (as the paper's official code: a Lightning Trainer fp32 loop with the data on the host and
a .item() every step; generate() with 5 beams, 128 prompts a batch; fp32 scoring) and as the opt engine runs
it (OPTEngine.fit, OPTEngine.continue_blocks through engines/opt_beam.py, OPTEngine.block_nll). Both sides
use the same OPT-125m-shaped model with the same random weights (speed does not depend on the weights) and
random token blocks of 64, so nothing is downloaded. Prints tokens/s per phase, whether the engine's beam
search gave generate's tokens, and what one paper generation (5 epochs over the 37.4k training blocks, every
training block continued by 64 tokens, the evaluation passes) would take at the measured rates.

    .venv/bin/python bench/opt_generation.py --shape tiny                  # CPU smoke test, under a minute
    .venv/bin/python bench/opt_generation.py --device cpu                  # OPT-125m shape, tiny counts, ~4 min
    .venv/bin/python bench/opt_generation.py --device cuda                 # a GPU: the README's table
    .venv/bin/python bench/opt_generation.py --device cuda --cold          # torch.compile into empty caches

Sizes left at 0 take defaults that depend on the device and the shape (see DEFAULTS).
"""

from __future__ import annotations

import argparse
import atexit
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import machine
import numpy as np
import torch
from transformers import OPTConfig, OPTForCausalLM, get_cosine_schedule_with_warmup

from collapse_tui.engines.lm import EVAL_MAX, OPTEngine, TextData

BLOCK = 64  # the paper's block_size: tokens per training block and new tokens per continuation
# One paper generation. wikitext-2-raw-v1 through OPT's tokenizer (GPT-2 BPE plus the </s> it puts before
# each of the 36,718 / 3,760 / 4,358 rows), cut into blocks of 64 as run_clm does: train about 2.39M tokens,
# valid about 250k, test about 285k. Estimates (no hub access here to count them), good to about 1%.
PAPER_TRAIN_BLOCKS = 37_400  # ~2.39M tokens / 64
PAPER_VALID_BLOCKS = 3_900  # scored once per epoch by fit (best epoch's weights)
PAPER_TEST_BLOCKS = 4_400  # scored once per generation by evaluate (perplexity)
PAPER_EPOCHS = 5
# evaluate scores the test blocks with the new model and EVAL_MAX generated blocks with the generation-0 model
PAPER_EVAL_BLOCKS = PAPER_TEST_BLOCKS + PAPER_EPOCHS * PAPER_VALID_BLOCKS + EVAL_MAX
INIT_SEED = 0
# Why fp32 continuations can differ: random weights give near-flat next-token distributions, so the 5th and
# 6th best candidates of a step can be closer than fp32 resolves in the accumulated scores (spacing 3e-5 at
# -300); both searches keep fp32 scores, and a rounding difference in the forward swaps them. On the tiny
# shape, 1 of 128 differed; an exact fp64 search agreed with generate there, and swapping its 5th and 6th
# candidates at the one step where they were 1.2e-5 apart gave the engine's tokens.
TIES = "fp32: near-ties of the accumulated beam scores, see TIES in the script"

SHAPES = {
    "opt125m": {"vocab_size": 50272, "hidden_size": 768, "num_hidden_layers": 12, "ffn_dim": 3072, "heads": 12},
    "tiny": {"vocab_size": 2000, "hidden_size": 64, "num_hidden_layers": 2, "ffn_dim": 256, "heads": 4},
}
# (device type, shape) -> default sizes. The GPU's engine training gets the paper's partial last batch
# (37,400 = 292 x 128 + 24): with torch.compile it costs a second compile, which the first fit includes.
PARTIAL = PAPER_TRAIN_BLOCKS % 128
DEFAULTS = {
    ("cuda", "opt125m"): dict(
        batch=128,
        train_blocks=256 * 128 + PARTIAL,
        ref_train_blocks=41 * 128,  # the first step warms up and is not timed
        valid_blocks=256,
        gen_prompts=2048,
        ref_gen_prompts=512,
        eval_blocks=4096,
    ),
    # a CPU step of 128 blocks at OPT-125m's shape takes about a minute: batch 16 there
    ("cpu", "opt125m"): dict(
        batch=16, train_blocks=32, ref_train_blocks=48, valid_blocks=8, gen_prompts=8, ref_gen_prompts=4, eval_blocks=64
    ),
    ("cpu", "tiny"): dict(
        batch=128,
        train_blocks=16 * 128,
        ref_train_blocks=9 * 128,
        valid_blocks=64,
        gen_prompts=256,
        ref_gen_prompts=128,
        eval_blocks=2048,
    ),
}
DEFAULTS["cuda", "tiny"] = DEFAULTS["cuda", "opt125m"]


@dataclass
class BenchTokenizer:
    """What the engine reads from a tokenizer when it trains, generates and scores: the special ids and len."""

    vocab: int
    pad_token_id: int = 1
    bos_token_id: int = 2
    eos_token_id: int = 2

    def __len__(self) -> int:
        return self.vocab


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def opt_config(shape: str) -> OPTConfig:
    s = SHAPES[shape]
    return OPTConfig(
        vocab_size=s["vocab_size"],
        hidden_size=s["hidden_size"],
        num_hidden_layers=s["num_hidden_layers"],
        ffn_dim=s["ffn_dim"],
        num_attention_heads=s["heads"],
        max_position_embeddings=2048,
        word_embed_proj_dim=s["hidden_size"],
        do_layer_norm_before=True,
        dropout=0.1,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
    )


def from_start(cfg: OPTConfig, start: dict[str, torch.Tensor], dev: torch.device) -> OPTForCausalLM:
    """A model with the starting weights, as the engine builds one for a pretrained model each generation."""
    model = OPTForCausalLM(cfg)
    model.load_state_dict(start)
    return model.to(dev)


# --- the reference: the official recipe's loops -------------------------------------------------------
def reference_train(model, blocks: np.ndarray, args, dev: torch.device) -> tuple[float, int, float]:
    """What the official code's Trainer does per step (fp32, torch AdamW, cosine schedule, loss.item()),
    data on the host moved per batch. Returns (seconds, timed tokens, last loss); the first step is not timed."""
    model.train()
    steps = math.ceil(len(blocks) / args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)  # weight decay 0.01, torch's default, as the official code
    sched = get_cosine_schedule_with_warmup(opt, 0, steps)
    data = torch.from_numpy(np.ascontiguousarray(blocks, dtype=np.int64))
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    t, tokens, loss_v = time.perf_counter(), 0, math.nan
    for step, i in enumerate(range(0, len(data), args.batch)):
        if step == 1:  # the first step warms up (allocator, kernels) and is not timed
            sync(dev)
            t, tokens = time.perf_counter(), 0
        ids = data[order[i : i + args.batch]].to(dev)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if args.ref_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.ref_clip)
        opt.step()
        sched.step()
        model.zero_grad()
        loss_v = loss.item()  # Trainer's logging
        tokens += ids.numel()
    sync(dev)
    return time.perf_counter() - t, tokens, loss_v


def reference_generate(model, prompts: np.ndarray, engine: OPTEngine, batch: int, dev: torch.device) -> np.ndarray:
    """The paper's generate call, batch prompts at a time, fp32; the new tokens, (n, new_tokens) int32."""
    p, k = engine.params, engine.new_tokens
    model.eval()
    out = np.zeros((len(prompts), k), dtype=np.int32)
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            ids = torch.from_numpy(np.ascontiguousarray(prompts[i : i + batch], dtype=np.int64)).to(dev)
            new = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                num_beams=p.num_beams,
                min_new_tokens=k,
                max_new_tokens=k,
                repetition_penalty=p.repetition_penalty,
                do_sample=False,
                pad_token_id=1,
                eos_token_id=2,
            )[:, ids.shape[1] :]
            out[i : i + len(ids)] = new.cpu().numpy()
    return out


def reference_nll(model, blocks: np.ndarray, batch: int, dev: torch.device) -> np.ndarray:
    """Mean NLL per predicted token of each block: fp32 logits, log_softmax, gather."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(blocks), batch):
            ids = torch.from_numpy(np.ascontiguousarray(blocks[i : i + batch], dtype=np.int64)).to(dev)
            logp = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), dim=-1)
            nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
            out.append(nll.double().mean(dim=1).cpu())
    return torch.cat(out).numpy()


# --- the engine ---------------------------------------------------------------------------------------
def make_engine(args, cfg: OPTConfig, start: dict[str, torch.Tensor], data: TextData) -> OPTEngine:
    params = dict(
        model="tiny",
        epochs=args.epochs,
        batch=args.batch,
        weight_decay=0.01,  # as the opt125m presets
        block_size=BLOCK,
        compile=args.compile,
        precision=args.precision,
    )
    if args.gen_batch:
        params["gen_batch"] = args.gen_batch
    if args.eval_batch:
        params["eval_batch"] = args.eval_batch
    engine = OPTEngine(params, device=args.device)
    engine._data = data
    dev = engine._dev()
    engine.new_model = lambda: from_start(cfg, start, dev)  # instead of the hub's weights
    return engine


def timed(dev: torch.device, fn, *a):
    sync(dev)
    t = time.perf_counter()
    out = fn(*a)
    sync(dev)
    return time.perf_counter() - t, out


def quiet(*args: object) -> None:
    pass


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def inductor_cache(cold: bool) -> str:
    """--cold: empty caches for this run; else whether the on-disk compile cache already holds entries."""
    if cold:
        fresh = tempfile.mkdtemp(prefix="opt_bench_inductor_")
        atexit.register(shutil.rmtree, fresh, True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = fresh
        os.environ["TRITON_CACHE_DIR"] = os.path.join(fresh, "triton")
        return f"cold (--cold: empty {fresh})"
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    d = Path(cache_dir())
    n = sum(1 for _ in d.iterdir()) if d.is_dir() else 0
    return f"{'warm' if n else 'cold'} ({d} {'holds entries' if n else 'is empty'}; --cold for an empty one)"


# --- the run ------------------------------------------------------------------------------------------
def fmt_s(s: float) -> str:
    return f"{s:,.0f} s" if s >= 100 else f"{s:.1f} s"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--shape", default="opt125m", choices=tuple(SHAPES))
    p.add_argument("--train-blocks", type=int, default=0, help="engine: training blocks per timed fit")
    p.add_argument("--ref-train-blocks", type=int, default=0, help="reference: training blocks (first step untimed)")
    p.add_argument("--valid-blocks", type=int, default=0, help="validation blocks fit scores each epoch")
    p.add_argument("--gen-prompts", type=int, default=0, help="engine: prompts continued")
    p.add_argument("--ref-gen-prompts", type=int, default=0, help="reference: prompts continued by generate")
    p.add_argument("--eval-blocks", type=int, default=0, help="blocks scored, each side")
    p.add_argument("--epochs", type=int, default=1, help="engine: epochs per timed fit")
    p.add_argument("--batch", type=int, default=0, help="blocks per optimizer step, both sides (0: 128; CPU 125m: 16)")
    p.add_argument("--gen-batch", type=int, default=0, help="engine: prompts per beam search batch (0: its default)")
    p.add_argument("--ref-gen-batch", type=int, default=128, help="reference: prompts per generate call")
    p.add_argument("--eval-batch", type=int, default=0, help="engine: blocks per scoring pass (0: its default)")
    p.add_argument("--ref-eval-batch", type=int, default=128, help="reference: blocks per scoring pass")
    p.add_argument(
        "--ref-clip", type=float, default=0.0, help="reference: clip the gradient norm (Hugging Face Trainer's 1.0)"
    )
    p.add_argument("--compile", default="auto", choices=("auto", "on", "off"), help="engine.compile")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="engine.precision")
    p.add_argument("--cold", action="store_true", help="compile into empty inductor and triton caches")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument(
        "--folder",
        help="a local OPT folder (python -m collapse_tui.engines.opt_local DIR builds one at OPT-125m's shape with "
        "GPT-2's tokenizer): its config, weights and tokenizer instead of --shape's random ones",
    )
    args = p.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    for key, value in DEFAULTS[(dev.type, args.shape)].items():
        if not getattr(args, key):
            setattr(args, key, value)

    # data and weights, shared by both sides
    if args.folder:
        from transformers import AutoTokenizer

        init = OPTForCausalLM.from_pretrained(args.folder, local_files_only=True, dtype=torch.float32)
        cfg, tokenizer = init.config, AutoTokenizer.from_pretrained(args.folder, local_files_only=True)
        vocab = len(tokenizer)  # the ids a block can hold
    else:
        cfg = opt_config(args.shape)
        vocab = cfg.vocab_size
        tokenizer = BenchTokenizer(vocab)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            init = OPTForCausalLM(cfg)
    rng = np.random.default_rng(0)
    n_train = max(args.train_blocks, args.ref_train_blocks, args.gen_prompts, args.ref_gen_prompts)
    data = TextData(
        tokenizer=tokenizer,
        train=rng.integers(4, vocab, size=(n_train, BLOCK), dtype=np.int32),
        valid=rng.integers(4, vocab, size=(args.valid_blocks, BLOCK), dtype=np.int32),
        test=rng.integers(4, vocab, size=(args.eval_blocks, BLOCK), dtype=np.int32),
        rare=np.zeros(cfg.vocab_size, dtype=bool),
    )
    start = {k: v.detach().clone() for k, v in init.state_dict().items()}
    attn = init.config._attn_implementation
    del init
    engine = make_engine(args, cfg, start, data)
    bf16 = engine._bf16()
    n_params = sum(v.numel() for k, v in start.items() if k != "lm_head.weight")  # lm_head is tied
    shape = f"the folder {args.folder}" if args.folder else f"{args.shape} shape"
    print(f"machine: {machine.torch_device(dev)}")
    print(
        f"model: OPT, {shape} ({n_params / 1e6:.1f}M parameters, vocab {vocab}), random weights, "
        f"attention {attn}; blocks of {BLOCK} random tokens"
    )
    print(
        f"engine: {'bf16 autocast' if bf16 else 'fp32'}, compile {'on' if engine._compiles() else 'off'}, "
        f"batch {args.batch}, gen_batch {engine.params.gen_batch}, eval_batch {engine.params.eval_batch}; "
        f"reference: fp32, batch {args.batch}, generate {args.ref_gen_batch} prompts a call, "
        f"scoring {args.ref_eval_batch} blocks a pass, clip {args.ref_clip or 'off'}",
        flush=True,
    )
    cache = inductor_cache(args.cold) if engine._compiles() else ""
    if cache:
        print(f"torch.compile cache: {cache}", flush=True)
    rates: dict[str, tuple[float, float]] = {}  # phase -> (reference, engine) tokens/s

    # 1. train
    ref_model = from_start(cfg, start, dev)
    ref_s, ref_tok, ref_loss = reference_train(ref_model, data.train[: args.ref_train_blocks], args, dev)
    del ref_model
    train = data.train[: args.train_blocks]
    build_s, model = timed(dev, engine.new_model)
    del model
    fits, graphs = [], []
    if not engine._compiles():  # warm up on one batch; with compile the first full fit is the warm-up
        timed(dev, engine.fit, train[: args.batch][None], [np.random.default_rng(0)], quiet)
    for _ in range(2 if engine._compiles() else 1):
        before = graphs_compiled()
        s, fitted = timed(dev, engine.fit, train[None], [np.random.default_rng(0)], quiet)
        model = fitted.model
        fits.append(s)
        graphs.append(graphs_compiled() - before)
    engine.block_nll(model, data.valid[:1])
    valid_s, _ = timed(dev, engine.block_nll, model, data.valid)
    del model
    fit_s = fits[-1]
    eng_train_s = fit_s - args.epochs * valid_s - build_s
    if eng_train_s <= 0.1 * fit_s:
        print("warning: the engine's fit is mostly model build and validation here; give it more --train-blocks")
        eng_train_s = max(eng_train_s, 1e-6)
    compile_s = fits[0] - fits[-1] if len(fits) == 2 else 0.0
    eng_tok = args.epochs * train.size
    rates["train"] = (ref_tok / ref_s, eng_tok / eng_train_s)
    print(
        f"train: reference {ref_tok:,} tokens ({ref_tok // (args.batch * BLOCK)} timed steps) in {ref_s:.2f} s, "
        f"last loss {ref_loss:.3f}; engine fit of {len(train):,} blocks x {args.epochs} epoch(s) in {fit_s:.2f} s "
        f"= model build {build_s:.2f} s + {args.epochs} validation pass(es) of {len(data.valid)} blocks "
        f"{valid_s:.2f} s each + training {eng_train_s:.2f} s"
        + (
            f"; first fit {fits[0]:.1f} s (compile {compile_s:.1f} s); graphs compiled: {graphs[0]} by the "
            f"first fit, {graphs[1]} by the second"
            if len(fits) == 2
            else ""
        ),
        flush=True,
    )

    # 2. generate: both from the starting weights, the same prompts (the engine runs more of them)
    ref_model = from_start(cfg, start, dev)
    model = engine.new_model()
    prompts = data.train
    reference_generate(ref_model, prompts[:1], engine, args.ref_gen_batch, dev)  # warm-up
    engine.continue_blocks(model, prompts[:1], 0)
    ref_gen_s, ref_new = timed(
        dev, reference_generate, ref_model, prompts[: args.ref_gen_prompts], engine, args.ref_gen_batch, dev
    )
    eng_gen_s, eng_new = timed(dev, engine.continue_blocks, model, prompts[: args.gen_prompts], 0)
    rates["generate"] = (ref_new.size / ref_gen_s, eng_new.size / eng_gen_s)
    both = min(len(ref_new), len(eng_new))
    same = (ref_new[:both] == eng_new[:both]).all(axis=1)
    tok_same = float((ref_new[:both] == eng_new[:both]).mean())
    print(
        f"generate: reference {len(ref_new):,} prompts in {ref_gen_s:.2f} s, engine {len(eng_new):,} in "
        f"{eng_gen_s:.2f} s; same tokens as generate: {same.sum()}/{both} continuations "
        f"({same.mean():.1%}), {tok_same:.1%} of tokens"
        + ("" if same.all() else f" ({TIES if not bf16 else 'bf16 rounds differently from fp32'})"),
        flush=True,
    )

    # 3. evaluate
    blocks = data.test
    reference_nll(ref_model, blocks[:1], args.ref_eval_batch, dev)  # warm-up
    engine.block_nll(model, blocks[:1])
    ref_ev_s, ref_nll = timed(dev, reference_nll, ref_model, blocks, args.ref_eval_batch, dev)
    eng_ev_s, eng_nll = timed(dev, engine.block_nll, model, blocks)
    rates["evaluate"] = (blocks.size / ref_ev_s, blocks.size / eng_ev_s)
    print(
        f"evaluate: {len(blocks):,} blocks, reference {ref_ev_s:.2f} s, engine {eng_ev_s:.2f} s; "
        f"max |NLL difference| {np.abs(ref_nll - eng_nll).max():.2e} (mean NLL {ref_nll.mean():.3f})",
        flush=True,
    )

    # one paper generation at these rates
    work = {
        "train": PAPER_EPOCHS * PAPER_TRAIN_BLOCKS * BLOCK,
        "generate": PAPER_TRAIN_BLOCKS * BLOCK,
        "evaluate": PAPER_EVAL_BLOCKS * BLOCK,
    }
    what = {
        "train": f"{PAPER_EPOCHS} x {PAPER_TRAIN_BLOCKS:,} blocks",
        "generate": f"{PAPER_TRAIN_BLOCKS:,} x {BLOCK} new",
        "evaluate": (
            f"{PAPER_EVAL_BLOCKS:,} blocks: test {PAPER_TEST_BLOCKS:,} + {PAPER_EPOCHS} x valid "
            f"{PAPER_VALID_BLOCKS:,} + {EVAL_MAX:,} generated"
        ),
    }
    ref_total = sum(work[k] / rates[k][0] for k in work)
    eng_total = sum(work[k] / rates[k][1] for k in work)
    dtype = "bf16 autocast" if bf16 else "fp32"
    print()
    print(f"device: {machine.torch_device(dev)}; engine {dtype}, reference fp32; {shape}")
    print()
    print("| phase | reference (HF, fp32) | engine | speed-up |")
    print("|---|---|---|---|")
    units = {"train": "tokens/s", "generate": "new tokens/s", "evaluate": "tokens/s"}
    for k, (r, e) in rates.items():
        print(f"| {k} | {r:,.0f} {units[k]} | {e:,.0f} {units[k]} | {e / r:.1f}x |")
    for k in work:
        r, e = work[k] / rates[k][0], work[k] / rates[k][1]
        print(f"| paper generation: {k} ({what[k]}) | {fmt_s(r)} | {fmt_s(e)} | {r / e:.1f}x |")
    print(
        f"| **paper generation, total** | **{fmt_s(ref_total)}** | **{fmt_s(eng_total)}** | "
        f"**{ref_total / eng_total:.1f}x** |"
    )
    extra = f"model build {build_s:.1f} s per fit"
    if len(fits) == 2:
        extra += f"; torch.compile {compile_s:.1f} s, the first fit of a process ({cache.split(' (')[0]} cache)"
    print(f"| engine, fixed costs not above | | {extra} | |")
    print()
    print(
        f"measured on: train reference {ref_tok:,} tokens / engine {eng_tok:,}; generate "
        f"{ref_new.size:,} / {eng_new.size:,} new tokens; evaluate {blocks.size:,} tokens each; "
        f"same continuations: {same.mean():.1%} of {both}"
    )


if __name__ == "__main__":
    main()

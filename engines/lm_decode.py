"""Fast decoding for any causal language model whose KV cache it can drive: the text engines' synthetic data.

It gives the tokens of transformers' `generate(num_beams, repetition_penalty, do_sample, temperature, top_k,
top_p, min_p, min_new_tokens = max_new_tokens = k)` (tests/test_lm_decode.py checks them token for token
in fp32 on OPT, GPT-2, GPT-NeoX and Llama) through the model's own forward and a transformers DynamicCache,
without generate's per-step overheads:
- the prompt is run once per prompt, not once per beam; its cache is then repeated for the beams into
  buffers sized for every new token, which a step writes in place, and following the beams copies only
  the new positions;
- the repetition penalty is a (beams, vocab) presence mask, reordered with the beams, not a scatter over
  the whole sequence every step; no (beams, max_length) sequence buffers, no stopping criteria, no host
  sync inside the loop: the tokens come back once per batch.
The scores are made as generate makes them (its logits processors, in its order): the penalty and the
end-of-text ban act on log-probabilities in beam search and on logits without beams; sampling then applies
temperature, top-k, top-p and min-p. Beam search keeps the best num_beams of the beams' continuations,
beam sampling draws 2 x num_beams of them without replacement (torch.multinomial, as generate) and keeps the
best num_beams; all beams have the same length, so the length penalty and early stopping change nothing and
the best last beam is returned. Random draws come from the torch.Generator passed in, in generate's order,
so a generator seeded as generate's global one gives generate's tokens.
Models whose cache is not a DynamicCache of attention layers (recurrent or hybrid caches) are left to generate.
torch is imported here; the engines import this module only when they generate.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

from .base import DataError

# generation_config settings that add logits processors this decoder does not apply (the neutral values pass)
UNSUPPORTED = (
    "no_repeat_ngram_size",
    "bad_words_ids",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "suppress_tokens",
    "begin_suppress_tokens",
    "sequence_bias",
    "encoder_repetition_penalty",
    "exponential_decay_length_penalty",
    "renormalize_logits",
)
UNSUPPORTED_SAMPLING = ("typical_p", "epsilon_cutoff", "eta_cutoff", "top_h")  # warpers: only when sampling
BEAM_PENALTY = -1e9  # generate's score for the beams that do not exist yet at the first step


@dataclass(frozen=True)
class Decoding:
    """What generates the continuations: exactly new_tokens tokens each."""

    num_beams: int
    new_tokens: int
    repetition_penalty: float = 1.0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k
    top_p: float = 1.0
    min_p: float = 0.0  # 0: no min-p

    def generate_kwargs(self) -> dict[str, Any]:
        """The same settings as keywords of transformers' generate (its default top_k of 50 switched off)."""
        kw: dict[str, Any] = {
            "num_beams": self.num_beams,
            "min_new_tokens": self.new_tokens,
            "max_new_tokens": self.new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "do_sample": self.do_sample,
        }
        if self.do_sample:  # every one set: a model's generation_config may set its own (min_p 0 drops nothing)
            kw.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, min_p=self.min_p)
        return kw


def unsupported_settings(model, sampling: bool = False) -> list[str]:
    """The model's generation_config settings that would make generate differ from this decoder."""
    cfg = model.generation_config
    keys = UNSUPPORTED + (UNSUPPORTED_SAMPLING if sampling else ())
    return [k for k in keys if not _neutral(getattr(cfg, k, None))]


def _neutral(value: Any) -> bool:
    return value is None or value is False or (not isinstance(value, bool) and value in (0, 1.0, [], ()))


def undrivable(model) -> str | None:
    """Why this decoder cannot drive the model's cache (generate then decodes), or None when it can."""
    name = type(model).__name__
    if model.config.is_encoder_decoder:
        return f"{name} is an encoder-decoder model"
    supports = getattr(model, "_supports_default_dynamic_cache", lambda: True)
    if not supports() or hasattr(model, "_reorder_cache"):
        return f"{name} keeps a cache of its own"
    layers = _new_cache(model).layers
    other = sorted({type(la).__name__ for la in layers if type(la) not in (DynamicLayer, DynamicSlidingWindowLayer)})
    return f"{name}'s cache has {', '.join(other)} layers" if other else None


def _new_cache(model) -> DynamicCache:
    """The cache generate would make: its layers follow the config (full attention, sliding windows, ...)."""
    return DynamicCache(config=model.config)


class _Forward:
    """One call of the model's own forward on new tokens, its DynamicCache updated in place; the last
    position's logits in float32."""

    def __init__(self, model):
        self.model, self.cache = model, _new_cache(model)
        params = inspect.signature(model.forward).parameters
        self.kw: dict[str, Any] = {"cache" if "cache" in params else "past_key_values": self.cache, "use_cache": True}
        if "logits_to_keep" in params:  # the prompt pass computes one position's logits, not P
            self.kw["logits_to_keep"] = 1

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, **self.kw).logits[:, -1].float()

    def expand(self, beams: int, new_tokens: int) -> None:
        """After the prompt pass: each full-attention layer's cache becomes a _BeamLayer of beams rows per
        prompt; other layers (sliding windows) repeat theirs."""
        layers = self.cache.layers
        for i, layer in enumerate(layers):
            if type(layer) is DynamicLayer:
                layers[i] = _BeamLayer(layer, beams, new_tokens)
            else:
                layer.batch_repeat_interleave(beams)


class _BeamLayer(DynamicLayer):
    """A full-attention layer's keys and values in buffers sized for the prompt and every new token, a
    prompt's rows repeated for its beams: a step writes its position in place (no concatenation), and
    following the beams copies only the new positions (a prompt's beams share the prompt's, which no
    reordering moves: a beam always continues a beam of the same prompt)."""

    def __init__(self, layer: DynamicLayer, beams: int, new_tokens: int):
        super().__init__()
        n, heads, self.prompt_len, dim = layer.keys.shape
        self.length = self.prompt_len
        self.buffers = []
        for x in (layer.keys, layer.values):
            buf = x.new_empty(n * beams, heads, self.prompt_len + new_tokens, dim)
            buf[:, :, : self.prompt_len] = x.repeat_interleave(beams, dim=0)
            self.buffers.append(buf)
        self.device, self.is_initialized = layer.device, True
        self._views()

    def _views(self) -> None:
        self.keys, self.values = (b[:, :, : self.length] for b in self.buffers)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        for buf, x in zip(self.buffers, (key_states, value_states)):
            buf[:, :, self.length : end] = x
        self.length = end
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        for buf in self.buffers:
            new = buf[:, :, self.prompt_len : self.length]
            new.copy_(new.index_select(0, beam_idx))


def _top_k(scores: torch.Tensor, k: int) -> torch.Tensor:  # TopKLogitsWarper
    k = min(k, scores.shape[-1])
    return scores.masked_fill(scores < torch.topk(scores, k)[0][..., -1, None], -float("inf"))


def _top_p(scores: torch.Tensor, p: float, keep: int) -> torch.Tensor:  # TopPLogitsWarper
    sorted_scores, order = torch.sort(scores, descending=False)
    drop = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= (1 - p)
    drop[..., -keep:] = False
    return scores.masked_fill(drop.scatter(1, order, drop), -float("inf"))


def _min_p(scores: torch.Tensor, p: float, keep: int) -> torch.Tensor:  # MinPLogitsWarper
    probs = torch.softmax(scores, dim=-1)
    drop = probs < p * probs.amax(dim=-1, keepdim=True)
    drop.scatter_(-1, torch.topk(probs, min(keep, probs.shape[-1]), dim=-1).indices, False)
    return scores.masked_fill(drop, -float("inf"))


def best_of(total: torch.Tensor, n_eos: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of (B, candidates) scores and their indices, as generate takes them: the best
    max(2, 1 + n_eos) x k first, then the best k of those, so that exact ties (fp32 sums of log-probs do
    tie) fall as in generate."""
    top, idx = torch.topk(total, max(2, 1 + n_eos) * k)
    top, best = torch.topk(top, k)
    return top, idx.gather(1, best)


def process(scores: torch.Tensor, seen: torch.Tensor, d: Decoding, eos: torch.Tensor, keep: int) -> torch.Tensor:
    """generate's logits processors in its order on (n, vocab) float32 scores (log-probs with beams, logits
    without): repetition penalty on the seen tokens, end-of-text ban, then the sampling warpers, which keep
    at least keep tokens (generate's min_tokens_to_keep)."""
    if d.repetition_penalty != 1.0:
        p = d.repetition_penalty
        scores = torch.where(seen, torch.where(scores < 0, scores * p, scores / p), scores)
    scores = scores.index_fill(1, eos, -float("inf"))
    if d.do_sample:
        if d.temperature != 1.0:
            scores = scores / d.temperature
        if d.top_k:
            scores = _top_k(scores, max(d.top_k, keep))
        if d.top_p < 1.0:
            scores = _top_p(scores, d.top_p, keep)
        if d.min_p > 0:
            scores = _min_p(scores, d.min_p, keep)
    return scores


@torch.no_grad()
def decode(
    model, prompts: torch.Tensor, d: Decoding, eos_token_ids: list[int], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Exactly d.new_tokens new tokens for each of the (B, P) prompts (no padding), (B, new_tokens): the best
    of d.num_beams beams, or with one beam the greedy or sampled tokens. The forward runs in the caller's
    autocast; scores are float32. generator: the random draws when sampling."""
    forward = _Forward(model)
    eos = torch.tensor(eos_token_ids, device=prompts.device, dtype=torch.long)
    logits = forward(prompts)
    seen = torch.zeros(logits.shape, dtype=torch.bool, device=prompts.device).scatter_(1, prompts, True)
    if d.num_beams == 1:
        return _one_beam(forward, logits, seen, d, eos, generator)
    return _beams(forward, logits, seen, d, eos, generator)


def _one_beam(forward, logits, seen, d: Decoding, eos, generator) -> torch.Tensor:
    """generate's greedy search (argmax) or multinomial sampling (one draw per prompt and step)."""
    forward.expand(1, d.new_tokens)
    seq = torch.empty(len(logits), d.new_tokens, dtype=torch.long, device=logits.device)
    rows = torch.arange(len(logits), device=logits.device)
    for t in range(d.new_tokens):
        scores = process(logits, seen, d, eos, 1)
        if d.do_sample:
            tokens = torch.multinomial(F.softmax(scores, dim=-1), 1, generator=generator)[:, 0]
        else:
            tokens = torch.argmax(scores, dim=-1)
        seq[:, t] = tokens
        seen[rows, tokens] = True
        if t + 1 < d.new_tokens:
            logits = forward(tokens[:, None])
    return seq


def _beams(forward, logits, seen, d: Decoding, eos, generator) -> torch.Tensor:
    """generate's beam search or beam sampling; the prompt's cache is repeated for the beams once."""
    b, vocab = logits.shape
    k, dev = d.num_beams, logits.device
    keep = max(2, 1 + len(eos))  # generate's min_tokens_to_keep with beams, and the candidates per beam
    forward.expand(k, d.new_tokens)
    logits, seen = logits.repeat_interleave(k, dim=0), seen.repeat_interleave(k, dim=0)
    running = torch.full((b, k), BEAM_PENALTY, device=dev)  # only the first beam is live at the first step
    running[:, 0] = 0.0
    running = running.view(-1)
    seq = torch.empty(b * k, d.new_tokens, dtype=torch.long, device=dev)
    rows = torch.arange(b * k, device=dev)
    first_beam = torch.arange(b, device=dev)[:, None] * k
    for t in range(d.new_tokens):
        scores = process(torch.log_softmax(logits, dim=-1), seen, d, eos, keep)
        total = (scores + running[:, None]).view(b, k * vocab)
        if d.do_sample:  # keep*k candidates drawn without replacement, sorted by score
            idx = torch.multinomial(F.softmax(total, dim=-1), keep * k, generator=generator)
            top, order = total.gather(1, idx).sort(dim=-1, descending=True)
            idx = idx.gather(1, order)
            top, best = torch.topk(top, k)
            idx = idx.gather(1, best)
        else:
            top, idx = best_of(total, len(eos), k)
        parent = (first_beam + idx // vocab).view(-1)  # the beam each new beam continues
        tokens, running = (idx % vocab).view(-1), top.view(-1)
        seq, seen = seq[parent], seen[parent]
        seq[:, t] = tokens
        seen[rows, tokens] = True
        if t + 1 < d.new_tokens:
            forward.cache.reorder_cache(parent)
            logits = forward(tokens[:, None])
    return seq.view(b, k, d.new_tokens)[:, 0]  # sorted: beam 0 scores best


def continuer(
    model,
    d: Decoding,
    eos_token_ids: list[int],
    pad_token_id: int | None,
    fast: bool,
    generator: torch.Generator,
    bf16: bool,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], str | None]:
    """The function that continues a (B, P) batch of prompts by d, and why generate does it when fast was
    asked for (None otherwise): this decoder, OPT's own beam search (engines/opt_beam.py: faster, it shares
    the prompt's keys and values between the beams inside attention), or transformers' generate."""
    why = undrivable(model) if fast else None
    if fast and why is None:
        if bad := unsupported_settings(model, d.do_sample):
            raise DataError(f'engine.generator: the model\'s generation_config sets {", ".join(bad)}; set "hf"')
        if type(model).__name__ == "OPTForCausalLM" and not d.do_sample:
            from .opt_beam import beam_search

            dtype = torch.bfloat16 if bf16 else None
            return lambda ids: beam_search(
                model, ids, d.num_beams, d.new_tokens, d.repetition_penalty, eos_token_ids, dtype
            ), None
        return lambda ids: decode(model, ids, d, eos_token_ids, generator), None
    kw = {**d.generate_kwargs(), "pad_token_id": pad_token_id, "eos_token_id": eos_token_ids or None}
    return lambda ids: model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)[:, ids.shape[1] :], why

"""Batched beam search over an OPT model's own weights: the OPT engine's fast path for the synthetic data.

It gives the tokens of transformers' `generate(num_beams=K, repetition_penalty=p, min_new_tokens =
max_new_tokens = k)` (tests/test_opt_fast.py checks them token for token in fp32) without its
per-step overheads:
- a preallocated KV cache per batch; a prompt's keys and values are computed once and shared by its
  K beams (prompts are whole training blocks, so there is no padding); the generated positions are
  stored position-major, so that following the surviving beams copies only the positions filled so
  far, as whole rows, into a second buffer (memory traffic, not arithmetic, bounds this step);
- the repetition penalty is a (beams, vocab) presence mask, reordered with the beams;
- no host sync inside the loop: the tokens come back once per batch.
As in generate, the penalty and the end-of-text ban (min_new_tokens) act on log-probabilities (on logits
with one beam: greedy search), a beam's score is the sum of its penalised log-probabilities, and the best
of the last K beams is returned (all have the same length, so the length penalty cannot change the
order). Sampling and the other architectures: engines/lm_decode.py, which also checks the model's
generation_config. torch is imported here; the engine imports this module only when it generates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .lm_decode import Decoding, best_of, process


class OPTDecoder:
    """The forward pass of an OPTForCausalLM (weights shared, not copied), split into a prompt pass that
    fills a per-prompt cache and a one-token step that attends to it and to each beam's own cache."""

    def __init__(self, model):
        dec = model.model.decoder
        self.dec, self.lm_head = dec, model.lm_head
        attn = dec.layers[0].self_attn
        self.heads, self.head_dim, self.scaling = attn.num_heads, attn.head_dim, attn.scaling
        self.pos_offset = dec.embed_positions.offset

    def _embed(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        h = self.dec.embed_tokens(ids)
        if self.dec.project_in is not None:
            h = self.dec.project_in(h)
        pos = torch.arange(start, start + ids.shape[1], device=ids.device) + self.pos_offset
        return h + self.dec.embed_positions.weight[pos]

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        if self.dec.final_layer_norm is not None:
            h = self.dec.final_layer_norm(h)
        if self.dec.project_out is not None:
            h = self.dec.project_out(h)
        return self.lm_head(h)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (n, t, D) -> (n, H, t, d)
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def _layer(self, layer, h: torch.Tensor, attend) -> torch.Tensor:
        """One decoder layer (pre- or post-norm, as the config says); attend(q, k, v) -> (n, H, t, d)."""
        a = layer.self_attn
        x = layer.self_attn_layer_norm(h) if layer.do_layer_norm_before else h
        q = self._split(a.q_proj(x) * self.scaling)
        o = attend(q, self._split(a.k_proj(x)), self._split(a.v_proj(x)))
        h = h + a.out_proj(o.transpose(1, 2).reshape(h.shape))
        if not layer.do_layer_norm_before:
            h = layer.self_attn_layer_norm(h)
        x = layer.final_layer_norm(h) if layer.do_layer_norm_before else h
        h = h + layer.fc2(layer.activation_fn(layer.fc1(x)))
        return h if layer.do_layer_norm_before else layer.final_layer_norm(h)

    def prompt(self, ids: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        """Causal pass over (B, P) prompts; fills cache (layers, 2, B, H, P, d); the last position's logits."""

        def attend(i):
            def f(q, k, v):
                cache[i, 0], cache[i, 1] = k, v
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)  # q is scaled

            return f

        h = self._embed(ids, 0)
        for i, layer in enumerate(self.dec.layers):
            h = self._layer(layer, h, attend(i))
        return self._logits(h[:, -1])

    def step(self, tokens: torch.Tensor, t: int, prompt: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        """One new token per beam, (B*K,), at generated position t: its keys and values go to gen
        (layers, 2, T, B*K, H, d), it attends to its prompt's cache (layers, 2, B, H, P, d) and to
        gen[:, :, :t + 1]. Returns the next-token logits, (B*K, vocab)."""
        n_prompts, plen = prompt.shape[2], prompt.shape[4]
        k = tokens.shape[0] // n_prompts
        heads, d = self.heads, self.head_dim

        def attend(i):
            def f(q, kn, vn):
                gen[i, 0, t], gen[i, 1, t] = kn[:, :, 0], vn[:, :, 0]
                kg, vg = (gen[i, j, : t + 1].permute(1, 2, 0, 3) for j in (0, 1))  # (B*K, H, t+1, d)
                qp = q.view(n_prompts, k, heads, d).transpose(1, 2)  # (B, H, K, d): a prompt's beams together
                sp = (qp @ prompt[i, 0].transpose(-1, -2)).transpose(1, 2).reshape(-1, heads, plen)
                sg = (q @ kg.transpose(-1, -2))[:, :, 0]  # (B*K, H, t+1)
                w = torch.softmax(torch.cat([sp, sg], dim=-1).float(), dim=-1).to(q.dtype)
                wp = w[..., :plen].view(n_prompts, k, heads, plen).transpose(1, 2)
                op = (wp @ prompt[i, 1]).transpose(1, 2).reshape(-1, heads, d)
                og = (w[..., None, plen:] @ vg)[:, :, 0]
                return (op + og)[:, :, None]

            return f

        h = self._embed(tokens[:, None], plen + t)
        for i, layer in enumerate(self.dec.layers):
            h = self._layer(layer, h, attend(i))
        return self._logits(h[:, 0])


def _scores(logits: torch.Tensor, seen: torch.Tensor, d: Decoding, eos: torch.Tensor) -> torch.Tensor:
    """Next-token scores as generate makes them (lm_decode.process): its penalty and end-of-text ban act on
    log-probs in beam search, on raw logits in greedy search."""
    logp = logits.float()
    return process(torch.log_softmax(logp, dim=-1) if d.num_beams > 1 else logp, seen, d, eos, 1)


@torch.no_grad()
def beam_search(
    model,
    prompts: torch.Tensor,
    num_beams: int,
    new_tokens: int,
    repetition_penalty: float,
    eos_token_ids: list[int],
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The best of num_beams beams for each (B, P) prompt: exactly new_tokens new tokens, (B, new_tokens).
    dtype: the cache's and the forward's (bf16 under autocast); log-probs and scores are float32."""
    dec, dev = OPTDecoder(model), prompts.device
    b, plen = prompts.shape
    k, vocab = num_beams, model.lm_head.out_features
    layers = len(dec.dec.layers)
    dtype = dtype or model.lm_head.weight.dtype
    eos = torch.tensor(eos_token_ids, device=dev, dtype=torch.long)
    cache = torch.empty(layers, 2, b, dec.heads, plen, dec.head_dim, device=dev, dtype=dtype)
    gen = torch.empty(layers, 2, new_tokens, b * k, dec.heads, dec.head_dim, device=dev, dtype=dtype)
    spare = torch.empty_like(gen)  # the reordered cache is written here, then the two swap
    seen = torch.zeros(b, vocab, dtype=torch.bool, device=dev).scatter_(1, prompts, True)

    d = Decoding(k, new_tokens, repetition_penalty)
    first = _scores(dec.prompt(prompts, cache), seen, d, eos)
    scores, tokens = best_of(first, len(eos_token_ids), k)  # (B, K): the first step expands the one live beam
    seq = torch.empty(b * k, new_tokens, dtype=torch.long, device=dev)
    tokens, scores = tokens.reshape(-1), scores.reshape(-1)
    seq[:, 0] = tokens
    seen = seen.repeat_interleave(k, dim=0)
    rows = torch.arange(b * k, device=dev)
    seen[rows, tokens] = True
    first_beam = torch.arange(b, device=dev)[:, None] * k
    for t in range(1, new_tokens):
        total = _scores(dec.step(tokens, t - 1, cache, gen), seen, d, eos) + scores[:, None]
        scores, idx = best_of(total.view(b, k * vocab), len(eos_token_ids), k)
        parent = (first_beam + idx // vocab).reshape(-1)  # the beam each new beam continues
        tokens, scores = (idx % vocab).reshape(-1), scores.reshape(-1)
        seq, seen = seq[parent], seen[parent]
        seq[:, t] = tokens
        seen[rows, tokens] = True
        for i in range(layers):
            for j in (0, 1):
                torch.index_select(gen[i, j, :t], 1, parent, out=spare[i, j, :t])
        gen, spare = spare, gen
    return seq.view(b, k, new_tokens)[:, 0]  # topk sorts: beam 0 scores best

"""The text engines' fast decoder (engines/lm_decode.py) on tiny random fp32 models of four architectures:
the same tokens as transformers' generate for beam search, greedy search, sampling and beam sampling (the
random draws matched: the same seed in a torch.Generator as in generate's global one); its sampling
filters against a numpy computation on the logits; the empirical distribution of a sampled token against
the filtered softmax; and the engine's use of it (generate for a cache it cannot drive, said once)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import tiny_opt

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from collapse_tui.engines.base import DataError  # noqa: E402
from collapse_tui.engines.lm_decode import Decoding, continuer, decode, process, unsupported_settings  # noqa: E402
from collapse_tui.engines.lm_models import tiny_config  # noqa: E402

VOCAB, PROMPTS, PLEN, NEW = 300, 12, 10, 12
EOS, PAD = 2, 1


@dataclass
class Vocabulary:
    """What tiny_config reads from a tokenizer: its special ids and its length (no tokenizer needed)."""

    size: int = VOCAB
    pad_token_id: int = PAD
    bos_token_id: int = EOS
    eos_token_id: int = EOS

    def __len__(self) -> int:
        return self.size


def tiny(arch: str):
    """A tiny random fp32 model of the engine's tiny_config (2 layers of 32, 4 heads), seeded weights."""
    p = SimpleNamespace(tiny_arch=arch, tiny_hidden=32, tiny_layers=2, tiny_heads=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return transformers.AutoModelForCausalLM.from_config(tiny_config(p, Vocabulary(), 64)).eval()


@pytest.fixture(scope="module", params=["opt", "gpt2", "gpt_neox", "llama"])
def model(request):
    return tiny(request.param)


PROMPT_IDS = torch.randint(3, VOCAB, (PROMPTS, PLEN), generator=torch.Generator().manual_seed(1))

MODES = {
    "beams, penalty": Decoding(5, NEW, 3.0),
    "beams, no penalty": Decoding(3, NEW, 1.0),
    "greedy, penalty": Decoding(1, NEW, 1.5),
    "sampling": Decoding(1, NEW, 1.3, True, temperature=0.8, top_k=20, top_p=0.9, min_p=0.05),
    "beam sampling": Decoding(3, NEW, 1.3, True, temperature=0.7, top_p=0.95),
    "beam sampling, min-p": Decoding(4, NEW, 1.0, True, top_k=50, min_p=0.1),
}


def generate(model, d: Decoding, seed: int = 7) -> torch.Tensor:
    """transformers' generate with d's settings, written out, its global generator seeded."""
    kw = dict(do_sample=d.do_sample, temperature=d.temperature, top_k=d.top_k, top_p=d.top_p)
    if d.min_p:
        kw["min_p"] = d.min_p
    torch.manual_seed(seed)
    ids = PROMPT_IDS
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        num_beams=d.num_beams,
        min_new_tokens=d.new_tokens,
        max_new_tokens=d.new_tokens,
        repetition_penalty=d.repetition_penalty,
        pad_token_id=PAD,
        eos_token_id=EOS,
        **(kw if d.do_sample else {"do_sample": False}),
    )
    return out[:, PLEN:]


@pytest.mark.parametrize("mode", MODES)
def test_fast_decoder_emits_generates_tokens(model, mode):
    d = MODES[mode]
    ours = decode(model, PROMPT_IDS, d, [EOS], torch.Generator().manual_seed(7))
    theirs = generate(model, d)
    assert ours.shape == theirs.shape == (PROMPTS, NEW)
    assert torch.equal(ours, theirs), f"{int((ours != theirs).any(1).sum())} of {PROMPTS} continuations differ"
    assert len({tuple(r) for r in ours.tolist()}) >= PROMPTS // 3  # not one continuation for every prompt
    assert not (ours == EOS).any()  # exactly NEW tokens, no end of text


def test_sampling_depends_on_the_seed_and_top_k_1_is_greedy(model):
    d = MODES["sampling"]
    first, again = (decode(model, PROMPT_IDS, d, [EOS], torch.Generator().manual_seed(s)) for s in (7, 8))
    assert (first != again).any(1).sum() >= PROMPTS // 2
    greedy = decode(model, PROMPT_IDS, Decoding(1, NEW, 1.3), [EOS])
    top1 = Decoding(1, NEW, 1.3, True, temperature=0.5, top_k=1)
    assert torch.equal(decode(model, PROMPT_IDS, top1, [EOS], torch.Generator().manual_seed(3)), greedy)


# --- the sampling filters against numpy ------------------------------------------------------------
def numpy_kept(logits: np.ndarray, t: float, top_k: int, top_p: float, min_p: float, keep: int) -> np.ndarray:
    """Which tokens each row keeps, by the definitions: the top_k largest; then those whose probability plus
    that of every less likely token exceeds 1 - top_p; then those at least min_p x the likeliest one's
    probability; each step keeping at least keep tokens."""
    x = logits.astype(np.float64) / t
    kept = np.ones_like(x, dtype=bool)
    if top_k:
        kth = -np.sort(-x, axis=1)[:, max(top_k, keep) - 1 : max(top_k, keep)]
        kept &= x >= kth
    for row in range(len(x)):
        p = np.where(kept[row], np.exp(x[row] - x[row].max()), 0.0)
        p /= p.sum()
        order = np.argsort(p)  # ascending
        if top_p < 1:
            tail = np.cumsum(p[order])  # mass of each token and all less likely ones
            drop = tail <= 1 - top_p
            drop[-keep:] = False
            kept[row, order[drop]] = False
            p = np.where(kept[row], p, 0.0) / p[kept[row]].sum()
        if min_p:
            drop = p < min_p * p.max()
            drop[np.argsort(-p)[:keep]] = False
            kept[row, drop] = False
    return kept


@pytest.mark.parametrize(
    "t, top_k, top_p, min_p, keep",
    [
        (1.0, 10, 1.0, 0.0, 1),
        (0.7, 0, 0.8, 0.0, 1),
        (1.3, 0, 1.0, 0.2, 1),
        (0.8, 40, 0.9, 0.05, 1),
        (1.0, 1, 0.3, 0.9, 2),
    ],
)
def test_filters_keep_the_tokens_a_numpy_computation_keeps(t, top_k, top_p, min_p, keep):
    logits = torch.randn(16, 200, generator=torch.Generator().manual_seed(top_k)) * 3
    d = Decoding(2 if keep == 2 else 1, 1, 1.0, True, temperature=t, top_k=top_k, top_p=top_p, min_p=min_p)
    seen = torch.zeros(logits.shape, dtype=torch.bool)
    scores = process(logits, seen, d, torch.tensor([EOS]), keep)
    banned = logits.double().numpy()
    banned[:, EOS] = -np.inf  # end of text is banned first: exactly new_tokens tokens
    want = numpy_kept(banned, t, top_k, top_p, min_p, keep) & np.isfinite(banned)
    got = torch.isfinite(scores).numpy()
    assert np.array_equal(got, want)
    assert 1 < want.sum(axis=1).mean() < 200 and want.sum(axis=1).min() >= keep  # the filters filter
    x = banned / t  # the kept ones keep their temperature-scaled relative probabilities
    p = np.where(want, np.exp(x - x.max(axis=1, keepdims=True)), 0.0)
    np.testing.assert_allclose(torch.softmax(scores, -1).numpy(), p / p.sum(axis=1, keepdims=True), atol=1e-6)


def test_sampled_first_tokens_follow_the_filtered_softmax():
    """8,000 draws of one prompt's first new token: the counts match softmax(penalised logits / T) restricted
    to the kept tokens and renormalised (chi-square within 5 standard deviations of its degrees of freedom),
    and no token outside them is drawn."""
    model, n = tiny("llama"), 8000
    prompt = PROMPT_IDS[:1]
    d = Decoding(1, 1, 1.5, True, temperature=0.6, top_k=40, top_p=0.9)
    drawn = decode(model, prompt.expand(n, -1), d, [EOS], torch.Generator().manual_seed(11))[:, 0].numpy()
    with torch.no_grad():
        logits = model(input_ids=prompt).logits[0, -1].double().numpy()
    seen = np.isin(np.arange(VOCAB), prompt.numpy())  # generate's penalty: logits < 0 times it, others over it
    logits = np.where(seen, np.where(logits < 0, logits * 1.5, logits / 1.5), logits)
    logits[EOS] = -np.inf
    kept = numpy_kept(logits[None], 0.6, 40, 0.9, 0.0, 1)[0] & np.isfinite(logits)
    p = np.where(kept, np.exp((logits - logits[kept].max()) / 0.6), 0.0)
    p /= p.sum()
    counts = np.bincount(drawn, minlength=VOCAB)
    assert counts[~kept].sum() == 0
    df = kept.sum() - 1
    assert df >= 5 and p.max() < 0.5  # a spread-out distribution, not one likely token
    chi2 = float((((counts - n * p) ** 2)[kept] / (n * p[kept])).sum())
    assert chi2 < df + 5 * np.sqrt(2 * df), (chi2, df)


# --- the engine --------------------------------------------------------------------------------------
def test_engine_samples_on_the_fast_path_with_generates_tokens_across_batches():
    """do_sample with generator = "fast": the engine's decoder draws, batch after batch, what generate draws."""
    sample = dict(do_sample=True, temperature=0.8, top_k=30, top_p=0.9, min_p=0.02, gen_batch=16, block_size=8)
    for beams in (1, 3):
        fast = tiny_opt(**sample, num_beams=beams)
        model = fast.new_model().eval()
        prompts = fast.dataset().train[:37]  # 16 + 16 + 5 prompts
        ours = fast.continue_blocks(model, prompts, seed=5)
        theirs = tiny_opt(**sample, num_beams=beams, generator="hf").continue_blocks(model, prompts, seed=5)
        assert ours.shape == (37, 8) and np.array_equal(ours, theirs)
        assert not np.array_equal(ours, fast.continue_blocks(model, prompts, seed=6))


def test_a_cache_the_decoder_cannot_drive_is_left_to_generate_and_said_once():
    """Mamba's cache holds recurrent states, not keys and values: generate decodes, and the run's log says so
    once: the loop's reporter makes the note a Note event, not progress, and RunLog a line of it."""
    from collapse_tui.events import Note
    from collapse_tui.loop import Control, _reporter
    from collapse_tui.runlog import RunLog

    e = tiny_opt(num_beams=2, block_size=8)
    cfg = transformers.MambaConfig(vocab_size=len(e.dataset().tokenizer), hidden_size=16, num_hidden_layers=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mamba = transformers.MambaForCausalLM(cfg).eval()
    events = []
    report = _reporter(0, events.append, Control(), SimpleNamespace(write_status=lambda: None))

    prompts = e.dataset().train[:6]
    first = e.continue_blocks(mamba, prompts, seed=0, report=report)
    e.continue_blocks(mamba, prompts, seed=0, report=report)
    assert np.array_equal(first, tiny_opt(num_beams=2, block_size=8, generator="hf").continue_blocks(mamba, prompts, 0))
    notes = [ev for ev in events if isinstance(ev, Note)]
    assert len(notes) == 1
    assert not [ev for ev in events if "note" in getattr(ev, "phase", "")]  # not progress
    (line,) = RunLog().lines(notes[0])
    assert line.startswith("transformers' generate decodes: MambaForCausalLM's cache has") and "Linear" in line


def test_generation_config_settings_the_decoder_lacks_are_refused():
    model = tiny("gpt2")
    assert unsupported_settings(model) == [] and unsupported_settings(model, sampling=True) == []
    model.generation_config.renormalize_logits = True  # True == 1.0, the neutral value of the penalties
    model.generation_config.typical_p = 0.5  # a sampling warper: no matter without sampling
    assert unsupported_settings(model) == ["renormalize_logits"]
    assert unsupported_settings(model, sampling=True) == ["renormalize_logits", "typical_p"]
    with pytest.raises(DataError, match='renormalize_logits, typical_p; set "hf"'):
        continuer(model, MODES["sampling"], EOS, PAD, True, torch.Generator(), False)

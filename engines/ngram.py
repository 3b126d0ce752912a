"""A word n-gram language model on WikiText-2: the paper's first reason for collapse (finite samples lose
rare events) in a count model a laptop trains in a second, all seeds at once (engines/ngram_counts.py).

Words: the blank-separated words of each non-empty line, then <eos> (as PyTorch's word_language_model
reads WikiText-2), concatenated and cut into block_size blocks (the remainder dropped), as the OPT engine
cuts its tokens. The vocabulary is every word of the training text (<eos> is id 0, <unk> id 1, then by
falling frequency); a test word outside it reads as <unk>, which WikiText-2 already uses for its rare
words, so <unk> is an ordinary word of the model. Smoothing: interpolated Kneser-Ney (one discount per
order) or add-k. Each generation counts its training blocks; every prompt (a block of the original
training set, or of the generation's own with prompts = "train") is continued by exactly block_size
words, by beam search with generate's repetition penalty, or by ancestral sampling (do_sample).

Metrics: the OPT engine's (engines/text_metrics.py, and across prompts engines/cross_prompt.py), with
per-sequence perplexities under the generation-0 model, plus what a count model makes visible: support
(distinct words generated), types_lost (share of generation 0's training words absent from the generated
data), singletons_lost and doubletons_lost (share of the words seen once / twice in this generation's
training data that the generated data lack: in replace mode, those that do not reach the next generation).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import DataError, Engine, Fitted, Generated, Metric, Param, Report, held_apart
from .cross_prompt import CROSS_PROMPT_METRICS, cross_prompt_metrics
from .hub import hub_problems
from .ngram_counts import NgramModel, block_nll, count
from .text_data import (
    EOS,
    HUB_ALTERNATIVE,
    UNK,
    TextSource,
    group_blocks,
    hub_text,
    line_words,
    local_files,
    prompt_indices,
    rare_tokens,
    read_splits,
    read_text,
    text_path_problems,
    text_source_params,
    text_words,
    with_prompt,
    words_text,
)
from .text_metrics import TEXT_HEADLINE, TEXT_METRICS, hashed_ngrams, seq_ppl_stats, text_metrics, type_metrics

EVAL_MAX = 5000  # generated blocks whose perplexity is measured per generation
PATH_KEYS = ("text_dir", "train", "test")
MODEL_FILE = "ngram.npz"
UNK_ID = 1  # <eos> is 0


@dataclass
class WordData:
    words: list[str]  # id -> word
    index: dict[str, int]
    train: np.ndarray  # (N, block_size) int32
    test: np.ndarray  # (T, block_size)
    rare: np.ndarray  # (V,) bool
    held: np.ndarray  # (H, block_size): real blocks held apart from training and test, for the detector

    def ids(self, words: list[str]) -> list[int]:
        return [self.index.get(w, UNK_ID) for w in words]


class NgramEngine(TextSource, Engine):
    name = "ngram"
    PATH_KEYS = PATH_KEYS
    preview_kind = "text"
    figures = "collapse_tui.engines.figures.ngram"
    batched = True
    mitigations = frozenset({"prior", "distill", "real_weight", "detector"})
    METRICS = {
        **TEXT_METRICS,
        **CROSS_PROMPT_METRICS,
        "support": Metric("distinct words in the generated data", "types"),
        "types_lost": Metric("generation 0's training words absent from the generated data", "fraction"),
        "singletons_lost": Metric("words seen once in the training data, absent from the generated", "fraction"),
        "doubletons_lost": Metric("words seen twice in the training data, absent from the generated", "fraction"),
    }
    HEADLINE = TEXT_HEADLINE
    DISTANCE = Metric("perplexity of the other chain's text under this chain's model", "per word", log=True)
    PARAMS = {
        "order": Param(3, int, "n of the n-gram model (1: unigrams)", min=1, max=5),
        "smoothing": Param(
            "kneser-ney",
            str,
            "interpolated Kneser-Ney, or add-k (k = 0: maximum likelihood)",
            choices=("kneser-ney", "add-k"),
        ),
        "k": Param(1.0, float, "add-k: pseudo-count added to every n-gram", min=0),
        **text_source_params(valid=False),
        "block_size": Param(64, int, "words per block (training example)", min=2, max=4096),
        "new_tokens": Param(0, int, "new words per continuation (0: block_size; must equal block_size)", min=0),
        "prompts": Param(
            "original",
            str,
            "what the synthetic data continue: the original training blocks, or the generation's "
            "own training set (train)",
            choices=("original", "train"),
        ),
        "num_beams": Param(5, int, "beam search width (1 with do_sample: ancestral sampling)", min=1, max=64),
        "repetition_penalty": Param(3.0, float, "generate's repetition_penalty (1.0: none)", min=0, min_exclusive=True),
        "do_sample": Param(False, bool, "ancestral sampling instead of beam search (needs num_beams = 1)"),
        "temperature": Param(1.0, float, "do_sample: temperature", min=0, min_exclusive=True),
        "rare_tail": Param(0.1, float, "rare words: the least frequent ones making up this share", 0, 1),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Engine's params, device, train
        super().__init__(*args, **kwargs)
        self._data: WordData | None = None

    @staticmethod
    def check_params(p: Any) -> None:
        if p.new_tokens not in (0, p.block_size):
            raise DataError(
                f"engine.new_tokens: the synthetic blocks replace real ones, so it must equal block_size "
                f"({p.block_size}) or be 0, got {p.new_tokens}"
            )
        if p.block_size < p.order:
            raise DataError(f"engine.block_size: {p.block_size} words hold no {p.order}-gram (engine.order)")
        if p.do_sample and p.num_beams != 1:
            raise DataError("engine.num_beams: do_sample draws one continuation per prompt; set num_beams = 1")

    def hub_needs(self) -> list[tuple[str, str]]:
        return [("engine.dataset", f"wikitext/{self.params.dataset}")] if hub_text(self.params, PATH_KEYS) else []

    def preflight(self) -> list[str]:
        hub = hub_problems(self.hub_needs(), {"engine.dataset": HUB_ALTERNATIVE})
        return text_path_problems(self.params, PATH_KEYS) + hub

    def dataset(self) -> WordData:
        if self._data is None:
            p = self.params
            self._checked_paths()
            texts = read_splits(self._files(), None, p.dataset, p.max_chars)
            texts["held"] = texts["valid"] or self._after_training()
            rows = {split: line_words(texts[split]) for split in ("train", "test", "held")}
            freq = Counter(w for line in rows["train"] for w in line)
            words = [EOS, UNK] + sorted((w for w in freq if w not in (EOS, UNK)), key=lambda w: (-freq[w], w))
            index = {w: i for i, w in enumerate(words)}
            blocks = {}
            for split, lines in rows.items():
                blocks[split] = group_blocks([[index.get(w, UNK_ID) for w in line] for line in lines], p.block_size)
                if len(blocks[split]) == 0 and split != "held":
                    raise DataError(f"engine.{split}: the text gives no block of {p.block_size} words")
            rare = rare_tokens(blocks["train"], len(words), p.rare_tail)
            self._data = WordData(words, index, blocks["train"], blocks["test"], rare, blocks["held"])
        return self._data

    def _after_training(self) -> list[str]:
        """The max_chars characters of the training file after those it trains on: the detector's real text
        when there is no validation text ([] when the whole file trains)."""
        train = self._files()["train"]
        if train is None or not self.params.max_chars:
            return []
        return read_text(train, self.params.max_chars, "train", skip=self.params.max_chars)

    @staticmethod
    def check_data(params: Any, data: Any) -> None:
        detector = [k for k in ("filter", "reweight") if data[k] == "detector"]
        files = local_files(
            {"train": Path(params.train) if params.train else None}, Path(params.text_dir) if params.text_dir else None
        )
        if detector and files["train"] is not None and files["valid"] is None and not params.max_chars:
            raise DataError(
                f"data.{detector[0]}: the detector needs real text held apart from training and test: a valid.txt "
                "in engine.text_dir, or engine.max_chars (the training file's next max_chars characters)"
            )

    def detector_real(self, rngs: list[np.random.Generator], n: int) -> np.ndarray | None:
        """Up to n blocks of the held-apart text per seed (a random choice by each seed's generator): the
        validation text, else the training file's text after max_chars; None without either."""
        return held_apart(self.dataset().held, rngs, n)

    def features(self, examples: np.ndarray, reference: Any) -> np.ndarray:
        return hashed_ngrams(examples)

    def real_data(self, rngs: list[np.random.Generator], n: int | None = None) -> np.ndarray:
        if n is not None:
            raise NotImplementedError("ngram: the real text is a finite set; it cannot draw fresh blocks")
        train = self.dataset().train
        return np.broadcast_to(train, (len(rngs), *train.shape)).copy()

    def fit(
        self,
        data: np.ndarray,
        rngs: list[np.random.Generator],
        report: Report,
        source: Any = None,
        reference: Any = None,
        weights: np.ndarray | None = None,
    ) -> Fitted:
        """The n-gram counts of each seed's blocks (randomness: none); weighted counts with the mitigations."""
        p = self.params
        report("train", 0, 1, None)
        if reference is not None:
            data, weights = self.with_first(data, weights)
        model = count(data, len(self.dataset().words), p.order, p.smoothing, p.k, weights)
        report("train", 1, 1, None)
        return Fitted(model)

    def with_first(self, data: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The blocks and weights that anchor (train.anchor = "prior") or distil (train.distill = alpha) the
        counts to generation 0's: generation 0's training blocks (the real ones, the same for every seed)
        beside the data, as pseudo-data. distill: the maximum-likelihood n-gram model of the alpha-mixture of
        the data and the teacher's own distribution, that of its training counts, is the model of the
        mixed counts (1 - alpha) c_data / N + alpha c_0 / N0: the data weigh (1 - alpha), the real blocks
        alpha N / N0 each (alpha = 1: the real blocks alone, generation 0's counts exactly). prior: the real
        blocks weigh strength x N / N0 more, generation 0's counts times strength when N = N0. So distill
        alpha is the prior at strength alpha / (1 - alpha). The weights are scaled to mean 1 (Kneser-Ney's
        discounts are not scale-free), None where they are all equal (the plain counts)."""
        keys = self.train_keys
        alpha = float(keys.get("distill", 0.0))
        strength = alpha + (float(keys["anchor_strength"]) if keys.get("anchor") == "prior" else 0.0)
        if strength == 0.0:
            return data, weights
        train = self.dataset().train  # generation 0's blocks, the same for every seed
        first = np.broadcast_to(train, (len(data), *train.shape))
        n, n0 = data.shape[1], first.shape[1]
        mine = (1.0 - alpha) * (np.ones(data.shape[:2]) if weights is None else weights)
        theirs = np.full(first.shape[:2], strength * n / n0)
        if alpha == 1.0:  # the data weigh nothing
            data, mine = data[:, :0], mine[:, :0]
        w = np.concatenate([mine, theirs], axis=1)
        w /= w.mean(axis=1, keepdims=True)
        uniform = bool(np.all(w == w[:, :1]))
        return np.concatenate([data, first], axis=1), None if uniform else w

    def sample(self, model: Any, n: int, rngs: list[np.random.Generator], report: Report, data=None) -> Generated:
        """Continuations (S, n, block_size) int32 of the original training blocks (or, with prompts = "train",
        of each seed's training blocks), cycled when n > N; the preview: the first seed's fixed prompts with
        their continuations."""
        p, S = self.params, len(rngs)
        source = data if p.prompts == "train" and data is not None else self.real_data(rngs)
        prompts = source[:, np.arange(n) % source.shape[1]].reshape(S * n, -1)
        seed = np.repeat(np.arange(S), n)
        k = self.new_tokens
        from .ngram_search import ancestral, beam_search  # numba loads for a run, not when a preset is validated

        if p.do_sample:
            u = np.concatenate([r.random((n, k)) for r in rngs])
            out = ancestral(model, seed, prompts, k, u, p.repetition_penalty, p.temperature, report)
        else:
            out = beam_search(model, seed, prompts, k, p.num_beams, p.repetition_penalty, report)
        out = out.reshape(S, n, k)
        shown = prompt_indices(source.shape[1], n)
        preview = [with_prompt(*self.to_text([prompts[i], out[0, i]])) for i in shown]
        return Generated(out, preview)

    def to_text(self, blocks: Any) -> list[str]:
        words = self.dataset().words
        return [words_text([words[t] for t in b]) for b in blocks]

    # --- text shared with other text engines (chains) --------------------------------------------------
    def to_shared(self, samples: np.ndarray) -> list[list[str]]:
        """Per seed, its generated blocks as text: words joined by single blanks, <eos> a line break."""
        return [self.to_text(seed) for seed in samples]

    def from_shared(self, texts: list[list[str]]) -> np.ndarray:
        """Per seed, its texts read as words (a line break is <eos>, an unknown word <unk>), concatenated and
        cut into blocks of block_size: (seeds, n_blocks, block_size) int32, n_blocks the fewest of any seed."""
        data, L = self.dataset(), self.params.block_size
        per_seed = [group_blocks([data.ids(text_words(t)) for t in seed], L) for seed in texts]
        n = min((len(b) for b in per_seed), default=0)
        if n == 0:
            raise DataError(f"the shared text gives no block of {L} words")
        return np.stack([b[:n] for b in per_seed])

    # --- metrics ----------------------------------------------------------------------------------
    def evaluate(self, model: Any, samples: np.ndarray, reference: Any) -> list[dict[str, Any]]:
        data = self.dataset()
        S = len(samples)
        test_nll = block_nll(model, np.broadcast_to(data.test, (S, *data.test.shape))).mean(axis=1)
        seq_nll = block_nll(reference, samples[:, :EVAL_MAX])
        types = type_metrics(samples, model.unigram_counts(), reference.unigram_counts())
        rows = []
        for s in range(S):
            nll = float(test_nll[s])
            rows.append(
                {
                    "perplexity": math.exp(nll) if math.isfinite(nll) else None,
                    "nll": nll if math.isfinite(nll) else None,
                    "variance": float(seq_nll[s].var(ddof=1)) if seq_nll.shape[1] > 1 else 0.0,
                    **seq_ppl_stats(seq_nll[s]),
                    **text_metrics(samples[s, :EVAL_MAX], data.rare),
                    **cross_prompt_metrics(samples[s, :EVAL_MAX], data.test),
                    **types[s],
                }
            )
        return [{k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in r.items()} for r in rows]

    def distance(self, model: Any, other_model: Any, other_samples: np.ndarray) -> np.ndarray:
        """Cross-perplexity: exp of this model's mean NLL per word on the other chain's generated text (read
        as this engine's words), up to EVAL_MAX blocks per seed; inf where add-k = 0 meets an unseen word."""
        with np.errstate(over="ignore"):
            return np.exp(block_nll(model, other_samples[:, :EVAL_MAX]).mean(axis=1))

    # --- checkpoints ------------------------------------------------------------------------------
    def save(self, model: Any, directory: Path) -> None:
        model.save(Path(directory) / MODEL_FILE)

    def load(self, directory: Path) -> Any:
        path = Path(directory) / MODEL_FILE
        try:
            model = NgramModel.load(path)
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{path}: not an n-gram model this engine wrote ({type(e).__name__})") from None
        if model.vocab != len(self.dataset().words):
            raise DataError(f"{path}: a model of {model.vocab} words, the text gives {len(self.dataset().words)}")
        return model

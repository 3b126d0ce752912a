"""A finite discrete distribution re-estimated from its own draws: the paper's first reason for collapse
(finite samples lose the rare symbols, Nature section 3.1's discrete case) with nothing else in the way.

The real distribution p over V symbols is Zipf's (p_i proportional to i^-s, i = 1..V) or the word
frequencies of a text file (its V most frequent blank-separated words, renormalised). Symbols are
indexed by rank, 0 the most probable. Generation 0 counts M draws from p; every generation estimates
p_hat_i = (c_i + k) / (N + V k) from the counts c of its N training symbols (k = add_k; 0 is maximum
likelihood) and draws the next M symbols from p_hat, every seed at once, each from its own Generator.

With two symbols this is the Wright-Fisher model of population genetics (Fisher 1930, Wright 1931):
neutral drift of two alleles in a haploid population of M, one generation per fit, fixation certain at
k = 0, on symbol i with probability p_i. expected() gives the exact expectations the theory has.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .base import DETECTOR_AUC, DOWN, UP, DataError, Engine, Fitted, Generated, Metric, Param, Report, points_preview
from .text_data import TEXT_BYTES_PER_CHAR

TEST_SEED = 20240724  # the fixed real held-out sample is the same for every seed and run
RARE_TAIL = 0.1  # tail_mass: the rarest symbols making up this share of the real distribution
# the exact count chain of expected() (support, fixed): at most this many states (a (M+1)^2 matrix of
# 32 MB) and this many multiply-adds in all (a second or two), else those expectations are left out
CHAIN_STATES = 2001
CHAIN_WORK = 1e9

Model = dict[str, np.ndarray]  # {"probs": (S, V) float64}


def words_of(path: Path) -> Iterator[str]:
    """The blank-separated words of a UTF-8 text, read line by line; DataError naming engine.text."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield from line.split()
    except UnicodeDecodeError as e:
        raise DataError(f"engine.text: {path} is not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise DataError(f"engine.text: cannot read {path} ({e.strerror or type(e).__name__})") from None


def check_words(path: Path, vocab: int) -> None:
    """DataError naming engine.vocab when the text has fewer than vocab distinct words; reads only as far
    as the vocab-th distinct word."""
    seen: set[str] = set()
    for word in words_of(path):
        seen.add(word)
        if len(seen) >= vocab:
            return
    raise DataError(too_few_words(path, len(seen), vocab))


def too_few_words(path: Path, found: int, vocab: int) -> str:
    return f"engine.vocab: {path} has {found} distinct words, fewer than vocab = {vocab}"


def rare_mask(probs: np.ndarray, tail: float) -> np.ndarray:
    """The symbols that, taken from the least probable up, make up at most the tail share of the mass."""
    order = np.argsort(probs, kind="stable")
    rare = np.zeros(len(probs), dtype=bool)
    rare[order[np.cumsum(probs[order]) <= tail]] = True
    return rare


def draw(cdf: np.ndarray, n: int, rngs: list[np.random.Generator]) -> np.ndarray:
    """n symbols per seed, (S, n, 1) int32, from cumulative probabilities cdf (S, V) or (V,) whose last
    entry is exactly 1: inversion of each seed's uniforms. A symbol of probability 0 adds nothing to the
    cdf, so searchsorted(side="right") never returns it."""
    rows = np.broadcast_to(cdf, (len(rngs), cdf.shape[-1]))
    out = np.stack([np.searchsorted(c, rng.random(n), side="right") for c, rng in zip(rows, rngs)])
    return out.astype(np.int32)[..., None]


def cdf_of(probs: np.ndarray) -> np.ndarray:
    """Cumulative probabilities along the last axis, scaled so that the last is exactly 1."""
    cdf = np.cumsum(probs, axis=-1)
    return cdf / cdf[..., -1:]


def counts_of(data: np.ndarray, vocab: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Each seed's symbol counts, (S, V), from symbols (S, N, 1): one bincount over seed-offset symbols;
    with weights (S, N), each symbol counts its weight (float counts)."""
    s = data.shape[0]
    offset = data[..., 0].astype(np.int64) + vocab * np.arange(s)[:, None]
    w = None if weights is None else np.ravel(weights)
    return np.bincount(offset.ravel(), weights=w, minlength=s * vocab).reshape(s, vocab)


def binomial_rows(m: int, q: np.ndarray) -> np.ndarray:
    """P(Bin(m, q_r) = j) for each q_r: (R, m + 1), in log space (0 log 0 = 0, so q = 0 or 1 are exact)."""
    log_fact = np.array([math.lgamma(j + 1.0) for j in range(m + 1)])
    j = np.arange(m + 1)
    q = np.asarray(q, dtype=float)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        hits = np.where(j > 0, j * np.log(q), 0.0)
        misses = np.where(j < m, (m - j) * np.log1p(-q), 0.0)
    return np.exp(log_fact[m] - log_fact[j] - log_fact[m - j] + hits + misses)


def count_spectrum(p: np.ndarray, m: int, generations: int) -> np.ndarray:
    """E[number of symbols drawn c times] in the training data of generations 0 .. generations-1, replace
    mode, k = 0: (generations, m + 1). One symbol's count is itself a Markov chain, the two-allele
    Wright-Fisher chain (the symbol against all others; Wright 1931, Ewens 2004 "Mathematical Population
    Genetics I"): c_0 ~ Bin(m, p_i), c_{n+1} | c_n ~ Bin(m, c_n / m), a multinomial draw's marginal. The
    chain is the same for every symbol, so the sum of their distributions moves by the one (m+1)-state
    matrix; its absorbing states 0 and m are the paper's lost symbol and delta (Nature section 3.1)."""
    values, mult = np.unique(p, return_counts=True)  # Zipf's and a text's frequencies repeat
    spectrum = mult @ binomial_rows(m, values)
    step = binomial_rows(m, np.arange(m + 1) / m)
    out = np.empty((generations, m + 1))
    for n in range(generations):
        out[n] = spectrum
        spectrum = spectrum @ step
    return out


def expected_collision(p: np.ndarray, m: int, k: float, generations: int, accumulate: bool) -> np.ndarray:
    """E[sum_i p_hat_i^2] of generations 0 .. generations-1, exact, replace or accumulate mode.

    With Q = sum_i c_i^2 of a generation's N training counts and D = N + V k, p_hat = (c + k) / D gives
    C = (Q + 2 k N + V k^2) / D^2: affine in Q. A multinomial X of M draws from p_hat has E[sum X_i^2] =
    M (M - 1) C + M (moments of the multinomial), and in accumulate mode E[sum_i c_i X_i] = M sum_i c_i
    p_hat_i = M (Q + k N) / D, so E[Q] follows an affine recursion, the expectation of each step exact.
    Replace mode at k = 0 solves to the decay of Wright-Fisher's heterozygosity (Wright 1931; Ewens
    2004): 1 - E[C_n] = (1 - C)(1 - 1/M)^(n+1), C = sum_i p_i^2, generation n being the (n+1)-th draw."""
    v = len(p)
    q = m * (m - 1) * float(p @ p) + m  # E[Q_0]: generation 0's M real draws
    out = np.empty(generations)
    for n in range(generations):
        size = (n + 1) * m if accumulate else m
        d = size + v * k
        out[n] = (q + 2 * k * size + v * k * k) / d**2
        drawn = m * (m - 1) * out[n] + m
        q = q + 2 * m * (q + k * size) / d + drawn if accumulate else drawn
    return out


class CategoricalEngine(Engine):
    name = "categorical"
    preview_kind = "points"  # the first seed's drawn symbols as ranks 1..V: a histogram over ranks
    batched = True
    can_draw_fresh = True
    can_score = True
    mitigations = frozenset({"prior", "distill", "real_weight", "detector"})
    HEADLINE = (("perplexity", UP), ("support", DOWN))  # rare symbols are lost for good (at add_k = 0)
    METRICS = {
        "perplexity": Metric("perplexity of the fixed real held-out sample", "exp of mean NLL per symbol", log=True),
        "variance": Metric("variance of the estimated probabilities over the V symbols", "probability²"),
        "support": Metric("symbols with non-zero estimated probability", "symbols"),
        "entropy": Metric("entropy of the estimated distribution", "nats"),
        "collision": Metric("collision probability, sum of p_i²", "probability"),
        "tv": Metric("total variation to generation 0's estimate (its fit to the real sample)", "probability"),
        "tail_mass": Metric("estimated mass of the rarest symbols making up 10% of the real distribution", "fraction"),
        "fixed": Metric("one symbol holds all the mass (1) or not (0)", "0 or 1"),
        "detector_auc": DETECTOR_AUC,
    }
    PARAMS = {
        "vocab": Param(100, int, "V: number of symbols", min=1, max=1_000_000),
        "source": Param(
            "zipf",
            str,
            "the real distribution: zipf (p_i proportional to i^-exponent) or text (word frequencies of engine.text)",
            choices=("zipf", "text"),
        ),
        "exponent": Param(1.0, float, "zipf: exponent s (0: uniform)", min=0),
        "text": Param("", Path, "text: a UTF-8 text file whose vocab most frequent words are the symbols"),
        "samples": Param(100, int, "M: symbols drawn per generation (and the real training set's size)", min=1),
        "add_k": Param(0.0, float, "pseudo-count added to every symbol's count (0: maximum likelihood)", min=0),
        "test_samples": Param(10000, int, "size of the fixed real held-out sample for perplexity", min=1),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Engine's params, device, train
        super().__init__(*args, **kwargs)
        self._real: np.ndarray | None = None
        self._test: np.ndarray | None = None

    @staticmethod
    def check_params(p: Any) -> None:
        if p.source == "text" and not p.text:
            raise DataError("engine.text: source 'text' reads the word frequencies of a text file; set engine.text")

    def preflight(self) -> list[str]:
        text = self.path(self.params.text) if self.params.source == "text" else None
        if text is None:
            return []
        if not text.is_file():
            return [f"engine.text: no such file: {text}"]
        try:
            check_words(text, self.params.vocab)
        except DataError as e:
            return [str(e)]
        return []

    data_keys = "engine.text or engine.test_samples"

    def data_bytes(self) -> int:
        p = self.params
        text = self.path(p.text) if p.source == "text" else None
        words = text.stat().st_size * TEXT_BYTES_PER_CHAR if text is not None and text.is_file() else 0
        return words + 8 * (p.test_samples + 4 * p.vocab)  # the held-out draws; p, its cdf, the rare mask

    def memory_bytes(self, seeds: int, drawn: int, pooled: int) -> int:
        # int32 symbols (the data, the pool, the samples), their uniforms, and float64 (S, V) arrays: the
        # model, its cdf and the metrics' temporaries
        n = self.params.samples
        return seeds * (4 * (2 * n + pooled + drawn) + 8 * drawn + 8 * 6 * self.params.vocab)

    def example_shape(self) -> tuple[int, ...]:
        return (1,)

    def real_probs(self) -> np.ndarray:
        """The real distribution p, (V,), most probable symbol first."""
        if self._real is None:
            p = self.params
            if p.source == "zipf":
                weights = np.arange(1, p.vocab + 1, dtype=float) ** -p.exponent
            else:
                freq = Counter(words_of(self.path(p.text)))
                if len(freq) < p.vocab:  # the file changed since preflight
                    raise DataError(too_few_words(self.path(p.text), len(freq), p.vocab))
                top = sorted(freq.items(), key=lambda wc: (-wc[1], wc[0]))[: p.vocab]
                weights = np.array([c for _, c in top], dtype=float)
            self._real = weights / weights.sum()
        return self._real

    def test_counts(self) -> np.ndarray:
        """Symbol counts of the fixed real held-out sample, (V,)."""
        if self._test is None:
            drawn = draw(cdf_of(self.real_probs()), self.params.test_samples, [np.random.default_rng(TEST_SEED)])
            self._test = counts_of(drawn, self.params.vocab)[0]
        return self._test

    def real_data(self, rngs: list[np.random.Generator], n: int | None = None) -> np.ndarray:
        return draw(cdf_of(self.real_probs()), self.params.samples if n is None else n, rngs)

    def fit(
        self,
        data: np.ndarray,
        rngs: list[np.random.Generator],
        report: Report,
        source: Any = None,
        reference: Model | None = None,
        weights: np.ndarray | None = None,
    ) -> Fitted:
        """Add-k frequencies of each seed's symbols (randomness: none), of weighted counts with weights.

        anchor "prior": generation 0's estimate times strength x N added to the counts, a Dirichlet prior
        of that many pseudo-counts centred on it (the posterior mean's numerator; Gelman et al. 2013, BDA3,
        5.3): (c + strength N p0 + k) / (N (1 + strength) + V k). No symbol generation 0 estimated above 0
        can be lost. distill = alpha: the estimate of the alpha-mixture of the data and the teacher, the
        mixture of the distributions, (1 - alpha) p_hat + alpha p0 (alpha = 1: p0 exactly); applied after
        the prior when both are set."""
        k, v, n = self.params.add_k, self.params.vocab, data.shape[1]
        counts = counts_of(data, v, weights)
        keys, pseudo = self.train_keys, 0.0
        if reference is not None and keys.get("anchor") == "prior":
            pseudo = float(keys["anchor_strength"]) * n
            counts = counts + pseudo * reference["probs"]
        probs = (counts + k) / (n + pseudo + v * k)
        alpha = float(keys.get("distill", 0.0)) if reference is not None else 0.0
        if alpha:
            probs = (1.0 - alpha) * probs + alpha * reference["probs"]
        report("fit", 1, 1, None)
        return Fitted({"probs": probs})

    def sample(self, model: Model, n: int, rngs: list[np.random.Generator], report: Report, data=None) -> Generated:
        symbols = draw(cdf_of(model["probs"]), n, rngs)
        return Generated(symbols, points_preview(symbols) + 1)  # ranks 1..V

    def features(self, examples: np.ndarray, reference: Any) -> np.ndarray:
        """log(1 + r) and its square of each symbol's rank r in the real distribution (symbols are numbered
        by it): a collapsing distribution loses its rare, high-rank symbols first. One feature per symbol
        (one-hot) would take V columns, up to a million."""
        r = np.log1p(np.asarray(examples, dtype=np.float64))
        return np.concatenate([r, r * r], axis=-1)

    def score(self, reference: Model, samples: np.ndarray) -> np.ndarray:
        """-log p of each symbol under the reference (inf where it gives the symbol no mass)."""
        with np.errstate(divide="ignore"):
            return -np.log(np.take_along_axis(reference["probs"], samples[..., 0].astype(np.intp), axis=1))

    def from_shared(self, shared: Any) -> np.ndarray:
        """Another chain's symbols, which must be this engine's (integers 0 .. V-1)."""
        x = np.asarray(shared)
        if x.dtype.kind not in "iu" or (x.size and (x.min() < 0 or x.max() >= self.params.vocab)):
            raise DataError(f"categorical: another chain's examples are not symbols 0..{self.params.vocab - 1}")
        return x

    def evaluate(self, model: Model, samples: np.ndarray, reference: Model) -> list[dict[str, Any]]:
        p = model["probs"]
        seen = self.test_counts() > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = np.log(p)
            entropy = -np.where(p > 0, p * log_p, 0.0).sum(axis=1)
            # -inf where the model gives a held-out symbol no mass: an infinite perplexity, written null
            nll = -(log_p[:, seen] @ self.test_counts()[seen]) / self.params.test_samples
        support = (p > 0).sum(axis=1)
        cols = {
            "perplexity": [math.exp(x) if math.isfinite(x) else None for x in nll.tolist()],
            "variance": p.var(axis=1).tolist(),
            "support": support.tolist(),
            "entropy": entropy.tolist(),
            "collision": np.einsum("sv,sv->s", p, p).tolist(),
            "tv": (0.5 * np.abs(p - reference["probs"]).sum(axis=1)).tolist(),
            "tail_mass": p[:, rare_mask(self.real_probs(), RARE_TAIL)].sum(axis=1).tolist(),
            "fixed": (support == 1).astype(int).tolist(),
        }
        return [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]

    def expected(self, generations: int, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Exact expectations in replace and accumulate mode without filter, mixing or mitigation: collision always;
        support and fixed at add_k = 0 (with add_k > 0 every seed keeps all V symbols and never fixes).
        Replace mode's support and fixed come from the exact count chain (count_spectrum), left out
        where it is too large to compute in about a second."""
        mode = data["mode"]
        mixed = data.get("share_seeds") or data.get("share_others") or data.get("mix")
        if (
            mode not in ("replace", "accumulate")
            or data.get("filter", "none") != "none"
            or mixed
            or self.mitigated(data)
        ):
            return {}
        p, m, k = self.real_probs(), self.params.samples, self.params.add_k
        out = {"collision": expected_collision(p, m, k, generations, mode == "accumulate")}
        if k > 0:
            return out
        if mode == "accumulate":
            # every real symbol stays in the pool and no other is ever drawn: generation 0's support for
            # good, E = sum_i 1 - (1 - p_i)^M; fixed iff the M real draws are one symbol, sum_i p_i^M
            with np.errstate(divide="ignore"):  # p_i = 1 when V = 1
                kept = -np.expm1(m * np.log1p(-p))
            out["support"] = np.full(generations, float(kept.sum()))
            out["fixed"] = np.full(generations, float(np.sum(p**m)))
        elif m + 1 <= CHAIN_STATES and (m + 1) ** 2 * generations + len(p) * (m + 1) <= CHAIN_WORK:
            spectrum = count_spectrum(p, m, generations)
            out["support"] = len(p) - spectrum[:, 0]  # generation 0: sum_i 1 - (1 - p_i)^M
            out["fixed"] = spectrum[:, m]  # at most one symbol can hold all M draws
        return out

    def save(self, model: Model, directory: Path) -> None:
        with open(directory / "model.npz", "wb") as f:
            np.savez(f, probs=model["probs"])

    def load(self, directory: Path) -> Model:
        with np.load(directory / "model.npz", allow_pickle=False) as z:
            return {"probs": z["probs"]}

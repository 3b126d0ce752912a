"""The categorical engine (engines/categorical.py) against its exact theory, three ways: expected()
against an independent exact computation (every multinomial outcome enumerated for tiny M; scipy's
binomials for the Wright-Fisher chain), the engine's own runs against expected() (thousands of seeds
through the real loop, tolerance 4 standard errors measured from the seeds, and each test asserts that
its SE is small enough to tell the formula from a plausible wrong one), and bad keys refused in one line.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import WIKI_TRAIN, run_preset
from scipy.stats import binom

from collapse_tui.cli import main
from collapse_tui.engines.categorical import CHAIN_STATES, CategoricalEngine
from collapse_tui.preset_files import load_preset

WF = (0.8, 0.2)  # the wright-fisher preset's real distribution: Zipf over 2 symbols, exponent 2


def quiet(*_: object) -> None:
    pass


def preset_engine(preset: str, *sets: str) -> tuple[CategoricalEngine, dict]:
    """The engine of a preset with --set overrides, and the preset's [data] section."""
    cfg = load_preset(preset, list(sets))
    return CategoricalEngine(cfg.engine), cfg.data.as_dict()


def agrees(values: np.ndarray, expected: float, wrong: float) -> None:
    """The mean over seeds is within 4 SE of expected, and 4 SE on both sides keep it apart from wrong."""
    se = values.std(ddof=1) / math.sqrt(values.size)
    assert 8 * se < abs(expected - wrong), f"too few seeds to tell {expected:.5g} from {wrong:.5g}: SE {se:.3g}"
    assert abs(values.mean() - expected) < 4 * se, f"{values.mean():.5g} vs {expected:.5g} (SE {se:.3g})"


# --- expected() against an independent exact computation -------------------------------------------


def compositions(m: int, v: int) -> Iterator[tuple[int, ...]]:
    """Every count vector of m draws over v symbols."""
    if v == 1:
        yield (m,)
        return
    for first in range(m + 1):
        for rest in compositions(m - first, v - 1):
            yield (first, *rest)


def multinomial(x: tuple[int, ...], q: list[float]) -> float:
    coef = math.factorial(sum(x)) // math.prod(math.factorial(c) for c in x)
    return coef * math.prod(qi**c for qi, c in zip(q, x))  # 0 ** 0 = 1


def enumerated(p: list[float], m: int, k: float, generations: int, accumulate: bool) -> dict[str, np.ndarray]:
    """E[collision], E[support] and P(fixed) of generations 0 .. generations-1 by carrying the exact
    distribution of each generation's training counts through every multinomial outcome."""
    v = len(p)
    states = {x: multinomial(x, p) for x in compositions(m, v)}  # generation 0's real draws
    out = defaultdict(list)
    for _ in range(generations):
        moments = np.zeros(3)
        after: dict[tuple[int, ...], float] = defaultdict(float)
        for c, w in states.items():
            fit = [(ci + k) / (sum(c) + v * k) for ci in c]
            moments += w * np.array([sum(f * f for f in fit), sum(f > 0 for f in fit), max(fit) == 1])
            for x in compositions(m, v):
                after[tuple(a + b for a, b in zip(c, x)) if accumulate else x] += w * multinomial(x, fit)
        for key, value in zip(("collision", "support", "fixed"), moments):
            out[key].append(value)
        states = after
    return {key: np.array(values) for key, values in out.items()}


@pytest.mark.parametrize(
    "vocab, exponent, m, k, mode",
    [
        (3, 1.0, 3, 0.0, "replace"),
        (3, 0.5, 4, 0.0, "replace"),
        (2, 2.0, 5, 0.0, "replace"),  # Wright-Fisher, p0 = 0.2
        (3, 1.0, 3, 0.5, "replace"),
        (3, 1.0, 2, 0.0, "accumulate"),
        (3, 1.5, 2, 0.25, "accumulate"),
        (1, 1.0, 3, 0.0, "replace"),  # one symbol: fixed from the start
    ],
)
def test_expected_equals_the_enumerated_exact_distribution(vocab, exponent, m, k, mode):
    generations = 4
    e, data = preset_engine(
        "categorical-zipf",
        f"engine.vocab={vocab}",
        f"engine.exponent={exponent}",
        f"engine.samples={m}",
        f"engine.add_k={k}",
        f"data.mode={mode}",
    )
    p = [i**-exponent for i in range(1, vocab + 1)]
    exact = enumerated([w / sum(p) for w in p], m, k, generations, mode == "accumulate")
    got = e.expected(generations, data)
    # with add_k > 0 every symbol keeps mass, so support and fixed are constants, not expectations to show
    assert set(got) == ({"collision"} if k else {"collision", "support", "fixed"})
    for key, values in got.items():
        np.testing.assert_allclose(values, exact[key], rtol=1e-12, atol=1e-14, err_msg=key)
    if k:
        np.testing.assert_allclose(exact["support"], vocab, rtol=1e-12)
        np.testing.assert_allclose(exact["fixed"], vocab == 1, atol=1e-14)


def test_replace_collision_is_the_heterozygosity_decay_and_support_starts_at_the_closed_form():
    """1 - E[C_n] = (1 - C)(1 - 1/M)^(n+1) (Wright-Fisher's heterozygosity), and generation 0's E[support]
    = sum_i 1 - (1 - p_i)^M, for a vocabulary too large to enumerate."""
    e, data = preset_engine("categorical-zipf", "engine.vocab=500", "engine.samples=300")
    p = e.real_probs()
    got = e.expected(50, data)
    decay = 1 - (1 - p @ p) * (1 - 1 / 300) ** np.arange(1, 51)
    np.testing.assert_allclose(got["collision"], decay, rtol=1e-12)
    assert got["support"][0] == pytest.approx(np.sum(1 - (1 - p) ** 300), rel=1e-12)
    assert np.all(np.diff(got["support"]) < 0) and np.all(np.diff(got["fixed"]) >= 0)


def test_fixation_follows_the_wright_fisher_chain_to_certainty_on_each_symbol_by_its_frequency():
    """P(fixed by generation n) against the (M+1)-state chain built with scipy's binomial, symbol 0's
    count c_0 ~ Bin(M, 0.8) then c_{n+1} ~ Bin(M, c_n / M); in the limit it is 1, and the chain ends on
    each symbol with its real probability (the count is a martingale)."""
    m, generations = 40, 1000
    e, data = preset_engine("wright-fisher", f"engine.samples={m}")
    states = np.arange(m + 1)
    step = binom.pmf(states[None, :], m, states[:, None] / m)
    dist = binom.pmf(states, m, WF[0])
    fixed, on_first = [], []
    for _ in range(generations):
        fixed.append(dist[0] + dist[m])
        on_first.append(dist[m])
        dist = dist @ step
    np.testing.assert_allclose(e.expected(generations, data)["fixed"], fixed, rtol=1e-9, atol=1e-14)
    assert fixed[-1] > 1 - 1e-9 and on_first[-1] == pytest.approx(WF[0], abs=1e-9)


def test_a_chain_too_large_to_compute_leaves_support_and_fixed_out():
    e, data = preset_engine("categorical-zipf", f"engine.samples={CHAIN_STATES}")
    assert set(e.expected(3, data)) == {"collision"}


@pytest.mark.parametrize("mode", ["keep", "fresh", "accumulate-subsample"])
def test_modes_without_an_exact_form_expect_nothing(mode):
    e, data = preset_engine("categorical-zipf", f"data.mode={mode}")
    assert e.expected(3, data) == {}
    e, data = preset_engine("categorical-zipf", "data.filter=perplexity")
    assert e.expected(3, data) == {}


# --- the engine's own runs against expected() ---------------------------------------------------------

SEEDS = 4000


def runs(tmp_path, preset: str, generations: int, *sets: str) -> tuple[dict, dict]:
    """Rows of a run of SEEDS seeds, and expected() for the same preset."""
    sets = (f"experiment.generations={generations}", f"experiment.seeds={SEEDS}", "engine.test_samples=10", *sets)
    e, data = preset_engine(preset, *sets)
    return run_preset(tmp_path, preset, *sets), e.expected(generations, data)


def test_collision_of_runs_matches_replace_accumulate_and_add_k(tmp_path):
    """Wrong formulas the SE must exclude: the decay one draw short, (1 - C)(1 - 1/M)^n (replace),
    replace's (for accumulate), and add_k ignored (the k = 0 formula)."""
    small = ("engine.vocab=5", "engine.samples=10")
    rows, exp = runs(tmp_path / "r", "categorical-zipf", 6, *small)
    p = preset_engine("categorical-zipf", *small)[0].real_probs()
    for g in (0, 5):
        agrees(rows[g]["collision"], exp["collision"][g], 1 - (1 - p @ p) * (1 - 1 / 10) ** g)
    # the rarest symbols making up 10% of the real mass: here the last (0.088); its estimated mass is a
    # martingale, so its mean stays the real one while its median is already 0
    assert p[-1] < 0.1 < p[-2] + p[-1]
    assert np.median(rows[5]["tail_mass"]) == 0
    agrees(rows[5]["tail_mass"], p[-1], 0.0)
    acc, exp_acc = runs(tmp_path / "a", "categorical-zipf", 6, *small, "data.mode=accumulate")
    agrees(acc[5]["collision"], exp_acc["collision"][5], exp["collision"][5])
    smooth, exp_k = runs(tmp_path / "k", "categorical-zipf", 6, *small, "engine.add_k=0.5")
    agrees(smooth[5]["collision"], exp_k["collision"][5], exp["collision"][5])


def test_support_of_runs_follows_the_count_chain_and_accumulate_keeps_generation_0s(tmp_path):
    """Replace: the chain's E[support], where generation 0's value for good (no further loss) is wrong.
    Accumulate: generation 0's support in every seed, where replace's loss is wrong."""
    small = ("engine.vocab=20", "engine.samples=20")
    rows, exp = runs(tmp_path / "r", "categorical-zipf", 8, *small)
    agrees(rows[0]["support"], exp["support"][0], exp["support"][0] + 0.5)
    for g in (1, 7):
        agrees(rows[g]["support"], exp["support"][g], exp["support"][0])
    acc, exp_acc = runs(tmp_path / "a", "categorical-zipf", 8, *small, "data.mode=accumulate")
    assert np.array_equal(acc[7]["support"], acc[0]["support"])
    agrees(acc[7]["support"], exp_acc["support"][7], exp["support"][7])


def test_fixation_of_runs_follows_the_chain(tmp_path):
    """Wright-Fisher at M = 10: the share of fixed seeds by generation 0 and 2 against the chain, where
    the chain one generation later is wrong (0.24 against 0.11, 0.42 against 0.34); and tv's law."""
    rows, exp = runs(tmp_path, "wright-fisher", 4, "engine.samples=10")
    for g in (0, 2):
        agrees(rows[g]["fixed"], exp["fixed"][g], exp["fixed"][g + 1])
    # tv to generation 0's estimate is |p_n - p_0| of symbol 0, a martingale's increment: with H = 2 p (1 - p)
    # and E[H_n] = H (1 - 1/M)^(n+1), E[tv_n^2] = (E[H_0] - E[H_n]) / 2; to the real p it would be (H - E[H_n]) / 2
    h = 2 * WF[0] * WF[1] * (1 - 1 / 10) ** np.arange(1, 5)
    agrees(rows[3]["tv"] ** 2, (h[0] - h[3]) / 2, (2 * WF[0] * WF[1] - h[3]) / 2)


def test_each_seed_fixes_on_a_symbol_with_its_real_probability():
    """The engine's fit and sample alone, 4000 seeds of Wright-Fisher at M = 10 until all are fixed: the
    share fixed on the common symbol is p = 0.8 (the frequency is a martingale)."""
    e = CategoricalEngine({"vocab": 2, "exponent": 2.0, "samples": 10})
    rngs = [np.random.default_rng(s) for s in range(SEEDS)]
    data = e.real_data(rngs)
    for _ in range(400):
        probs = e.fit(data, rngs, quiet).model["probs"]
        if np.all(probs.max(axis=1) == 1):
            break
        data = e.sample({"probs": probs}, 10, rngs, quiet).samples
    assert np.all(probs.max(axis=1) == 1)
    agrees(probs[:, 0], WF[0], 1.0)  # wrong: drift always ends on the more probable symbol


def test_add_k_keeps_every_symbol_and_fixes_no_seed(tmp_path):
    rows = run_preset(tmp_path, "categorical-zipf", "experiment.generations=30", "engine.add_k=0.1")
    assert np.all(rows[29]["support"] == 200) and np.all(rows[29]["fixed"] == 0)


# --- the engine's pieces --------------------------------------------------------------------------


def test_draws_never_give_a_symbol_without_mass_and_follow_the_probabilities():
    e = CategoricalEngine({"vocab": 5})
    probs = np.array([[0.0, 0.25, 0.0, 0.75, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    n = 40000
    x = e.sample({"probs": probs}, n, [np.random.default_rng(1), np.random.default_rng(2)], quiet).samples
    assert x.shape == (2, n, 1) and set(np.unique(x[0])) == {1, 3} and set(np.unique(x[1])) == {0}
    share = (x[0] == 3).mean()
    assert abs(share - 0.75) < 4 * math.sqrt(0.75 * 0.25 / n)


def test_the_text_source_is_the_texts_most_frequent_words():
    e = CategoricalEngine({"vocab": 300, "source": "text", "text": WIKI_TRAIN})
    with open(WIKI_TRAIN, encoding="utf-8") as f:
        counts = sorted(Counter(f.read().split()).values(), reverse=True)[:300]
    np.testing.assert_allclose(e.real_probs(), np.array(counts) / sum(counts), rtol=1e-15)


def test_perplexity_is_the_held_out_samples_and_null_once_a_symbol_is_lost(tmp_path):
    """Large M: generation 0's estimate is p, so the perplexity is exp(H(p)) (H = 0.5004 nats for
    (0.8, 0.2)); a Zipf of 200 symbols from 20 draws misses held-out symbols: null in every row."""
    rows = run_preset(
        tmp_path / "a", "wright-fisher", "experiment.generations=1", "engine.samples=100000", "experiment.seeds=4"
    )
    entropy = -sum(q * math.log(q) for q in WF)
    assert rows[0]["perplexity"] == pytest.approx(math.exp(entropy), rel=0.01)
    assert rows[0]["entropy"] == pytest.approx(entropy, rel=0.01)
    lost = run_preset(tmp_path / "b", "categorical-zipf", "experiment.generations=2", "engine.samples=20")
    assert np.all(lost[1]["perplexity"] == np.inf)  # run_preset reads null as inf


def test_every_data_mode_runs_and_tail_mass_and_tv_start_where_they_must(tmp_path):
    for mode in ("keep", "fresh", "accumulate-subsample"):
        rows = run_preset(tmp_path / mode, "categorical-zipf", "experiment.generations=3", f"data.mode={mode}")
        assert np.all(rows[2]["support"] > 1) and np.all(rows[0]["tv"] == 0)
    rows = run_preset(tmp_path / "filter", "categorical-zipf", "experiment.generations=3", "data.filter=perplexity")
    # filtering keeps the symbols the reference finds most probable: the tail goes faster than in replace
    plain = run_preset(tmp_path / "plain", "categorical-zipf", "experiment.generations=3")
    assert np.median(rows[2]["tail_mass"]) < np.median(plain[2]["tail_mass"])
    # the rarest symbols making up 10% of Zipf's mass: generation 0's mass on them is 10% on average
    assert abs(plain[0]["tail_mass"].mean() - 0.1) < 0.02


# --- presets and bad keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["categorical-zipf", "categorical-text", "wright-fisher"])
def test_each_preset_shows_its_law_beside_the_theory(tmp_path, preset):
    """As shipped: every expected metric's mean over the preset's seeds within 4 SE at the last generation,
    and the law visible: symbols lost, or seeds fixed."""
    cfg = load_preset(preset)
    rows = run_preset(tmp_path, preset)
    last = rows[cfg.generations - 1]
    expected = CategoricalEngine(cfg.engine).expected(cfg.generations, cfg.data.as_dict())
    assert set(expected) == {"collision", "support", "fixed"}
    for key, values in expected.items():
        # fixed is 0 or 1: its SE from the expected chance, which a run of no fixed seed cannot measure
        spread = math.sqrt(values[-1] * (1 - values[-1])) if key == "fixed" else last[key].std(ddof=1)
        se = spread / math.sqrt(len(cfg.seeds))
        assert abs(last[key].mean() - values[-1]) <= 4 * se, (key, last[key].mean(), values[-1])
    if preset == "wright-fisher":
        assert last["fixed"].mean() > 0.8 and rows[0]["fixed"].mean() == 0
    else:
        assert np.all(last["support"] < rows[0]["support"] / 5)


def refused(args: list[str], tmp_path, capsys, words: list[str]) -> None:
    runs = tmp_path / "runs"
    code = main(["--batch", *args, "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("collapse-tui: "), err
    assert all(w in err for w in words), (words, err)
    assert not runs.exists()


@pytest.mark.parametrize(
    "sets, text, words",
    [
        (["engine.vocab=0"], None, ["engine.vocab", "[1, 1e+06]", "got 0"]),
        (["engine.source=text"], None, ["engine.text", "set engine.text"]),
        (["engine.source=text", "engine.text='{dir}/none.txt'"], None, ["engine.text", "no such file", "none.txt"]),
        (["engine.source=text", "engine.text='{dir}/w.txt'"], b"ab \xff\xfe cd\n", ["engine.text", "not UTF-8"]),
        (["engine.source=text", "engine.text='{dir}/w.txt'", "engine.vocab=4"], b"a b\nb a c\n", ["3 distinct"]),
        (["engine.add_k=-1"], None, ["engine.add_k", ">= 0"]),
    ],
    ids=["vocab-0", "text-unset", "text-missing", "text-not-utf8", "fewer-words", "negative-k"],
)
def test_bad_keys_are_one_line_before_a_run_directory(sets, text, words, tmp_path, capsys):
    if text is not None:
        (tmp_path / "w.txt").write_bytes(text)
    args = ["categorical-zipf"]
    for s in sets:
        args += ["--set", s.replace("{dir}", str(tmp_path))]
    refused(args, tmp_path, capsys, words)

"""Theory beside a run: what the run's engine says, in closed form, of the mean over seeds of some of its
metrics (Engine.expected), written into the run directory, read back, and set against what the seeds
measured.

theory.jsonl holds one row per generation 0 .. generations - 1: {"generation": g, "expected_<metric>": value,
...}, null where theory gives no finite number. loop.run writes it when a run starts (again when a resume
extends the run), only when the engine declares something for the preset. Only single-chain runs whose
seeds train on their own samples get one: with [[chains]] or data.share_seeds a seed's next data are drawn
from other chains' or other seeds' samples (mixing.py), which an engine's formulas, functions of its own
keys and the data mode, do not model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .engines import DataError, engine_class
from .files import atomic_write, json_lines
from .numbers import fmt, plural, short
from .records import RunDirError, is_value, parse_json
from .summary import values

THEORY = "theory.jsonl"
PREFIX = "expected_"  # a theory row's key for a metric
LEVEL = 0.95  # the checks' interval: mean +- t_{0.975, S-1} SE
CONSISTENT, INCONSISTENT, NOT_CHECKED = "consistent", "INCONSISTENT", "not checked"
# the checks' limit on mean_skew: in simulations of the paper's single Gaussian (M 10 to 100, 10 to 200
# generations, 20 to 5000 seeds) a correct formula then reads INCONSISTENT in at most 7% of runs, where an
# unguarded t interval misses its expectation in up to 94% (M = 20, 200 generations, 20 seeds)
SKEW_LIMIT = 0.5


def expected(cfg: Config) -> dict[str, np.ndarray]:
    """{metric: (generations,) floats, NaN where there is no finite value} that the engine gives for this
    preset; {} for chains, pooled seeds (see the module's docstring), or an engine that cannot have its
    data (a file gone since the run started). ValueError when the engine gives what is not its metrics'."""
    if cfg.chains or cfg.data.share_seeds:
        return {}
    cls = engine_class(cfg.engine_name)
    try:  # the engine as the loop makes it: its [train] keys too (a mitigation changes the fit)
        out = cls(cfg.engine, train=cfg.train.as_dict()).expected(cfg.generations, cfg.data.as_dict())
    except DataError:
        return {}
    checked = {}
    for key, curve in out.items():
        curve = np.asarray(curve, dtype=float)
        if key not in cls.METRICS or curve.shape != (cfg.generations,):
            raise ValueError(
                f"engine {cls.name!r}: expected() gave {short(key)} of shape {curve.shape}: a metric of its "
                f"METRICS with one value per generation ({cfg.generations}) was expected"
            )
        checked[key] = np.where(np.isfinite(curve), curve, math.nan)
    return checked


def write_theory(run: Path, cfg: Config) -> None:
    """theory.jsonl for cfg in the run directory run, atomically; nothing when the engine declares nothing."""
    curves = expected(cfg)
    if curves:
        rows = [{"generation": g} | {PREFIX + k: v[g] for k, v in curves.items()} for g in range(cfg.generations)]
        atomic_write(run / THEORY, json_lines(rows))


def read_theory(run: Path) -> dict[str, np.ndarray]:
    """theory.jsonl as {metric: (generations,) floats, NaN for null}; {} when the run has none. RunDirError
    naming the line when it is not what write_theory writes: an object per line with generation 0, 1, ...
    in order and the same expected_<metric> keys, each a finite number or null."""
    path = run / THEORY
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise RunDirError(f"{path}: cannot read it: {e.strerror}") from None
    curves: dict[str, list[float]] = {}
    for i, line in enumerate(lines):
        row = parse_json(line, path, i + 1)
        keys = [k for k in row if k != "generation"] if isinstance(row, dict) else []
        if not isinstance(row, dict) or row.get("generation") != i or type(row["generation"]) is not int:
            raise RunDirError(f"{path}: line {i + 1}: expected an object with generation {i}, got {short(row)}")
        if not keys or (curves and set(keys) != set(curves)) or not all(k.startswith(PREFIX) for k in keys):
            raise RunDirError(f"{path}: line {i + 1}: expected the same {PREFIX}<metric> keys on every line")
        for k in keys:
            if not is_value(row[k]):
                raise RunDirError(f"{path}: line {i + 1}: {k} should be a finite number or null, got {short(row[k])}")
            curves.setdefault(k, []).append(math.nan if row[k] is None else row[k])
    return {k.removeprefix(PREFIX): np.array(v, dtype=float) for k, v in curves.items()}


@dataclass(frozen=True)
class Check:
    """One metric at one generation: the mean over seeds, its 95% interval (mean +- half), what theory
    expects, and the verdict: consistent (the expected value inside the interval), INCONSISTENT, or
    not checked, with why (one seed, a seed without a value, no spread over seeds, no expected value)."""

    metric: str
    generation: int
    seeds: int
    mean: float  # NaN when a seed's value is unknown (null, not finite): the mean is then unknown too
    half: float  # NaN when there is no interval
    expected: float
    verdict: str
    why: str = ""

    def parts(self) -> tuple[str, str, str]:
        """The line in three parts, what was measured and expected, the verdict, and why (or ''), e.g.
        ('theory: variance at generation 199: mean 0.9812 [0.8804, 1.082] (95%, 20 seeds); expected 1: ',
        'consistent', '')."""
        n = plural(self.seeds, "seed")
        observed = f"mean {fmt(self.mean)} ({n})"
        if math.isfinite(self.half):
            interval = f"[{fmt(self.mean - self.half)}, {fmt(self.mean + self.half)}]"
            observed = f"mean {fmt(self.mean)} {interval} ({LEVEL:.0%}, {n})"
        head = f"theory: {self.metric} at generation {self.generation}: {observed}; expected {fmt(self.expected)}: "
        return head, self.verdict, f" ({self.why})" if self.why else ""

    def text(self) -> str:
        return "".join(self.parts())


def check(metric: str, generation: int, observed: np.ndarray, expected_value: float) -> Check:
    """observed (one value per seed, NaN where unknown) against the expected mean: inside the t interval of
    the mean is consistent, outside INCONSISTENT (about one check in twenty for a correct formula); not
    checked where the interval cannot be trusted (one seed, an unknown value, values too skewed)."""
    n = observed.size
    unknown = int(np.count_nonzero(~np.isfinite(observed)))
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(observed.mean()) if n and not unknown else math.nan
        sd = float(observed.std(ddof=1)) if n > 1 and not unknown else math.nan
    half = t_quantile(1 - (1 - LEVEL) / 2, n - 1) * sd / math.sqrt(n) if n > 1 else math.nan

    def verdict(v: str, why: str = "", half: float = math.nan) -> Check:
        return Check(metric, generation, n, mean, half, expected_value, v, why)

    if not math.isfinite(expected_value):
        return verdict(NOT_CHECKED, "no expected value")
    if unknown:
        return verdict(NOT_CHECKED, f"{unknown} of {plural(n, 'seed')} without a value")
    if n < 2:
        return verdict(NOT_CHECKED, "one seed gives no interval")
    if not (math.isfinite(mean) and math.isfinite(half)):
        return verdict(NOT_CHECKED, "the values overflow")
    if half == 0:  # every seed the same: a point, not an interval
        same = math.isclose(mean, expected_value, rel_tol=1e-9, abs_tol=1e-12)
        return verdict(CONSISTENT, "every seed equal to it") if same else verdict(NOT_CHECKED, "no spread over seeds")
    if mean_skew(observed) > SKEW_LIMIT:
        return verdict(NOT_CHECKED, f"too skewed for an interval from {plural(n, 'seed')}", half)
    return verdict(CONSISTENT if abs(mean - expected_value) <= half else INCONSISTENT, half=half)


def mean_skew(x: np.ndarray) -> float:
    """About how skewed the mean of these values (one per seed, at least two, finite, not all equal) is:
    the values' skewness over sqrt(S); for positive values the larger of the sample's and that of a lognormal
    of the same spread in log, (w + 2) sqrt(w - 1) with w = exp(var(ln x)). A collapsing chain is a product
    of many random factors: the seeds that hold its mean up are rare, often beyond those a run has, and
    the log spread of the others still shows how far the tail reaches."""
    dev = x - x.mean()
    skew = abs((dev**3).mean()) / (dev**2).mean() ** 1.5
    if (x > 0).all():
        with np.errstate(over="ignore"):
            w = math.exp(min(float(np.log(x).var(ddof=1)), 700.0))
        skew = max(skew, (w + 2) * math.sqrt(w - 1))
    return skew / math.sqrt(x.size)


def checks(rows: Sequence[Mapping[str, Any]], curves: Mapping[str, np.ndarray]) -> list[Check]:
    """A Check per metric of curves at the generation of rows (one generation's rows, one per seed);
    none for a generation the curves do not reach."""
    if not rows:
        return []
    g = rows[0]["generation"]
    return [check(k, g, values(rows, k, log=False), float(c[g])) for k, c in curves.items() if g < len(c)]


def t_quantile(p: float, df: int) -> float:
    """The p quantile (p > 1/2) of Student's t with df >= 1 degrees of freedom: bisection on P(|T| < t),
    which for whole df is a finite sum (Abramowitz & Stegun 26.7.3 and 26.7.4)."""
    lo, hi = 0.0, 1.0
    while _t_within(hi, df) < 2 * p - 1:
        hi *= 2
    for _ in range(200):  # to the last bit
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if _t_within(mid, df) < 2 * p - 1 else (lo, mid)
    return hi


def _t_within(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with df degrees of freedom (A&S 26.7.3, 26.7.4), theta = atan(t / sqrt(df))."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:  # sin(theta) (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...), df/2 terms
        k = np.arange(1, df // 2)
        return s * (1 + np.cumprod((2 * k - 1) / (2 * k) * c2).sum())
    if df == 1:
        return 2 * theta / math.pi
    k = np.arange(1, (df - 1) // 2)  # 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
    return 2 / math.pi * (theta + s * math.sqrt(c2) * (1 + np.cumprod(2 * k / (2 * k + 1) * c2).sum()))

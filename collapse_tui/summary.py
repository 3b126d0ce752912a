"""Numbers over seeds from metrics rows: the one place that says what the tables, sparklines, logs,
`compare` and the reports show of a metric at a generation.

- The centre is the median over seeds and the band the 16th to 84th percentile: a band that never
  leaves the range of the values (no negative variance), with the centre always inside it.
- A log-quantity (perplexity, and the metrics an engine declares with Metric(log=True)) is kept in
  log10: the quantity itself can overflow float (a seed whose model gives the real data almost no
  density has a perplexity of e^820), its logarithm does not. Perplexity's natural log is the row's
  nll (every engine writes both), so a perplexity written as null is still summarised exactly.
- A value that was not computed (null in metrics.jsonl: an overflow or an undefined number such as
  0/0; a non-finite value in memory, which would be written so; a key missing from a row) is unknown,
  and so is a summary over seeds of which one is unknown: every table shows it as numbers.NA, never
  as a number.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .chains import DISTANCE_PREFIX
from .engines import Engine, EngineError, Metric, engine_class
from .numbers import NA, fmt, short_exponent

SERIES = ("perplexity", "variance")  # what the sparklines show
BAND = (16, 84)  # percentiles over seeds
LOG_OF = {"perplexity": "nll"}  # the row key holding a log-quantity's natural log
LN10 = math.log(10.0)
HUGE_DECADES = 1e6  # a log10 value past this is written as a power of ten


@dataclass(frozen=True)
class Summary:
    """One metric at one generation over seeds; log10 values when log is set."""

    centre: float
    lo: float
    hi: float
    seeds: int
    log: bool = False

    def text(self, digits: int = 4) -> str:
        """'34.2' for one seed or no spread, else '34.2 [30.1, 38.9]' (the band over seeds, one digit less)."""
        if self.seeds < 2 or self.lo == self.hi or math.isnan(self.lo):
            return value_text(self.centre, self.log, digits)
        band = f"{value_text(self.lo, self.log, digits - 1)}, {value_text(self.hi, self.log, digits - 1)}"
        return f"{value_text(self.centre, self.log, digits)} [{band}]"


def value_text(x: float, log: bool = False, digits: int = 4) -> str:
    """A number in `digits` significant digits; a log10 value as the number it stands for, past float's
    range too (10^356.1 reads 1.26e356; past a million decades, 10^5.082e18)."""
    if not log or math.isnan(x):
        return fmt(x, digits=digits)
    if math.isinf(x):
        return "inf" if x > 0 else "0"
    if -4 < x < 6:
        return fmt(10.0**x, digits=digits)
    if abs(x) >= HUGE_DECADES:  # x - floor(x) has lost its digits: the power of ten alone (10^5.08e18)
        return f"10^{short_exponent(f'{x:.{digits}g}')}"
    exponent, n = math.floor(x), max(digits - 1, 1)
    mantissa = float(f"{10.0 ** (x - exponent):.{n}g}")
    if mantissa >= 10:  # rounded up: 10^6.99999 at 3 digits reads 1e7, not 10e6
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.{n}g}e{exponent}"


def change_text(before: Summary, after: Summary, digits: int = 4) -> str:
    """after against before: a ratio for log-quantities ('×1.35', '×1e352'), a difference otherwise; NA
    when either is unknown (or both are 0 on a log scale)."""
    d = after.centre - before.centre
    return ratio_text(d) if after.log else fmt(d, signed=True, digits=digits)


def ratio_text(d: float) -> str:
    """A change of d in log10 as a ratio: '+3.5%' for small ones, '×12.6', '×1e352' for large ones."""
    if math.isnan(d):
        return NA
    if math.isinf(d):
        return "×inf" if d > 0 else "×0"
    return f"{10.0**d - 1:+.2%}" if abs(d) < 0.15 else f"×{value_text(d, log=True, digits=3)}"


def is_log(key: str, log_keys: Iterable[str] = ()) -> bool:
    """log_keys holds DISTANCE_PREFIX when the engine's distances to other chains are log-quantities."""
    keys = set(log_keys)
    return key in LOG_OF or key in keys or (key.startswith(DISTANCE_PREFIX) and DISTANCE_PREFIX in keys)


def values(rows: Sequence[dict[str, Any]], key: str, log: bool) -> np.ndarray:
    """The metric over these rows as floats (log10 when log, where 0 is -inf); NaN where it was not
    computed (null, missing or not finite: what metrics.jsonl holds of it once written). The rows'
    values are numbers or null (rundir.valid_row)."""
    if not log:
        x = np.array([r.get(key) for r in rows], dtype=float)  # None reads as NaN
        x[~np.isfinite(x)] = math.nan
        return x
    ln_key = LOG_OF.get(key)
    return np.array([_log10(r.get(key), r.get(ln_key) if ln_key else None) for r in rows], dtype=float)


def _log10(v: float | None, ln: float | None) -> float:
    """log10 of v from its natural log ln when that is known, else from v (0: -inf); NaN when neither is."""
    if ln is not None and math.isfinite(ln):
        return ln / LN10
    if v is None or not math.isfinite(v):
        return math.nan
    return math.log10(v) if v > 0 else -math.inf if v == 0 else math.nan


def summarize(xs: np.ndarray, log: bool = False) -> Summary:
    """Median and 16-84th percentiles of one metric's values over seeds (already in log10 if log)."""
    return summarize_columns(xs[:, None], [log])[0]


def summarize_columns(table: np.ndarray, logs: Sequence[bool]) -> list[Summary]:
    """summarize() of each column of a (seeds, metrics) table at once: fast engines finish hundreds
    of generations a second, and the app summarises each as it comes."""
    n = table.shape[0]
    if not n:
        return [Summary(math.nan, math.nan, math.nan, 0, log) for log in logs]
    with np.errstate(invalid="ignore"):
        q = np.percentile(table, [BAND[0], 50, BAND[1]], axis=0)  # nan where a seed's value is unknown
    # between two -inf (log10 of 0) the interpolation gives nan too: there the value is -inf
    q = np.where(np.isnan(q) & np.isinf(table).any(axis=0) & ~np.isnan(table).any(axis=0), -math.inf, q)
    return [Summary(float(c), float(lo), float(hi), n, log) for lo, c, hi, log in zip(*q, logs)]


def summarize_rows(
    rows: Sequence[dict[str, Any]], keys: Sequence[str], log_keys: Iterable[str] = ()
) -> dict[str, Summary]:
    """Every key's summary over these rows (one generation's, one per seed)."""
    logs = [is_log(k, log_keys) for k in keys]
    table = np.stack([values(rows, k, log) for k, log in zip(keys, logs)], axis=1) if keys else np.zeros((len(rows), 0))
    return dict(zip(keys, summarize_columns(table, logs)))


def scalar_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Metric names with one number per row, in the order rows first list them."""
    keys: dict[str, None] = {}
    for row in rows[:1]:
        for k, v in row.items():
            if k not in ("seed", "generation") and isinstance(v, int | float | None) and not isinstance(v, bool):
                keys[k] = None
    return list(keys)


def by_generation(rows: list[dict[str, Any]], key: str, log_keys: Iterable[str] = ()) -> dict[int, Summary]:
    """generation -> the metric's summary over seeds, generations in order."""
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["generation"]].append(row)
    log = is_log(key, log_keys)
    return {g: summarize(values(groups[g], key, log), log) for g in sorted(groups)}


def log_keys_of(engine: str) -> set[str]:
    """The metrics an engine declares as log-quantities (none when it does not load); DISTANCE_PREFIX
    among them when its distances to other chains are (is_log)."""
    try:
        cls = engine_class(engine)
    except EngineError:
        return set()
    distance = {DISTANCE_PREFIX} if cls.DISTANCE is not None and cls.DISTANCE.log else set()
    return {k for k, m in cls.METRICS.items() if m.log} | distance


def headline_of(engine: str) -> dict[str, str]:
    """An engine's headline metrics (Engine.HEADLINE), each with the way it moves as the model collapses
    (engines.base.UP or DOWN); the contract's default when the engine does not load."""
    try:
        return dict(engine_class(engine).HEADLINE)
    except EngineError:
        return dict(Engine.HEADLINE)


def metric_of(engine: str, key: str) -> Metric | None:
    """How an engine declares a metric, its distance to another chain (dist_<chain>) included; None when
    it declares none or does not load."""
    try:
        cls = engine_class(engine)
    except EngineError:
        return None
    if key.startswith(DISTANCE_PREFIX) and cls.DISTANCE is not None:
        d = cls.DISTANCE
        return Metric(f"{d.label} ({key.removeprefix(DISTANCE_PREFIX)})", d.unit, d.log)
    return cls.METRICS.get(key)

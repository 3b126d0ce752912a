"""What each fix buys and costs: a sweep with variants (sweep.py) read as one table, a row per cell.

The headline is HEADLINE, the perplexity of real held-out data under the generation's model: every engine
measures it (engines/base.py), and it is lowest for the model closest to the real distribution (the
cross-entropy of the real data under a model is at least their entropy, with equality only for the real
distribution: Gibbs' inequality, Cover & Thomas, Elements of Information Theory, Thm 2.6.3), so a lower
final perplexity is a better fix; collapse shows as its rise (Shumailov et al. 2024, Figs. 1b and 4).

Per cell, in summary.py's terms (median over seeds, 16-84th percentile band, a log-quantity in log10):
the value at generation 0 and at the final generation (the last one every cell has reached, or the one
asked for), the change between them, the final against the baseline variant's at the same values of the
other swept keys (the variant named BASELINE, else the first: a log10 ratio for a log-quantity, a ratio
otherwise), the compute seconds of generations 0 .. final (status.json's "seconds", loop.py) and their
ratio to the baseline's, and the rank among the variants (1: the lowest final; equal finals share a rank).
Plain numbers for the CSV and the tables; report/ draws them and the app's sweep screen lists them.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .numbers import NA, fmt
from .runs import Run
from .summary import is_log, ratio_text, summarize, value_text, values
from .sweep import VARIANT
from .sweepdir import SweepDir

HEADLINE = "perplexity"
BASELINE = "replace"


@dataclass(frozen=True)
class Outcome:
    """One cell of a sweep with variants: its headline numbers (log10 values when log is set)."""

    cell: str
    variant: str
    others: dict[str, Any]  # the cell's values of the other swept keys
    metric: str
    log: bool
    generation: int  # the final generation
    seeds: int
    start: float  # median at generation 0
    final: float  # median at the final generation, and its band over seeds
    final_lo: float
    final_hi: float
    change: float  # final - start (for a log-quantity: log10 of final / start)
    ratio: float  # final against the baseline's final: log10 of their ratio when log, else their ratio
    seconds: float  # compute seconds of generations 0 .. generation (NaN: not recorded)
    seconds_ratio: float  # against the baseline's seconds
    rank: int | None  # among the variants at the same other values; None when final is unknown
    baseline: str


def baseline(sweep: SweepDir) -> str:
    """The variant the others are measured against: BASELINE if the sweep has it, else its first."""
    names = list(sweep.variants)
    return BASELINE if BASELINE in names else names[0]


def final_generation(runs: Sequence[Run], generation: int | None = None) -> int:
    """The generation the table compares: the one asked for, else the last that every cell with rows has
    reached (as the sweep's figures: report/sweep.py); -1 when none has any."""
    return generation if generation is not None else min((r.last_generation for r in runs if r.rows), default=-1)


def outcomes(
    sweep: SweepDir, runs: Mapping[str, Run], metric: str = HEADLINE, generation: int | None = None
) -> list[Outcome]:
    """A row per cell of runs (cell name -> its run; cells missing from it are left out), in the sweep's
    order; empty for a sweep without variants."""
    if not sweep.variants:
        return []
    cells = [c for c in sweep.cells if c.name in runs]
    gen = final_generation([runs[c.name] for c in cells], generation)
    base = baseline(sweep)
    found = {c.name: _numbers(runs[c.name], metric, gen) for c in cells}
    variant_of = {c.name: c.values[VARIANT] for c in cells}
    groups: dict[str, list[str]] = {}  # the other swept values -> the cells that have them, a variant each
    for c in cells:
        groups.setdefault(repr(_others(c.values)), []).append(c.name)
    out = []
    for cell in cells:
        others = _others(cell.values)
        group = groups[repr(others)]
        ref = next((found[n] for n in group if variant_of[n] == base), _UNKNOWN)  # the baseline not readable
        start, final, lo, hi, seeds, seconds, log = found[cell.name]
        finals = [f for f in (found[n].final for n in group) if not math.isnan(f)]
        out.append(
            Outcome(
                cell.name,
                variant_of[cell.name],
                others,
                metric,
                log,
                gen,
                seeds,
                start,
                final,
                lo,
                hi,
                _minus(final, start) if log else final - start,
                _minus(final, ref.final) if log else _divide(final, ref.final),
                seconds,
                _divide(seconds, ref.seconds),
                None if math.isnan(final) else 1 + sum(f < final for f in finals),
                base,
            )
        )
    return out


def _others(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != VARIANT}


class _Numbers(NamedTuple):
    start: float
    final: float
    final_lo: float
    final_hi: float
    seeds: int
    seconds: float
    log: bool


_UNKNOWN = _Numbers(math.nan, math.nan, math.nan, math.nan, 0, math.nan, True)


def _numbers(run: Run, metric: str, gen: int) -> _Numbers:
    """One run's metric at generations 0 and gen over seeds, and the compute seconds up to gen."""
    log = is_log(metric, run.log_keys)
    at = {g: [r for r in run.rows if r["generation"] == g and metric in r] for g in (0, gen)}
    first, last = (summarize(values(at[g], metric, log), log) for g in (0, gen))
    return _Numbers(first.centre, last.centre, last.lo, last.hi, last.seeds, compute_seconds(run.status, gen), log)


def compute_seconds(status: Mapping[str, Any], generation: int) -> float:
    """The compute seconds of generations 0 .. generation that status.json records; NaN when one is not."""
    times = status.get("seconds", [])[: generation + 1]
    if generation < 0 or len(times) < generation + 1 or None in times:
        return math.nan
    return float(sum(times))


def _minus(a: float, b: float) -> float:
    """a - b, NaN where either is unknown or both are the same infinity (a log10 ratio of 0 to 0)."""
    return math.nan if math.isnan(a) or math.isnan(b) or (math.isinf(a) and a == b) else a - b


def _divide(a: float, b: float) -> float:
    return a / b if b and not (math.isnan(a) or math.isnan(b)) else math.nan


# --- words and files -------------------------------------------------------------------------------


def columns(outs: Sequence[Outcome]) -> list[str]:
    """The headings of the table the report draws and the app shows."""
    base = outs[0].baseline if outs else BASELINE
    return ["variant", "final", "change", f"vs {base}", "seconds", "cost", "rank"]


def texts(o: Outcome, cell: bool = True) -> list[str]:
    """One row of that table: the cell (or only its variant, where the other swept values go without
    saying), its final median, its change since generation 0, its final against
    the baseline's (ratios for a log-quantity: '×12.6', '-35.20%'), its compute seconds and their ratio to
    the baseline's, and its rank."""
    change = ratio_text(o.change) if o.log else fmt(o.change, signed=True)
    ratio = ratio_text(o.ratio) if o.log else (NA if math.isnan(o.ratio) else f"×{fmt(o.ratio, digits=3)}")
    cost = NA if math.isnan(o.seconds_ratio) else f"×{o.seconds_ratio:.2f}"
    rank = NA if o.rank is None else str(o.rank)
    return [
        o.cell if cell else o.variant,
        value_text(o.final, o.log),
        change,
        ratio,
        fmt(o.seconds, digits=3),
        cost,
        rank,
    ]


def csv_text(outs: Sequence[Outcome]) -> str:
    """mitigations.csv: a row per cell; a log-quantity's columns hold log10 values and say so (_log10).
    An unknown number is an empty cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    others = list(outs[0].others) if outs else []
    log = "_log10" if outs and outs[0].log else ""
    numbers = ("start", "final", "final_p16", "final_p84", "change", "ratio")
    writer.writerow(
        ["variant", *others, "cell", "metric", "generation", "seeds", *(n + log for n in numbers)]
        + ["baseline", "seconds", "seconds_ratio", "rank"]
    )
    for o in outs:
        nums = (o.start, o.final, o.final_lo, o.final_hi, o.change, o.ratio)
        writer.writerow(
            [o.variant, *o.others.values(), o.cell, o.metric, o.generation, o.seeds, *map(_cell, nums)]
            + [o.baseline, _cell(o.seconds), _cell(o.seconds_ratio), "" if o.rank is None else o.rank]
        )
    return buf.getvalue()


def _cell(x: float) -> str:
    return repr(x) if math.isfinite(x) else ""

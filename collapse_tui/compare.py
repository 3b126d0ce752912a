"""`collapse-tui compare RUN_DIR RUN_DIR ...`: runs side by side, and what reports share.

For every scalar metric the runs share: the final value (median over seeds and its 16th-84th
percentile band, at the run's last generation or at --generation N), the peak of the per-generation
medians, and the change per generation (least-squares slope of the medians; log-quantities as ratios);
then each later run against the first. Runs are columns (A, B, ...) so that it reads at 80 columns;
columns that do not fit go to the next page (compare_tables). compare_rows() gives the numbers as
plain dicts and grid() the cells, for these tables and the app's.
Works on finished, stopped, failed and
crashed runs (and on live ones: a snapshot of what is on disk).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .config import ConfigError
from .numbers import NA, fmt, plural
from .rundir import RunDir
from .runs import Run, load_runs, shared_metrics
from .summary import Summary, by_generation, is_log, ratio_text, value_text
from .sweepdir import expand


def slope(generations: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares change per generation over the finite values (nan with fewer than two)."""
    x, y = np.asarray(generations, dtype=float), np.asarray(values, dtype=float)
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return math.nan
    x, y = x[ok], y[ok]
    dx = x - x.mean()
    return float((dx * (y - y.mean())).sum() / (dx * dx).sum())


def metric_summary(rows: list[dict[str, Any]], key: str, log_keys: set[str], at: int | None = None) -> dict[str, Any]:
    """At the run's last generation (or the last one up to `at`): the median over seeds with its 16-84th
    percentile band, the peak of the per-generation medians and their least-squares slope per generation.
    Log-quantities in log10: their slope is decades per generation."""
    series = {g: s for g, s in by_generation(rows, key, log_keys).items() if at is None or g <= at}
    log = is_log(key, log_keys)
    if not series:
        empty = dict.fromkeys(("final", "final_lo", "final_hi", "peak", "slope"), math.nan)
        return empty | {"seeds": 0, "log": log, "generation": None, "peak_generation": None}
    gens = list(series)
    centres = [series[g].centre for g in gens]
    last = series[gens[-1]]
    known = [(c, g) for c, g in zip(centres, gens) if not math.isnan(c)]
    peak, peak_gen = max(known) if known else (math.nan, None)
    return {
        "final": last.centre,
        "final_lo": last.lo,
        "final_hi": last.hi,
        "seeds": last.seeds,
        "log": log,
        "generation": gens[-1],
        "peak": peak,
        "peak_generation": peak_gen,
        "slope": slope(gens, centres),
    }


def _difference(a: float, b: float) -> float:
    with np.errstate(invalid="ignore"):
        return float(np.float64(a) - np.float64(b))  # inf - inf is nan, not an exception


def compare_rows(runs: Sequence[Run | RunDir | Path | str], at: int | None = None) -> list[dict[str, Any]]:
    """The comparison as flat dicts, per metric: one row per run (kind 'run'), then one per later run
    against the first (kind 'diff': final, peak and slope differences, a log10 ratio for log-quantities).
    Keys: metric, run, kind, log, final, final_lo, final_hi, seeds, generation, peak, peak_generation, slope."""
    if all(isinstance(r, Run) and r.label for r in runs):
        loaded = list(runs)
    else:
        loaded = load_runs([r.rundir if isinstance(r, Run) else r for r in runs])
    log_keys = set().union(*(r.log_keys for r in loaded))
    out: list[dict[str, Any]] = []
    for key in shared_metrics(loaded):
        stats = [metric_summary(r.rows, key, log_keys, at) for r in loaded]
        for run, s in zip(loaded, stats):
            out.append({"metric": key, "run": run.label, "kind": "run", **s})
        first = stats[0]
        for run, s in zip(loaded[1:], stats[1:]):
            diff = {k: _difference(s[k], first[k]) for k in ("final", "peak", "slope")}
            none = dict.fromkeys(("final_lo", "final_hi", "generation", "peak_generation"))
            label = f"{run.label} vs {loaded[0].label}"
            out.append({"metric": key, "run": label, "kind": "diff", "log": s["log"], "seeds": 0, **diff, **none})
    return out


def letters(n: int) -> list[str]:
    """Short column names for n runs: A, B, ..., Z, AA, AB ..."""
    names = []
    for i in range(n):
        name = ""
        i += 1
        while i:
            i, r = divmod(i - 1, 26)
            name = chr(65 + r) + name
        names.append(name)
    return names


def grid(rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, ...]]]:
    """The comparison as the CLI's table and the app's show it: a column per run (A, B, ...) and per
    difference to the first run ('B vs A'); per metric three lines: the final median with its band, the
    peak (and its generation), the change per generation (a ratio for log-quantities)."""
    runs = list(dict.fromkeys(r["run"] for r in rows if r["kind"] == "run"))
    names = letters(len(runs))
    columns = ["metric", *names, *(f"{n} vs {names[0]}" for n in names[1:])]
    lines: list[tuple[str, ...]] = []
    for metric in dict.fromkeys(r["metric"] for r in rows):
        of = [r for r in rows if r["metric"] == metric]
        mine, diffs = [r for r in of if r["kind"] == "run"], [r for r in of if r["kind"] == "diff"]
        final = [_final_text(r) for r in mine] + [_moved_text(r["final"], r["log"]) for r in diffs]
        peak = [_peak_text(r) for r in mine] + [_moved_text(r["peak"], r["log"]) for r in diffs]
        per_gen = [_moved_text(r["slope"], r["log"], per=True) for r in mine + diffs]
        lines += [(metric, *final), ("  peak (gen)", *peak), ("  change / gen", *per_gen)]
    return columns, lines


def _final_text(r: dict[str, Any]) -> str:
    if r["generation"] is None:
        return NA
    return Summary(r["final"], r["final_lo"], r["final_hi"], r["seeds"], r["log"]).text(digits=3)  # 80 columns


def _peak_text(r: dict[str, Any]) -> str:
    return NA if r["peak_generation"] is None else f"{value_text(r['peak'], r['log'], 3)} ({r['peak_generation']})"


def _moved_text(d: float, log: bool, per: bool = False) -> str:
    """A difference (or a slope): a ratio for log-quantities, signed otherwise."""
    if math.isnan(d):
        return NA
    return (ratio_text(d) if log else fmt(d, signed=True, digits=3)) + ("/gen" if per and log else "")


def compare_tables(rows: list[dict[str, Any]], tty: bool, width: int):
    """grid() as tables at most `width` columns wide: the metric column, then as many of the others as fit,
    page after page (a sweep's many runs), so that no number is wrapped or cut."""
    from rich.console import Console
    from rich.measure import Measurement

    columns, lines = grid(rows)
    unbounded = Console(width=2**16)  # a table's natural width, not what a console would squeeze it to
    pages: list[list[int]] = []
    for i in range(1, len(columns)):
        wider = [*pages[-1], i] if pages else [i]
        fits = Measurement.get(unbounded, unbounded.options, _table(columns, lines, wider, tty)).maximum <= width
        if pages and fits:
            pages[-1] = wider
        else:
            pages.append([i])
    return [_table(columns, lines, page, tty) for page in pages]


def _table(columns: list[str], lines: list[tuple[str, ...]], page: list[int], tty: bool):
    """The metric column and the columns of page; a cell wider than the screen folds, never ends in '…'."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD if tty else box.ASCII)
    for i in (0, *page):
        diff = " vs " in columns[i]
        style = "italic" if tty and diff else None  # the differences apart from the runs' own numbers
        table.add_column(columns[i], justify="right" if i else "left", overflow="fold", style=style)
    for n, cells in enumerate(lines):
        table.add_row(*(cells[i] for i in (0, *page)), end_section=n % 3 == 2)
    return table


def print_comparison(runs: list[Run], out: TextIO, at: int | None = None) -> None:
    from rich.console import Console

    tty = out.isatty()
    # logs: no wrapping, unless COLUMNS asks for a width (COLUMNS=80 collapse-tui compare ... | less); an
    # empty or non-numeric COLUMNS asks nothing (rich would then fall back to 80)
    asked = os.environ.get("COLUMNS", "").isdigit()
    console = Console(file=out, highlight=False, width=None if tty or asked else 200)
    for name, r in zip(letters(len(runs)), runs):
        seeds = plural(len(r.config.seeds), "seed")
        line = f"{name} = {r.label}: {r.engine}, mode {r.config.data.mode}, {seeds}, {r.progress()}"
        console.print(f"{line}  [{r.rundir.path}]", markup=False)
    rows = compare_rows(runs, at)
    gens = {r["run"]: r["generation"] for r in rows if r["kind"] == "run"}
    at_each = ", ".join(f"{n} {gens.get(r.label)}" for n, r in zip(letters(len(runs)), runs))
    console.print(f"final: at generation {at_each}; median [16th, 84th percentile] over seeds", markup=False)
    if not rows:
        console.print("no metric shared by these runs (or no generation finished)", markup=False)
        return
    for table in compare_tables(rows, tty, console.width):
        console.print(table)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`collapse-tui compare`: args as cli.build_commands parses them."""
    paths, _ = expand(args.run_dirs)  # a sweep directory: its cells, side by side
    if len(set(map(os.path.realpath, paths))) < len(paths):
        raise ConfigError("compare: the same run directory is named twice")
    print_comparison(load_runs(paths), out or sys.stdout, args.generation)
    return 0

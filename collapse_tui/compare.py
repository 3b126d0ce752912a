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
import functools
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .config import Config, ConfigError, chain_names
from .files import printable
from .numbers import NA, fmt, plural, short
from .records import RunState
from .rundir import RunDir, run_state
from .summary import Summary, by_generation, is_log, log_keys_of, ratio_text, scalar_keys, value_text
from .sweepdir import expand
from .theory import read_theory

MAX_LABEL_KEYS = 3  # config differences named in a run's label
HIDDEN_KEYS = ("experiment.name", "experiment.description", "experiment.engine")  # name or preset tell these
LABEL_ORDER = ("data", "engine", "experiment")  # which differences name a run first


@dataclass
class Run:
    """One run directory read once: its preset, metrics rows and state."""

    rundir: RunDir
    config: Config
    rows: list[dict[str, Any]]
    status: dict[str, Any]
    state: RunState
    label: str = ""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def engine(self) -> str:
        return self.config.engine_name

    @functools.cached_property
    def log_keys(self) -> set[str]:
        """The metrics the run's engine summarises in log space (summary.py)."""
        return log_keys_of(self.engine)

    @functools.cached_property
    def theory(self) -> dict[str, np.ndarray]:
        """What theory expects of the mean over seeds of some metrics, per generation (theory.py; {}: none)."""
        return read_theory(self.rundir.path)

    @property
    def last_generation(self) -> int:
        """The last generation with metrics on disk (-1: none)."""
        return max((r["generation"] for r in self.rows), default=-1)

    def progress(self) -> str:
        """How far the run got, for titles: 'finished, 20 generations', 'stopped at generation 37 of 200'."""
        last, total = self.last_generation, self.config.generations
        if last < 0:
            return f"{self.state}, no generation finished yet"
        if self.state == RunState.FINISHED:
            return f"finished, {last + 1} generations"
        where = "running, at" if self.state == RunState.RUNNING else f"{self.state} at"
        return f"{where} generation {last} of {total - 1}"


def load_run(path: Path | str | RunDir) -> Run:
    rundir = path if isinstance(path, RunDir) else RunDir.open(Path(path))
    status = rundir.read_status()
    cfg = rundir.config()
    return Run(rundir, cfg, rundir.read_metrics(), status, run_state(rundir, status), label=cfg.name)


def load_runs(paths: Sequence[Path | str | RunDir]) -> list[Run]:
    """The runs, labelled; a run of several chains as one Run per chain ('label · chain'): reports draw a
    line per chain and compare puts chains side by side as it does runs."""
    runs = [load_run(p) for p in paths]
    for run, label in zip(runs, run_labels(runs)):
        run.label = label
    return [c for run in runs for c in chain_runs(run)]


def chain_runs(run: Run) -> list[Run]:
    if not run.config.chains:
        return [run]
    return [
        Run(
            run.rundir.chain_view(name),
            run.config.chain(name),
            [r for r in run.rows if r.get("chain") == name],
            run.status,
            run.state,
            label=f"{run.label} · {name}",
        )
        for name in chain_names(run.config)
    ]


def _flat_config(cfg: Config) -> dict[str, Any]:
    return {f"{s}.{k}": v for s in ("experiment", "data", "engine") for k, v in cfg.section(s).items()}


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Short names that tell the runs apart: the preset name plus the settings that differ
    (e.g. 'mode=replace' and 'mode=accumulate'); directory names when nothing else does."""
    flats = [_flat_config(r.config) for r in runs]
    one_engine = len({r.engine for r in runs}) == 1  # else engine.* keys differ by construction: noise
    keys = [k for f in flats for k in f if k not in HIDDEN_KEYS and (one_engine or not k.startswith("engine."))]
    keys = sorted(set(keys), key=lambda k: (LABEL_ORDER.index(k.split(".")[0]), keys.index(k)))
    differ = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1][:MAX_LABEL_KEYS]
    same_name = len({r.name for r in runs}) == 1
    labels = []
    for run, flat in zip(runs, flats):
        parts = [f"{k.split('.')[-1]}={short(flat.get(k), width=20, quote=False)}" for k in differ]
        if not (same_name and parts):
            parts.insert(0, run.name)
        labels.append(" ".join(parts))
    if len(set(labels)) < len(labels):  # printable: a label is drawn and written as UTF-8 text
        labels = [printable(r.rundir.path.name) for r in runs]
    if len(set(labels)) < len(labels):
        labels = [printable(str(r.rundir.path)) for r in runs]
    return labels


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


def shared_metrics(runs: Sequence[Run]) -> list[str]:
    """Scalar metrics present in every run, in the first run's order."""
    keys = [scalar_keys(r.rows) for r in runs]
    return [k for k in keys[0] if all(k in other for other in keys[1:])] if keys else []


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
    console = Console(file=out, highlight=False, width=None if tty else 200)  # logs: no wrapping
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

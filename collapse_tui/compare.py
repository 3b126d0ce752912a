"""`collapse-tui compare RUN_DIR RUN_DIR ...`: runs side by side, and what reports share.

For every scalar metric the runs share: the final value (mean ± std over seeds at the run's last
generation), the peak of the per-generation means, and the change per generation (least-squares slope
of the per-generation means); then each later run minus the first. compare_rows() gives the numbers
as plain dicts so a Textual screen can show the same table. Works on finished, stopped, failed and
crashed runs (and on live ones: a snapshot of what is on disk).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .config import Config, ConfigError
from .numbers import fmt, plural
from .rundir import RunDir, run_state
from .summary import by_generation, scalar_keys

MAX_LABEL_KEYS = 3  # config differences named in a run's label
HIDDEN_KEYS = ("experiment.name", "experiment.description", "experiment.engine")  # name or preset tell these
LABEL_ORDER = ("data", "engine", "experiment")  # which differences name a run first
COLUMNS = ("metric", "run", "final: mean ± std", "peak (gen)", "change / gen")
NA = "n/a"  # a number the comparison does not have


@dataclass
class Run:
    """One run directory read once: its preset, metrics rows and state."""

    rundir: RunDir
    config: Config
    rows: list[dict[str, Any]]
    status: dict[str, Any]
    state: str  # created running finished stopped failed crashed
    label: str = ""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def engine(self) -> str:
        return self.config.engine_name

    @property
    def last_generation(self) -> int:
        """The last generation with metrics on disk (-1: none)."""
        return max((r["generation"] for r in self.rows), default=-1)

    def progress(self) -> str:
        """How far the run got, for titles: 'finished, 20 generations', 'stopped at generation 37 of 200'."""
        last, total = self.last_generation, self.config.generations
        if last < 0:
            return f"{self.state}, no generation finished yet"
        if self.state == "finished":
            return f"finished, {last + 1} generations"
        where = "running, at" if self.state == "running" else f"{self.state} at"
        return f"{where} generation {last} of {total - 1}"


def load_run(path: Path | str | RunDir) -> Run:
    rundir = path if isinstance(path, RunDir) else RunDir.open(Path(path))
    status = rundir.read_status()
    cfg = rundir.config()
    return Run(rundir, cfg, rundir.read_metrics(), status, run_state(rundir, status), label=cfg.name)


def load_runs(paths: Sequence[Path | str | RunDir]) -> list[Run]:
    runs = [load_run(p) for p in paths]
    for run, label in zip(runs, run_labels(runs)):
        run.label = label
    return runs


def _flat_config(cfg: Config) -> dict[str, Any]:
    return {f"{s}.{k}": v for s in ("experiment", "data", "engine") for k, v in getattr(cfg, s).items()}


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
        parts = [f"{k.split('.')[-1]}={_short(flat.get(k))}" for k in differ]
        if not (same_name and parts):
            parts.insert(0, run.name)
        labels.append(" ".join(parts))
    if len(set(labels)) < len(labels):
        labels = [r.rundir.path.name for r in runs]
    if len(set(labels)) < len(labels):
        labels = [str(r.rundir.path) for r in runs]
    return labels


def _short(value: Any, width: int = 20) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def slope(generations: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares change per generation over the finite values (nan with fewer than two)."""
    x, y = np.asarray(generations, dtype=float), np.asarray(values, dtype=float)
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return math.nan
    x, y = x[ok], y[ok]
    dx = x - x.mean()
    return float((dx * (y - y.mean())).sum() / (dx * dx).sum())


def metric_summary(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Final mean ± std over seeds, peak of the per-generation means, slope per generation."""
    series = by_generation(rows, key)
    if not series:
        return dict.fromkeys(("final", "final_std", "peak", "slope"), math.nan) | {
            "generation": None,
            "peak_generation": None,
        }
    gens = list(series)
    means = [series[g][0] for g in gens]
    last = gens[-1]
    finite_or_inf = [(m, g) for m, g in zip(means, gens) if not math.isnan(m)]
    peak, peak_gen = max(finite_or_inf, key=lambda t: t[0]) if finite_or_inf else (math.nan, None)
    return {
        "final": series[last][0],
        "final_std": series[last][1],
        "generation": last,
        "peak": peak,
        "peak_generation": peak_gen,
        "slope": slope(gens, means),
    }


def shared_metrics(runs: Sequence[Run]) -> list[str]:
    """Scalar metrics present in every run, in the first run's order."""
    keys = [scalar_keys(r.rows) for r in runs]
    return [k for k in keys[0] if all(k in other for other in keys[1:])] if keys else []


def _difference(a: float, b: float) -> float:
    with np.errstate(invalid="ignore"):
        return float(np.float64(a) - np.float64(b))  # inf - inf is nan, not an exception


def compare_rows(runs: Sequence[Run | RunDir | Path | str]) -> list[dict[str, Any]]:
    """The comparison as flat dicts, per metric: one row per run (kind 'run'), then one per later
    run minus the first (kind 'diff', final_std None). Keys: metric, run, kind, final, final_std,
    generation, peak, peak_generation, slope."""
    if all(isinstance(r, Run) and r.label for r in runs):
        loaded = list(runs)
    else:
        loaded = load_runs([r.rundir if isinstance(r, Run) else r for r in runs])
    out: list[dict[str, Any]] = []
    for key in shared_metrics(loaded):
        stats = [metric_summary(r.rows, key) for r in loaded]
        for run, s in zip(loaded, stats):
            out.append({"metric": key, "run": run.label, "kind": "run", **s})
        first = stats[0]
        for run, s in zip(loaded[1:], stats[1:]):
            diff = {k: _difference(s[k], first[k]) for k in ("final", "peak", "slope")}
            none = dict.fromkeys(("final_std", "generation", "peak_generation"))
            out.append({"metric": key, "run": f"{run.label} − {loaded[0].label}", "kind": "diff", **diff, **none})
    return out


def table_cells(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The COLUMNS of each compare_rows row as the CLI's table and the app's show them; a metric is
    named on its first row only."""
    cells = []
    for i, r in enumerate(rows):
        metric = r["metric"] if i == 0 or rows[i - 1]["metric"] != r["metric"] else ""
        if r["kind"] == "diff":
            numbers = (fmt(r["final"], True, NA), fmt(r["peak"], True, NA), fmt(r["slope"], True, NA))
        else:
            peak = f"{fmt(r['peak'], missing=NA)} ({r['peak_generation']})" if r["peak_generation"] is not None else NA
            final = f"{fmt(r['final'], missing=NA)} ± {fmt(r['final_std'], missing=NA)}"
            numbers = (final, peak, fmt(r["slope"], True, NA))
        cells.append((metric, r["run"], *numbers))
    return cells


def compare_table(rows: list[dict[str, Any]], tty: bool):
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD if tty else box.ASCII)
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in COLUMNS[:2] else "right")
    for i, (r, cells) in enumerate(zip(rows, table_cells(rows))):
        last_of_metric = i + 1 == len(rows) or rows[i + 1]["metric"] != r["metric"]
        style = "italic" if tty and r["kind"] == "diff" else None
        table.add_row(*cells, style=style, end_section=last_of_metric)
    return table


def print_comparison(runs: list[Run], out: TextIO) -> None:
    from rich.console import Console

    tty = out.isatty()
    console = Console(file=out, highlight=False, width=None if tty else 200)  # logs: no wrapping
    for r in runs:
        seeds = plural(len(r.config.seeds), "seed")
        line = f"{r.label}: {r.name}, {r.engine}, mode {r.config.data['mode']}, {seeds}, {r.progress()}"
        console.print(f"{line}  [{r.rundir.path}]", markup=False)
    rows = compare_rows(runs)
    if not rows:
        console.print("no metric shared by these runs (or no generation finished)", markup=False)
        return
    console.print(compare_table(rows, tty))


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`collapse-tui compare`: args as cli.build_commands parses them."""
    if len(set(map(os.path.realpath, args.run_dirs))) < len(args.run_dirs):
        raise ConfigError("compare: the same run directory is named twice")
    print_comparison(load_runs(args.run_dirs), out or sys.stdout)
    return 0

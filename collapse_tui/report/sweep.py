"""`collapse-tui report SWEEP_DIR`: the sweep's answer as figures, plus every cell's own report.

Each chosen metric at the last generation every cell reached (or --generation N) against the swept
value: the median over seeds with the 16th-84th percentile band (summary.py; log-quantities in log10),
a line per value of the other swept keys; a heat map of the medians for a sweep of two keys. The points
drawn are written beside the figures (sweep-points.json), so what a figure shows can be read back. A
sweep with variants also gets mitigations.csv and the variants' figure (report/mitigations.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ConfigError
from ..files import atomic_write
from ..numbers import NA
from ..runs import Run, load_run, shared_metrics
from ..summary import BAND, summarize, values
from ..sweepdir import CELLS, SweepDir, check_output
from .figures import Options, Series, axis_mode, draw_series, new_figure, on_axis, style_axes
from .mitigations import write_mitigations
from .runs import make_folder, save_figure, write_report

if TYPE_CHECKING:
    from matplotlib.figure import Figure

POINTS_FILE = "sweep-points.json"
LOG_X_RATIO = 50  # a swept number spanning more than this is drawn on a log axis (M in 100 .. 10000)


def sweep_points(sweep: SweepDir, runs: Sequence[Run], metrics: Sequence[str], generation: int | None) -> list[dict]:
    """One point per cell and metric: the cell's swept values, the generation, and the median and band over
    seeds (log10 values where 'log10' is set). Cells without that generation on disk have no point."""
    gen = generation if generation is not None else min((r.last_generation for r in runs if r.rows), default=-1)
    points = []
    for cell, run in zip(sweep.cells, runs):
        at = [r for r in run.rows if r["generation"] == gen]
        for key in metrics:
            rows = [r for r in at if key in r]
            if not rows:
                continue
            log = key in run.log_keys or key == "perplexity"
            s = summarize(values(rows, key, log), log)
            points.append(
                {"cell": cell.name, **cell.values, "metric": key, "generation": gen, "seeds": s.seeds}
                | {"median": s.centre, f"p{BAND[0]}": s.lo, f"p{BAND[1]}": s.hi, "log10": log}
            )
    return points


def _numeric(vals: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals)


def line_figure(sweep: SweepDir, points: list[dict], metric: str) -> Figure:
    """The metric against the first swept key (all of them, cell by cell, for a zipped sweep), a line per
    combination of the other keys."""
    pts = [p for p in points if p["metric"] == metric]
    zipped = sweep.mode == "zip"
    xkey = sweep.keys[0]
    xs = sweep.axes[xkey]
    numeric = _numeric(xs) and not zipped
    position = {repr(v): (v if numeric else i) for i, v in enumerate(xs)}
    others = [] if zipped else sweep.keys[1:]
    groups: dict[str, list[dict]] = {}
    for p in pts:
        label = ", ".join(f"{k.partition('.')[2]}={p[k]}" for k in others)
        groups.setdefault(label, []).append(p)
    data = []
    for label, group in groups.items():
        group.sort(key=lambda p: position[repr(p[xkey])])
        cols = [np.array([p[k] for p in group], dtype=float) for k in ("median", f"p{BAND[0]}", f"p{BAND[1]}")]
        x = np.array([position[repr(p[xkey])] for p in group], dtype=float)
        data.append((label, Series(x, *cols, log=group[0]["log10"])))
    fig = new_figure(7, 4.5)
    ax = fig.add_subplot()
    mode = axis_mode([s for _, s in data])
    drawn = [v for label, s in data for v in draw_series(ax, s, label or metric, mode)]
    for _, s in data:  # single points (a cell per line) show as markers
        ax.plot(s.generations, on_axis(s, mode)[0], "o", ms=3, color="k")
    style_axes(ax, metric, False, mode, drawn, legend=bool(others))
    if numeric and min(xs) > 0 and max(xs) / min(xs) > LOG_X_RATIO:
        ax.set_xscale("log")
    if not numeric:
        names = [p["cell"] for p in sorted(pts, key=lambda p: position[repr(p[xkey])])] if zipped else xs
        ax.set_xticks(range(len(names)), [str(n) for n in names], rotation=20, fontsize=8)
    ax.set_xlabel("cell" if zipped else xkey)
    gen = pts[0]["generation"] if pts else "-"
    ax.set_title(f"generation {gen}; median over seeds, band {BAND[0]}-{BAND[1]}th percentile", fontsize=9)
    fig.suptitle(f"{sweep.name}: {metric} against {'the cells' if zipped else xkey}")
    return fig


def heatmap_figure(sweep: SweepDir, points: list[dict], metric: str) -> Figure:
    """The medians of a two-key grid sweep as a heat map (log10 of log-quantities), values written in."""
    (ykey, xkey), pts = sweep.keys, [p for p in points if p["metric"] == metric]
    ys, xs = sweep.axes[ykey], sweep.axes[xkey]
    grid = np.full((len(ys), len(xs)), np.nan)
    for p in pts:
        grid[[repr(y) for y in ys].index(repr(p[ykey])), [repr(x) for x in xs].index(repr(p[xkey]))] = p["median"]
    log = bool(pts) and pts[0]["log10"]
    fig = new_figure(6, 4.5)
    ax = fig.add_subplot()
    shown = np.where(np.isfinite(grid), grid, np.nan)
    image = ax.imshow(shown, aspect="auto", origin="lower", cmap="viridis")
    fig.colorbar(image, ax=ax, label=f"log10 of {metric}" if log else metric)
    for (i, j), v in np.ndenumerate(grid):
        text = NA if math.isnan(v) else f"{10.0**v if log and v < 300 else v:.3g}"
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="w")
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(xkey)
    ax.set_ylabel(ykey)
    gen = pts[0]["generation"] if pts else "-"
    fig.suptitle(f"{sweep.name}: median {metric} over seeds at generation {gen}")
    return fig


def write_sweep_report(
    sweep: SweepDir, out: Path, opts: Options, metrics: Sequence[str] | None, generation: int | None
) -> list[tuple[str, list[Path]]]:
    """The sweep figures and their points in out, then every cell's report in out/cells/NAME."""
    runs = [load_run(c.rundir) for c in sweep.cells]
    shared = [k for k in shared_metrics(runs) if k != "train_size"]
    chosen = list(metrics) if metrics else shared
    unknown = [k for k in chosen if k not in shared]
    if unknown:
        raise ConfigError(f"--metrics: {', '.join(unknown)} not measured by every cell; they share {', '.join(shared)}")
    folders = [out / CELLS / cell.name for cell in sweep.cells]
    for folder in (out, *folders):  # every cell's report folder too, before anything is written
        check_output(folder, "--out")
    make_folder(out)
    points = sweep_points(sweep, runs, chosen, generation)
    if not points:
        raise ConfigError(f"{sweep.path}: no cell has metrics at generation {generation} yet")
    atomic_write(out / POINTS_FILE, json.dumps(points, indent=1).encode())
    written = [("sweep points", [out / POINTS_FILE])]
    written += write_mitigations(sweep, {c.name: r for c, r in zip(sweep.cells, runs)}, out, opts, generation)
    builds = [("", line_figure)] + (
        [("-heatmap", heatmap_figure)] if len(sweep.keys) == 2 and sweep.mode == "grid" else []
    )
    for metric in chosen:
        for suffix, build in builds:
            fig = build(sweep, points, metric)
            files = [out / f"sweep-{metric}{suffix}.{fmt}" for fmt in opts.formats]
            for path in files:
                save_figure(fig, path, opts.dpi)
            written.append((f"sweep {metric}{suffix}", files))
    for cell, run, folder in zip(sweep.cells, runs, folders):
        write_report([run], folder, opts)
        written.append((f"cell {cell.name}", [folder / "index.md"]))
    return written

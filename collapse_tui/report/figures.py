"""What a figure module builds on: the data of a metric over generations, and matplotlib helpers.

An engine's own report figures live in the module its class names in `figures` (e.g.
"collapse_tui.engines.figures.gmm"; a plugin's can live anywhere). That module defines

    FIGURES: tuple[Spec, ...] = (Spec("l2", l2_figure, "Squared L2 distance to generation 0."),)

where each build function takes (runs, opts), or (run, opts) with per_run=True, and returns a
matplotlib Figure from new_figure(); it raises Unavailable(why) when the runs cannot give that
figure (no saved samples, a missing package), which the index notes. The files are named
"<engine>-<name>" (and the run's label, for a per-run figure of several runs). A Run carries its
metrics rows (run.rows), preset (run.config), saved samples (run.rundir) and a legend label.
Import matplotlib inside the build functions (the report checks it is installed), and never
pyplot: no backend, no display, no global figure state.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ConfigError
from ..numbers import NA, plural
from ..records import RunState
from ..runs import Run
from ..summary import BAND, by_generation, is_log, metric_of, summarize, values

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "AXIS_MODES",
    "BAND",
    "Options",
    "Run",
    "Series",
    "Spec",
    "Unavailable",
    "axis_label",
    "axis_mode",
    "chosen_generations",
    "draw_runs",
    "draw_series",
    "draw_theory",
    "figure_title",
    "generation_colors",
    "legend_label",
    "log_limits",
    "new_figure",
    "overlay_figure",
    "pick_generations",
    "plotted",
    "series",
    "style_axes",
]

INSTALL_HINT = "report needs matplotlib: pip install matplotlib"
PAPER_SNAPSHOTS = (0, 50, 100, 150, 200, 350, 2000)  # the paper's GMM figure
MAX_PANELS = 8  # snapshot panels and sample grids per figure
FORMATS = ("png", "svg")
LOG_CEILING = 200  # decades: beyond this a log-quantity is drawn as its log10 on a linear axis (float overflows)
AXIS_MODES = ("linear", "log", "log10")  # y axes: values, values on a log scale, log10 of the values
LEGEND_WIDTH = 40  # characters a legend line holds: a long label (a run's path) wraps, not squeezing its axes away


class Unavailable(Exception):
    """A figure that this run cannot give (no saved samples, a missing package): noted in the index."""


@dataclass
class Options:
    generations: list[int] | None = None  # snapshot generations; None: chosen from the saved ones
    formats: tuple[str, ...] = FORMATS
    dpi: int = 150


@dataclass(frozen=True)
class Spec:
    """One figure: its file name (after the engine's name), how to build it and its index caption."""

    name: str
    build: Callable[..., Figure]  # (runs, opts) -> Figure, or (run, opts) when per_run
    caption: str
    per_run: bool = False


@dataclass
class Series:
    """One metric of one run per generation over seeds (summary.py): the median and the 16th-84th
    percentile band, log10 values when log is set."""

    generations: np.ndarray
    centre: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    log: bool = False


# --- data -----------------------------------------------------------------------------------------


def series(
    rows: list[dict[str, Any]], key: str, f: Callable[[float], float] | None = None, log_keys: set[str] = frozenset()
) -> Series:
    """Per-generation summaries of key over seeds, as the tables show them; f maps each row's value
    first (e.g. |1 - x|). A log-quantity (perplexity, and the log_keys: a run's run.log_keys) in log10."""
    if f is None:
        log = is_log(key, log_keys)
        stats = by_generation([r for r in rows if key in r], key, log_keys)
    else:
        groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if key in r:
                groups[r["generation"]].append({key: None if r[key] is None else f(r[key])})
        log, stats = False, {g: summarize(values(groups[g], key, False)) for g in sorted(groups)}
    gens = list(stats)
    col = [[getattr(stats[g], k) for g in gens] for k in ("centre", "lo", "hi")]
    return Series(np.array(gens, dtype=float), *(np.array(c, dtype=float) for c in col), log=log)


def on_axis(s: Series, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, lo, hi) in the coordinates of an axis of the given mode."""
    with np.errstate(all="ignore"):
        if mode == "log10":
            return (s.centre, s.lo, s.hi) if s.log else tuple(np.log10(v) for v in (s.centre, s.lo, s.hi))
        return tuple(np.power(10.0, v) for v in (s.centre, s.lo, s.hi)) if s.log else (s.centre, s.lo, s.hi)


def axis_mode(data: Sequence[Series], ratio: float = 100.0) -> str:
    """log10 for a log-quantity past float's range, log for one within it or for positive values spanning
    more than `ratio`, else linear."""
    if any(s.log for s in data):
        top = [v for s in data for v in (s.centre, s.hi) for v in v[np.isfinite(v)]]
        return "log10" if top and max(top) > LOG_CEILING else "log"
    v = np.concatenate([s.centre for s in data]) if data else np.array([])
    v = v[np.isfinite(v)]
    return "log" if v.size and v.min() > 0 and v.max() / v.min() > ratio else "linear"


def plotted(s: Series, mode: str = "linear") -> np.ndarray:
    """Mask of the generations a line can show: finite centres (and > 0 on a log axis)."""
    c = on_axis(s, mode)[0]
    ok = np.isfinite(c)
    return ok & (c > 0) if mode == "log" else ok


def chosen_generations(run: Run, opts: Options) -> list[int]:
    """The snapshot generations of a per-run figure (pick_generations); Unavailable when none was saved."""
    saved = run.rundir.sample_generations()
    gens = pick_generations(saved, opts.generations)
    if not gens:
        where = f"saved: {saved[0]}..{saved[-1]}, {len(saved)} generations" if saved else "none saved"
        raise Unavailable(f"no saved samples at the chosen generations ({where})")
    return gens


def pick_generations(saved: Sequence[int], wanted: Sequence[int] | None, count: int = MAX_PANELS) -> list[int]:
    """Snapshot generations: the wanted ones that were saved; by default the paper's snapshots when
    at least three were saved, else `count` spread evenly over the saved ones (first and last kept)."""
    saved = sorted(saved)
    if wanted is not None:
        return [g for g in wanted if g in saved]
    paper = [g for g in PAPER_SNAPSHOTS if g in saved]
    if len(paper) >= 3:
        return paper + ([saved[-1]] if saved[-1] > paper[-1] else [])
    if len(saved) <= count:
        return saved
    idx = np.unique(np.round(np.linspace(0, len(saved) - 1, count)).astype(int))
    return [saved[i] for i in idx]


# --- words ----------------------------------------------------------------------------------------


def legend_label(run: Run) -> str:
    """The run's label, wrapped, and how far it got unless it finished."""
    label = "\n".join(textwrap.wrap(run.label, LEGEND_WIDTH)) or run.label
    return label if run.state == RunState.FINISHED else f"{label} ({run.progress()})"


def figure_title(runs: Sequence[Run], what: str) -> str:
    """What the figure shows, the preset name(s) and, for one run, how far it got."""
    if len(runs) == 1:
        return f"{what}\n{runs[0].name}: {runs[0].progress()}"
    names = list(dict.fromkeys(r.name for r in runs))
    return f"{what}\n{', '.join(names)}: {len(runs)} runs"


def axis_label(runs: Sequence[Run], key: str) -> str:
    """A metric's axis label as the runs' engines declare it; the key when they differ or declare none."""
    labels = {m.axis if (m := metric_of(r.engine, key)) else key for r in runs}
    return labels.pop() if len(labels) == 1 else key


# --- drawing --------------------------------------------------------------------------------------


def new_figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return Figure(figsize=(width, height), layout="constrained")


def generation_colors(n: int) -> list[Any]:
    """n colours from early (dark) to late (light), one per generation or class."""
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.9, max(n, 1))][:n]


def log_generation_axis(ax: Axes) -> None:
    """Log x that still shows generation 0: linear between 0 and 1, logarithmic beyond."""
    ax.set_xscale("symlog", linthresh=1, linscale=0.4)
    ax.set_xlim(left=0)
    ax.set_xlabel("generation (log scale)")


def draw_series(ax: Axes, s: Series, label: str, mode: str, color: Any = None) -> list[np.ndarray]:
    """A line of the medians and the 16-84th percentile band over seeds, in the axis's mode (AXIS_MODES).
    Returns the y values drawn (for log_limits)."""
    ok = plotted(s, mode)
    if not ok.any():
        return []
    centre, lo, hi = on_axis(s, mode)
    (line,) = ax.plot(s.generations[ok], centre[ok], label=label, color=color, lw=1.5)
    band = ok & np.isfinite(lo) & np.isfinite(hi) & ((lo > 0) if mode == "log" else True)
    if band.sum() > 1:
        ax.fill_between(s.generations[band], lo[band], hi[band], color=line.get_color(), alpha=0.2, lw=0)
        return [centre[ok], lo[band], hi[band]]
    return [centre[ok]]


def draw_theory(ax: Axes, run: Run, key: str, mode: str, color: Any) -> list[np.ndarray]:
    """What the run's theory expects of key's mean over seeds (theory.jsonl), dashed, and the mean over seeds
    it predicts, dotted (the median can fall while the mean holds: the paper's single Gaussian), up to the
    run's last generation, in the axis's mode. Returns the y values drawn; none when there is no theory."""
    curve = run.theory.get(key)
    if curve is None:
        return []
    gens = np.arange(min(len(curve), run.last_generation + 1))
    by_gen: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in run.rows:
        by_gen[r["generation"]].append(r)
    means = np.array([values(by_gen[g], key, False).mean() if by_gen[g] else np.nan for g in gens])
    drawn = []
    for y, style, what in ((curve[: len(gens)], "--", "expected mean (theory)"), (means, ":", "mean over seeds")):
        with np.errstate(all="ignore"):
            y = np.log10(y) if mode == "log10" else y
        ok = np.isfinite(y) & (y > 0 if mode == "log" else True)
        if ok.any():
            ax.plot(gens[ok], y[ok], ls=style, color=color, lw=1.2, label=what)
            drawn.append(y[ok])
    return drawn


def draw_runs(ax: Axes, runs: Sequence[Run], data: Sequence[Series], mode: str, key: str | None) -> list[np.ndarray]:
    """Each run's series (draw_series) and, when key is given, its theory of key (draw_theory), a colour a run.
    Returns the y values drawn (for log_limits)."""
    drawn = []
    for i, (run, s) in enumerate(zip(runs, data)):
        color = f"C{i % 10}"
        drawn += draw_series(ax, s, legend_label(run), mode, color)
        drawn += draw_theory(ax, run, key, mode, color) if key else []
    return drawn


def log_limits(ax: Axes, drawn: Sequence[np.ndarray]) -> None:
    """y limits of a log axis set in log space: a band over seeds can reach 1e300 (a seed whose model
    all but excludes the real data), where matplotlib's margins and ticks overflow. Values
    above 10^LOG_CEILING leave the top of the axes."""
    v = np.concatenate(drawn) if drawn else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return
    low, high = np.log10(v.min()), np.log10(v.max())
    pad = 0.05 * (high - low) or 0.1
    ax.set_ylim(10.0 ** (low - pad), 10.0 ** min(high + pad, LOG_CEILING))


def style_axes(ax: Axes, ylab: str, log_x: bool, mode: str, drawn: Sequence[np.ndarray], legend: bool = True) -> None:
    """Axis labels, scales, grid and legend of a panel of lines over generations."""
    if log_x:
        log_generation_axis(ax)
    else:
        ax.set_xlabel("generation")
    if mode == "log":
        log_limits(ax, drawn)  # first: set_yscale autoscales, overflowing near 1e300
        ax.set_yscale("log")
    ax.set_ylabel({"log": f"{ylab} (log scale)", "log10": f"log10 of {ylab}"}.get(mode, ylab))
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize=8)


def overlay_figure(
    runs: Sequence[Run], key: str, what: str, ylab: str, f=None, log_x: bool = False, log_y: bool | None = None
) -> Figure:
    """One line per run of a metric's per-generation median over seeds, with its band and a legend.
    log_y: True a log axis (log10 of the values past float's range), False linear, None chosen."""
    data = [series(r.rows, key, f, r.log_keys) for r in runs]
    if not any(plotted(s, "log10" if s.log else "linear").any() for s in data):
        raise Unavailable(f"no finite {key} values")
    mode = axis_mode(data)
    if log_y is not None:  # as asked, but log10 values where a log axis would overflow
        mode = "linear" if not log_y else "log10" if mode == "log10" else "log"
    fig = new_figure(7, 4.5)
    ax = fig.add_subplot()
    drawn = draw_runs(ax, runs, data, mode, key if f is None else None)
    style_axes(ax, ylab, log_x, mode, drawn)
    ax.set_title(f"median over seeds, band {BAND[0]}-{BAND[1]}th percentile" + unknown_note(runs, data), fontsize=9)
    fig.suptitle(figure_title(runs, what))
    return fig


def unknown_note(runs: Sequence[Run], data: Sequence[Series]) -> str:
    """Where a line has gaps: generations whose median is unknown (a seed's value was not computed,
    null in metrics.jsonl: summary.py)."""
    notes = []
    for run, s in zip(runs, data):
        unknown = np.isnan(s.centre)
        if unknown.any():
            who = f"{run.label}: " if len(runs) > 1 else ""
            first = int(s.generations[unknown.argmax()])
            notes.append(f"{who}median {NA} at {plural(int(unknown.sum()), 'generation')} from {first} (null values)")
    return "\n" + "; ".join(notes) if notes else ""

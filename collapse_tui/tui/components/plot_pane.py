"""A metric over generations as a braille line plot (textual-plot's PlotWidget): the median over seeds, its
16th-84th percentile band, and beside it the curve theory expects or other runs' medians, each with its own
colour (its own marker with NO_COLOR) and a line of legend; numbered ticks, log10 for log-quantities.

Every generation is drawn however long the run: the lines are decimated to the plot's pixel columns keeping
each column's first, lowest, highest and last value (M4: a line through them lights the pixels a line through
every value would), the band to its cell columns keeping each column's lowest 16th and highest 84th percentile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from textual.app import ComposeResult
from textual.color import Color
from textual.content import Content
from textual.reactive import reactive, var
from textual.widget import Widget
from textual.widgets import Static
from textual_plot import HiResMode, NumericAxisFormatter
from textual_plot.axis_formatter import AxisFormatter

from ...numbers import fmt, plural
from ...runs import Run
from ...summary import SERIES, Summary, by_generation, is_log, value_text
from ..state import ScreenState
from .braille_plot import BraillePlot

MAX_TICKS = 6
LABEL_WIDTH = 9  # the y axis's tick labels (PlotWidget.margin_left is one more)
# the theme colour (a Theme attribute) each role of curve asks for first
ROLE_COLOURS = {"median": "accent", "mean": "foreground", "theory": "primary"}
# the colours curves take in turn (another run's first), each a colour no curve before it has (a theme may give
# two roles one colour: textual-dark's accent and warning)
PALETTE = ("accent", "primary", "success", "error", "warning", "secondary", "foreground")
# with NO_COLOR, a curve after the first is drawn with a marker of its own; the band is always drawn with bars
MARKERS = "×•+o*#%@"
BAND_MARK = "│"
LINE_MARK = "⠒⠒"  # how the legend shows a braille line
BAND_SHARE = 0.45  # the band's colour: the median's, this far from the background


@dataclass(frozen=True, eq=False)  # eq: by identity, as the reactive compares (numpy arrays do not compare)
class Curve:
    """One curve over generations 0, 1, ...: values (log10 for a log-quantity; NaN where unknown) and, for a
    median over seeds, its band; role: 'median', 'mean', 'theory' or 'run' (another run's median)."""

    label: str
    values: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    role: str = "median"


def summaries_curve(label: str, summaries: Sequence[Summary | None], role: str = "median") -> Curve:
    """A curve of summary.py's numbers, one Summary per generation (None: not measured)."""
    parts = [(s.centre, s.lo, s.hi) if s is not None else (math.nan,) * 3 for s in summaries]
    c, lo, hi = np.array(parts, dtype=float).reshape(-1, 3).T
    return Curve(label, c, lo, hi, role)


def columns(n: int, bins: int, span: int) -> np.ndarray:
    """The column (0 .. bins - 1) of each of generations 0 .. n - 1 on an x axis over generations 0 .. span - 1."""
    return np.minimum(np.arange(n) * bins // max(span, n, 1), bins - 1)


def decimate(y: np.ndarray, bins: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    """The generations and values to draw y (one value per generation) with, on `bins` columns spanning `span`
    generations: per column its first, lowest, highest and last finite value, in generation order."""
    x = np.arange(len(y))
    ok = np.isfinite(y)
    if ok.sum() <= 4 * bins:
        return x[ok], y[ok]
    x, y = x[ok], y[ok]
    col = columns(int(x[-1]) + 1, bins, span)[x]
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    ends = np.r_[starts[1:], len(x)]
    keep = [sorted({a, a + int(np.argmin(y[a:b])), a + int(np.argmax(y[a:b])), b - 1}) for a, b in zip(starts, ends)]
    idx = np.concatenate(keep)
    return x[idx], y[idx]


def band_columns(lo: np.ndarray, hi: np.ndarray, bins: int, span: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The band on `bins` cell columns spanning `span` generations: per column with a generation, its centre (in
    generations) and the lowest lo and highest hi of its generations; a run with fewer generations than columns
    is interpolated between them, so the band has no gaps."""
    ok = np.isfinite(lo) & np.isfinite(hi)
    x = np.flatnonzero(ok)
    if not len(x):
        return np.zeros(0), np.zeros(0), np.zeros(0)
    width = max(span, len(lo), 1) / bins  # generations per column
    col = columns(len(lo), bins, span)
    if len(x) < bins:  # every column between the first and last measured generation
        cols = np.arange(col[x[0]], col[x[-1]] + 1)
        at = np.clip((cols + 0.5) * width, x[0], x[-1])
        return at, np.interp(at, x, lo[ok]), np.interp(at, x, hi[ok])
    cols, start = np.unique(col[x], return_index=True)
    return (cols + 0.5) * width, np.minimum.reduceat(lo[ok], start), np.maximum.reduceat(hi[ok], start)


def log_ticks(lo: float, hi: float, max_ticks: int = MAX_TICKS) -> list[float]:
    """Ticks (in log10) of a log axis from 10^lo to 10^hi: nice steps of whole decades, else every decade, else 1,
    2 and 5 of each, else nice steps of the quantity itself (of its log10 past float's range)."""
    nice = nice_ticks(lo, hi, max_ticks)
    if len(nice) > 1 and nice[1] - nice[0] >= 1 or hi > 300 or lo < -300:
        return nice
    decades = list(range(math.ceil(lo), math.floor(hi) + 1))
    if len(decades) >= 2:
        return decades
    nice = [e + math.log10(m) for e in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
    nice = [t for t in nice if lo <= t <= hi]
    if 2 <= len(nice) <= max_ticks:
        return nice
    return [math.log10(v) for v in nice_ticks(10.0**lo, 10.0**hi, max_ticks) if v > 0]


def nice_ticks(lo: float, hi: float, max_ticks: int = MAX_TICKS) -> list[float]:
    """textual-plot's ticks at 1, 2, 5 times a power of ten, within lo .. hi; 0 as 0 (not the -2e-16 of adding
    up steps)."""
    ticks = [t for t in NumericAxisFormatter().get_ticks(lo, hi, max_ticks) if lo <= t <= hi]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    return [0.0 if abs(t) < 1e-9 * step else t for t in ticks]


def tick_labels(ticks: Sequence[float], log: bool) -> list[str]:
    """The ticks in the quantity's own units (10^t on a log axis), in the fewest significant digits that write
    each exactly (a label never reads as another number); past float's range, as summary.value_text writes them."""
    values = [10.0**t if log and abs(t) < 300 else t for t in ticks]
    huge = log and any(abs(t) >= 300 for t in ticks)
    for digits in range(1, 8):
        labels = [value_text(t, True, digits) if huge else fmt(v, digits=digits) for t, v in zip(ticks, values)]
        exact = huge or all(
            math.isclose(float(label), v, rel_tol=1e-6, abs_tol=1e-300) for label, v in zip(labels, values)
        )
        if exact and len(set(labels)) == len(labels):
            return labels
    return labels


class Ticks(AxisFormatter):
    """The y axis: nice linear ticks, or log_ticks; labels by tick_labels."""

    def __init__(self, log: bool):
        self.log = log

    def get_ticks(self, min_: float, max_: float, max_ticks: int = MAX_TICKS) -> list[float]:
        return (log_ticks if self.log else nice_ticks)(min_, max_, max_ticks)

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return tick_labels(ticks, self.log)


class GenerationTicks(AxisFormatter):
    """The x axis: generations are whole numbers, so its ticks are too (0 1 2 3 for a 4-generation run, no 0.5)."""

    def get_ticks(self, min_: float, max_: float, max_ticks: int = MAX_TICKS) -> list[float]:
        ticks = [t for t in nice_ticks(min_, max_, max_ticks) if t == int(t)]
        return ticks if len(ticks) >= 2 else [float(g) for g in range(math.ceil(min_), math.floor(max_) + 1)]

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [str(int(t)) for t in ticks]


def first_metric(keys: Sequence[str], theory: Sequence[str] = ()) -> str:
    """The metric a plot opens on: the first theory expects, else the first the sparklines show, else the first."""
    return next((k for k in [*theory, *SERIES] if k in keys), keys[0] if keys else "")


def cycle(keys: Sequence[str], key: str, step: int) -> str:
    """The metric step places after key (before, when negative), round the list."""
    if not keys:
        return ""
    return keys[(keys.index(key) + step) % len(keys)] if key in keys else keys[0]


def log10_of(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(x)


class PlotPane(Widget):
    """Curves over generations: the first a median with its band, the others lines beside it; `title` above
    the plot, a legend line under it. The x axis spans `span` generations (the whole run, also while it goes)."""

    DEFAULT_CSS = """
    PlotPane { height: 1fr; layout: vertical; }
    PlotPane > #plot-title { height: 1; padding: 0 1; text-style: bold; }
    PlotPane > BraillePlot { height: 1fr; }
    PlotPane > #plot-legend { height: auto; padding: 0 1; color: $text-muted; }
    """

    curves: reactive[tuple[Curve, ...]] = reactive(tuple)
    title = reactive("")
    log_scale = var(False)  # set with curves, which draws them
    span = var(1)

    def show_run(self, st: ScreenState, key: str) -> None:
        """A run screen's chain shown: key's median and band over seeds, and where theory expects key, the mean
        over seeds beside the mean it expects (theory gives the mean: a collapsing median falls away from it)."""
        log = is_log(key, st.logs_of[st.chain])
        seeds = len(st.cfg.seeds)
        curves = [summaries_curve(f"median of {plural(seeds, 'seed')}", [m.get(key) for m in st.medians])]
        if key in st.theory:
            mean = np.array([m.get(key, math.nan) for m in st.means], dtype=float)
            curves += [Curve("mean", log10_of(mean) if log else mean, role="mean")]
            curves += [Curve("theory: mean", log10_of(st.theory[key]) if log else st.theory[key], role="theory")]
        self.set_curves(key, log, st.generations, curves)

    def show_runs(self, runs: Sequence[Run], names: Sequence[str], key: str) -> None:
        """Runs side by side (the compare screen): each one's median over seeds of key, named as the table names
        them; the first with its band."""
        log = any(is_log(key, r.log_keys) for r in runs)
        curves = []
        for i, (run, name) in enumerate(zip(runs, names)):
            series = by_generation(run.rows, key, run.log_keys)
            curve = summaries_curve(name, [series.get(g) for g in range(run.last_generation + 1)], "run")
            curves.append(curve if not i else Curve(name, curve.values, role="run"))
        self.set_curves(key, log, max(r.config.generations for r in runs), curves)

    def set_curves(self, key: str, log: bool, span: int, curves: Sequence[Curve]) -> None:
        scale = " (log axis)" if log else ""
        what = f"{key}{scale} over generations" if key else "no generation yet"
        self.title = f"{what} · m/M: metric"
        self.log_scale, self.span, self.curves = log, span, tuple(curves)

    def compose(self) -> ComposeResult:
        yield Static(id="plot-title", markup=False)
        plot = BraillePlot(allow_pan_and_zoom=False)
        plot.can_focus = False  # its keys (r, arrows) are the screen's
        # no room for axis labels (the title and the legend say what is drawn): tick labels only
        for margin, value in (("margin_top", 0), ("margin_bottom", 1), ("margin_left", LABEL_WIDTH + 1)):
            plot.set_reactive(getattr(BraillePlot, margin), value)
        yield plot
        yield Static(id="plot-legend")

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _: self.draw())
        self.draw()

    def watch_curves(self) -> None:
        self.draw()

    def watch_title(self, title: str) -> None:
        if self.is_mounted:
            self.query_one("#plot-title", Static).update(title)

    def on_resize(self) -> None:
        self.draw()

    def colour(self, role: str, share: float = 1.0) -> str:
        """A theme colour (hex), blended with the background to `share` of its strength: the same roles read
        in dark and light themes."""
        theme = self.app.current_theme
        colour = Color.parse(getattr(theme, role, None) or theme.foreground or ("white" if theme.dark else "black"))
        background = Color.parse(theme.background or ("black" if theme.dark else "white"))
        return background.blend(colour, share).hex

    def styles_of(self) -> list[tuple[str, str | None]]:
        """Per curve, its colour's role (a Theme attribute) and its marker (None: a braille line): with NO_COLOR
        every curve after the first has a marker."""
        out: list[tuple[str, str | None]] = []
        markers, used = iter(MARKERS), set()
        for i, curve in enumerate(self.curves):
            roles = [r for r in (ROLE_COLOURS.get(curve.role), *PALETTE) if r]
            role = next((r for r in roles if self.colour(r) not in used), roles[0])
            used.add(self.colour(role))
            out.append((role, next(markers) if self.app.no_color and i else None))
        return out

    def draw(self) -> None:
        if not self.is_mounted:
            return
        plot = self.query_one(BraillePlot)
        plot.clear()
        plot.set_y_formatter(Ticks(self.log_scale))
        plot.set_x_formatter(GenerationTicks())
        cells = max(plot.size.width - plot.margin_left - 2, 1)  # inside the axes' box
        plot.set_xlimits(0, max(self.span - 1, 1))
        finite = [v for c in self.curves for v in (c.values, c.lo, c.hi) if v is not None]
        finite = np.concatenate([v[np.isfinite(v)] for v in finite]) if finite else np.zeros(0)
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        plot.set_ylimits(lo, hi if hi > lo else lo + 1)
        legend = []
        for curve, (role, marker) in zip(self.curves, self.styles_of()):
            colour = self.colour(role)
            if curve.lo is not None and curve.hi is not None:
                x, b_lo, b_hi = band_columns(curve.lo, curve.hi, cells, self.span)
                band = self.colour(role, BAND_SHARE)
                plot.errorbar(x, (b_lo + b_hi) / 2, yerr=(b_hi - b_lo) / 2, marker=BAND_MARK, marker_style=band)
                legend.append(((BAND_MARK * 2, band), " 16-84th pct"))
            x, y = decimate(curve.values, 2 * cells, self.span)  # two braille dots a cell
            if marker is None:
                plot.plot(x, y, line_style=f"bold {colour}", hires_mode=HiResMode.BRAILLE)
            else:
                plot.scatter(x, y, marker=marker, marker_style=colour)
            legend.append(((marker * 2 if marker else LINE_MARK, f"bold {colour}"), f" {curve.label}"))
        self.query_one("#plot-legend", Static).update(
            Content("  ").join(Content.assemble(*parts) for parts in legend) if legend else "no generation yet"
        )

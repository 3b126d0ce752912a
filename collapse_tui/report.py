"""`collapse-tui report RUN_DIR [RUN_DIR ...] [--out DIR]`: the paper's figures from run directories.

Every run gets the generic figures (perplexity and variance against generation, several runs
overlaid, and one panel per shared metric); an engine adds its own (ENGINE_FIGURES, keyed by engine
name, so an engine without an entry still gets the generic set):
- gaussian: |mu - mu_n| and |sigma - sigma_n| against generation, log axes, one line per run (M);
- gmm: density snapshots of the saved samples at chosen generations, L2 distance to generation 0;
- vae: sample grids per generation, density of the generation-0 encoder's means, class shares.
Figures are built as matplotlib Figure objects (build functions, which tests inspect) and saved
separately. pyplot is never imported: no backend, no display, no global figure state.
"""

from __future__ import annotations

import argparse
import io
import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .compare import Run, load_runs, run_labels, shared_metrics
from .config import ConfigError
from .rundir import atomic_write
from .summary import mean_std

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = "report needs matplotlib: pip install matplotlib"
PAPER_SNAPSHOTS = (0, 50, 100, 150, 200, 350, 2000)  # the paper's GMM figure
SNAPSHOT_BINS = 40  # per axis: about 1000 points a snapshot
MAX_PANELS = 8  # snapshot panels and sample grids per figure
BAND = (16, 84)  # percentiles of the band on log axes, where mean ± std would go below zero
FORMATS = ("png", "svg")
LOG_CEILING = 200  # decades: log axes end here, so that their ticks stay below float overflow

CONTINUOUS_UNITS = {
    "perplexity": "perplexity of real test data\n(exp of mean NLL per dimension)",
    "variance": "total variance of samples\n(data units²)",
}
YLABELS: dict[str, dict[str, str]] = {
    "gaussian": CONTINUOUS_UNITS,
    "gmm": CONTINUOUS_UNITS,
    "vae": {
        "perplexity": "exp(−ELBO per pixel)\nof real test images",
        "variance": "variance of generation-0\nencoder means (latent units²)",
    },
    "opt": {
        "perplexity": "perplexity of the real\ntest blocks (per token)",
        "variance": "variance of log perplexity\nof generated blocks (gen-0 model)",
    },
}


class Unavailable(Exception):
    """A figure that this run cannot give (no saved samples, a missing package): noted in the index."""


@dataclass
class Options:
    generations: list[int] | None = None  # snapshot generations; None: chosen from the saved ones
    formats: tuple[str, ...] = FORMATS
    dpi: int = 150


@dataclass
class Series:
    """One metric of one run per generation: mean and std over seeds, and a percentile band."""

    generations: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


@dataclass
class Written:
    name: str
    caption: str
    files: list[Path] = field(default_factory=list)
    skipped: str = ""


# --- data -----------------------------------------------------------------------------------------


def series(rows: list[dict[str, Any]], key: str, f: Callable[[float], float] | None = None) -> Series:
    """Per-generation statistics of key over seeds; f maps each row's value first (e.g. |1 - x|).
    Missing values (null) count as infinite, as in summary.mean_std."""
    groups: dict[int, list[float | None]] = defaultdict(list)
    for r in rows:
        if key in r:
            v = r[key]
            groups[r["generation"]].append(None if v is None else (f(v) if f else v))
    gens = sorted(groups)
    stats = [mean_std(groups[g]) for g in gens]
    with np.errstate(all="ignore"):
        arrays = [np.array([math.inf if v is None else v for v in groups[g]], dtype=float) for g in gens]
        lo = [np.percentile(a, BAND[0]) for a in arrays]
        hi = [np.percentile(a, BAND[1]) for a in arrays]
    return Series(
        np.array(gens, dtype=float),
        np.array([m for m, _ in stats]),
        np.array([s for _, s in stats]),
        np.array(lo, dtype=float),
        np.array(hi, dtype=float),
    )


def plotted(s: Series, positive: bool = False) -> np.ndarray:
    """Mask of the generations a line can show: finite means (and > 0 on a log axis)."""
    ok = np.isfinite(s.mean)
    return ok & (s.mean > 0) if positive else ok


def wants_log(values: Sequence[np.ndarray], ratio: float = 100.0) -> bool:
    """A log y axis when the finite values are positive and span more than `ratio`."""
    v = np.concatenate([np.asarray(x, dtype=float) for x in values]) if values else np.array([])
    v = v[np.isfinite(v)]
    return bool(v.size) and v.min() > 0 and v.max() / v.min() > ratio


def chosen_generations(run: Run, opts: Options) -> list[int]:
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


def legend_label(run: Run) -> str:
    return run.label if run.state == "finished" else f"{run.label} ({run.progress()})"


def figure_title(runs: Sequence[Run], what: str) -> str:
    """What the figure shows, the preset name(s) and, for one run, how far it got."""
    if len(runs) == 1:
        return f"{what}\n{runs[0].name}: {runs[0].progress()}"
    names = list(dict.fromkeys(r.name for r in runs))
    return f"{what}\n{', '.join(names)}: {len(runs)} runs"


def ylabel(runs: Sequence[Run], key: str) -> str:
    labels = {YLABELS.get(r.engine, {}).get(key, key) for r in runs}
    return labels.pop() if len(labels) == 1 else key


# --- figure helpers ---------------------------------------------------------------------------------


def new_figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return Figure(figsize=(width, height), layout="constrained")


def log_generation_axis(ax: Axes) -> None:
    """Log x that still shows generation 0: linear between 0 and 1, logarithmic beyond."""
    ax.set_xscale("symlog", linthresh=1, linscale=0.4)
    ax.set_xlim(left=0)
    ax.set_xlabel("generation (log scale)")


def draw_series(ax: Axes, s: Series, label: str, log_y: bool, color: Any = None) -> list[np.ndarray]:
    """A line of the means and a band over seeds: mean ± std, or the 16-84 percentiles on a log y
    axis. Returns the y values drawn (for log_limits)."""
    ok = plotted(s, positive=log_y)
    if not ok.any():
        return []
    (line,) = ax.plot(s.generations[ok], s.mean[ok], label=label, color=color, lw=1.5)
    lo, hi = (s.lo, s.hi) if log_y else (s.mean - s.std, s.mean + s.std)
    band = ok & np.isfinite(lo) & np.isfinite(hi) & ((lo > 0) if log_y else True)
    if band.sum() > 1:
        ax.fill_between(s.generations[band], lo[band], hi[band], color=line.get_color(), alpha=0.2, lw=0)
        return [s.mean[ok], lo[band], hi[band]]
    return [s.mean[ok]]


def log_limits(ax: Axes, drawn: Sequence[np.ndarray]) -> None:
    """y limits of a log axis set in log space: a mean over seeds can reach 1e300 (one seed whose
    model all but excludes the real data), where matplotlib's margins and ticks overflow. Values
    above 10^LOG_CEILING leave the top of the axes."""
    v = np.concatenate(drawn) if drawn else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return
    low, high = np.log10(v.min()), np.log10(v.max())
    pad = 0.05 * (high - low) or 0.1
    ax.set_ylim(10.0 ** (low - pad), 10.0 ** min(high + pad, LOG_CEILING))


def overlay_figure(
    runs: Sequence[Run], key: str, what: str, ylab: str, f=None, log_x: bool = False, log_y: bool | None = None
) -> Figure:
    """One line per run of a metric's per-generation mean over seeds, with a band and a legend."""
    data = [series(r.rows, key, f) for r in runs]
    if not any(plotted(s).any() for s in data):
        raise Unavailable(f"no finite {key} values")
    log_y = wants_log([s.mean for s in data]) if log_y is None else log_y
    fig = new_figure(7, 4.5)
    ax = fig.add_subplot()
    drawn = [v for run, s in zip(runs, data) for v in draw_series(ax, s, legend_label(run), log_y)]
    style_axes(ax, ylab, log_x, log_y, drawn)
    band = "16-84th percentile over seeds" if log_y else "± 1 std over seeds"
    ax.set_title(f"mean over seeds, band {band}" + infinite_note(runs, data), fontsize=9)
    fig.suptitle(figure_title(runs, what))
    return fig


def infinite_note(runs: Sequence[Run], data: Sequence[Series]) -> str:
    """Where a line stops because the mean went infinite (a seed's model gives the real data no density)."""
    notes = []
    for run, s in zip(runs, data):
        inf = np.isinf(s.mean)
        if inf.any():
            who = f"{run.label}: " if len(runs) > 1 else ""
            notes.append(f"{who}mean infinite from generation {int(s.generations[inf.argmax()])}")
    return "\n" + "; ".join(notes) if notes else ""


def style_axes(ax: Axes, ylab: str, log_x: bool, log_y: bool, drawn: Sequence[np.ndarray]) -> None:
    if log_x:
        log_generation_axis(ax)
    else:
        ax.set_xlabel("generation")
    if log_y:
        log_limits(ax, drawn)  # first: set_yscale autoscales, overflowing near 1e300
        ax.set_yscale("log")
    ax.set_ylabel(ylab + (" (log scale)" if log_y else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


# --- generic figures: any engine --------------------------------------------------------------------


def perplexity_figure(runs: Sequence[Run], opts: Options) -> Figure:
    return overlay_figure(runs, "perplexity", "Perplexity of real data against generation", ylabel(runs, "perplexity"))


def variance_figure(runs: Sequence[Run], opts: Options) -> Figure:
    return overlay_figure(runs, "variance", "Variance of generated data against generation", ylabel(runs, "variance"))


def metrics_figure(runs: Sequence[Run], opts: Options) -> Figure:
    """Small multiples: every scalar metric the runs share, one line per run (engines without figures
    of their own still show all they measure)."""
    keys = [k for k in shared_metrics(runs) if k != "train_size" or len({r.config.data["mode"] for r in runs}) > 1]
    if not keys:
        raise Unavailable("no metrics on disk yet")
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = new_figure(4 * cols, 2.8 * rows + 0.8)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        data = [series(r.rows, key) for r in runs]
        log_y = wants_log([s.mean for s in data], ratio=1e3)
        drawn = [v for run, s in zip(runs, data) for v in draw_series(ax, s, legend_label(run), log_y)]
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("generation")
        ax.set_ylabel(f"{key} (log)" if log_y else key, fontsize=8)
        if log_y:
            log_limits(ax, drawn)  # first: set_yscale autoscales, overflowing near 1e300
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    if len(runs) > 1 and handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(runs), 3), fontsize=8)
    fig.suptitle(figure_title(runs, "All metrics: mean over seeds, band ± 1 std (16-84th percentile on log axes)"))
    return fig


# --- gaussian ---------------------------------------------------------------------------------------


def gaussian_label(run: Run) -> str:
    m = run.config.engine.get("samples")
    return legend_label(run) if "samples=" in run.label else f"{legend_label(run)}, M={m}"


def gaussian_errors_figure(runs: Sequence[Run], opts: Options) -> Figure:
    """The paper's single-Gaussian figure: |mu - mu_n| and |sigma - sigma_n| of the fitted model against
    generation (the original is N(0, I): mean_shift is |mu_n|, fit_std is sigma_n), per seed then
    averaged, log axes."""
    if not any(plotted(series(r.rows, "mean_shift")).any() for r in runs):
        raise Unavailable("no finite mean_shift values")
    fig = new_figure(11, 4.5)
    parts = (
        ("mean_shift", None, "|μ − μₙ| (data units)", "error of the fitted mean"),
        ("fit_std", lambda v: abs(1.0 - v), "|σ − σₙ| (data units)", "error of the fitted std"),
    )
    for i, (key, f, ylab, what) in enumerate(parts):
        ax = fig.add_subplot(1, 2, i + 1)
        data = [series(r.rows, key, f) for r in runs]
        log_y = all(np.all(s.mean[np.isfinite(s.mean)] > 0) for s in data)
        drawn = [v for run, s in zip(runs, data) for v in draw_series(ax, s, gaussian_label(run), log_y)]
        style_axes(ax, ylab, log_x=True, log_y=log_y, drawn=drawn)
        ax.set_title(f"{what}: mean over seeds, band {BAND[0]}-{BAND[1]}th percentile", fontsize=9)
    fig.suptitle(figure_title(runs, "Single Gaussian: estimation error against generation"))
    return fig


# --- gmm --------------------------------------------------------------------------------------------


def saved_points(run: Run, gens: Sequence[int]) -> dict[int, np.ndarray]:
    points = {g: run.rundir.load_samples(g) for g in gens}
    if any(not isinstance(p, np.ndarray) or p.ndim != 2 for p in points.values()):
        raise Unavailable("the saved samples are not points (n, d)")
    return points


def density_snapshots_figure(run: Run, opts: Options) -> Figure:
    """2-D histograms (density per unit area, shared log colour scale) of the saved samples of the
    first seed at chosen generations, on one extent that holds every point. 1-D data: histograms."""
    gens = chosen_generations(run, opts)
    points = saved_points(run, gens)
    reach = max((float(np.abs(p[:, :2]).max()) for p in points.values() if p.size), default=1.0) * 1.05 or 1.0
    edges = np.linspace(-reach, reach, SNAPSHOT_BINS + 1)
    cols = min(4, len(gens))
    rows = math.ceil(len(gens) / cols)
    fig = new_figure(3.2 * cols + 1.0, 3.0 * rows + 0.9)
    dens = {g: density(p, edges) for g, p in points.items()}
    positive = [d[d > 0] for d in dens.values() if (d > 0).any()]
    norm = None
    low, high = (min(float(d.min()) for d in positive), max(float(d.max()) for d in positive)) if positive else (0, 0)
    if high > low > 0 and points[gens[0]].shape[1] >= 2:
        from matplotlib.colors import LogNorm

        norm = LogNorm(low, high)  # one scale for all panels: a collapsing density gets brighter
    seed = run.config.seeds[0]
    image = None
    for i, g in enumerate(gens):
        ax = fig.add_subplot(rows, cols, i + 1)
        p = points[g]
        if p.shape[1] >= 2:
            extent = (-reach, reach, -reach, reach)
            masked = np.ma.masked_equal(dens[g].T, 0)  # empty cells: background, not the lowest colour
            image = ax.imshow(masked, origin="lower", extent=extent, norm=norm, cmap="viridis", interpolation="nearest")
            ax.set_xlabel("x₁ (data units)")
            ax.set_ylabel("x₂ (data units)")
        else:
            ax.stairs(dens[g], edges, fill=True, alpha=0.7)
            ax.set_xlabel("x (data units)")
            ax.set_ylabel("density (per unit)")
        ax.set_title(f"generation {g} ({len(p)} points)", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.8, label="density (per unit area, log scale)")
    fig.suptitle(figure_title([run], f"Samples of seed {seed}: density at saved generations"))
    return fig


def density(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Histogram of the first two coordinates (or the only one) as a density: it integrates to 1."""
    width = edges[1] - edges[0]
    n = max(len(points), 1)
    if points.shape[1] >= 2:
        counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=(edges, edges))
        return counts / (n * width * width)
    counts, _ = np.histogram(points[:, 0], bins=edges)
    return counts / (n * width)


def l2_figure(runs: Sequence[Run], opts: Options) -> Figure:
    """The paper's GMM metric: squared L2 distance between the densities of generation n and
    generation 0 (zero at generation 0, so that point is left off the log axis)."""
    what = "Squared L2 distance to the generation-0 density"
    return overlay_figure(runs, "l2_distance", what, "∫ (p₀ − pₙ)² dx, per data unit^d", log_y=True)


# --- vae --------------------------------------------------------------------------------------------


def saved_images(run: Run, gens: Sequence[int]) -> dict[int, np.ndarray]:
    images = {g: run.rundir.load_samples(g) for g in gens}
    if any(not isinstance(x, np.ndarray) or x.ndim != 3 for x in images.values()):
        raise Unavailable("the saved samples are not images (n, H, W)")
    return images


def tile(images: np.ndarray, side: int = 8, pad: int = 1) -> np.ndarray:
    """Up to side x side images (n, H, W) in one grid image, NaN (drawn in a gap colour) between them."""
    n, h, w = images.shape
    cols = min(side, n)
    rows = min(side, math.ceil(n / cols))
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan, dtype=np.float32)  # NaN: the gaps
    for i in range(min(n, rows * cols)):
        r, c = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = images[i]
    return grid


def sample_grid_figure(run: Run, opts: Options) -> Figure:
    """Decoded samples (first seed, up to 64 each) at chosen generations: digits blur and mix."""
    gens = chosen_generations(run, opts)
    images = saved_images(run, gens)
    cols = min(4, len(gens))
    rows = math.ceil(len(gens) / cols)
    fig = new_figure(3.2 * cols, 3.4 * rows + 0.8)
    from matplotlib import colormaps

    cmap = colormaps["gray_r"].with_extremes(bad="#b8c4d4")  # ink dark on white, gaps light blue-grey
    for i, g in enumerate(gens):
        ax = fig.add_subplot(rows, cols, i + 1)
        x = images[g]
        ax.imshow(np.ma.masked_invalid(tile(x)), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"generation {g}", fontsize=9)
        ax.set_xlabel(f"{min(len(x), 64)} samples, {x.shape[1]}×{x.shape[2]} px, ink 0-1", fontsize=7)
    fig.suptitle(figure_title([run], f"Samples decoded from z ~ N(0, I), seed {run.config.seeds[0]}"))
    return fig


def encoder_means(run: Run, gens: Sequence[int]) -> dict[int, np.ndarray]:
    """The generation-0 encoder's means of each chosen generation's saved samples (needs torch)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise Unavailable("needs torch to run the generation-0 encoder (pip install torch)") from None
    from .engines import engine_class
    from .engines import vae_torch as vt

    ref_dir = run.rundir.state_dir / f"reference-{run.config.seeds[0]}"
    if not ref_dir.is_dir():
        raise Unavailable(f"no generation-0 model in {ref_dir}")
    engine = engine_class(run.engine)(run.config.engine, device="cpu")
    reference = engine.load(ref_dir)
    images = saved_images(run, gens)
    return {g: np.asarray(vt.encode_means(reference, x), dtype=float) for g, x in images.items()}


def latent_density_figure(run: Run, opts: Options) -> Figure:
    """The paper's VAE figure: density of the generation-0 encoder's means of each generation's
    samples (all latent dimensions pooled), one colour per generation: the spread shrinks."""
    gens = chosen_generations(run, opts)
    means = {g: m.ravel() for g, m in encoder_means(run, gens).items()}
    grid = density_grid(np.concatenate(list(means.values())))
    fig = new_figure(7, 4.5)
    ax = fig.add_subplot()
    for color, g in zip(generation_colors(len(gens)), gens):
        mu = means[g]
        ax.plot(grid, kde_or_histogram(mu, grid), color=color, label=f"gen {g}: std {mu.std():.3g}")
    ax.set_xlabel("generation-0 encoder mean μ (latent units)")
    ax.set_ylabel("density (per latent unit)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    n = len(run.rundir.load_samples(gens[0]))
    ax.set_title(f"{n} saved samples a generation (seed {run.config.seeds[0]}), all latent dimensions", fontsize=9)
    fig.suptitle(figure_title([run], "Latent means of generated images under the generation-0 encoder"))
    return fig


def density_grid(values: np.ndarray, n: int = 400) -> np.ndarray:
    """Points to draw densities at: the values' range and three KDE bandwidths (Scott's rule) beyond,
    so each curve's tails are on the figure."""
    if not values.size:
        return np.zeros(1)
    margin = 3 * (values.std() * values.size ** (-1 / 5) or 1.0)
    return np.linspace(values.min() - margin, values.max() + margin, n)


def kde_or_histogram(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A Gaussian KDE on grid; a histogram read at grid when the values are (near) constant."""
    from scipy.stats import gaussian_kde

    try:
        return gaussian_kde(values)(grid)
    except (np.linalg.LinAlgError, ValueError):
        counts, edges = np.histogram(values, bins=min(50, max(values.size, 1)), density=True)
        idx = np.clip(np.searchsorted(edges, grid) - 1, 0, len(counts) - 1)
        return counts[idx]


def generation_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.9, max(n, 1))][:n]


def class_shares_figure(run: Run, opts: Options) -> Figure:
    """Share of each digit among the samples (classifier trained on real data), mean over seeds."""
    rows = [r for r in run.rows if isinstance(r.get("class_shares"), list)]
    if not rows:
        raise Unavailable("no class_shares in metrics (the data have no labels)")
    gens = sorted({r["generation"] for r in rows})
    k = len(rows[0]["class_shares"])
    shares = np.array([np.mean([r["class_shares"] for r in rows if r["generation"] == g], axis=0) for g in gens])
    fig = new_figure(7, 4.5)
    ax = fig.add_subplot()
    ax.stackplot(gens, shares.T, labels=[f"class {c}" for c in range(k)], colors=generation_colors(k))
    ax.set_xlabel("generation")
    ax.set_ylabel("share of samples (fraction)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncols=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(figure_title([run], "Classes among generated samples (mean over seeds)"))
    return fig


def sequence_perplexity_figure(run: Run, opts: Options) -> Figure:
    """The paper's figure 1: histograms of the generation-0 model's perplexity of each generation's
    generated blocks, log x, one colour per generation (share of blocks, mean over seeds)."""
    from .engines.text_metrics import HIST_EDGES

    rows = [r for r in run.rows if isinstance(r.get("seq_ppl_hist"), list)]
    if not rows:
        raise Unavailable("no seq_ppl_hist in metrics")
    gens = sorted({r["generation"] for r in rows})
    fig = new_figure(7, 4.5)
    ax = fig.add_subplot()
    for g, color in zip(gens, generation_colors(len(gens))):
        counts = np.array([r["seq_ppl_hist"] for r in rows if r["generation"] == g], dtype=float)
        shares = (counts / counts.sum(axis=1, keepdims=True)).mean(axis=0)
        ax.stairs(shares, HIST_EDGES, color=color, label=f"generation {g}")
    ax.set_xscale("log")
    ax.set_xlabel("perplexity of a generated block under the generation-0 model")
    ax.set_ylabel("share of blocks (fraction)")
    ax.legend(fontsize=7)
    fig.suptitle(figure_title([run], "Perplexity of generated data (paper's figure 1)"))
    return fig


# --- which figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str
    build: Callable[..., Figure]  # (runs, opts) -> Figure, or (run, opts) when per_run
    caption: str
    per_run: bool = False


GENERIC = (
    Spec("perplexity", perplexity_figure, "Perplexity of real held-out data against generation, runs overlaid."),
    Spec("variance", variance_figure, "Variance of each generation's samples against generation, runs overlaid."),
    Spec("metrics", metrics_figure, "Every metric the runs share, one panel each."),
)
ENGINE_FIGURES: dict[str, tuple[Spec, ...]] = {
    "gaussian": (
        Spec("errors", gaussian_errors_figure, "|μ − μₙ| and |σ − σₙ| against generation, log axes (paper, 3.1)."),
    ),
    "gmm": (
        Spec("density", density_snapshots_figure, "Density of the saved samples at chosen generations.", True),
        Spec("l2", l2_figure, "Squared L2 distance to the generation-0 density, log y axis (paper's GMM figure)."),
    ),
    "vae": (
        Spec("samples", sample_grid_figure, "Samples decoded from z ~ N(0, I) at chosen generations.", True),
        Spec(
            "latents",
            latent_density_figure,
            "Density of generation-0 encoder means of each generation's samples.",
            True,
        ),
        Spec("classes", class_shares_figure, "Share of each class among the samples per generation.", True),
    ),
    "opt": (
        Spec(
            "sequence-perplexity",
            sequence_perplexity_figure,
            "Histograms of the generation-0 perplexity of each generation's generated blocks (paper, fig. 1).",
            True,
        ),
    ),
}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def plan(runs: Sequence[Run], opts: Options) -> list[tuple[str, str, Callable[[], Figure]]]:
    """(file stem, caption, build) for every figure of these runs: the generic ones over all runs,
    then each engine's over its runs (per-run figures once per run)."""
    items = [(s.name, s.caption, partial(s.build, list(runs), opts)) for s in GENERIC]
    by_engine: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_engine[run.engine].append(run)
    for engine, group in by_engine.items():
        # legends name what differs within the group (e.g. mode=accumulate), not across all runs
        group = [replace(r, label=label) for r, label in zip(group, run_labels(group))] if len(group) > 1 else group
        for s in ENGINE_FIGURES.get(engine, ()):
            if not s.per_run:
                items.append((f"{engine}-{s.name}", s.caption, partial(s.build, group, opts)))
                continue
            for run in group:
                stem = f"{engine}-{s.name}" + (f"-{slug(run.label)}" if len(group) > 1 else "")
                items.append((stem, f"{s.caption} ({run.label})", partial(s.build, run, opts)))
    return items


def save_figure(fig: Figure, path: Path, dpi: int = 150) -> None:
    """Render to memory, then write atomically: a reader never sees half a file."""
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:], dpi=dpi)
    atomic_write(path, buf.getvalue())


def write_report(runs: Sequence[Run], out: Path, opts: Options) -> list[Written]:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create it: {e.strerror}") from None
    written = []
    for stem, caption, build in plan(runs, opts):
        w = Written(stem, caption)
        try:
            fig = build()
        except Unavailable as e:
            w.skipped = str(e)
        else:
            for fmt in opts.formats:
                path = out / f"{stem}.{fmt}"
                save_figure(fig, path, opts.dpi)
                w.files.append(path)
        written.append(w)
    atomic_write(out / "index.md", index_markdown(runs, written).encode())
    return written


def index_markdown(runs: Sequence[Run], written: Sequence[Written]) -> str:
    lines = [f"# collapse-tui report: {', '.join(dict.fromkeys(r.name for r in runs))}", ""]
    lines += [f"Made {datetime.now().strftime('%Y-%m-%d %H:%M')} from:", ""]
    lines += ["| run | preset | engine | data mode | seeds | state | directory |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        cells = (r.label, r.name, r.engine, r.config.data["mode"], len(r.config.seeds), r.progress(), r.rundir.path)
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    for w in written:
        lines += ["", f"## {w.name}", "", w.caption, ""]
        if w.skipped:
            lines.append(f"Not drawn: {w.skipped}.")
            continue
        png = next((p for p in w.files if p.suffix == ".png"), None)
        if png is not None:
            lines.append(f"![{w.name}]({png.name})")
        lines.append(" · ".join(f"[{p.suffix[1:].upper()}]({p.name})" for p in w.files))
    return "\n".join(lines) + "\n"


def parse_generations(text: str) -> list[int]:
    try:
        gens = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--generations: expected comma-separated integers, got {text!r}") from None
    if not gens or min(gens) < 0:
        raise ConfigError(f"--generations: expected generations >= 0, got {text!r}")
    return sorted(set(gens))


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(x.strip().lower() for x in text.split(",") if x.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"--format: expected png, svg or png,svg, got {text!r}")
    return formats


def run(args: argparse.Namespace) -> int:
    """`collapse-tui report`: args as cli.build_commands parses them."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    opts = Options(
        generations=parse_generations(args.generations) if args.generations else None,
        formats=parse_formats(args.format),
        dpi=max(30, min(args.dpi, 600)),
    )
    runs = load_runs(args.run_dirs)
    out = Path(args.out) if args.out else (runs[0].rundir.path / "report" if len(runs) == 1 else Path("report"))
    for w in write_report(runs, out, opts):
        what = ", ".join(str(f) for f in w.files) if w.files else f"skipped: {w.skipped}"
        print(f"{w.name}: {what}")
    print(f"index: {out / 'index.md'}")
    return 0

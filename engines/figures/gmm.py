"""The GMM's figures: density snapshots of the saved samples, and the paper's L2 distance to generation 0."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from collapse_tui.report.figures import (
    Options,
    Run,
    Spec,
    Unavailable,
    chosen_generations,
    figure_title,
    new_figure,
    overlay_figure,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SNAPSHOT_BINS = 40  # per axis: about 1000 points a snapshot


def saved_points(run: Run, gens: Sequence[int]) -> dict[int, np.ndarray]:
    points = {g: run.rundir.load_samples(g) for g in gens}
    if any(not isinstance(p, np.ndarray) or p.ndim != 2 for p in points.values()):
        raise Unavailable("the saved samples are not points (n, d)")
    return points


def density(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Histogram of the first two coordinates (or the only one) as a density: it integrates to 1."""
    width = edges[1] - edges[0]
    n = max(len(points), 1)
    if points.shape[1] >= 2:
        counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=(edges, edges))
        return counts / (n * width * width)
    counts, _ = np.histogram(points[:, 0], bins=edges)
    return counts / (n * width)


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


def l2_figure(runs: Sequence[Run], opts: Options) -> Figure:
    """The paper's GMM metric: squared L2 distance between the densities of generation n and
    generation 0 (zero at generation 0, so that point is left off the log axis)."""
    what = "Squared L2 distance to the generation-0 density"
    return overlay_figure(runs, "l2_distance", what, "∫ (p₀ − pₙ)² dx, per data unit^d", log_y=True)


FIGURES = (
    Spec("density", density_snapshots_figure, "Density of the saved samples at chosen generations.", True),
    Spec("l2", l2_figure, "Squared L2 distance to the generation-0 density, log y axis (paper's GMM figure)."),
)

"""The VAE's figures: grids of decoded samples, the paper's density of generation-0 encoder means
(needs torch, to run that encoder) and the share of each class among the samples."""

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
    generation_colors,
    new_figure,
)

from .. import engine_class

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
        from .. import vae_torch as vt  # imports torch
    except ImportError:
        raise Unavailable("needs torch to run the generation-0 encoder (pip install torch)") from None
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


FIGURES = (
    Spec("samples", sample_grid_figure, "Samples decoded from z ~ N(0, I) at chosen generations.", True),
    Spec("latents", latent_density_figure, "Density of generation-0 encoder means of each generation's samples.", True),
    Spec("classes", class_shares_figure, "Share of each class among the samples per generation.", True),
)

"""The figures every run gets, whatever its engine: perplexity and variance against generation (runs
overlaid) and one panel per metric the runs share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..compare import shared_metrics
from .figures import (
    Options,
    Run,
    Spec,
    Unavailable,
    axis_label,
    draw_series,
    figure_title,
    legend_label,
    log_limits,
    new_figure,
    overlay_figure,
    series,
    wants_log,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def perplexity_figure(runs: Sequence[Run], opts: Options) -> Figure:
    what = "Perplexity of real data against generation"
    return overlay_figure(runs, "perplexity", what, axis_label(runs, "perplexity"))


def variance_figure(runs: Sequence[Run], opts: Options) -> Figure:
    what = "Variance of generated data against generation"
    return overlay_figure(runs, "variance", what, axis_label(runs, "variance"))


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


GENERIC = (
    Spec("perplexity", perplexity_figure, "Perplexity of real held-out data against generation, runs overlaid."),
    Spec("variance", variance_figure, "Variance of each generation's samples against generation, runs overlaid."),
    Spec("metrics", metrics_figure, "Every metric the runs share, one panel each."),
)

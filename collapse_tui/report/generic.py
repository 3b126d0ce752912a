"""The figures every run gets, whatever its engine: perplexity and variance against generation (runs
overlaid) and one panel per metric the runs share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..runs import shared_metrics
from .figures import (
    Options,
    Run,
    Spec,
    Unavailable,
    axis_label,
    axis_mode,
    draw_runs,
    figure_title,
    new_figure,
    overlay_figure,
    series,
    style_axes,
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
    keys = [k for k in shared_metrics(runs) if k != "train_size" or len({r.config.data.mode for r in runs}) > 1]
    if not keys:
        raise Unavailable("no metrics on disk yet")
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = new_figure(4 * cols, 2.8 * rows + 0.8)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        data = [series(r.rows, key, log_keys=r.log_keys) for r in runs]
        mode = axis_mode(data, ratio=1e3)
        drawn = draw_runs(ax, runs, data, mode, key)
        ax.set_title(key, fontsize=10)
        style_axes(ax, key, False, mode, drawn, legend=False)
        ax.yaxis.label.set_fontsize(8)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    if len(runs) > 1 and handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(runs), 3), fontsize=8)
    theory = "; dashed: theory's expected mean, dotted: mean over seeds" if any(r.theory for r in runs) else ""
    fig.suptitle(figure_title(runs, f"All metrics: median over seeds, band 16-84th percentile{theory}"))
    return fig


GENERIC = (
    Spec("perplexity", perplexity_figure, "Perplexity of real held-out data against generation, runs overlaid."),
    Spec("variance", variance_figure, "Variance of each generation's samples against generation, runs overlaid."),
    Spec("metrics", metrics_figure, "Every metric the runs share, one panel each."),
)

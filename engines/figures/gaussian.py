"""The single Gaussian's figure: the paper's estimation errors against generation (section 3.1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from collapse_tui.report.figures import (
    BAND,
    Options,
    Run,
    Spec,
    Unavailable,
    draw_series,
    figure_title,
    legend_label,
    new_figure,
    plotted,
    series,
    style_axes,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def gaussian_label(run: Run) -> str:
    m = run.config.engine.get("samples")
    return legend_label(run) if "samples=" in run.label else f"{legend_label(run)}, M={m}"


def gaussian_errors_figure(runs: Sequence[Run], opts: Options) -> Figure:
    """The paper's single-Gaussian figure: |mu - mu_n| and |sigma - sigma_n| of the fitted model against
    generation (the original is N(0, I): mean_shift is |mu_n|, fit_std is sigma_n), per seed, then the
    median over seeds with its 16-84th percentile band, log axes."""
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
        mode = "log" if all(np.all(s.centre[np.isfinite(s.centre)] > 0) for s in data) else "linear"
        drawn = [v for run, s in zip(runs, data) for v in draw_series(ax, s, gaussian_label(run), mode)]
        style_axes(ax, ylab, log_x=True, mode=mode, drawn=drawn)
        ax.set_title(f"{what}: median over seeds, band {BAND[0]}-{BAND[1]}th percentile", fontsize=9)
    fig.suptitle(figure_title(runs, "Single Gaussian: estimation error against generation"))
    return fig


FIGURES = (Spec("errors", gaussian_errors_figure, "|μ − μₙ| and |σ − σₙ| against generation, log axes (paper, 3.1)."),)

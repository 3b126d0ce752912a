"""The KDE plugin's own report figure: the variance of its chains against the closed form."""

from __future__ import annotations

import numpy as np

from collapse_tui.report.figures import Spec, Unavailable, new_figure, series


def variance_theory_figure(runs, opts):
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    for run in runs:
        s = series(run.rows, "variance")
        if not len(s.generations):
            raise Unavailable("no variance on disk yet")
        m, h = run.config.engine["samples"], run.config.engine["bandwidth"]
        a = (m - 1) / m
        theory = s.mean[0] * a**s.generations + h**2 * (1 - a**s.generations) / (1 - a)
        ax.plot(s.generations, s.mean, label=f"{run.label}: mean over seeds")
        ax.plot(s.generations, theory, ls="--", label="a^n s0² + h² (1 - a^n) / (1 - a)")
    ax.set_xlabel("generation")
    ax.set_ylabel("variance of samples")
    ax.legend(fontsize=8)
    ax.set_ylim(bottom=0, top=max(1.1, float(np.nanmax(ax.get_ylim()))))
    return fig


FIGURES = (Spec("variance-theory", variance_theory_figure, "KDE chains: variance against the closed form."),)

"""The KDE plugin's own report figure: the variance of its chains against the closed form."""

from __future__ import annotations

import numpy as np

from collapse_tui.report.figures import Spec, Unavailable, new_figure


def variance_theory_figure(runs, opts):
    """The mean over seeds (the closed form is for the mean) of each generation's sample variance."""
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    for run in runs:
        gens = np.array(sorted({r["generation"] for r in run.rows}))
        if not len(gens):
            raise Unavailable("no variance on disk yet")
        mean = np.array([np.mean([r["variance"] for r in run.rows if r["generation"] == g]) for g in gens])
        m, h = run.config.engine["samples"], run.config.engine["bandwidth"]
        a = (m - 1) / m
        theory = a ** (gens + 1) + h**2 * (1 - a ** (gens + 1)) / (1 - a)
        ax.plot(gens, mean, label=f"{run.label}: mean over seeds")
        ax.plot(gens, theory, ls="--", label="a^(n+1) + h² (1 - a^(n+1)) / (1 - a)")
    ax.set_xlabel("generation")
    ax.set_ylabel("variance of samples")
    ax.legend(fontsize=8)
    ax.set_ylim(bottom=0, top=max(1.1, float(np.nanmax(ax.get_ylim()))))
    return fig


FIGURES = (Spec("variance-theory", variance_theory_figure, "KDE chains: variance against the closed form."),)

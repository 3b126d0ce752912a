"""The n-gram engine's figures: the paper's figure 1 (as the OPT engine's) and the vocabulary it loses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collapse_tui.report.figures import Options, Run, Spec, Unavailable, figure_title, new_figure

from .opt import FIGURES as OPT_FIGURES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LOST = {"types_lost": "generation 0's words", "singletons_lost": "words seen once", "doubletons_lost": "seen twice"}


def types_lost_figure(run: Run, opts: Options) -> Figure:
    """Share of words absent from each generation's generated data, median over seeds."""
    import numpy as np

    rows = [r for r in run.rows if r.get("types_lost") is not None]
    if not rows:
        raise Unavailable("no types_lost in metrics")
    gens = sorted({r["generation"] for r in rows})
    fig = new_figure(7, 4.5)
    ax = fig.add_subplot()
    for key, label in LOST.items():
        med = [
            np.median([r[key] for r in rows if r["generation"] == g and r.get(key) is not None] or [np.nan])
            for g in gens
        ]
        ax.plot(gens, med, marker="o", label=label)
    ax.set_xlabel("generation")
    ax.set_ylabel("absent from the generated data (fraction, median over seeds)")
    ax.legend(fontsize=7)
    fig.suptitle(figure_title([run], "Words lost"))
    return fig


FIGURES = (
    *OPT_FIGURES,
    Spec("types-lost", types_lost_figure, "Share of the vocabulary each generation's generated data lack.", True),
)

"""The OPT engine's figure: the paper's figure 1, histograms of generated blocks' perplexity."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from collapse_tui.report.figures import Options, Run, Spec, Unavailable, figure_title, generation_colors, new_figure

from ..text_metrics import HIST_EDGES

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def sequence_perplexity_figure(run: Run, opts: Options) -> Figure:
    """The paper's figure 1: histograms of the generation-0 model's perplexity of each generation's
    generated blocks, log x, one colour per generation (share of blocks, mean over seeds)."""
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


FIGURES = (
    Spec(
        "sequence-perplexity",
        sequence_perplexity_figure,
        "Histograms of the generation-0 perplexity of each generation's generated blocks (paper, fig. 1).",
        True,
    ),
)

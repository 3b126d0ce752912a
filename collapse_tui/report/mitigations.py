"""The figure of a sweep with variants: can collapse be avoided, and what does each fix cost?

Per value of the other swept keys (one figure each): the headline metric over generations, a line per
variant (median over seeds and its 16-84th percentile band; a log-quantity in log10 past float's range),
and under it the table of mitigations.py (final value, change since generation 0, against the baseline,
compute seconds and their ratio, rank). The numbers are collapse_tui.mitigations'; this module only draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..files import atomic_write
from ..mitigations import Outcome, columns, csv_text, outcomes, texts
from ..runs import Run
from ..summary import BAND
from ..sweepdir import SweepDir
from .figures import Options, axis_mode, draw_series, new_figure, series, style_axes
from .runs import save_figure, slug

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSV_FILE = "mitigations.csv"


def groups(outs: Sequence[Outcome]) -> dict[str, list[Outcome]]:
    """The cells by their values of the other swept keys ('' when there are none), in the sweep's order."""
    by: dict[str, list[Outcome]] = {}
    for o in outs:
        by.setdefault(", ".join(f"{k.partition('.')[2]}={v}" for k, v in o.others.items()), []).append(o)
    return by


def mitigations_figure(sweep: SweepDir, runs: Mapping[str, Run], outs: Sequence[Outcome], what: str = "") -> Figure:
    """One group's figure: a line per variant over generations on one axis, the table below it."""
    metric, gen = outs[0].metric, outs[0].generation
    data = [series(runs[o.cell].rows, metric, log_keys=runs[o.cell].log_keys) for o in outs]
    fig = new_figure(8, 4.5 + 0.25 * (len(outs) + 1))
    lines, table = fig.subplots(2, 1, height_ratios=[4.5, 0.25 * (len(outs) + 1)])
    mode = axis_mode(data)
    drawn = [v for o, s in zip(outs, data) for v in draw_series(lines, s, o.variant, mode)]
    style_axes(lines, metric, False, mode, drawn)
    if mode == "log10":  # one variant past float's range (a filter that shrinks a Gaussian to a point)
        lines.set_yscale("symlog", linthresh=1.0)  # leaves the others apart: decades of decades
        lines.set_ylabel(f"log10 of {metric} (symlog scale)")
    lines.axvline(gen, color="k", lw=0.6, ls=":")
    lines.set_title(
        f"median over seeds, band {BAND[0]}-{BAND[1]}th percentile; the table at generation {gen} (dotted)",
        fontsize=9,
    )
    table.axis("off")
    cells = table.table(
        cellText=[texts(o, cell=False) for o in outs], colLabels=columns(outs), loc="center", cellLoc="right"
    )
    cells.auto_set_font_size(False)
    cells.set_fontsize(8)
    fig.suptitle(f"{sweep.name}: {metric} by variant" + (f" ({what})" if what else ""))
    return fig


def write_mitigations(
    sweep: SweepDir, runs: Mapping[str, Run], out: Path, opts: Options, generation: int | None
) -> list[tuple[str, list[Path]]]:
    """mitigations.csv and a figure per group of a sweep with variants in out (a folder that exists);
    nothing for a sweep without variants."""
    outs = outcomes(sweep, runs, generation=generation)
    if not outs:
        return []
    atomic_write(out / CSV_FILE, csv_text(outs).encode())
    written = [("mitigations table", [out / CSV_FILE])]
    for what, group in groups(outs).items():
        stem = "mitigations" + (f"-{slug(what)}" if what else "")
        fig = mitigations_figure(sweep, runs, group, what)
        files = [out / f"{stem}.{fmt}" for fmt in opts.formats]
        for path in files:
            save_figure(fig, path, opts.dpi)
        written.append((f"mitigations {what}".strip(), files))
    return written

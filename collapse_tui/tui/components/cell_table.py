"""A sweep's cells, a row each: name, state, generations done, a metric's sparkline over generations on the
scale every cell shares, and its first and last medians over seeds with the change between them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

from .. import render

SPARK_WIDTH = 16
COLUMNS = ("cell", "state", "gen", "trend", "first", "last", "change")


@dataclass(frozen=True)
class CellRow:
    name: str
    state: str  # created running finished stopped failed crashed
    done: int  # generations finished
    generations: int
    medians: list[float]  # the metric's median over seeds per generation (log10 for a log-quantity)
    numbers: tuple[str, str, str] = ("", "", "")  # the first and last median and the change (summary.py's texts)
    error: str = ""  # why the cell cannot be read (state "unreadable"), shown in place of the sparkline


def shared_frame(rows: list[CellRow]) -> tuple[float, float]:
    """The y range every cell's sparkline is drawn in: the finite medians of all cells (NaN: none)."""
    finite = [v for r in rows for v in r.medians if math.isfinite(v)]
    return (min(finite), max(finite)) if finite else (math.nan, math.nan)


class CellTable(DataTable):
    """Rows keyed by cell name; show() updates them in place, so the cursor stays where the user left it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def on_mount(self) -> None:
        for col in COLUMNS:
            self.add_column(col, key=col)

    def show(self, rows: list[CellRow], metric: str) -> tuple[float, float]:
        """The rows, their sparklines on one scale (shared_frame, returned), so that a cell's line stands against
        the others'."""
        self.columns["trend"].label = Text(metric)
        frame = shared_frame(rows)
        for r in rows:
            if r.error:  # the reason in the sparkline's place, cut to its width
                reason = r.error if len(r.error) <= SPARK_WIDTH else r.error[: SPARK_WIDTH - 1] + "…"
                cells = (r.name, r.state, "?", reason, "", "", "")
            else:
                spark = render.sparkline(r.medians, SPARK_WIDTH, total=r.generations, frame=frame)[0]
                numbers = (Text(n, justify="right") for n in r.numbers)
                cells = (r.name, r.state, f"{r.done}/{r.generations}", spark, *numbers)
            if r.name in self.rows:
                for col, value in zip(COLUMNS, cells):
                    self.update_cell(r.name, col, value)
            else:
                self.add_row(*cells, key=r.name)
        return frame

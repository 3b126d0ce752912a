"""A sweep's cells, a row each: name, state, generations done and a metric's sparkline over generations."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

from .. import render

SPARK_WIDTH = 24


@dataclass(frozen=True)
class CellRow:
    name: str
    state: str  # created running finished stopped failed crashed
    done: int  # generations finished
    generations: int
    medians: list[float]  # the metric's median over seeds per generation (log10 for a log-quantity)
    error: str = ""  # why the cell cannot be read (state "unreadable"), shown in place of the sparkline


class CellTable(DataTable):
    """Rows keyed by cell name; show() updates them in place, so the cursor stays where the user left it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def on_mount(self) -> None:
        for col in ("cell", "state", "gen", "trend"):
            self.add_column(col, key=col)

    def show(self, rows: list[CellRow], metric: str) -> None:
        self.columns["trend"].label = Text(metric)
        for r in rows:
            if r.error:  # the reason in the sparkline's place, cut to its width
                reason = r.error if len(r.error) <= SPARK_WIDTH else r.error[: SPARK_WIDTH - 1] + "…"
                cells = (r.name, r.state, "?", reason)
            else:
                spark = render.sparkline(r.medians, SPARK_WIDTH, total=r.generations)[0]
                cells = (r.name, r.state, f"{r.done}/{r.generations}", spark)
            if r.name in self.rows:
                for col, value in zip(("cell", "state", "gen", "trend"), cells):
                    self.update_cell(r.name, col, value)
            else:
                self.add_row(*cells, key=r.name)

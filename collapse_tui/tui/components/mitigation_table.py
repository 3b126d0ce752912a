"""A sweep's variants side by side: what each fix buys and costs (collapse_tui.mitigations), a row per cell."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ...mitigations import Outcome, columns, texts


class MitigationTable(DataTable):
    """The table the report draws under its figure: final value, change, against the baseline, compute
    seconds, their ratio and rank. show() rebuilds it (a handful of rows)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def show(self, outs: list[Outcome]) -> None:
        self.clear(columns=True)
        self.add_columns(*columns(outs))
        for o in outs:
            name, *numbers = texts(o)
            self.add_row(name, *(Text(n, justify="right") for n in numbers), key=o.cell)

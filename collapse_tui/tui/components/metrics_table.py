"""Every metric's median over seeds (summary.py), one row per generation: the newest TABLE_ROWS of them."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import var
from textual.widgets import DataTable

from ...numbers import NA
from ...summary import SERIES, Summary, value_text
from ..state import ScreenState

TABLE_ROWS = 200  # metrics.jsonl has them all


def _cell(s: Summary | None) -> str:
    return NA if s is None else value_text(s.centre, s.log)


class MetricsTable(DataTable):
    """Rows are appended as generations finish (refilled when many come at once), only while the table
    is on screen: DataTable rows cost far more than a fast engine's generations. The cursor follows
    the newest row unless moved."""

    done = var(0)  # bound to the run screen's
    rewrites = var(0)  # bound to the run screen's: rows shown may be stale, so refill

    def __init__(self, run_state: ScreenState, **kwargs: Any):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.run_state = run_state

    def watch_done(self) -> None:
        self._append()

    def watch_rewrites(self) -> None:
        self.clear(columns=True)
        self._append()

    def on_show(self) -> None:
        self._append()

    def _append(self) -> None:
        st = self.run_state
        if not st.keys or not self.is_on_screen:  # a hidden table catches up when shown
            return
        if not self.columns:  # the two plotted series first, then the engine's own metrics
            self.add_column("gen", key="gen")
            for k in [k for k in SERIES if k in st.keys] + [k for k in st.keys if k not in SERIES]:
                self.add_column(k, key=k)
        rows, done = self.ordered_rows, st.done
        first, upto = (int(rows[0].key.value), int(rows[-1].key.value) + 1) if rows else (0, 0)
        # none shown, fewer done (a resume), or many new rows: refill rather than remove them one by one
        if not rows or upto > done or done - first > TABLE_ROWS * 3 // 2:
            self.clear()
            first = upto = max(0, done - TABLE_ROWS)
        at_end = self.cursor_row >= self.row_count - 1
        columns = [c.value for c in self.columns][1:]
        for g in range(upto, done):
            cells = (Text(_cell(st.medians[g].get(k)), justify="right") for k in columns)
            self.add_row(Text(str(g), justify="right"), *cells, key=str(g))
        for g in range(first, first + self.row_count - TABLE_ROWS):
            self.remove_row(str(g))
        if at_end and self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)

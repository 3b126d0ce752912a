"""The compare screen: marked runs side by side, the same numbers as `collapse-tui compare`.

Every cell comes from compare.table_cells, as the CLI's table does; nothing is recomputed here.
Loads no torch or matplotlib.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..compare import COLUMNS, Run, compare_rows, table_cells


class CompareScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, runs: list[Run]):
        """runs: from compare.load_runs (labelled)."""
        super().__init__()
        self.runs = runs
        self.rows = compare_rows(runs)

    def compose(self) -> ComposeResult:
        yield Static(f"collapse-tui · comparing {len(self.runs)} runs · ← → scroll, esc back", id="title")
        lines = [f"{r.label}: {r.engine}, mode {r.config.data['mode']}, {r.progress()}" for r in self.runs]
        yield Static("\n".join(lines), id="compare-runs", markup=False)
        yield DataTable(id="compare", cursor_type="row", zebra_stripes=True)
        yield Static("no metric shared by these runs (or no generation finished)", id="compare-empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#compare", DataTable)
        for col in COLUMNS:
            table.add_column(col, key=col)
        for i, (row, cells) in enumerate(zip(self.rows, table_cells(self.rows))):
            style = "italic" if row["kind"] == "diff" else ""
            names = [Text(c, style=style) for c in cells[:2]]
            numbers = [Text(c, style=style, justify="right") for c in cells[2:]]
            table.add_row(*names, *numbers, key=str(i))
        table.display = bool(self.rows)
        self.query_one("#compare-empty", Static).display = not self.rows
        table.focus()

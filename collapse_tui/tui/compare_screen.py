"""The compare screen: marked runs side by side, the same numbers as `collapse-tui compare`.

Every number comes from compare.compare_rows and is formatted with compare.fmt, as the CLI's table
does; nothing is recomputed here. Loads no torch or matplotlib.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..compare import Run, compare_rows, fmt

COLUMNS = ("metric", "run", "final: mean ± std", "peak (gen)", "change / gen")


def row_cells(row: dict[str, Any]) -> tuple[str, str, str]:
    """final, peak and change per generation of one compare_rows row, as the CLI's table writes them."""
    if row["kind"] == "diff":
        return fmt(row["final"], True), fmt(row["peak"], True), fmt(row["slope"], True)
    peak = f"{fmt(row['peak'])} ({row['peak_generation']})" if row["peak_generation"] is not None else "n/a"
    return f"{fmt(row['final'])} ± {fmt(row['final_std'])}", peak, fmt(row["slope"], signed=True)


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
        for i, row in enumerate(self.rows):
            first_of_metric = i == 0 or self.rows[i - 1]["metric"] != row["metric"]
            style = "italic" if row["kind"] == "diff" else ""
            names = [Text(row["metric"] if first_of_metric else "", style=style), Text(row["run"], style=style)]
            numbers = [Text(c, style=style, justify="right") for c in row_cells(row)]
            table.add_row(*names, *numbers, key=str(i))
        table.display = bool(self.rows)
        self.query_one("#compare-empty", Static).display = not self.rows
        table.focus()

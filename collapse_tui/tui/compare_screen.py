"""The compare screen: marked runs side by side, the same numbers as `collapse-tui compare`.

Every cell comes from compare.table_cells, as the CLI's table does; nothing is recomputed here. The CLI's
rows (a metric and a run each) are turned so that they fit 80 columns: a row per metric, frozen on the
left, then the final values of every run and the differences, then the peaks, then the changes; runs are
letters, named above the table. Loads no torch or matplotlib.
"""

from __future__ import annotations

from string import ascii_uppercase

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..compare import Run, compare_rows, table_cells

STATS = ("final", "peak", "change/gen")  # table_cells' number columns, in their order


def letter(i: int) -> str:
    return ascii_uppercase[i] if i < len(ascii_uppercase) else str(i + 1)


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
        lines = [
            f"{letter(i)}  {r.label}: {r.engine}, mode {r.config.data['mode']}, {r.progress()}"
            for i, r in enumerate(self.runs)
        ]
        yield Static("\n".join(lines), id="compare-runs", markup=False)
        yield DataTable(id="compare", cursor_type="row", zebra_stripes=True, fixed_columns=1)
        yield Static("no metric shared by these runs (or no generation finished)", id="compare-empty")
        yield Footer()

    def on_mount(self) -> None:
        # compare_rows, per metric: a row per run, then one per later run minus the first
        names = [letter(i) for i in range(len(self.runs))] + [f"{letter(i)}−A" for i in range(1, len(self.runs))]
        table = self.query_one("#compare", DataTable)
        table.add_column("metric", key="metric")
        for j, stat in enumerate(STATS):
            for name in names:
                table.add_column(f"{name} {stat}", key=f"{name} {j}")
        cells = table_cells(self.rows)
        for start in range(0, len(cells), len(names)):
            group = cells[start : start + len(names)]  # one metric's rows
            numbers = [
                Text(group[k][2 + j], style="italic" if k >= len(self.runs) else "", justify="right")
                for j in range(len(STATS))
                for k in range(len(names))
            ]
            table.add_row(group[0][0], *numbers, key=self.rows[start]["metric"])
        table.display = bool(self.rows)
        self.query_one("#compare-empty", Static).display = not self.rows
        table.focus()

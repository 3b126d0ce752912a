"""The compare screen: marked runs side by side, the same numbers as `collapse-tui compare`.

Every cell comes from compare.grid, as the CLI's table does; nothing is recomputed here. Runs are
columns (A, B, ...) named above the table, and the metric column stays put when it scrolls sideways.
Loads no torch or matplotlib.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..compare import compare_rows, grid, letters
from ..runs import Run, shared_metrics
from .components.plot_pane import PlotPane, cycle, first_metric


class CompareScreen(Screen):
    BINDINGS = [
        Binding("g", "toggle_plot", "Plot"),
        Binding("m", "metric(1)", "Metric", show=False),
        Binding("M", "metric(-1)", "Metric-", show=False),
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.quit", "Quit"),
    ]

    plot_metric = var("")  # the plot's (g shows it)

    def __init__(self, runs: list[Run]):
        """runs: from runs.load_runs (labelled)."""
        super().__init__()
        self.runs = runs
        self.rows = compare_rows(runs)

    def compose(self) -> ComposeResult:
        yield Static(f"collapse-tui · comparing {len(self.runs)} runs · ← → scroll, esc back", id="title")
        names = letters(len(self.runs))
        lines = [
            f"{n} = {r.label}: {r.engine}, mode {r.config.data.mode}, {r.progress()}" for n, r in zip(names, self.runs)
        ]
        with VerticalScroll(id="compare-runs"):
            yield Static("\n".join(lines), markup=False)
        yield DataTable(id="compare", cursor_type="row", zebra_stripes=True)
        yield Static("no metric shared by these runs (or no generation finished)", id="compare-empty")
        yield PlotPane(id="compare-plot")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#compare", DataTable)
        columns, lines = grid(self.rows)
        for col in columns:
            table.add_column(col, key=col)
        table.fixed_columns = 1
        for i, (metric, *numbers) in enumerate(lines):
            name = Text(metric, style="" if metric.startswith(" ") else "bold")
            table.add_row(name, *(Text(c, justify="right") for c in numbers), key=str(i))
        table.display = bool(self.rows)
        self.query_one("#compare-empty", Static).display = not self.rows
        table.focus()
        self.query_one(PlotPane).display = False

    def watch_plot_metric(self, key: str) -> None:
        if key:
            self.query_one(PlotPane).show_runs(self.runs, letters(len(self.runs)), key)

    def action_toggle_plot(self) -> None:
        """The table, or the runs' medians of a metric overlaid (m, M: which)."""
        plot = self.query_one(PlotPane)
        plot.display = not plot.display
        self.query_one("#compare", DataTable).display = bool(self.rows) and not plot.display
        if plot.display and not self.plot_metric:
            keys = shared_metrics(self.runs)
            self.plot_metric = first_metric(keys)

    def action_metric(self, step: int) -> None:
        if not self.query_one(PlotPane).display:
            self.action_toggle_plot()
        self.plot_metric = cycle(shared_metrics(self.runs), self.plot_metric, step)

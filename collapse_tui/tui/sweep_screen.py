"""The sweep screen: `collapse-tui SWEEP_DIR` shows the sweep's cells, their state, generations and a
metric's sparkline, read from each cell's run directory once a second (a sweep runs with --batch, in
another process); enter opens a cell's run screen, which follows a run another process writes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..compare import Run, load_run
from ..summary import SERIES, by_generation, scalar_keys
from ..sweepdir import SweepDir
from .components.cell_table import CellRow, CellTable

POLL = 1.0  # seconds between reads of the cells' status and metrics


class SweepScreen(Screen):
    BINDINGS = [
        Binding("m", "next_metric", "Metric"),
        Binding("escape", "app.pop_screen", "Presets"),
        Binding("q", "app.quit", "Quit"),
    ]

    metric = var("")

    def __init__(self, sweep: SweepDir):
        super().__init__()
        self.sweep = sweep
        self.runs: dict[str, Run] = {}
        self._mtimes: dict[str, int] = {}  # metrics.jsonl is read again only when rewritten

    def compose(self) -> ComposeResult:
        keys = ", ".join(self.sweep.keys)
        yield Static(f"sweep {self.sweep.name} · {len(self.sweep.cells)} cells over {keys}", id="sweep-title")
        yield CellTable(id="cells")
        yield Footer()

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(POLL, self.poll)
        self.query_one(CellTable).focus()

    def metrics(self) -> list[str]:
        rows = next((r.rows for r in self.runs.values() if r.rows), [])
        return [k for k in scalar_keys(rows) if k != "train_size"]

    def poll(self) -> None:
        for cell in self.sweep.cells:
            try:
                mtime = cell.rundir.metrics_path.stat().st_mtime_ns
            except OSError:
                mtime = -1
            if self._mtimes.get(cell.name) != mtime or cell.name not in self.runs:
                self.runs[cell.name] = load_run(cell.rundir)
                self._mtimes[cell.name] = mtime
        if not self.metric:
            found = self.metrics()
            self.metric = next((k for k in SERIES if k in found), found[0] if found else "")
        self.show()

    def show(self) -> None:
        rows = []
        for cell in self.sweep.cells:
            run = self.runs[cell.name]
            state, gen, _ = cell.state()
            series = by_generation(run.rows, self.metric, run.log_keys) if self.metric else {}
            medians = [s.centre for s in series.values()]
            rows.append(CellRow(cell.name, state, gen + 1, run.config.generations, medians))
        self.query_one(CellTable).show(rows, self.metric or "no metrics yet")

    def watch_metric(self) -> None:
        if self.is_mounted:
            self.show()

    def action_next_metric(self) -> None:
        found = self.metrics()
        if found:
            self.metric = found[(found.index(self.metric) + 1) % len(found) if self.metric in found else 0]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        from .run_screen import RunScreen

        cell = next(c for c in self.sweep.cells if c.name == event.row_key.value)
        self.app.push_screen(RunScreen(cell.rundir, cell.rundir.config(), start="browse"))

"""The sweep screen: `collapse-tui SWEEP_DIR` shows the sweep's cells, their state, generations and a
metric's sparkline (one scale for all cells, so that their lines compare) with its first and last median
over seeds and the change, read from each cell's run directory once a second (a sweep runs with --batch, in
another process); enter opens a cell's run screen, which follows a run another process writes. A cell
that cannot be read (a bad file, a deleted folder) reads "unreadable" with the reason, the others go on.
A sweep with variants also shows what each fix buys and costs (collapse_tui.mitigations), below the cells."""

from __future__ import annotations

import math
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..config import ConfigError
from ..mitigations import HEADLINE, outcomes
from ..runs import Run, load_run
from ..summary import SERIES, Summary, by_generation, change_text, headline_of, is_log, scalar_keys, value_text
from ..sweepdir import SweepDir
from .components.cell_table import CellRow, CellTable
from .components.mitigation_table import MitigationTable
from .components.trend import ARROWS

POLL = 1.0  # seconds between reads of the cells' status and metrics
DIGITS = 3  # significant digits of the numbers beside the sparklines (80 columns)


def numbers(series: list[Summary]) -> tuple[str, str, str]:
    """A cell's first and last median over seeds and the change between them (a ratio for a log-quantity)."""
    if not series:
        return "", "", ""
    first, last = series[0], series[-1]
    return (
        value_text(first.centre, first.log, DIGITS),
        value_text(last.centre, last.log, DIGITS),
        change_text(first, last, DIGITS),
    )


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


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
        self.states: dict[str, tuple[str, int, str | None]] = {}  # CellRun.state() of the readable cells
        self.errors: dict[str, str] = {}  # the others: what is wrong, in one line
        self._stamps: dict[str, tuple[int, int]] = {}  # mtimes of metrics.jsonl and status.json when last read
        self._shown: list[Run] = []  # the runs the variants' table was computed from

    def compose(self) -> ComposeResult:
        keys = ", ".join(self.sweep.keys)
        yield Static(f"sweep {self.sweep.name} · {len(self.sweep.cells)} cells over {keys}", id="sweep-title")
        yield Static(id="sweep-scale")
        yield CellTable(id="cells")
        if self.sweep.variants:
            yield Static(id="mitigations-title")
            yield MitigationTable(id="mitigations")
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
            stamp = (_mtime(cell.rundir.metrics_path), _mtime(cell.rundir.status_path))
            if cell.name in self.errors and self._stamps[cell.name] == stamp:
                continue  # unreadable as it was: read again once one of its files changes
            try:
                if cell.name not in self.runs or self._stamps[cell.name][0] != stamp[0]:
                    self.runs[cell.name] = load_run(cell.rundir.path)  # a path: a deleted folder is refused
                self.states[cell.name] = cell.state()
                self.errors.pop(cell.name, None)
            except ConfigError as e:
                self.errors[cell.name] = str(e)
                self.runs.pop(cell.name, None)
            self._stamps[cell.name] = stamp
        if not self.metric:
            found = self.metrics()
            self.metric = next((k for k in SERIES if k in found), found[0] if found else "")
        self.show()

    def show(self) -> None:
        rows = []
        for cell in self.sweep.cells:
            if cell.name in self.errors:
                rows.append(CellRow(cell.name, "unreadable", 0, 0, [], error=self.reason(cell.name)))
                continue
            run = self.runs[cell.name]
            state, gen, _ = self.states[cell.name]
            series = list(by_generation(run.rows, self.metric, run.log_keys).values()) if self.metric else []
            medians = [s.centre for s in series]
            rows.append(CellRow(cell.name, state, gen + 1, run.config.generations, medians, numbers(series)))
        self.show_scale(self.query_one(CellTable).show(rows, self.label()))
        runs = [self.runs[c.name] for c in self.sweep.cells if c.name in self.runs]
        if self.sweep.variants and [id(r) for r in runs] != [id(r) for r in self._shown]:  # read again: new rows
            self.show_variants()

    def label(self) -> str:
        """The metric, with the way it moves as the model collapses when the engine declares it (Engine.HEADLINE)."""
        if not self.metric:
            return "no metrics yet"
        engine = next((r.engine for r in self.runs.values()), "")  # a sweep's cells share their engine
        arrow = ARROWS.get(headline_of(engine).get(self.metric, ""), "")
        return f"{self.metric} {arrow}".rstrip()

    def show_scale(self, frame: tuple[float, float]) -> None:
        """What the shared scale spans, as the numbers beside the sparklines write it."""
        scale = self.query_one("#sweep-scale", Static)
        if math.isnan(frame[0]):
            scale.update("")
            return
        log = is_log(self.metric, next((r.log_keys for r in self.runs.values()), ()))
        low, high = (value_text(v, log, DIGITS) for v in frame)
        kind = "log10 scale" if log else "scale"
        scale.update(f"{self.metric}: one {kind} for all cells' medians, {low} to {high}")

    def show_variants(self) -> None:
        """The variants' table, at the last generation every readable cell has reached."""
        self._shown = [self.runs[c.name] for c in self.sweep.cells if c.name in self.runs]
        outs = outcomes(self.sweep, self.runs)
        gen = outs[0].generation if outs else -1
        at = f"at generation {gen}" if gen >= 0 else "once every cell has a generation"
        self.query_one("#mitigations-title", Static).update(f"{HEADLINE} {at}, median over seeds; rank 1: lowest")
        self.query_one(MitigationTable).show(outs if gen >= 0 else [])

    def reason(self, name: str) -> str:
        """A cell's error without the path to its folder, which the row names."""
        folder = str(next(c.rundir.path for c in self.sweep.cells if c.name == name))
        return self.errors[name].removeprefix(f"{folder}/").removeprefix(f"{folder}: ")

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
        if cell.name in self.errors:  # its one line, not a run screen that cannot read it
            self.notify(self.errors[cell.name], title=f"cell {cell.name}: unreadable", severity="error")
            return
        self.app.push_screen(RunScreen(cell.rundir, self.runs[cell.name].config, start="browse"))

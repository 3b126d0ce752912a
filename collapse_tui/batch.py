"""The headless front end: rich progress bars on a terminal, plain timestamped lines otherwise."""

from __future__ import annotations

import signal
import sys
from datetime import datetime
from typing import TextIO

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import loop
from .events import Event, GenerationDone, RunFailed, RunFinished, RunStarted
from .events import Progress as ProgressEvent
from .rundir import RunDir
from .runlog import RunLog, failed_line
from .summary import by_generation, scalar_keys

EXIT = {"finished": 0, "failed": 1, "stopped": 130}


class BatchView:
    def __init__(self, out: TextIO):
        self.tty = out.isatty()
        self.console = Console(file=out, highlight=False, soft_wrap=not self.tty)
        self.progress: Progress | None = None
        self.log = RunLog()
        self.name = ""

    def line(self, text: str) -> None:
        if self.tty:
            self.console.print(text)
        else:
            self.console.print(f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')} {text}", markup=False)

    def handle(self, ev: Event) -> None:
        if isinstance(ev, GenerationDone) and self.progress:
            self.progress.update(self.gen_task, completed=ev.generation + 1)
        for text in self.log.lines(ev):
            self.line(text)
        if isinstance(ev, RunStarted):
            self.name = ev.name
            if self.tty:
                self.progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                )
                self.progress.start()
                self.gen_task = self.progress.add_task(
                    "generations", total=ev.generations, completed=ev.start_generation
                )
                self.step_task = self.progress.add_task("generation", total=1)
        elif isinstance(ev, ProgressEvent) and self.progress:
            loss = f" loss {ev.loss:.4g}" if ev.loss is not None else ""
            self.progress.update(
                self.step_task, description=f"gen {ev.generation} {ev.phase}{loss}", completed=ev.step, total=ev.total
            )
        elif isinstance(ev, RunFinished | RunFailed) and self.progress:
            self.progress.stop()
            self.progress = None

    def summary(self, rundir: RunDir, state: str) -> None:
        rows = rundir.read_metrics()
        if rows:
            self.console.print(summary_table(rows, self.name, self.tty))
        status = rundir.read_status()
        if state == "failed":
            self.line(failed_line(status.get("error"), rundir.path))
        if state != "finished":
            self.line(f"{state}; resume with: collapse-tui --batch --resume {rundir.path}")
        else:
            self.line(f"finished: {rundir.path}")


def summary_table(rows: list[dict], title: str, tty: bool) -> Table:
    first, last = rows[0]["generation"], rows[-1]["generation"]
    table = Table(title=f"{title}: generation {first} -> {last}", box=box.SIMPLE if tty else box.ASCII)
    for col in ("metric", f"gen {first}", f"gen {last}", "change"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key in scalar_keys(rows):
        series = by_generation(rows, key)
        (m0, s0), (m1, s1) = series[first], series[last]
        table.add_row(key, f"{m0:.4g} ± {s0:.2g}", f"{m1:.4g} ± {s1:.2g}", f"{m1 - m0:+.4g}")
    return table


def run_batch(rundir: RunDir, resume: bool = False, out: TextIO | None = None) -> int:
    """Run in the foreground; the first Ctrl-C stops after a checkpoint, the second at once."""
    view = BatchView(out or sys.stdout)
    control = loop.Control()

    def on_sigint(signum, frame) -> None:
        if control.stopping:
            raise KeyboardInterrupt
        control.stop()
        view.line("stopping: saving a checkpoint (Ctrl-C again to quit at once)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        state = loop.run(rundir, view.handle, control, resume=resume)
    finally:
        signal.signal(signal.SIGINT, previous)
    view.summary(rundir, state)
    return EXIT[state]

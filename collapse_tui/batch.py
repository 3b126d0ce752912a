"""The headless front end: rich progress bars on a terminal, plain timestamped lines otherwise.

Output is a courtesy, the run directory the record: a closed stdout or a reader that went away (`| head`)
silences the output and the run goes on. SIGINT, SIGTERM and SIGHUP stop after a checkpoint ("stopped",
resumable); a second one quits at once. One the process started with ignored stays ignored (stopsignals)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import datetime
from typing import TextIO

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from . import loop
from .config import chain_names
from .events import Event, GenerationDone, RunFailed, RunFinished, RunStarted
from .events import Progress as ProgressEvent
from .records import RunState
from .rundir import RunDir
from .runlog import RunLog, failed_line, resumable
from .stopsignals import handling
from .summary import by_generation, change_text, log_keys_of, scalar_keys
from .theory import CONSISTENT, INCONSISTENT, read_theory
from .theory import checks as theory_checks

EXIT = {RunState.FINISHED: 0, RunState.FAILED: 1, RunState.STOPPED: 130}
VERDICT_STYLES = {CONSISTENT: "green", INCONSISTENT: "bold red"}  # a theory check's verdict on a terminal


class QuietOnBrokenPipe(Console):
    """rich exits the process when its reader goes away; here the output goes quiet and the run goes on."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        if self.file is sys.stdout:  # no "Exception ignored" when Python flushes it at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class BatchView:
    def __init__(self, out: TextIO | None):
        self.out = out if out is not None else open(os.devnull, "w")  # noqa: SIM115 (stdout closed: >&-)
        if hasattr(self.out, "reconfigure"):
            self.out.reconfigure(errors="replace")  # PYTHONIOENCODING=ascii: "?" for what it cannot show
        self.tty = self.out.isatty()
        self.ascii = not _encodes(self.out, "×")
        # a log file or a pipe: lines as long as they are, the summary table unwrapped
        width = None if self.tty else 200
        self.console = QuietOnBrokenPipe(file=self.out, highlight=False, soft_wrap=not self.tty, width=width)
        self.progress: Progress | None = None
        self.log = RunLog()
        self.name = ""

    def print(self, *objects, **kwargs) -> None:
        try:
            self.console.print(*objects, **kwargs)
        except OSError:  # e.g. EIO from a terminal that hung up: keep running, quietly
            self.console.on_broken_pipe()

    def line(self, text: str) -> None:
        if self.tty:
            self.print(text)
        else:
            self.print(f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')} {text}", markup=False)

    def handle(self, ev: Event) -> None:
        if isinstance(ev, GenerationDone) and self.progress:
            self.progress.update(self.gen_task, completed=ev.generation + 1)
        for text in self.log.lines(ev):
            self.line(text)
        if isinstance(ev, RunStarted):
            self.name = ev.name
            if self.tty and not self.console.quiet:
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
            self.progress.update(self.step_task, description=ev.text(), completed=ev.step, total=ev.total)
        elif isinstance(ev, RunFinished | RunFailed) and self.progress:
            self.progress.stop()
            self.progress = None

    def summary(self, rundir: RunDir, state: str) -> None:
        rows = rundir.read_metrics_ends()  # a summary of the first and the last generation
        cfg = rundir.config()
        for chain in chain_names(cfg) or [""]:  # a table per chain
            mine = [r for r in rows if r.get("chain", "") == chain]
            if mine:
                log_keys = log_keys_of(cfg.chain(chain).engine_name if chain else cfg.engine_name)
                title = f"{self.name} · {chain}" if chain else self.name
                self.print(summary_table(mine, title, self.tty, log_keys, ascii=self.ascii))
        last = [r for r in rows if r["generation"] == rows[-1]["generation"]] if rows else []
        for c in theory_checks(last, read_theory(rundir.path)):  # chains have none
            if self.tty:
                head, verdict, why = c.parts()
                self.print(Text.assemble(head, (verdict, VERDICT_STYLES.get(verdict, "dim")), why))
            else:
                self.line(c.text())
        status = rundir.read_status()
        if state == RunState.FAILED and sys.stderr is not None:
            print(f"collapse-tui: {failed_line(status.get('error'), rundir.path)}", file=sys.stderr)
        if state == RunState.FINISHED:
            self.line(f"finished: {rundir.path}")
        elif resumable(state, status.get("failure")):
            self.line(f"{state}; resume with: collapse-tui --batch --resume {rundir.path}")


def _encodes(out: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(out, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def summary_table(rows: list[dict], title: str, tty: bool, log_keys: set[str], ascii: bool = False) -> Table:
    """Every metric at the first and the last generation on disk: the median over seeds and, with several
    seeds, the 16th-84th percentile band; the change as a ratio for log-quantities."""
    first, last = rows[0]["generation"], rows[-1]["generation"]
    rows = [r for r in rows if r["generation"] in (first, last)]  # not a summary of every generation
    seeds = len({r["seed"] for r in rows})
    over = f"median [16th, 84th percentile] of {seeds} seeds" if seeds > 1 else "1 seed"
    title = f"{title}: generation {first} -> {last}, {over}"
    table = Table(title=title, box=box.SIMPLE if tty else box.ASCII)
    for col in ("metric", f"gen {first}", f"gen {last}", "change"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key in scalar_keys(rows):
        series = by_generation(rows, key, log_keys)
        a, b = series[first], series[last]
        moved = change_text(a, b)
        table.add_row(key, a.text(), b.text(), moved.replace("×", "x") if ascii else moved)
    return table


def run_batch(
    rundir: RunDir, resume: bool = False, out: TextIO | None = None, workers: int = 1, gpus: list[str] | None = None
) -> int:
    """Run in the foreground (its seeds in `workers` processes); the first stop signal stops after a
    checkpoint, the second at once. Exit status: 0 finished, 1 failed, 128 + the signal's number when a
    signal stopped it (130 for Ctrl-C)."""
    view = BatchView(out if out is not None else sys.stdout)
    control = loop.Control()
    stopped_by: list[int] = []

    # A handler runs on the main thread between two bytecodes, perhaps inside a lock that thread holds
    # (Control's Events, the console's, threading's own): taking one there waits on itself for ever.
    # So the handler only writes the signal's number to a pipe, and a thread makes the stop.
    wake_r, wake_w = os.pipe()

    def stop_when_woken() -> None:
        signum = os.read(wake_r, 1)[0]
        if signum:  # 0: the run ended without a signal
            control.stop()
            view.line(f"stopping ({signal.Signals(signum).name}): saving a checkpoint (again to quit at once)")

    def on_signal(signum, frame) -> None:
        if stopped_by:
            raise KeyboardInterrupt
        stopped_by.append(signum)
        os.write(wake_w, bytes([signum]))

    stopper = threading.Thread(target=stop_when_woken, name="stop", daemon=True)
    stopper.start()
    try:
        with handling(on_signal):
            state = loop.run(rundir, view.handle, control, resume=resume, workers=workers, gpus=gpus)
    finally:
        os.write(wake_w, b"\0")  # a second byte, if a signal wrote the first: the thread reads one
        stopper.join()
        os.close(wake_r)
        os.close(wake_w)
    view.summary(rundir, state)
    return 128 + stopped_by[0] if state == RunState.STOPPED and stopped_by else EXIT[state]

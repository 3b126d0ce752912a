"""The run screen: a live (or finished) run's trends, progress, metrics table, samples, diff and log.

The generation loop runs in a thread worker and only appends events to a deque; a 10 Hz timer
applies them to RunState and redraws, so a fast engine (hundreds of generations a second) costs
the interface at most ten redraws a second and a slow one never blocks it.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from functools import partial
from typing import Any

import numpy as np
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, ProgressBar, RichLog, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from .. import loop
from ..config import Config
from ..events import Event
from ..rundir import RunDir
from ..summary import SERIES
from . import render
from .state import RESUMABLE, RunState, disk_state, fmt, fmt_seconds
from .widgets import DiffPane, SamplePane, Trend

TABLE_ROWS = 200  # the table keeps the latest generations only; metrics.jsonl has them all
REFRESH = 0.1  # seconds between redraws while events arrive
TABS = ("samples", "diff", "table", "log")
GEN = Binding.Group("Gen n", compact=True)
PROMPT = Binding.Group("Prompt", compact=True)


class RunScreen(Screen):
    BINDINGS = [
        Binding("p", "pause", "Pause"),
        Binding("p", "resume_loop", "Continue"),  # the same key: whichever check_action allows
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("left_square_bracket", "gen(-1)", "Gen-", key_display="[", group=GEN),
        Binding("right_square_bracket", "gen(1)", "Gen+", key_display="]", group=GEN),
        Binding("left_curly_bracket", "gen(-10)", "Gen-10", key_display="{", show=False),
        Binding("right_curly_bracket", "gen(10)", "Gen+10", key_display="}", show=False),
        Binding("l", "latest", "Latest", show=False),
        Binding("comma", "prompt(-1)", "Prompt-", key_display=",", group=PROMPT),
        Binding("full_stop", "prompt(1)", "Prompt+", key_display=".", group=PROMPT),
        Binding("t", "next_tab", "Pane"),
        *(Binding(str(i + 1), f"tab('{name}')", name.title(), show=False) for i, name in enumerate(TABS)),
        Binding("escape", "back", "Presets"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, rundir: RunDir, cfg: Config, start: str = "browse"):
        """start: 'new' runs at once, 'resume' resumes at once, 'browse' shows what is on disk."""
        super().__init__()
        self.rundir, self.cfg, self.start = rundir, cfg, start
        self.run_state = RunState(rundir, cfg)
        self.events: deque[Event] = deque()  # filled by the worker thread, drained by the UI timer
        self.control: loop.Control | None = None
        self.worker: Worker | None = None
        self.saved: list[int] = []  # generations whose samples are on disk
        self.n: int | None = None  # the generation compared with generation 0
        self.follow = True  # n moves to each newly saved generation until the user picks one
        self.prompt = 0
        self._cache: dict[int, Any] = {}
        self._shown: tuple | None = None
        self._metrics_mtime = -1  # watching: metrics.jsonl is parsed again only when rewritten
        self._drawn = -1  # state version last drawn
        self._table_from = self._table_upto = 0
        self._columns: list[str] = []
        self._table_reset = True
        self._saved_for = -1  # state.done when self.saved was listed
        self._bound: tuple[str, bool] | None = None

    # layout
    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield Trend("perplexity", log=True, total=self.cfg.generations, id="trend-perplexity")
        yield Trend("variance", total=self.cfg.generations, id="trend-variance")
        with Horizontal(id="progress-row"):
            yield Label(id="phase")
            yield ProgressBar(show_eta=False, id="bar")
            yield Label(id="eta")
        yield Static(id="error")
        with TabbedContent(initial="samples"):
            with TabPane("Samples", id="samples"), Horizontal():
                yield SamplePane(id="left")
                yield SamplePane(id="right")
            with TabPane("Diff", id="diff"):
                yield DiffPane(id="diff-pane")
            with TabPane("Table", id="table"):
                yield DataTable(id="metrics", cursor_type="row", zebra_stripes=True)
            with TabPane("Log", id="log"):
                yield RichLog(id="log-view", max_lines=2000, wrap=True)
        yield Footer()

    def on_mount(self) -> None:
        st = self.run_state
        st.load()
        status = self.rundir.read_status()
        st.state, st.error = disk_state(self.rundir, status), status.get("error")
        error = self.query_one("#error")
        error.border_title = "run failed"
        error.border_subtitle = "traceback in error.log · r resumes from the last checkpoint"
        if self.start == "new" or (self.start == "resume" and st.state in RESUMABLE):
            self.start_loop(resume=self.start == "resume")
        elif st.state == "watching":
            self.set_interval(1.0, self.poll_disk)
        self.set_interval(REFRESH, self.flush)
        self.redraw()

    # the worker
    def start_loop(self, resume: bool) -> None:
        self.control = loop.Control()
        self.run_state.state = "running"
        self.run_state.gen_seconds.clear()
        self.worker = self.run_worker(
            partial(loop.run, self.rundir, self.events.append, self.control, resume),
            thread=True,
            exit_on_error=False,
            group="loop",
            name="generation loop",
        )
        self.refresh_bindings()

    @property
    def live(self) -> bool:
        return self.worker is not None and self.worker.state in (WorkerState.PENDING, WorkerState.RUNNING)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.worker or event.state in (WorkerState.PENDING, WorkerState.RUNNING):
            return
        self.flush()
        if event.state == WorkerState.ERROR:  # the loop catches engine errors; this is anything else
            self.run_state.state, self.run_state.error = (
                "failed",
                f"{type(event.worker.error).__name__}: {event.worker.error}",
            )
        self.redraw()
        self.refresh_bindings()
        if getattr(self.app, "quitting", False):
            self.app.exit(1 if self.run_state.state == "failed" else 0)

    def flush(self) -> None:
        while self.events:
            self.run_state.apply(self.events.popleft())
        if self.run_state.version != self._drawn:
            self.redraw()

    def poll_disk(self) -> None:
        """Another process runs this directory: follow its metrics file."""
        st = self.run_state
        if st.state != "watching":
            return
        done = st.done
        mtime = self.rundir.metrics_path.stat().st_mtime_ns
        if mtime != self._metrics_mtime:  # rewritten at each of its checkpoints: parse only then
            self._metrics_mtime = mtime
            st.load()
        st.state = disk_state(self.rundir, self.rundir.read_status())
        if st.done != done or st.state != "watching":
            self.redraw()
            self.refresh_bindings()

    # drawing
    def redraw(self) -> None:
        st = self.run_state
        self._drawn = st.version
        self.query_one("#status", Static).update(self._status_line())
        for key in SERIES:
            spread = st.stds[-1].get(key, math.nan) if st.stds else math.nan
            self.query_one(f"#trend-{key}", Trend).set_values(st.series(key), spread)
        self._draw_progress()
        error = self.query_one("#error", Static)
        error.display = st.state == "failed" and bool(st.error)
        if error.display:
            error.update(st.error or "")
        if st.truncated:  # loaded from disk, or generations after a checkpoint dropped on resume
            st.truncated = False
            self._cache.clear()
            self._saved_for = -1
            self._table_reset = True
        self._draw_table()
        log = self.query_one("#log-view", RichLog)
        for line in st.log:
            log.write(line)
        st.log.clear()
        if st.done != self._saved_for:
            self._saved_for = st.done
            self.saved = self.rundir.sample_generations()
            if self.follow or (self.n is not None and self.n not in self.saved):
                self.n = self.saved[-1] if self.saved else None
        self._draw_samples()
        if (st.state, self.live) != self._bound:
            self._bound = (st.state, self.live)
            self.refresh_bindings()  # the footer shows pause/stop/resume by state

    def _status_line(self) -> str:
        st, cfg = self.run_state, self.cfg
        seeds = len(cfg.seeds)
        return (
            f"{st.state.upper()} · gen {st.done}/{cfg.generations} · {self.rundir.path.name} · "
            f"{cfg.engine_name} · {cfg.data['mode']} · {seeds} seed{'s' * (seeds != 1)}"
        )

    def _draw_progress(self) -> None:
        st = self.run_state
        phase, bar, eta = (
            self.query_one("#phase", Label),
            self.query_one("#bar", ProgressBar),
            self.query_one("#eta", Label),
        )
        running = st.state in ("running", "paused")
        bar.display = eta.display = running
        left = f"{st.done} of {st.generations} generations"
        if running:
            p = st.progress
            if st.state == "paused":
                phase.update(f"paused at gen {st.done} · p continues")
            elif p is not None and p.generation == st.done:
                loss = f" loss {p.loss:.4g}" if p.loss is not None else ""
                phase.update(f"gen {p.generation} {p.phase} {p.step}/{p.total}{loss}")
                bar.update(total=max(p.total, 1), progress=p.step)
            else:
                phase.update(f"gen {st.done} starting")
                bar.update(total=1, progress=0)
            secs = st.eta()
            eta.update(f"ETA {fmt_seconds(secs)}" if secs is not None else "ETA -")
            return
        phase.update(
            {
                "stopping": "stopping: saving a checkpoint...",
                "finished": f"finished: {left}",
                "stopped": f"stopped after {left} · r resumes",
                "crashed": f"interrupted after {left} · r resumes",
                "failed": f"failed after {left} · r resumes",
                "created": "not started · r starts",
                "watching": f"running in another process: {left}",
            }.get(st.state, st.state)
        )

    def _draw_table(self) -> None:
        """Append the newly finished generations; drawn only while the table pane is shown, since
        DataTable rows cost far more than a fast engine's generations."""
        st = self.run_state
        if self.query_one(TabbedContent).active != "table" or not st.keys:
            return
        table = self.query_one("#metrics", DataTable)
        if self._table_reset or not table.columns:
            table.clear(columns=True)
            # the two plotted series first, then the engine's own metrics
            self._columns = [k for k in SERIES if k in st.keys] + [k for k in st.keys if k not in SERIES]
            table.add_column("gen", key="gen")
            for k in self._columns:
                table.add_column(k, key=k)
            self._table_from = self._table_upto = max(0, st.done - TABLE_ROWS)
            self._table_reset = False
        elif st.done - self._table_from > TABLE_ROWS * 3 // 2:  # many new rows: refill, not remove one by one
            table.clear()
            self._table_from = self._table_upto = max(0, st.done - TABLE_ROWS)
        at_end = table.cursor_row >= table.row_count - 1
        for g in range(self._table_upto, st.done):
            cells = (Text(fmt(st.means[g].get(k)), justify="right") for k in self._columns)
            table.add_row(Text(str(g), justify="right"), *cells, key=str(g))
        self._table_upto = st.done
        while table.row_count > TABLE_ROWS:
            table.remove_row(str(self._table_from))
            self._table_from += 1
        if at_end and table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)

    def _samples(self, gen: int | None) -> Any:
        if gen is None or gen not in self.saved:
            return None
        if gen not in self._cache:
            if len(self._cache) > 16:
                self._cache.clear()
            try:
                self._cache[gen] = self.rundir.load_samples(gen)
            except (OSError, ValueError):
                return None
        return self._cache[gen]

    def _draw_samples(self) -> None:
        """The panes and the diff redraw only when the compared generation or prompt changes (or
        samples appear); the metrics comparison follows every finished generation."""
        key = (self.n, self.prompt, len(self.saved))
        first, other = self._samples(0), self._samples(self.n)
        text = isinstance(first, list) and isinstance(other, list) and self.n is not None
        diff = self.query_one("#diff-pane", DiffPane)
        if key != self._shown:
            self._shown = key
            limits = render.extent(first) if isinstance(first, np.ndarray) and first.ndim == 2 and len(first) else None
            empty = "no samples saved" if self.run_state.done else "waiting for the first generation"
            left = 0 if first is not None else None
            self.query_one("#left", SamplePane).show(left, first, limits, self.prompt, empty)
            self.query_one("#right", SamplePane).show(self.n, other, limits, self.prompt, empty)
            if text:
                diff.show_text(self.n, first, other, self.prompt)
            self.refresh_bindings()  # prompt keys show for text samples only
        if not text:
            means = self.run_state.means
            n = self.n if self.n is not None and self.n < len(means) else (len(means) - 1 if means else None)
            diff.show_metrics(n, means[0] if means else None, means[n] if n is not None else None)

    # actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        st = self.run_state.state
        if action == "pause":
            return self.live and st == "running"
        if action == "resume_loop":
            return self.live and st == "paused"
        if action == "stop":
            return self.live and st in ("running", "paused")
        if action == "resume":
            return not self.live and st in RESUMABLE
        if action == "prompt":
            return isinstance(self._samples(0), list)
        if action == "back":
            return True if not self.live else None
        return True

    def action_pause(self) -> None:
        if self.control and self.live and self.run_state.state == "running":
            self.control.pause()  # the loop holds at its next check, between engine steps
            self._set_state("paused", "paused")

    def action_resume_loop(self) -> None:
        if self.control and self.live and self.run_state.state == "paused":
            self.control.resume()
            self._set_state("running", "continued")

    def _set_state(self, state: str, line: str) -> None:
        self.run_state.state = state
        self.run_state.say(line)
        self.run_state.version += 1
        self.flush()

    def action_stop(self) -> None:
        if self.control and self.live:
            self.control.stop()
            self._set_state("stopping", "stopping: saving a checkpoint")

    def action_resume(self) -> None:
        if not self.live and self.run_state.state in RESUMABLE:
            self.start_loop(resume=True)
            self.flush()

    def action_gen(self, delta: int) -> None:
        if not self.saved:
            return
        i = bisect.bisect_left(self.saved, self.n if self.n is not None else self.saved[-1])
        i = min(max(i + delta, 0), len(self.saved) - 1)
        self.n = self.saved[i]
        self.follow = self.n == self.saved[-1]
        self._draw_samples()

    def action_latest(self) -> None:
        self.follow = True
        if self.saved:
            self.n = self.saved[-1]
        self._draw_samples()

    def action_prompt(self, delta: int) -> None:
        first = self._samples(0)
        if isinstance(first, list) and first:
            self.prompt = (self.prompt + delta) % len(first)
            self._draw_samples()

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name

    def action_next_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = TABS[(TABS.index(tabs.active) + 1) % len(TABS)]

    def action_back(self) -> None:
        if not self.live:
            self.app.pop_screen()

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self._shown = None
        self._draw_table()
        self.call_after_refresh(self._draw_samples)  # panes measure their size once visible

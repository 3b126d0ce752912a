"""The run screen: a live (or finished) run's trends, progress, metrics table, samples, diff and log.

The generation loop runs in a thread worker and only appends events to a deque; a 10 Hz timer
applies them to ScreenState and sets the reactive attributes the widgets watch, so a fast engine
(hundreds of generations a second) costs the interface at most ten updates a second and a slow
one never blocks it.
"""

from __future__ import annotations

import contextlib
import math
import shlex
from collections import deque
from functools import partial

import numpy as np
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from .. import loop
from ..branch import create_branch, read_origin
from ..checkpoints import check_resumable
from ..config import Config, ConfigError
from ..events import Event, Progress
from ..numbers import plural
from ..preflight import check_runnable
from ..preset_files import read_preset
from ..records import RunState
from ..run_names import run_name
from ..rundir import RunDir
from ..runlog import resumable
from ..summary import SERIES, is_log
from .branch_dialog import BranchDialog
from .components import DiffPane, MetricsTable, PlotPane, ProgressRow, SamplesView, Trend
from .components.plot_pane import cycle, first_metric
from .previews import preview_kind
from .state import RESUMABLE, ScreenState, disk_state

REFRESH = 0.1  # seconds between updates while events arrive
TABS = ("samples", "diff", "table", "log", "plot")
GEN = Binding.Group("Gen n", compact=True)
PROMPT = Binding.Group("Prompt", compact=True)


class RunScreen(Screen):
    BINDINGS = [
        Binding("p", "pause", "Pause"),
        Binding("p", "resume_loop", "Continue"),  # the same key: whichever check_action allows
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("b", "branch", "Branch"),
        Binding("left_square_bracket", "gen(-1)", "Gen-", key_display="[", group=GEN),
        Binding("right_square_bracket", "gen(1)", "Gen+", key_display="]", group=GEN),
        Binding("left_curly_bracket", "gen(-10)", "Gen-10", key_display="{", show=False),
        Binding("right_curly_bracket", "gen(10)", "Gen+10", key_display="}", show=False),
        Binding("l", "latest", "Latest", show=False),
        Binding("o", "open_samples", "Samples path", show=False),
        Binding("comma", "prompt(-1)", "Prompt-", key_display=",", group=PROMPT),
        Binding("full_stop", "prompt(1)", "Prompt+", key_display=".", group=PROMPT),
        Binding("t", "next_tab", "Pane"),
        Binding("g", "tab('plot')", "Plot", show=False),
        Binding("m", "metric(1)", "Metric", show=False),
        Binding("M", "metric(-1)", "Metric-", show=False),
        Binding("c", "next_chain", "Chain"),
        Binding("v", "toggle_chains", "All chains"),
        *(Binding(str(i + 1), f"tab('{name}')", name.title(), show=False) for i, name in enumerate(TABS)),
        Binding("escape", "back", "Back"),  # to the presets: short, so that Quit fits 80 columns
        Binding("q", "app.quit", "Quit"),
    ]

    # what ScreenState holds, as last shown
    state = var("created")
    error: var[str | None] = var(None)
    done = var(0)  # finished generations
    rewrites = var(0)  # ScreenState.rewrites: generations shown were read again or dropped
    progress: var[Progress | None] = var(None)
    chain = var("")  # the chain whose series, table and samples show ("" for a single-engine run)
    all_chains = var(False)  # the trends: a row per chain and metric, or the chosen chain's alone
    plot_metric = var("")  # the plot pane's (m, M)

    def __init__(self, rundir: RunDir, cfg: Config, start: str = "browse"):
        """start: 'new' runs at once, 'resume' resumes at once, 'browse' shows what is on disk."""
        super().__init__()
        self.rundir, self.cfg, self.start = rundir, cfg, start
        self.kind = preview_kind(cfg.engine_name)
        self.run_state = ScreenState(rundir, cfg)
        # a trend row per headline metric of the engine (SERIES, which every engine has, for several chains'),
        # and one for the first metric theory expects when it expects none of them
        st, theory = self.run_state, list(self.run_state.theory)
        heads = list(st.headline_of[""]) if st.chains == [""] else list(SERIES)
        self.trend_keys = [*heads, *theory[:1]] if theory and not set(theory) & set(heads) else heads
        self.set_reactive(RunScreen.chain, self.run_state.chain)
        self.events: deque[Event] = deque()  # filled by the worker thread, drained by the UI timer
        self.control: loop.Control | None = None
        self.worker: Worker | None = None
        self.brancher: Worker | None = None  # making a branch of this run (b)
        self._metrics_mtime = -1  # watching: metrics.jsonl is parsed again only when rewritten

    # layout
    def compose(self) -> ComposeResult:
        yield Static(id="status")
        for key in self.trend_keys:
            log = is_log(key, self.run_state.logs_of[self.run_state.chain])
            yield Trend(key, log=log, total=self.cfg.generations, id=f"trend-{key}")
        if len(self.run_state.chains) > 1:  # shown by v: a row per chain and metric
            for key in SERIES:
                for c in self.run_state.chains:
                    log, total = key == "perplexity", self.cfg.generations
                    trend = Trend(c, log=log, total=total, sub=key, classes="chain-trend")
                    trend.display = False
                    yield trend
        yield ProgressRow(self.run_state, id="progress-row").data_bind(
            RunScreen.state, RunScreen.done, RunScreen.progress
        )
        yield Static(id="error")
        with TabbedContent(initial="samples"):
            with TabPane("Samples", id="samples"):
                yield SamplesView(self.rundir, self.kind).data_bind(RunScreen.done, RunScreen.rewrites, RunScreen.chain)
            with TabPane("Diff", id="diff"):
                yield DiffPane(self.run_state, self.kind, id="diff-pane").data_bind(RunScreen.done)
            with TabPane("Table", id="table"):
                yield MetricsTable(self.run_state, id="metrics").data_bind(RunScreen.done, RunScreen.rewrites)
            with TabPane("Log", id="log"):
                yield RichLog(id="log-view", max_lines=2000, wrap=True)
            with TabPane("Plot", id="plot"):
                yield PlotPane(id="plot-pane")
        yield Footer()

    def on_mount(self) -> None:
        st = self.run_state
        st.load()
        status = self.rundir.read_status()
        st.state, st.error, st.failure = disk_state(self.rundir, status), status.get("error"), status.get("failure")
        with contextlib.suppress(ConfigError):  # a run.json this tool did not write: nothing said
            if (origin := read_origin(self.rundir)) is not None:
                st.say(f"a branch of {origin.parent} at generation {origin.at}")
        self.query_one("#error").border_title = "run failed"
        extended = st.state == RunState.FINISHED and st.done < self.cfg.generations  # --resume RUN --generations N
        if self.start == "new" or (self.start == "resume" and (st.state in RESUMABLE or extended)):
            self.start_loop(resume=self.start == "resume")
        elif st.state == "watching":
            self.set_interval(1.0, self.poll_disk)
        self.set_interval(REFRESH, self.flush)
        self.flush()
        self._draw_trends()  # the labels' directions before a first generation

    # the worker
    def start_loop(self, resume: bool) -> None:
        try:  # here, not in the worker: a refusal changes nothing and says why
            self.rundir.acquire()
            if resume:
                check_resumable(self.rundir, self.cfg)
        except ConfigError as e:
            self.run_state.say(str(e))
            self.notify(str(e), severity="error", timeout=10)
            with contextlib.suppress(ConfigError):
                self.run_state.state = disk_state(self.rundir, self.rundir.read_status())
            if self.run_state.state == "watching":
                self.set_interval(1.0, self.poll_disk)
            self.flush()
            return
        self.control = loop.Control()
        self.run_state.state = RunState.RUNNING
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

    @property
    def can_resume(self) -> bool:
        """r is offered: no loop runs, and resuming can help (not after an error in the preset or its data)."""
        st = self.run_state
        return not self.live and not self.branching and st.state in RESUMABLE and resumable(st.state, st.failure)

    @property
    def branching(self) -> bool:
        """A branch of this run is being made (b): it holds the run's lock until it is made."""
        return self.brancher is not None and self.brancher.state in (WorkerState.PENDING, WorkerState.RUNNING)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is self.brancher and event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self._branched(event.worker)
            return
        if event.worker is not self.worker or event.state in (WorkerState.PENDING, WorkerState.RUNNING):
            return
        self.flush()
        if event.state == WorkerState.ERROR:  # the loop catches engine errors; this is anything else
            self.run_state.state = RunState.FAILED
            self.run_state.error = f"{type(event.worker.error).__name__}: {event.worker.error}"
            self.flush()
        self.refresh_bindings()
        if getattr(self.app, "quitting", False):
            self.app.exit(1 if self.run_state.state == RunState.FAILED else 0)

    def flush(self) -> None:
        """Apply the queued events and show what changed."""
        st = self.run_state
        while self.events:
            st.apply(self.events.popleft())
        self.rewrites, self.done = st.rewrites, st.done
        self.state, self.error, self.progress = st.state, st.error, st.progress
        if st.log:
            log = self.query_one("#log-view", RichLog)
            for line in st.log:
                log.write(line)
            st.log.clear()

    def poll_disk(self) -> None:
        """Another process runs this directory: follow its metrics file."""
        st = self.run_state
        if st.state != "watching":
            return
        mtime = self.rundir.metrics_path.stat().st_mtime_ns
        if mtime != self._metrics_mtime:  # rewritten at each of its checkpoints: parse only then
            self._metrics_mtime = mtime
            st.load()
        st.state = disk_state(self.rundir, self.rundir.read_status())
        self.flush()

    # what the reactive attributes show
    def watch_state(self) -> None:
        self._draw_status()
        self.refresh_bindings()  # the footer shows pause/stop/resume by state

    def watch_error(self) -> None:
        self._draw_status()

    def watch_rewrites(self) -> None:
        self._draw_trends()

    def watch_done(self) -> None:
        self._draw_status()
        self._draw_trends()

    def watch_all_chains(self, all_chains: bool) -> None:
        for trend in self.query(Trend):
            trend.display = trend.has_class("chain-trend") == all_chains
        self._draw_trends()

    def watch_chain(self, chain: str) -> None:
        self.run_state.chain = chain
        self.run_state.rewrites += 1  # the table and the trends show another chain's generations
        self.flush()
        self._draw_status()

    @on(SamplesView.Compared)
    def _compared(self, event: SamplesView.Compared) -> None:
        self.query_one(DiffPane).compare(event.n, event.first, event.other, event.prompt)
        self.refresh_bindings()  # prompt keys show for text samples only

    def _draw_status(self) -> None:
        st, cfg = self.run_state, self.cfg
        last = st.done - 1 if st.done else "-"  # the last finished generation / the last one, as the log has them
        engine = cfg.chain(self.chain).engine_name if self.chain else cfg.engine_name
        which = f"chain {self.chain} ({st.chains.index(self.chain) + 1}/{len(st.chains)}, c) · " if self.chain else ""
        self.query_one("#status", Static).update(  # the name last: on a narrow screen it ends in "…", not a value
            f"{st.state.upper()} · gen {last}/{cfg.generations - 1} · {which}{engine} · {cfg.data.mode} · "
            f"{plural(len(cfg.seeds), 'seed')} · {self.rundir.path.name}"
        )
        error = self.query_one("#error", Static)
        error.display = st.state == RunState.FAILED and bool(st.error)
        if error.display:
            error.update(st.error or "")
            resume = " · r resumes from the last checkpoint" if resumable(st.state, st.failure) else ""
            error.border_subtitle = f"traceback in error.log{resume}"

    def watch_plot_metric(self) -> None:
        self._draw_plot()

    @on(TabbedContent.TabActivated)
    def _draw_plot(self) -> None:
        """The plot pane, while it shows: a long run's curves are decimated afresh at each update."""
        st = self.run_state
        if self.is_mounted and self.query_one(TabbedContent).active == "plot":
            metric = self.plot_metric if self.plot_metric in st.keys else first_metric(st.keys, st.theory)
            if metric != self.plot_metric:
                self.plot_metric = metric  # its watcher draws it
            else:
                self.query_one(PlotPane).show_run(st, metric)

    def _draw_trends(self) -> None:
        self._draw_plot()
        st = self.run_state
        trends = [(self.query_one(f"#trend-{key}", Trend), key, st.chain) for key in self.trend_keys]
        if self.all_chains:
            trends += [(t, t.sub, t.label) for t in self.query(".chain-trend").results(Trend)]
        checks = {c.metric: c for c in st.checks()}
        for trend, key, chain in trends:
            trend.values, trend.direction = st.series(key, chain), st.headline_of[chain].get(key, "")
            medians = st.medians_of[chain]
            latest = medians[-1].get(key) if medians else None
            trend.band = (latest.lo, latest.hi) if latest is not None else (math.nan, math.nan)
            if key in st.theory and not trend.has_class("chain-trend"):
                curve = st.theory[key]
                with np.errstate(all="ignore"):
                    trend.expected = list(np.log10(curve) if trend.log_scale else curve)
                check = checks.get(key)
                trend.theory = (check.mean, check.expected) if check else (math.nan, math.nan)

    # actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        st = self.run_state.state
        if action == "pause":
            return self.live and st == RunState.RUNNING
        if action == "resume_loop":
            return self.live and st == "paused"
        if action == "stop":
            return self.live and st in (RunState.RUNNING, "paused")
        if action == "resume":
            return self.can_resume
        if action == "branch":
            return not self.live and not self.branching and self.run_state.done > 0
        if action in ("next_chain", "toggle_chains"):
            return len(self.run_state.chains) > 1
        if action == "prompt":
            return any(view.prompts for view in self.query(SamplesView))
        return True

    def action_pause(self) -> None:
        if self.control and self.live and self.run_state.state == RunState.RUNNING:
            self.control.pause()  # the loop holds at its next check, between engine steps
            self._set_state("paused", "paused")

    def action_resume_loop(self) -> None:
        if self.control and self.live and self.run_state.state == "paused":
            self.control.resume()
            self._set_state(RunState.RUNNING, "continued")

    def _set_state(self, state: str, line: str) -> None:
        self.run_state.state = state
        self.run_state.say(line)
        self.flush()

    def action_stop(self) -> None:
        if self.control and self.live:
            self.control.stop()
            self._set_state("stopping", "stopping: saving a checkpoint")

    def action_resume(self) -> None:
        if self.can_resume:
            self.start_loop(resume=True)
            self.flush()

    def action_branch(self) -> None:
        """A new run from the generation the samples show (the last finished one if none is saved), with the
        keys the dialog changes in this run's preset (branch.py); it opens on a run screen of its own."""
        done, shown = self.run_state.done, self.query_one(SamplesView).n
        at = shown if shown is not None and shown < done else done - 1
        mode = "keep" if self.cfg.data.mode == "accumulate" else "accumulate"
        generations = self.cfg.generations if at + 1 < self.cfg.generations else 2 * (at + 1)
        typed = f"data.mode={mode} experiment.generations={generations}"
        self.app.push_screen(BranchDialog(self.rundir.path.name, at, typed), partial(self._branch, at))

    def _branch(self, at: int, typed: str | None) -> None:
        if typed is None:
            return
        try:  # a bad key is refused here, at once; the branch's checks and RUN's lock in the worker
            preset = read_preset(str(self.rundir.path / "preset.toml"))
            cfg = preset.config(shlex.split(typed))
            check_runnable(cfg)
        except ValueError as e:  # a ConfigError, or shlex's unclosed quote
            self.notify(str(e), severity="error", timeout=10)
            return
        runs_dir = getattr(self.app, "runs_dir", self.rundir.path.parent)
        name = f"{run_name(preset, cfg)}-at{at}"
        self.notify(f"branching at generation {at}: restoring its state")
        self.brancher = self.run_worker(
            partial(create_branch, self.rundir.path, cfg, at, runs_dir, name),
            thread=True,
            exit_on_error=False,
            group="branch",
            name="branch",
        )
        self.refresh_bindings()

    def _branched(self, worker: Worker) -> None:
        self.refresh_bindings()
        if worker.state == WorkerState.ERROR:
            self.notify(str(worker.error), severity="error", timeout=10)
            return
        branch: RunDir = worker.result
        self.app.push_screen(RunScreen(branch, branch.config(), start="resume"))

    def action_gen(self, delta: int) -> None:
        self.query_one(SamplesView).step(delta)

    def action_latest(self) -> None:
        self.query_one(SamplesView).follow = True

    def action_open_samples(self) -> None:
        """Where the compared generation's samples are: in a notification and the log, and copied (OSC 52,
        where the terminal takes it). Over SSH a path is what helps; `export --samples` draws them."""
        view = self.query_one(SamplesView)
        if view.n is None:
            self.notify("no samples saved yet", severity="warning")
            return
        path = view.rundir.samples_file(view.n).resolve()
        self.app.copy_to_clipboard(str(path))
        self.notify(str(path), title=f"generation {view.n}'s samples (copied where the terminal allows)", timeout=10)
        self.run_state.say(f"generation {view.n}'s samples: {path} (as PNG or text: export RUN --samples {view.n})")
        self.flush()

    def action_prompt(self, delta: int) -> None:
        self.query_one(SamplesView).step_prompt(delta)

    def action_metric(self, step: int) -> None:
        self.plot_metric = cycle(self.run_state.keys, self.plot_metric, step)
        self.action_tab("plot")

    def action_next_chain(self) -> None:
        chains = self.run_state.chains
        self.chain = chains[(chains.index(self.chain) + 1) % len(chains)]

    def action_toggle_chains(self) -> None:
        self.all_chains = not self.all_chains

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name

    def action_next_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = TABS[(TABS.index(tabs.active) + 1) % len(TABS)]

    def action_back(self) -> None:
        """Back to the presets once no run is going; during one, say how to get there: leaving the screen
        would leave its run without a view and without its stop on quit."""
        if not self.live:
            self.app.pop_screen()
        elif self.run_state.state == "stopping":
            self.notify("stopping: saving a checkpoint; esc goes back once the run has stopped")
        else:
            self.notify("a run is going: s stops it at a checkpoint (r resumes it later), then esc")

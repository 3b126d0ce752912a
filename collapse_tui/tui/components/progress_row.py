"""Where a run is: the step inside the generation, a bar and the time left, or how the run ended."""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import var
from textual.widgets import Label, ProgressBar

from ...engines import engine_class
from ...events import Progress
from ...numbers import fmt_seconds
from ...records import RunState
from ...runlog import resumable
from ..state import ScreenState

ENDED = {  # what the row says when no loop runs, by state; {left}: how far the run got, {resume}: the hint
    "stopping": "stopping: saving a checkpoint...",
    "finished": "finished: {left}",
    "stopped": "stopped after {left}{resume}",
    "crashed": "interrupted after {left}{resume}",
    "failed": "failed after {left}{resume}",
    "created": "not started · r starts",
    "watching": "running in another process: {left}",
}


class ProgressRow(Horizontal):
    # bound to the run screen's: what to redraw on; run_state has the rest (the time estimate)
    state = var("created")
    done = var(0)
    progress: var[Progress | None] = var(None)
    shown: var[tuple[Any, ...]] = var(())  # the three together: one redraw however many of them change

    def __init__(self, run_state: ScreenState, **kwargs: Any):
        super().__init__(**kwargs)
        self.run_state = run_state
        self._since: tuple[int, float] | None = None  # the generation in progress, and about when it started
        # its first phase (training) and the last step shown, while the first seed's pass of it lasts; () after
        self._pass: tuple[str, int] | tuple[()] | None = None
        self._per_gen: float | None = None  # seconds a generation takes, as judged by that pass

    def compose(self) -> ComposeResult:
        yield Label(id="phase")
        yield ProgressBar(show_eta=False, id="bar")
        yield Label(id="eta")

    def compute_shown(self) -> tuple[Any, ...]:
        return self.state, self.done, self.progress

    def watch_shown(self) -> None:
        st = self.run_state
        phase, bar, eta = (
            self.query_one("#phase", Label),
            self.query_one("#bar", ProgressBar),
            self.query_one("#eta", Label),
        )
        running = st.state in (RunState.RUNNING, "paused")
        bar.display = eta.display = running
        if not running or self._since is None or self._since[0] != st.done:  # a generation starts now
            self._since, self._pass, self._per_gen = (st.done, time.monotonic()), None, None
        if not running:
            resume = " · r resumes" if resumable(st.state, st.failure) else ""
            left = f"{st.done} of {st.generations} generations"
            phase.update(ENDED.get(st.state, st.state).format(left=left, resume=resume))
            return
        p = st.progress
        if st.state == "paused":
            phase.update(f"paused at gen {st.done} · p continues")
        elif p is not None and p.generation == st.done:
            phase.update(p.text())
            bar.update(total=max(p.total, 1), progress=p.step)
        else:
            phase.update(f"gen {st.done} starting")
            bar.update(total=1, progress=0)
        secs = st.eta()
        if secs is None and p is not None and p.generation == st.done:
            secs = self._estimate(p)
        eta.update(f"ETA {fmt_seconds(secs)}" if secs is not None else "ETA -")

    def _estimate(self, p: Progress) -> float | None:
        """Before a generation of this session finished (a VAE's first takes minutes): the time taken over the
        share done of the first seed's training, times the seeds trained one after another and the generations
        left. Once that training is over (another phase, or the next seed's) the estimate only counts down."""
        now, since = time.monotonic(), self._since[1]
        if self._pass is None or (self._pass and p.phase == self._pass[0] and p.step >= self._pass[1]):
            self._pass = (p.phase, p.step)
            if p.step and p.total:
                cfg = self.run_state.cfg
                one_by_one = 1 if engine_class(cfg.engine_name).batched else len(cfg.seeds)
                self._per_gen = (now - since) / min(p.step / p.total, 1.0) * one_by_one
        else:
            self._pass = ()
        if self._per_gen is None:
            return None
        return max(0.0, self._per_gen * (self.run_state.generations - self.run_state.done) - (now - since))

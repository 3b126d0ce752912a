"""Where a run is: the step inside the generation, a bar and the time left, or how the run ended."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import var
from textual.widgets import Label, ProgressBar

from ...events import Progress
from ...numbers import fmt_seconds
from ..state import RunState

ENDED = {  # what the row says when no loop runs, by state; {left}: how far the run got
    "stopping": "stopping: saving a checkpoint...",
    "finished": "finished: {left}",
    "stopped": "stopped after {left} · r resumes",
    "crashed": "interrupted after {left} · r resumes",
    "failed": "failed after {left} · r resumes",
    "created": "not started · r starts",
    "watching": "running in another process: {left}",
}


class ProgressRow(Horizontal):
    # bound to the run screen's: what to redraw on; run_state has the rest (the time estimate)
    state = var("created")
    done = var(0)
    progress: var[Progress | None] = var(None)
    shown: var[tuple[Any, ...]] = var(())  # the three together: one redraw however many of them change

    def __init__(self, run_state: RunState, **kwargs: Any):
        super().__init__(**kwargs)
        self.run_state = run_state

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
        running = st.state in ("running", "paused")
        bar.display = eta.display = running
        if not running:
            phase.update(ENDED.get(st.state, st.state).format(left=f"{st.done} of {st.generations} generations"))
            return
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

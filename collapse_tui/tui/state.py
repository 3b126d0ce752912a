"""What the run screen shows, accumulated from loop events or read from a run directory.

Plain Python (no textual): the worker thread queues events, the UI applies them here at most ~10
times a second and shows what changed, so fast engines never flood the interface.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import Config, chain_names
from ..events import Event, GenerationDone, Progress, RunFailed, RunFinished, RunStarted
from ..numbers import fmt_seconds
from ..records import Failure, RunState
from ..rundir import RunDir, run_state
from ..runlog import RunLog, failed_line
from ..summary import Summary, headline_of, log_keys_of, scalar_keys, summarize_rows, values
from ..theory import Check, checks, expected

RESUMABLE = (RunState.CREATED, RunState.STOPPED, RunState.FAILED, RunState.CRASHED)
ETA_WINDOW = 20  # generations the time estimate averages over


@dataclass
class ScreenState:
    """A run as its screen shows it: a RunState, or one of the app's own (paused, stopping, watching)."""

    rundir: RunDir
    cfg: Config
    state: str = RunState.CREATED  # a RunState, or paused, stopping, watching
    error: str | None = None
    failure: str | None = None  # a records.Failure, when failed
    chain: str = ""  # the chain the views show ("" for a single-engine run)
    progress: Progress | None = None
    start_generation: int = 0  # where this session's loop started (> 0 on resume)
    gen_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=ETA_WINDOW))
    log: list[str] = field(default_factory=list)  # lines not yet written to the log pane
    rewrites: int = 0  # bumped when generations already shown were read again or dropped (resume)
    runlog: RunLog = field(default_factory=RunLog)
    # per chain: scalar metric names in the rows' order, the medians (index: generation; summary.py's
    # numbers) and the engine's log-quantities
    keys_of: dict[str, list[str]] = field(default_factory=dict)
    medians_of: dict[str, list[dict[str, Summary]]] = field(default_factory=dict)
    logs_of: dict[str, set[str]] = field(default_factory=dict)
    headline_of: dict[str, dict[str, str]] = field(default_factory=dict)  # summary.headline_of its engine
    # what theory expects of the mean over seeds, per metric and generation (theory.py: computed from the
    # preset as loop.run writes it to theory.jsonl, so a run not yet started shows it too; none for chains),
    # and the rows of the last generation shown, which the checks against it read
    theory: dict[str, np.ndarray] = field(default_factory=dict)
    last_rows: list[dict[str, Any]] = field(default_factory=list)
    means: list[dict[str, float]] = field(
        default_factory=list
    )  # per generation, the mean of each metric theory expects

    def __post_init__(self) -> None:
        self.chain = self.chains[0]
        for c in self.chains:
            self.keys_of[c], self.medians_of[c] = [], []
            engine = self.cfg.chain(c).engine_name if c else self.cfg.engine_name
            self.logs_of[c], self.headline_of[c] = log_keys_of(engine), headline_of(engine)
        self.theory = expected(self.cfg)

    @property
    def chains(self) -> list[str]:
        return chain_names(self.cfg) or [""]

    @property
    def keys(self) -> list[str]:
        return self.keys_of[self.chain]

    @property
    def medians(self) -> list[dict[str, Summary]]:
        return self.medians_of[self.chain]

    @property
    def generations(self) -> int:
        return self.cfg.generations

    @property
    def done(self) -> int:
        """Finished generations."""
        return len(self.medians)

    def load(self) -> None:
        """Everything already in the run directory: a browsed, stopped or resumed run."""
        rows = self.rundir.read_metrics()
        by_gen: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_gen.setdefault(row["generation"], []).append(row)
        for medians in self.medians_of.values():
            medians.clear()
        self.means.clear()
        for gen in sorted(by_gen):
            if gen != len(self.medians):
                break  # generations are contiguous; anything else is not from this tool
            self._add(by_gen[gen])
        self.rewrites += 1

    def _add(self, rows: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> None:
        self.last_rows = list(rows)
        for c in self.chains:
            mine = [r for r in rows if r.get("chain", "") == c]
            if not self.keys_of[c]:
                self.keys_of[c] = scalar_keys(mine)
            self.medians_of[c].append(summarize_rows(mine, self.keys_of[c], self.logs_of[c]))
        if self.theory:  # what its curves are set against (a single chain's rows)
            with np.errstate(over="ignore"):
                self.means.append({k: float(values(rows, k, log=False).mean()) for k in self.theory})

    def series(self, key: str, chain: str | None = None) -> list[float]:
        """The medians of key, generation by generation (log10 for log-quantities), of the chain shown or
        of the chain named."""
        medians = self.medians if chain is None else self.medians_of[chain]
        return [m[key].centre if key in m else math.nan for m in medians]

    def apply(self, ev: Event) -> None:
        for line in self.runlog.lines(ev):  # the start and the generations, as the batch output has them
            self.say(line)
        if isinstance(ev, RunStarted):
            self.state, self.error, self.failure = RunState.RUNNING, None, None
            self.start_generation = ev.start_generation
            if self.done > ev.start_generation:  # rows after the checkpoint are computed again
                for medians in self.medians_of.values():
                    del medians[ev.start_generation :]
                del self.means[ev.start_generation :]
                self.last_rows = []  # of a generation dropped: until the next one, no mean to show
                self.rewrites += 1
        elif isinstance(ev, Progress):
            self.progress = ev
        elif isinstance(ev, GenerationDone):
            if ev.generation == self.done:
                self._add(ev.rows)
            self.gen_seconds.append(ev.seconds)
        elif isinstance(ev, RunFinished):
            self.state, self.progress = ev.state, None
            if ev.state == RunState.FINISHED:
                self.say(f"finished {ev.generations_done} generations in {fmt_seconds(ev.seconds)}")
            else:
                self.say(f"stopped after {ev.generations_done} generations; r resumes")
            for c in self.checks():  # as the batch output ends
                self.say(c.text())
        elif isinstance(ev, RunFailed):
            self.state, self.error, self.progress = RunState.FAILED, ev.error, None
            self.failure = Failure.FAULT if ev.resumable else Failure.INPUT
            self.say(failed_line(ev.error, ev.run_dir))

    def checks(self) -> list[Check]:
        """The last generation shown against theory, a Check per metric it expects (theory.checks)."""
        return checks(self.last_rows, self.theory)

    def say(self, line: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {line}")

    def eta(self) -> float | None:
        """Seconds left: mean time of recent generations times what is left, less the current one's progress."""
        if self.state not in (RunState.RUNNING, "paused") or not self.gen_seconds:
            return None
        per_gen = sum(self.gen_seconds) / len(self.gen_seconds)
        left = self.generations - self.done
        p = self.progress
        part = p.step / p.total if p and p.generation == self.done and p.total else 0.0
        return max(0.0, per_gen * (left - min(part, 1.0)))


def disk_state(rundir: RunDir, status: dict[str, Any]) -> str:
    """The state a run directory's status.json says: a run that a live process is running is 'watching'."""
    state = run_state(rundir, status)
    return "watching" if state == RunState.RUNNING else state

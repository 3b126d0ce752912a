"""A run's log lines from its events: the same in the batch output and in the app's log pane."""

from __future__ import annotations

import math
import time
from pathlib import Path

from .events import Event, GenerationDone, Note, Progress, RunStarted
from .numbers import plural
from .records import Failure, RunState
from .summary import SERIES, headline_of, is_log, summarize, value_text, values

LINE_INTERVAL = 1.0  # seconds: fast engines finish hundreds of generations a second
PROGRESS_LINE_INTERVAL = 30.0  # seconds without a line before one says where a long generation is


class RunLog:
    """Lines for the start of a run and its generations (the first, the last, and at most one a second), and
    inside a long generation, where it is, once PROGRESS_LINE_INTERVAL passed without a line."""

    def __init__(self) -> None:
        self.generations = 0
        self.headline: list[str] = list(SERIES)  # the engine's headline metrics, once the run has started
        self._last = -math.inf  # when the last generation line was written
        self._said = time.monotonic()  # when the last line of any kind was

    def lines(self, ev: Event) -> list[str]:
        said = self._lines(ev)
        if said:
            self._said = time.monotonic()
        return said

    def _lines(self, ev: Event) -> list[str]:
        if isinstance(ev, RunStarted):
            self.generations = ev.generations
            self.headline = list(headline_of(ev.engine))
            where = f"resuming at generation {ev.start_generation}" if ev.start_generation else "starting"
            seeds = plural(len(ev.seeds), "seed")
            head = f"{ev.name}: {ev.engine}, {ev.generations} generations, {seeds}, {where}"
            return [head, f"run directory: {ev.run_dir}", *([ev.threads] if ev.threads else [])]
        if isinstance(ev, Progress) and ev.phase == "compile" and ev.step == 0:
            return ["compiling the engine's kernels: the first run only, later runs load them from a cache"]
        if isinstance(ev, Note):
            return [ev.text]
        if isinstance(ev, Progress) and time.monotonic() - self._said >= PROGRESS_LINE_INTERVAL:
            return [ev.text()]
        if isinstance(ev, GenerationDone):
            now = time.monotonic()
            if now - self._last < LINE_INTERVAL and ev.generation not in (0, self.generations - 1):
                return []
            self._last = now
            medians = []
            chains = list(dict.fromkeys(r.get("chain", "") for r in ev.rows))
            keys = self.headline if chains == [""] else SERIES  # chains of other engines share these two
            for chain in chains:  # a run of several chains: each chain's medians after its name
                rows = [r for r in ev.rows if r.get("chain", "") == chain]
                medians += [f"{chain}:"] if chain else []
                for key in keys:
                    log = is_log(key)
                    medians.append(f"{key} {value_text(summarize(values(rows, key, log), log).centre, log)}")
            return ["  ".join([f"gen {ev.generation}/{self.generations - 1}", *medians]) + f"  ({ev.seconds:.2f} s)"]
        return []


def resumable(state: str, failure: str | None) -> bool:
    """Resuming can help: the run is not finished, and did not fail on its preset or its data, which a
    resume would meet again (records.Failure; a changed preset is refused on resume)."""
    return state != RunState.FINISHED and failure != Failure.INPUT


def failed_line(error: str | None, run_dir: Path) -> str:
    return f"failed: {error} (traceback in {run_dir / 'error.log'})"

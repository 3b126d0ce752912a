"""Typed events the generation loop emits; the batch front end and the Textual app consume them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunStarted:
    run_dir: Path
    name: str
    engine: str
    generations: int
    seeds: tuple[int, ...]
    start_generation: int  # > 0 when a run resumes
    threads: str = ""  # the line saying how many threads it computes with, and why ("": not chosen)


@dataclass(frozen=True)
class Progress:
    """Work inside one generation: phase is 'fit', 'sample', 'evaluate' or an engine's own."""

    generation: int
    phase: str
    step: int
    total: int
    loss: float | None = None
    detail: str = ""  # where inside the phase, in words (engines/base.py Report)

    def text(self) -> str:
        """What the progress row, the progress bar and the log say: 'gen 3 train: epoch 2/5, step 37/120 loss 3.2'."""
        where = f": {self.detail}" if self.detail else f" {self.step}/{self.total}"
        loss = f" loss {self.loss:.4g}" if self.loss is not None else ""
        return f"gen {self.generation} {self.phase}{where}{loss}"


@dataclass(frozen=True)
class GenerationDone:
    generation: int
    rows: tuple[dict[str, Any], ...]  # one metrics row per seed, as written to metrics.jsonl
    seconds: float


@dataclass(frozen=True)
class RunFinished:
    run_dir: Path
    state: str  # 'finished', or 'stopped' (resumable)
    generations_done: int
    seconds: float


@dataclass(frozen=True)
class RunFailed:
    run_dir: Path
    error: str  # one line
    resumable: bool = True  # the run resumes from its last checkpoint, and that can help (records.Failure)


@dataclass(frozen=True)
class Note:
    """A line for the run's log from inside a generation (an engine's report(NOTE + text, ...)): not progress."""

    generation: int
    text: str


Event = RunStarted | Progress | Note | GenerationDone | RunFinished | RunFailed

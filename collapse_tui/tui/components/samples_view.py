"""Generation 0's samples beside generation n's, read from the run's samples/ folder."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import var

from ...rundir import RunDir
from .sample_pane import SamplePane

CACHED = 16  # generations' samples kept in memory


class SamplesView(Horizontal):
    """n follows the newest generation with samples until the user picks another; prompt is the text
    sample the diff shows. Posts Compared whenever what the panes show changes."""

    done = var(0)  # bound to the run screen's: a finished generation may have saved samples
    rewrites = var(0)  # bound to the run screen's: samples on disk may have been written again
    chain = var("")  # bound to the run screen's: whose samples show (a run of several chains)
    saved: var[tuple[int, ...]] = var(())  # generations whose samples are on disk
    n: var[int | None] = var(None)  # the generation compared with generation 0
    follow = var(True)
    prompt = var(0)
    shown: var[tuple[Any, ...]] = var(())

    @dataclass
    class Compared(Message):
        n: int | None
        first: Any  # generation 0's samples, or None
        other: Any  # generation n's
        prompt: int

    def __init__(self, rundir: RunDir, kind: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.run_dir, self.kind = rundir, kind
        self.rundir = rundir  # the chosen chain's view of it (RunDir.chain_view)
        self._cache: dict[int, Any] = {}

    def compose(self) -> ComposeResult:
        yield SamplePane(self.kind, id="left")
        yield SamplePane(self.kind, id="right")

    @property
    def prompts(self) -> int:
        """Text samples to pick from with the prompt keys."""
        first = self.samples(0)
        return len(first) if self.kind == "text" and first is not None else 0

    def samples(self, generation: int | None) -> Any:
        if generation not in self.saved:
            return None
        if generation not in self._cache:
            if len(self._cache) >= CACHED:
                self._cache.clear()
            try:
                self._cache[generation] = self.rundir.load_samples(generation)
            except (OSError, ValueError):
                return None
        return self._cache[generation]

    def step(self, delta: int) -> None:
        """Compare a generation delta saved ones away; back on the newest, follow it again."""
        if self.saved:
            i = bisect.bisect_left(self.saved, self.n if self.n is not None else self.saved[-1])
            self.n = self.saved[min(max(i + delta, 0), len(self.saved) - 1)]
            self.follow = self.n == self.saved[-1]

    def step_prompt(self, delta: int) -> None:
        if self.prompts:
            self.prompt = (self.prompt + delta) % self.prompts

    def watch_rewrites(self) -> None:
        self._cache.clear()
        self.saved = tuple(self.rundir.sample_generations())

    def watch_chain(self, chain: str) -> None:
        self.rundir = self.run_dir.chain_view(chain) if chain else self.run_dir
        self.watch_rewrites()

    def watch_done(self) -> None:
        self.saved = tuple(self.rundir.sample_generations())

    def watch_saved(self, saved: tuple[int, ...]) -> None:
        if self.follow or self.n not in saved:
            self.n = saved[-1] if saved else None

    def watch_follow(self, follow: bool) -> None:
        if follow and self.saved:
            self.n = self.saved[-1]

    def compute_shown(self) -> tuple[Any, ...]:
        """Everything the panes draw from: one redraw however many of them one change moves."""
        return self.rewrites, self.done > 0, self.saved, self.n, self.prompt, self.chain

    def watch_shown(self) -> None:
        self._show()

    def _show(self) -> None:
        first, other = self.samples(0), self.samples(self.n)
        empty = "no samples saved" if self.done else "waiting for the first generation"
        self.query_one("#left", SamplePane).show(0 if first is not None else None, first, first, self.prompt, empty)
        self.query_one("#right", SamplePane).show(self.n, other, first, self.prompt, empty)
        self.post_message(self.Compared(self.n, first, other, self.prompt))

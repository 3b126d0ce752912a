"""One generation's samples, drawn as its engine's preview kind says."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from .. import previews


class SamplePane(VerticalScroll, can_focus=False):
    def __init__(self, kind: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.kind = kind
        self.samples: Any = None
        self.first: Any = None  # generation 0's samples: plots share their scales
        self.prompt = 0
        self.empty = ""  # what to say when there are no samples

    def compose(self) -> ComposeResult:
        yield Static(id="body")

    def show(self, generation: int | None, samples: Any, first: Any, prompt: int, empty: str) -> None:
        self.samples, self.first, self.prompt, self.empty = samples, first, prompt, empty
        self.border_title = "no samples" if generation is None else f"generation {generation}"
        self._draw()

    def on_resize(self) -> None:
        self._draw()  # plots fill the pane

    def _draw(self) -> None:
        if self.samples is None:
            drawing = previews.Drawing(Content.styled(self.empty, "$text-muted"))
        else:
            width, height = self.scrollable_content_region.size
            drawing = previews.draw(self.kind, self.samples, self.first, width, height, self.prompt)
        body = self.query_one("#body", Static)
        body.set_class(drawing.plot, "-plot")
        body.update(drawing.body)
        self.border_subtitle = drawing.subtitle

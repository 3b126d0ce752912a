"""Widgets of the run screen: trend lines, sample panes and the diff pane."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from ..phrases import compare, word_diff
from . import render
from .state import fmt, fmt_signed

LABEL_WIDTH = 11
TAIL_WIDTH = 22


class Trend(Widget):
    """One metric over generations (mean over seeds): label, sparkline, latest value, its change
    since generation 0 and its spread over seeds. `values` holds the per-generation means as they
    are; a log-scaled trend only draws them in log10 (perplexity spans decades, and may be inf)."""

    DEFAULT_CSS = "Trend { height: 2; }"

    def __init__(self, label: str, log: bool = False, total: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.label = label
        self.total = total  # generations the x axis spans
        self.log_scale = log
        self.values: list[float] = []
        self.spread = math.nan  # std over seeds of the latest generation

    def set_values(self, values: list[float], spread: float = math.nan) -> None:
        if values != self.values or spread != self.spread:
            self.values, self.spread = list(values), spread
            self.refresh()

    def tail(self) -> tuple[str, str]:
        if not self.values:
            return "no generation yet", ""
        first, last = self.values[0], self.values[-1]
        if math.isfinite(first) and math.isfinite(last) and first:
            ratio = last / first
            change = f"×{ratio:.2g}" if abs(ratio) >= 10 else f"{ratio - 1:+.0%}"
        elif math.isinf(last) and math.isfinite(first):
            change = "+inf"
        else:
            change = ""
        head = f"{fmt(last)} {change}"
        if change and len(head) + 6 <= TAIL_WIDTH:
            head += " vs g0"
        spread = f"± {fmt(self.spread)} over seeds" if math.isfinite(self.spread) and self.spread else ""
        return head, spread

    def render(self) -> Content:
        plotted = self.values
        if self.log_scale:
            with np.errstate(divide="ignore", invalid="ignore"):
                plotted = list(np.log10(np.asarray(self.values, dtype=float)))
        height = max(1, self.size.height)
        width = max(0, self.size.width - LABEL_WIDTH - TAIL_WIDTH - 1)
        rows = render.sparkline(plotted, width, height, self.total)
        tails = [*self.tail(), *[""] * height][:height]
        labels = [self.label, "(log10)" if self.log_scale else "", *[""] * height][:height]
        lines = []
        for label, row, tail in zip(labels, rows, tails):
            lines.append(
                Content.assemble(
                    (f"{label:<{LABEL_WIDTH}}", "bold" if label == self.label else "$text-muted"),
                    (row.ljust(width), "$accent"),
                    " ",
                    (tail[:TAIL_WIDTH], "" if tail is tails[0] and self.values else "$text-muted"),
                )
            )
        return Content("\n").join(lines)


class SamplePane(VerticalScroll, can_focus=False):
    """One generation's samples: a density map, a histogram, digits or text with repeats marked."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.samples: np.ndarray | list[str] | None = None
        self.limits: np.ndarray | None = None
        self.prompt = 0
        self.empty = ""  # what to say when there is nothing to draw

    def compose(self):
        yield Static(id="body")

    def show(
        self, generation: int | None, samples: Any, limits: np.ndarray | None, prompt: int = 0, empty: str = ""
    ) -> None:
        self.samples, self.limits, self.prompt, self.empty = samples, limits, prompt, empty
        self.border_title = "no samples" if generation is None else f"generation {generation}"
        self.redraw()

    def on_resize(self) -> None:
        if isinstance(self.samples, np.ndarray):
            self.redraw()

    def redraw(self) -> None:
        body = self.query_one("#body", Static)
        s = self.samples
        self.border_subtitle = ""
        body.set_class(isinstance(s, np.ndarray), "-plot")  # plots must not wrap at their blanks
        if s is None:
            body.update(Content.styled(self.empty, "$text-muted"))
            return
        if isinstance(s, list):
            parts = []
            for i, text in enumerate(s):
                head = Content.styled(f"#{i + 1} ", "reverse bold" if i == self.prompt else "bold")
                parts.append(head + render.highlighted(text))
            body.update(Content("\n\n").join(parts) if parts else Content("(empty)"))
            self.border_subtitle = f"{len(s)} prompts"
            return
        width, height = self.scrollable_content_region.size
        if s.ndim == 3:
            lines = render.digits(s, width, height)
            self.border_subtitle = f"{len(s)} images"
        else:
            lines = render.density(s, width, height, self.limits if self.limits is not None else render.extent(s))
            var = float(np.asarray(s, dtype=float).reshape(len(s), -1).var(0, ddof=1).sum()) if len(s) > 1 else 0.0
            self.border_subtitle = f"n={len(s)} var {fmt(var)}"
        body.update(Content("\n".join(lines)))


class DiffPane(VerticalScroll):
    """Generation 0 against generation n: repeated phrases and a word diff for text, metrics otherwise."""

    def compose(self):
        yield Static(id="diff-body")

    def show_metrics(self, n: int | None, first: dict[str, float] | None, other: dict[str, float] | None) -> None:
        body = self.query_one("#diff-body", Static)
        if n is None or first is None or other is None:
            body.update(Content.styled("no generation to compare yet", "$text-muted"))
            return
        head = f"{'metric':<16}{'gen 0':>12}{f'gen {n}':>12}{'change':>12}"
        lines = [Content.styled(head, "bold")]
        for key, a in first.items():
            b = other.get(key, math.nan)
            change = b - a if math.isfinite(a) and math.isfinite(b) else math.inf if b != a else 0.0
            lines.append(Content(f"{key[:15]:<16}{fmt(a):>12}{fmt(b):>12}{fmt_signed(change):>12}"))
        body.update(Content("\n").join(lines))

    def show_text(self, n: int, before: list[str], after: list[str], prompt: int) -> None:
        body = self.query_one("#diff-body", Static)
        changes = compare(before, after)
        out = [Content.styled(f"repeated phrases, generation 0 -> {n} (all prompts)", "bold")]
        if not changes:
            out.append(Content.styled("no change", "$text-muted"))
        marks = {"appeared": "+", "grew": ">", "shrank": "<", "vanished": "-"}
        for c in changes:
            line = Content(f"{marks[c.kind]} {c.kind:<8} {c.before:>3} -> {c.after:<3} ")
            out.append(line + Content.styled(c.text, "bold" if c.kind in ("appeared", "grew") else ""))
        out.append(Content(""))
        out.append(Content.styled(f"word diff of prompt #{prompt + 1}: [-generation 0-] {{+generation {n}+}}", "bold"))
        a = before[prompt] if prompt < len(before) else ""
        b = after[prompt] if prompt < len(after) else ""
        pieces = []
        for op, text in word_diff(a, b):
            if op == "equal":
                pieces.append(Content(text))
            elif op == "delete":
                pieces.append(Content.styled(f"[-{text}-]", "strike $error"))
            else:
                pieces.append(Content.styled(f"{{+{text}+}}", "bold $success"))
        out.append(Content(" ").join(pieces))
        body.update(Content("\n").join(out))

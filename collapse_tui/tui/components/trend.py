"""One metric over generations: label, sparkline, latest value, its change and its spread."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from ...numbers import fmt
from .. import render

LABEL_WIDTH = 11
TAIL_WIDTH = 22


class Trend(Widget):
    """The per-generation means over seeds as they are, the change since generation 0 and the spread
    over seeds of the latest; a log-scaled trend only draws them in log10 (perplexity spans decades,
    and may be inf)."""

    DEFAULT_CSS = "Trend { height: 2; }"

    values: reactive[list[float]] = reactive(list)
    spread = reactive(math.nan)  # std over seeds of the latest generation

    def __init__(self, label: str, log: bool = False, total: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.label = label
        self.total = total  # generations the x axis spans
        self.log_scale = log

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

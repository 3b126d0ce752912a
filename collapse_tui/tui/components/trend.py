"""One metric over generations: label, sparkline, latest value, its change and its band over seeds; and, where
the run's engine gives one, the curve theory expects, marked over the sparkline."""

from __future__ import annotations

import itertools
import math
from typing import Any

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from ...engines.base import DOWN, UP
from ...summary import ratio_text, value_text
from .. import render

LABEL_WIDTH = 14  # a name of 11 characters, its direction's arrow and a space
ARROWS = {UP: "↑", DOWN: "↓"}  # beside a metric's name: the way it moves as the model collapses
TAIL_WIDTH = 22
# the sparkline's frame spans at least this much around generation 0's value, so that noise does not
# fill the height as a collapse would: a tenth of a decade for log-quantities, 10% otherwise
MIN_FRAME_LOG = 0.1
MIN_FRAME_SHARE = 0.1
BAR_STYLE, MARK_STYLE = "$accent", "bold $warning"  # the sparkline's bars; the marks of the expected curve


def fitting(texts: list[str], width: int = TAIL_WIDTH) -> str:
    """The first text that fits the width (a number cut short would read as another number)."""
    return next((t for t in texts if len(t) <= width), "")


class Trend(Widget):
    """The per-generation medians over seeds (summary.py; log10 values for a log-quantity, which the
    second row says), the change since generation 0 and the latest generation's band over seeds. With
    `expected` (theory.py: the mean over seeds that theory expects, every generation of the run), a line
    of render.MARKS through it over the sparkline, 'theory' under the label, and on the second row the
    latest generation's mean over seeds beside its expected value in place of the band."""

    DEFAULT_CSS = "Trend { height: 2; }"

    values: reactive[list[float]] = reactive(list)
    band = reactive((math.nan, math.nan))  # 16th and 84th percentile over seeds of the latest generation
    expected: reactive[list[float]] = reactive(list)  # in the values' scale (log10 for a log-quantity)
    theory = reactive((math.nan, math.nan))  # the latest generation's mean over seeds and expected mean
    direction = reactive("")  # engines.base.UP or DOWN: the engine's Engine.HEADLINE says; "": not declared

    def __init__(self, label: str, log: bool = False, total: int | None = None, sub: str | None = None, **kwargs: Any):
        """sub: the second row's label (default: '(log10)' for a log-quantity)."""
        super().__init__(**kwargs)
        self.label = label
        self.sub = ("(log10)" if log else "") if sub is None else sub
        self.total = total  # generations the x axis spans
        self.log_scale = log

    def frame(self) -> tuple[float, float]:
        """The sparkline's y range: every value and expected value, and at least MIN_FRAME_* around generation
        0's value (its expected value before it is measured)."""
        finite = [v for v in [*self.values, *self.expected] if math.isfinite(v)]
        if not finite:
            return math.nan, math.nan
        first = next((v[0] for v in (self.values, self.expected) if v and math.isfinite(v[0])), finite[0])
        half = MIN_FRAME_LOG if self.log_scale else MIN_FRAME_SHARE * abs(first) or (max(finite) - min(finite)) / 2
        return min(min(finite), first - half), max(max(finite), first + half)

    def tail(self) -> tuple[str, str]:
        if not self.values:
            return "no generation yet", ""
        first, last = self.values[0], self.values[-1]
        log = self.log_scale
        # the change in log10: nan from or to an unknown value (nan > 0 is False), or from 0 to 0
        positive = first > 0 and last > 0
        d = last - first if log else math.log10(last) - math.log10(first) if positive else math.nan
        change = "" if math.isnan(d) else ratio_text(d)
        now = value_text(last, log)
        head = fitting([f"{now} {change} vs g0", f"{now} {change}", now] if change else [now])
        if self.expected:
            mean, expected = self.theory
            pairs = [(value_text(mean, digits=d), value_text(expected, digits=d)) for d in (4, 3, 2)]
            texts = [f"mean {m} theory {e}" for m, e in pairs[:2]] + [f"mean {m} vs {e}" for m, e in pairs]
            return head, fitting(texts)
        lo, hi = self.band
        if lo == hi or math.isnan(lo):
            return head, ""
        spread = [f"{p}{value_text(lo, log, d)}..{value_text(hi, log, d)}" for d in (3, 2, 1) for p in ("seeds ", "")]
        return head, fitting(spread)

    def labels(self) -> tuple[str, str]:
        """The label, with the direction's arrow, and the second row's: the sub label, else the theory mark's
        key, else what the arrow means (so that the arrow reads without colour or a legend)."""
        arrow = ARROWS.get(self.direction, "")
        room = LABEL_WIDTH - 3  # the arrow, a space before it and one before the sparkline
        name = self.label if len(self.label) <= room or not arrow else self.label[: room - 1] + "…"
        sub = self.sub or (f"{render.MARKS[2]} theory" if self.expected else f"{arrow} collapse" if arrow else "")
        return (f"{name} {arrow}" if arrow else name), sub

    def render(self) -> Content:
        height = max(1, self.size.height)
        width = max(0, self.size.width - LABEL_WIDTH - TAIL_WIDTH - 1)
        frame = self.frame()
        rows = render.sparkline(self.values, width, height, self.total, frame)
        marks = render.marks(self.expected, width, height, self.total, frame)
        tails = [*self.tail(), *[""] * height][:height]
        labels = [*self.labels(), *[""] * height][:height]
        lines = []
        for i, (label, row, mark, tail) in enumerate(zip(labels, rows, marks, tails)):
            lines.append(
                Content.assemble(
                    (f"{label:<{LABEL_WIDTH}}", "$text-muted" if i else "bold"),
                    marked(row.ljust(width), mark),
                    " ",
                    (tail[:TAIL_WIDTH], "" if i == 0 and self.values else "$text-muted"),
                )
            )
        return Content("\n").join(lines)


def marked(row: str, marks: str) -> Content:
    """A sparkline row with the marks of a curve: in the cells its bars leave empty, the curve's own characters
    (a line, not a colour alone, so it reads the same without colour); where a bar covers a mark, the bar's
    glyph in the curve's colour (the bars keep their shape)."""
    cells = [(c if c != " " else m, MARK_STYLE if m != " " else BAR_STYLE) for c, m in zip(row, marks.ljust(len(row)))]
    runs = itertools.groupby(cells, key=lambda cell: cell[1])
    return Content.assemble(*(("".join(c for c, _ in group), style) for style, group in runs))

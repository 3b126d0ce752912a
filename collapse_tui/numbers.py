"""Numbers and values as tables, logs, error messages and the app write them: one copy for the CLI
and the app (no textual)."""

from __future__ import annotations

import math
from typing import Any

NA = "n/a"  # what every table, log and pane shows for a number that was not computed (null, NaN, absent)


def fmt(x: float | None, signed: bool = False, digits: int = 4) -> str:
    """`digits` significant digits, inf and -inf as such; None and NaN read as NA."""
    if x is None or math.isnan(x):
        return NA
    return f"{x:+.{digits}g}" if signed else f"{x:.{digits}g}"


def fmt_seconds(s: float) -> str:
    """A duration as m:ss or h:mm:ss."""
    if s < 1:
        return "<1s"
    s = round(s)
    h, m = divmod(s, 3600)
    m, sec = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def plural(n: int, noun: str) -> str:
    """'1 seed', '20 seeds'."""
    return f"{n} {noun}{'s' * (n != 1)}"


def seeds_text(seeds: list[int]) -> str:
    """'4' for seeds 0 .. 3 (a count, as a preset may write them), else the list: '[3, 7]'."""
    return str(len(seeds)) if seeds == list(range(len(seeds))) else "[" + ", ".join(map(str, seeds)) + "]"


def short(value: Any, width: int = 60, quote: bool = True) -> str:
    """A value as an error message or a label quotes it: its repr (its str if not quote: a string
    unquoted), cut to width characters with '…'. A value nested too deep to write is named by its type."""
    try:
        text = repr(value) if quote else str(value)
    except RecursionError:  # a value nested almost as deep as the JSON parser allows
        return f"a deeply nested {type(value).__name__}"
    return text if len(text) <= width else text[: width - 1] + "…"

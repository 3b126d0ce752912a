"""Numbers and values as tables, logs, error messages and the app write them: one copy for the CLI
and the app (no textual)."""

from __future__ import annotations

import math
from typing import Any

NA = "n/a"  # what every table, log and pane shows for a number that was not computed (null, NaN, absent)
WHOLE = 1e6  # below it, a number rounded to its digits is written whole (1230, not 1.23e+03)


def fmt(x: float | None, signed: bool = False, digits: int = 4) -> str:
    """`digits` significant digits, inf and -inf as such; None and NaN read as NA. A number of more
    integer digits than that is rounded and written whole below WHOLE (1234.5 at 3 digits: 1230); past
    it, and below 1e-4, in a short exponent: 4.88e10, 3.4e-6 (never '1.23e+03')."""
    if x is None or math.isnan(x):
        return NA
    sign = "+" if signed else ""
    text = f"{x:{sign}.{digits}g}"
    if "e+" in text and abs(x) < WHOLE:
        return f"{float(text):{sign}.0f}"
    return short_exponent(text)


def short_exponent(text: str) -> str:
    """A number's text with its exponent written short: '1e+06' -> '1e6', '3.4e-06' -> '3.4e-6'."""
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if e else text


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

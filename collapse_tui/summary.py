"""Numbers over seeds from metrics rows: what the summary table, sparklines and reports show."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

SERIES = ("perplexity", "variance")


def scalar_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Metric names with one number per row, in the order rows first list them."""
    keys: dict[str, None] = {}
    for row in rows[:1]:
        for k, v in row.items():
            if k not in ("seed", "generation") and isinstance(v, int | float | None) and not isinstance(v, bool):
                keys[k] = None
    return list(keys)


def mean_std(values: list[float | None]) -> tuple[float, float]:
    """Mean and standard deviation over seeds; missing (null) values count as infinite."""
    xs = np.array([math.inf if v is None else v for v in values], dtype=float)
    if not xs.size:
        return math.nan, math.nan
    with np.errstate(all="ignore"):
        mean = float(xs.mean())
        std = float(xs.std(ddof=1)) if xs.size > 1 and math.isfinite(mean) else 0.0
    return mean, std


def by_generation(rows: list[dict[str, Any]], key: str) -> dict[int, tuple[float, float]]:
    """generation -> (mean, std) of one metric over seeds."""
    groups: dict[int, list[float | None]] = defaultdict(list)
    for row in rows:
        groups[row["generation"]].append(row.get(key))
    return {g: mean_std(v) for g, v in sorted(groups.items())}

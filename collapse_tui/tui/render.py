"""Text drawings of what a generation produced: density maps, histograms, digits, sparklines.

Shapes are drawn with characters (shades, eighth blocks, half blocks), not colours alone, so they
read the same in dark and light themes and with NO_COLOR.
"""

from __future__ import annotations

import math

import numpy as np
from textual.content import Content, Span

from ..phrases import highlight_spans

SHADES = " ·░▒▓█"
EIGHTHS = " ▁▂▃▄▅▆▇█"
HIGHLIGHT = "bold underline $warning"


def extent(points: np.ndarray) -> np.ndarray:
    """(d, 2) plot limits shared by both panes: generation 0's mean +- 4 standard deviations."""
    pts = np.asarray(points, dtype=float).reshape(len(points), -1)
    mean, std = pts.mean(0), pts.std(0)
    std = np.where(std > 0, std, 1.0)
    return np.stack([mean - 4 * std, mean + 4 * std], axis=1)


def _bins(x: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    return np.clip(((x - lo) / (hi - lo) * n).astype(int), 0, n - 1)


def axis(lo: float, hi: float, width: int, middle: str = "") -> str:
    """The x range under a plot: low end left, high end right."""
    left, right = f"{lo:.3g}", f"{hi:.3g}"
    room = width - len(left) - len(right)
    mid = middle.center(room) if len(middle) + 2 <= room else " " * max(room, 1)
    return (left + mid + right)[:width]


def density(points: np.ndarray, width: int, height: int, limits: np.ndarray) -> list[str]:
    """A histogram (1-D data) or a shaded 2-D density map of the first two dimensions, with the
    x range on the last line."""
    width, height = max(width, 4), max(height - 1, 2)
    pts = np.asarray(points, dtype=float).reshape(len(points), -1)
    pts = pts[np.isfinite(pts).all(1)]
    inside = ((pts >= limits[:, 0]) & (pts <= limits[:, 1])).all(1)
    pts = pts[inside]
    if pts.shape[1] == 1:
        counts = np.bincount(_bins(pts[:, 0], *limits[0], width), minlength=width)
        level = np.round(counts / max(counts.max(), 1) * height * 8).astype(int)
        rows = []
        for r in range(height, 0, -1):  # top row first; each cell holds 8 levels
            cell = np.clip(level - (r - 1) * 8, 0, 8)
            rows.append("".join(EIGHTHS[c] for c in cell))
        return [*rows, axis(*limits[0], width)]
    xs = _bins(pts[:, 0], *limits[0], width)
    ys = height - 1 - _bins(pts[:, 1], *limits[1], height)
    grid = np.zeros((height, width), dtype=int)
    np.add.at(grid, (ys, xs), 1)
    # square root: a collapsed cluster should not leave the rest of the map blank
    level = np.ceil(np.sqrt(grid / max(grid.max(), 1)) * (len(SHADES) - 1)).astype(int)
    y_range = f"y {limits[1][0]:.3g}..{limits[1][1]:.3g}"
    return ["".join(SHADES[c] for c in row) for row in level] + [axis(*limits[0], width, y_range)]


def _rescale(images: np.ndarray, scale: float) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer, or block means when shrinking."""
    if scale >= 1:
        k = int(scale)
        return images.repeat(k, axis=1).repeat(k, axis=2)
    k = round(1 / scale)
    n, h, w = images.shape
    padded = np.zeros((n, -(-h // k) * k, -(-w // k) * k), dtype=float)
    padded[:, :h, :w] = images
    return padded.reshape(n, padded.shape[1] // k, k, padded.shape[2] // k, k).mean(axis=(2, 4))


def _fits(h: int, w: int, width: int, height: int) -> int:
    """How many h x w images (two pixel rows a line, one blank between) fit in width x height."""
    return max(0, (width + 1) // (w + 1)) * max(0, (height + 1) // ((h + 1) // 2 + 1))


SCALES = (3, 2, 1, 1 / 2, 1 / 3, 1 / 4)
READABLE = 14  # pixels a side a digit keeps (all of a smaller one): 8x8 digits at 1x at least, 28x28 at 1/2x


def _scaled(h: int, w: int, scale: float) -> tuple[int, int]:
    if scale >= 1:
        return int(h * scale), int(w * scale)
    k = round(1 / scale)
    return -(-h // k), -(-w // k)


def digit_layout(shape: tuple[int, ...], width: int, height: int) -> tuple[float, int]:
    """The scale to draw images of shape (n, H, W) at in width x height, and how many show: as many as fit
    at a readable size (READABLE), at the largest scale that shows that many. A pane too small for one
    readable image takes the largest scale that shows one."""
    n, h, w = shape[:3]

    def shown(scale: float) -> int:
        return min(n, _fits(*_scaled(h, w, scale), width, height))

    readable = [s for s in SCALES if min(_scaled(h, w, s)) >= min(h, w, READABLE)]
    scale = max(readable, key=lambda s: (shown(s), s))
    if not shown(scale):
        scale = next((s for s in SCALES if shown(s)), SCALES[-1])
    return scale, shown(scale)


INK, GREY = 0.5, 0.2  # pixel levels drawn as ink and as a light shade


def _half_block(top: float, bottom: float) -> str:
    t, b = top > INK, bottom > INK
    if t or b:
        return "█" if t and b else "▀" if t else "▄"
    return "░" if max(top, bottom) > GREY else " "


def digits(images: np.ndarray, width: int, height: int) -> list[str]:
    """Images (n, H, W) in [0, 1] as a grid of half-block drawings: two pixel rows a line, ink where
    a pixel is above one half, a light shade where the pair is only grey (the blur of late
    generations). As many as fit at a readable scale are drawn (digit_layout)."""
    scale, _ = digit_layout(images.shape, width, height)
    imgs = _rescale(np.asarray(images, dtype=float), scale)
    h, w = imgs.shape[1:]
    cols = max(1, (width + 1) // (w + 1))
    grid_rows = max(1, (height + 1) // ((h + 1) // 2 + 1))
    lines: list[str] = []
    for gr in range(grid_rows):
        chunk = imgs[gr * cols : (gr + 1) * cols]
        if not len(chunk):
            break
        if lines:
            lines.append("")
        padded = np.zeros((len(chunk), h + h % 2, w))
        padded[:, :h] = chunk
        for r in range(0, h, 2):
            parts = []
            for img in padded:
                top, bottom = img[r], img[r + 1]
                parts.append("".join(_half_block(t, b) for t, b in zip(top, bottom)))
            lines.append(" ".join(parts))
    return lines


def highlighted(text: str) -> Content:
    """A text sample with its repeated phrases (word n-grams, n >= 3) marked."""
    return Content(text, [Span(a, b, HIGHLIGHT) for a, b in highlight_spans(text)])


def sparkline(
    values: list[float],
    width: int,
    height: int = 1,
    total: int | None = None,
    frame: tuple[float, float] | None = None,
) -> list[str]:
    """Rows (top first) of eighth blocks. The x axis spans `total` generations (default: the values
    given), so the line grows left to right as a run goes on; columns that cover several generations
    show their mean, so 5000 generations draw as fast as 50. The y axis spans `frame` (default: the
    values' range). Infinite values draw as the top, NaN as a gap."""
    if width <= 0 or not values:
        return [""] * height
    level = _levels(_columns(values, width, total), height * 8, frame)
    return ["".join(EIGHTHS[c] for c in np.clip(level - r * 8, 0, 8)) for r in range(height - 1, -1, -1)]


MARKS = "⎽⎼─⎻⎺"  # a line's height within a cell, bottom to top (the scan lines of DEC's line drawing set)


def marks(values: list[float], width: int, height: int, total: int | None, frame: tuple[float, float]) -> list[str]:
    """Rows (top first) of a line through the values, each column's mark at the height that sparkline
    gives the same value in the same frame (a cell's eighth as one of MARKS), spaces elsewhere: a curve
    to draw over a sparkline (the values theory expects)."""
    if width <= 0 or not values:
        return [" " * max(width, 0)] * height
    level = _levels(_columns(values, width, total), height * 8, frame) - 1  # -1: no mark
    rows = []
    for r in range(height - 1, -1, -1):
        within = level - r * 8  # the mark's eighth in this row, 0..7, when it is in this row
        rows.append("".join(MARKS[round(e * 4 / 7)] if 0 <= e < 8 else " " for e in within))
    return rows


def _columns(values: list[float], width: int, total: int | None) -> np.ndarray:
    """The value each of (at most) width columns shows when the x axis spans total generations: each
    generation as many whole columns when they fit, else the mean of the generations a column covers."""
    total = max(total or len(values), len(values), 1)
    xs = np.asarray(values, dtype=float)
    if total <= width:
        return np.repeat(xs, width // total)
    edges = np.linspace(0, total, width + 1).astype(int)
    cols = [(a, min(b, len(xs))) for a, b in zip(edges[:-1], edges[1:]) if a < len(xs)]
    with np.errstate(invalid="ignore"):
        return np.array([xs[a:b].mean() if b > a else np.nan for a, b in cols])


def _levels(xs: np.ndarray, top: int, frame: tuple[float, float] | None) -> np.ndarray:
    """Each column's height in eighths, 1..top (0: a gap for NaN), between the finite values' range widened
    to frame; infinite values at the top (inf) or the bottom (-inf)."""
    finite = xs[np.isfinite(xs)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        if frame is not None and all(map(math.isfinite, frame)):
            lo, hi = min(lo, frame[0]), max(hi, frame[1])
        with np.errstate(invalid="ignore"):
            scaled = 1 + np.round((xs - lo) / (hi - lo) * (top - 1)) if hi > lo else np.full(len(xs), top // 2)
    else:
        scaled = np.zeros(len(xs))
    level = np.where(np.isnan(xs), 0, np.where(np.isposinf(xs), top, np.where(np.isneginf(xs), 1, scaled)))
    return np.nan_to_num(level).astype(int)

"""The text drawings of the sample panes and trends, checked cell by cell."""

from __future__ import annotations

import gzip
import math

import numpy as np
from conftest import MNIST

from collapse_tui.tui import previews, render

MNIST_IMAGES = MNIST / "t10k-images-idx3-ubyte.gz"


def test_digits_half_blocks_on_mnist():
    with gzip.open(MNIST_IMAGES) as f:
        images = np.frombuffer(f.read(16 + 4 * 784)[16:], dtype=np.uint8).reshape(4, 28, 28) / 255.0
    lines = render.digits(images, width=2 * 29 + 28, height=2 * 15)  # room for four at full size
    assert set("".join(lines)) <= set(" █▀▄░")
    assert len(lines) == 14 + 1 + 14  # two rows of digits, a blank line between
    first = lines[:14]
    ink = sum(line[:28].count("█") * 2 + line[:28].count("▀") + line[:28].count("▄") for line in first)
    assert ink == int((images[0] > 0.5).sum())  # every inked pixel of the first digit, at scale 1
    pairs = images[0].reshape(14, 2, 28)  # cells with no ink but a grey pixel get the light shade
    grey = ((pairs.max(axis=1) > 0.2) & (pairs.max(axis=1) <= 0.5)).sum()
    assert sum(line[:28].count("░") for line in first) == grey
    blurred = render.digits(np.full((1, 4, 4), 0.3), width=10, height=4)  # late-generation blur shows
    assert blurred and set("".join(blurred)) == {"░"}
    small = render.digits(images, width=40, height=8)  # a small pane: two at half size (14x14), no smaller
    assert len(small) == 7 and all(len(line) == 2 * 14 + 1 for line in small)
    assert render.digit_layout(images.shape, 40, 8) == (0.5, 2)
    tiny = render.digits(images, width=20, height=4)  # too small for one at half size: what shows, smaller
    assert render.digit_layout(images.shape, 20, 4) == (0.25, 2) and len(tiny) == 4 and len(tiny[0]) == 2 * 7 + 1


def test_digits_show_as_many_as_fit_at_a_readable_size():
    """8x8 digits never below 1x, 28x28 never below 1/2x; among those, the scale that shows the most."""
    assert render.digit_layout((64, 8, 8), 36, 13) == (1, 8)  # 80x24's pane: 4 x 2 at 1x, not 4 at 2x
    assert render.digit_layout((64, 8, 8), 56, 29) == (1, 36)  # 120x40's: 6 x 6
    assert render.digit_layout((4, 8, 8), 56, 29) == (3, 4)  # all of them fit larger: the largest that shows all
    assert render.digit_layout((64, 28, 28), 56, 29) == (0.5, 9)  # 3 x 3 at 14x14, not 25 at 10x10


def test_density_1d_and_2d():
    limits = np.array([[-1.0, 1.0]])
    spike = np.zeros((50, 1))
    rows = render.density(spike, width=10, height=5, limits=limits)
    assert rows[-1].startswith("-1") and rows[-1].rstrip().endswith("1")  # the x range under the plot
    assert [r[5] for r in rows[:-1]] == ["█"] * 4 and all(r[:5].strip() == "" for r in rows[:-1])
    points = np.array([[-0.9, -0.9], [-0.9, -0.9], [0.9, 0.9]])
    rows = render.density(points, width=20, height=3, limits=np.array([[-1.0, 1.0], [-1.0, 1.0]]))
    assert rows[:2] == [" " * 19 + "▓", "█" + " " * 19]  # y grows upwards; the denser cell is darker
    assert "y -1..1" in rows[2]


def test_sparkline_scales_and_downsamples():
    assert render.sparkline([1, 2, 3], width=6, total=3) == ["▁▁▅▅██"]
    assert render.sparkline([1, 2, 3], width=6, total=6) == ["▁▅█"]  # the rest is still to come
    assert render.sparkline([1, math.inf, math.nan], width=3) == ["▄█ "]
    many = render.sparkline(list(range(5000)), width=40, height=2)
    assert len(many) == 2 and all(len(r) == 40 for r in many)
    assert many[1][0] == "▁" and many[0][-1] == "█"


def test_each_preview_kind_has_its_drawing():
    """The panes draw what the engine declares; a kind without a drawing (a plugin's own) is one line."""
    points = previews.draw("points", np.zeros((50, 1)), None, 10, 5)
    assert points.plot and points.subtitle == "n=50 var 0" and "█" in points.body.plain
    images = previews.draw("images", np.ones((4, 4, 4)), None, 20, 6)
    assert images.plot and images.subtitle == "4 images" and set(images.body.plain) <= set(" █\n")
    text = previews.draw("text", ["one two three one two three"], None, 20, 6)
    assert not text.plot and text.body.plain == "#1 one two three one two three"
    rgb = previews.draw("rgb", np.zeros((2, 4, 4, 3)), None, 20, 6)
    assert rgb.body.plain == "no drawing for preview kind 'rgb' (samples on disk in samples/)"
    assert previews.preview_kind("gmm") == "points" and previews.preview_kind("opt") == "text"
    assert previews.preview_kind("no-such-engine") == previews.UNKNOWN  # EngineError: no drawing


def test_sparkline_frame_keeps_noise_small():
    """A run that stays at generation 0's perplexity within 1% draws a nearly flat line: the frame spans
    at least a tenth of a decade around generation 0, where its own range would fill the full height."""
    from collapse_tui.tui.components.trend import Trend

    rng = np.random.default_rng(0)
    values = list(np.log10(20.0 * (1 + 0.01 * rng.standard_normal(60))))
    trend = Trend("perplexity", log=True, total=60)
    trend.values = values
    lo, hi = trend.frame()
    assert hi - lo >= 0.2 and lo <= min(values) and hi >= max(values)

    def levels(rows: list[str]) -> set[int]:  # the height each column reaches, in eighths
        return {sum(render.EIGHTHS.index(r[i]) for r in rows) for i in range(len(rows[0]))}

    framed = levels(render.sparkline(values, 60, 2, 60, (lo, hi)))
    unframed = levels(render.sparkline(values, 60, 2, 60))
    assert max(framed) - min(framed) <= 3  # of 16 eighths
    assert max(unframed) - min(unframed) >= 14  # noise over the full height


def test_trend_tails_are_never_cut_into_other_numbers():
    """A band past float's range does not fit the tail at 3 digits: fewer digits, never a cut number."""
    from collapse_tui.tui.components.trend import TAIL_WIDTH, Trend

    trend = Trend("perplexity", log=True)
    trend.values = [0.6, 907.69]
    trend.band = (366.88, 1670.5)  # log10 values: 7.6e366 .. 3.2e1670
    head, spread = trend.tail()
    assert len(head) <= TAIL_WIDTH and len(spread) <= TAIL_WIDTH
    lo, hi = spread.removeprefix("seeds ").split("..")
    assert lo.endswith("e366") and hi.endswith("e1670")
    assert head == "4.9e907 ×1.2e907 vs g0"


def test_a_curves_marks_sit_where_the_sparkline_puts_the_same_values():
    """render.marks draws each column's value at the height sparkline gives it in the same frame: the top of
    a bar and the mark of the same value are in the same row, at the nearest of the five heights a cell has."""
    values = list(np.linspace(0.0, 1.0, 17)) + [math.nan]
    bars = render.sparkline(values, 18, 2, frame=(0.0, 1.0))
    marks = render.marks(values, 18, 2, None, (0.0, 1.0))
    for col in range(17):
        level = sum(render.EIGHTHS.index(row[col]) for row in bars)  # 1..16 eighths
        row = 1 - (level - 1) // 8  # rows top first
        assert marks[row][col] == render.MARKS[round(((level - 1) % 8) * 4 / 7)]
        assert marks[1 - row][col] == " "
    assert marks[0][17] == marks[1][17] == " "  # NaN: a gap
    assert render.marks([], 5, 2, None, (0.0, 1.0)) == [" " * 5] * 2


def test_a_marked_row_keeps_its_bars_and_draws_the_curve_where_they_leave_room():
    """A mark takes an empty cell with its own character; under a bar the bar's glyph stays, in the curve's
    colour; cells without a mark keep the bars' style."""
    from collapse_tui.tui.components.trend import BAR_STYLE, MARK_STYLE, marked

    content = marked("█▄  ", "⎺  ─")
    assert content.plain == "█▄ ─"
    assert [(s.start, s.end, str(s.style)) for s in content.spans] == [
        (0, 1, MARK_STYLE),
        (1, 3, BAR_STYLE),
        (3, 4, MARK_STYLE),
    ]

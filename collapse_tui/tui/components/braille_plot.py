"""textual-plot's PlotWidget (textual-plot 0.10.1, textual-hires-canvas 0.14.0) on canvases whose every line has a
style: until the plot sizes them to a new size (at its first layout, after each resize), a canvas draws the lines
past its buffer as a segment without one, on which Textual's NO_COLOR filter (Monochrome) fails."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid
from textual.strip import Strip
from textual_hires_canvas import Canvas
from textual_plot import PlotWidget
from textual_plot.plot_widget import Legend


class _StyledCanvas(Canvas):
    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if all(segment.style is not None for segment in strip):
            return strip
        return Strip.blank(self.size.width, self.rich_style)


class BraillePlot(PlotWidget):
    """PlotWidget, composed as PlotWidget.compose does, on _StyledCanvas."""

    def compose(self) -> ComposeResult:
        with Grid():
            for name in ("margin-top", "margin-left", "plot", "margin-bottom"):
                yield _StyledCanvas(1, 1, id=name)
        yield Legend(id="legend")

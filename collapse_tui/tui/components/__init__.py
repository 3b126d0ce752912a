"""The run screen's widgets, one a module."""

from .diff_pane import DiffPane
from .metrics_table import TABLE_ROWS, MetricsTable
from .progress_row import ProgressRow
from .sample_pane import SamplePane
from .samples_view import SamplesView
from .trend import Trend

__all__ = ["TABLE_ROWS", "DiffPane", "MetricsTable", "ProgressRow", "SamplePane", "SamplesView", "Trend"]

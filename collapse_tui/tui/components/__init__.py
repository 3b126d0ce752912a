"""The app's widgets, one a module: the start screen's and the run screen's (the sweep screen's is cell_table)."""

from .diff_pane import DiffPane
from .fields_form import FieldsForm
from .metrics_table import TABLE_ROWS, MetricsTable
from .plot_pane import PlotPane
from .preset_table import PresetTable
from .progress_row import ProgressRow
from .row_table import RowTable
from .runs_table import RunsTable
from .sample_pane import SamplePane
from .samples_view import SamplesView
from .trend import Trend

__all__ = [
    "TABLE_ROWS",
    "DiffPane",
    "FieldsForm",
    "MetricsTable",
    "PlotPane",
    "PresetTable",
    "ProgressRow",
    "RowTable",
    "RunsTable",
    "SamplePane",
    "SamplesView",
    "Trend",
]

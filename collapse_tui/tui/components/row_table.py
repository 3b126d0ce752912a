"""A table of rows, as tall as its rows and no taller: the start screen's presets and runs list share
the height the fields leave, 1fr each."""

from __future__ import annotations

from textual.widgets import DataTable


class RowTable(DataTable):
    """A DataTable that gives back the height its rows do not use, and keeps its cursor in view."""

    def fit(self) -> None:
        """No taller than its rows (a border line above and below, the header): leave the rest to the other."""
        self.styles.max_height = self.row_count + 3

    def on_resize(self) -> None:
        self.move_cursor(row=self.cursor_row)  # shorter (a field shown, a smaller terminal): keep the cursor in view

"""The run directories in the runs dir, the last started first: state, data mode, seeds, generations, name."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ...config import ConfigError
from ...numbers import seeds_text
from ...rundir import RunDir
from ..state import disk_state
from .row_table import RowTable

RUNS_LISTED = 50
COLUMNS = ("state", "mode", "seeds", "gens", "run")  # the name last: the columns line up before it


class RunsTable(RowTable):
    """Rows keyed by the run directory's path; a run whose files do not read is listed as 'unreadable'.
    Marked runs (for comparison) keep their marking order and a ✓ before their name while listed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.folder = Path(".")
        self.marked: dict[str, None] = {}  # run directories marked for comparison, in marking order

    def on_mount(self) -> None:
        for col in COLUMNS:
            self.add_column(col, key=col)

    def list_runs(self, folder: Path) -> None:
        """List the newest RUNS_LISTED run directories in folder (none when it cannot be read)."""
        self.folder = folder
        try:
            found = [RunDir(p) for p in folder.iterdir() if (p / "preset.toml").is_file()]
        except OSError:
            found = []
        statuses = {}
        for run in found:
            with contextlib.suppress(ConfigError):  # unreadable: listed as such, enter says what is wrong
                statuses[run.path] = run.read_status()
        found.sort(key=lambda r: (r.started(statuses.get(r.path, {})), r.path.name), reverse=True)
        found = found[:RUNS_LISTED]
        self.clear()
        self.marked = {k: None for k in self.marked if k in {str(r.path) for r in found}}
        for run in found:
            key = str(run.path)
            try:
                status, cfg = statuses[run.path], run.config()
            except (KeyError, ConfigError):  # the other runs stay usable
                self.add_row("unreadable", "", "", "?", self._label(key), key=key)
                continue
            gens = f"{status.get('generation', -1) + 1}/{status.get('generations', '?')}"
            self.add_row(disk_state(run, status), cfg.data.mode, seeds_text(cfg.seeds), gens, self._label(key), key=key)
        self.display = bool(found)
        self.fit()
        self._title()

    def toggle_mark(self) -> None:
        """Mark the run under the cursor, or unmark it."""
        if not self.row_count:
            return
        key = str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        if key in self.marked:
            del self.marked[key]
        else:
            self.marked[key] = None
        self.update_cell(key, "run", self._label(key))
        self._title()

    def _label(self, key: str) -> str:
        return f"✓ {Path(key).name}" if key in self.marked else Path(key).name

    def _title(self) -> None:
        marked = f" · {len(self.marked)} marked" if self.marked else ""
        self.border_title = f"runs in {self.folder}/ (enter opens, space marks, c compares){marked}"

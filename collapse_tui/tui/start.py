"""The start screen: pick a preset, adjust the common fields, start a run.

Fields become `--set` overrides applied to the preset as read, so every message is the CLI's own.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Select, Static

from ..config import Config, ConfigError
from ..preflight import check_runnable
from ..run_names import run_name
from ..rundir import RunDir
from .components import FieldsForm, PresetTable, RunsTable
from .components.preset_table import PresetEntry, device_label, folder_entries


class StartScreen(Screen):
    BINDINGS = [
        # priority: the preset table and the inputs would otherwise take enter for themselves
        Binding("enter", "start", "Start", priority=True),
        Binding("ctrl+l", "focus_presets", "Presets"),
        Binding("space", "mark", "Mark"),  # these two in the runs list only (check_action)
        Binding("c", "compare", "Compare"),
        Binding("q", "app.quit", "Quit"),  # not a priority: an input types its q (ctrl+q quits from anywhere)
    ]

    def __init__(self, entries: list[PresetEntry], selected: Path, overrides: list[str], runs_dir: Path):
        super().__init__()
        self.entries = {str(e.path): e for e in entries}
        self.selected = str(selected)
        self.overrides = list(overrides)
        self.runs_dir = runs_dir

    def compose(self) -> ComposeResult:
        yield Static("collapse-tui · pick a preset, adjust, enter to start", id="title")
        yield PresetTable(id="presets")
        yield Static(id="description")
        yield FieldsForm(self.runs_dir, id="fields")
        yield Static(id="message")
        yield RunsTable(id="runs")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(PresetTable)
        for entry in self.entries.values():
            table.add_entry(entry)
        keys = list(self.entries)
        table.move_cursor(row=keys.index(self.selected) if self.selected in keys else 0)
        self._fill_fields()
        self.list_runs()
        table.focus()

    def on_screen_resume(self) -> None:
        self.list_runs()  # back from a run: its state changed

    @property
    def marked(self) -> dict[str, None]:
        """Run directories marked for comparison, in marking order."""
        return self.query_one(RunsTable).marked

    @property
    def runs_folder(self) -> str:
        """The runs dir field, stripped ('' when empty)."""
        return self.query_one(FieldsForm).value("runs_dir")

    def list_runs(self) -> None:
        """Run directories already in the runs dir, the last started first: enter opens one (to browse or resume)."""
        self.query_one(RunsTable).list_runs(Path(self.runs_folder or "."))

    def _fill_fields(self) -> None:
        entry = self.entries[self.selected]
        desc = self.query_one("#description", Static)
        if entry.cfg is None:
            desc.update(Content.styled(f"{entry.path}: cannot be used", "$text-muted"))
        else:
            desc.update(Content.styled(entry.cfg.experiment["description"] or str(entry.path), "italic"))
        self.query_one(FieldsForm).fill(entry.cfg)
        self.validate()

    def config(self) -> Config:
        """The selected preset with the CLI's and the fields' overrides, validated as the CLI does."""
        entry = self.entries[self.selected]
        if entry.cfg is None or entry.preset is None:
            raise ConfigError(entry.error or f"{entry.path}: cannot be loaded")
        if not self.runs_folder:
            raise ConfigError("runs dir: expected a folder name")
        return entry.preset.config([*self.overrides, *self.query_one(FieldsForm).overrides()])

    def say(self, text: str, style: str = "bold $error") -> None:
        """The line under the fields: what is wrong, or what enter starts."""
        self.query_one("#message", Static).update(Content.styled(text, style))

    def validate(self) -> Config | None:
        try:
            cfg = self.config()
        except ConfigError as e:
            self.say(str(e))
            return None
        seeds = len(cfg.seeds)
        text = f"ready: {cfg.generations} generations × {seeds} seed{'s' * (seeds != 1)} on {device_label(cfg)}"
        self.say(f"{text}, into {self.runs_folder}/", "$success")
        return cfg

    @on(DataTable.RowHighlighted, "#presets")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        if key is not None and key != self.selected:
            self.selected = key
            self._fill_fields()

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Input.Changed | Select.Changed) -> None:
        self.validate()
        if event.control.id == "runs_dir":
            self.list_runs()

    @on(DataTable.RowSelected, "#runs")
    def _open_run(self, event: DataTable.RowSelected) -> None:
        from .run_screen import RunScreen

        try:
            run = RunDir.open(Path(str(event.row_key.value)))
            cfg = run.config()
            run.read_status(), run.read_metrics()  # an unreadable run: its one line, not the run screen
        except ConfigError as e:
            self.say(str(e))
            return
        self.app.push_screen(RunScreen(run, cfg))

    @on(DataTable.RowSelected, "#presets")
    def _row_selected(self) -> None:
        self.action_start()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "presets_dir":
            self.load_folder(event.value.strip())
        else:
            self.action_start()

    def load_folder(self, folder: str) -> None:
        path = Path(folder).expanduser()
        if not path.is_dir():
            self.say(f"presets folder {folder}: no such folder")
            return
        new = [e for e in folder_entries(path, self.overrides) if str(e.path) not in self.entries]
        if not new and not any(path.glob("*.toml")):
            self.say(f"presets folder {folder}: no .toml files in it")
            return
        table = self.query_one(PresetTable)
        for entry in new:
            self.entries[str(entry.path)] = entry
            table.add_entry(entry)
        if new:
            table.move_cursor(row=table.get_row_index(str(new[0].path)))
        table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # enter opens the data mode list, and picks from it
        in_select = self.focused is not None and any(isinstance(n, Select) for n in self.focused.ancestors_with_self)
        if action in ("mark", "compare"):  # shown and active in the runs list only
            return self.focused is not None and self.focused.id == "runs"
        return not (action == "start" and in_select)

    def action_mark(self) -> None:
        self.query_one(RunsTable).toggle_mark()

    def action_compare(self) -> None:
        from ..runs import load_runs
        from .compare_screen import CompareScreen

        if len(self.marked) < 2:
            self.say("compare: mark two or more runs (space), then c", "bold $warning")
            self.notify("mark two or more runs with space, then press c", title="compare", severity="warning")
            return
        try:
            runs = load_runs([Path(k) for k in self.marked])  # differences: each run minus the first marked
        except (ConfigError, OSError) as e:
            self.say(f"compare: {e}")
            return
        self.app.push_screen(CompareScreen(runs))

    def action_focus_presets(self) -> None:
        self.query_one(PresetTable).focus()

    def action_start(self) -> None:
        if self.focused is not None and self.focused.id == "runs":
            self.query_one(RunsTable).action_select_cursor()
            return
        if self.focused is not None and self.focused.id == "presets_dir":
            self.load_folder(self.query_one(FieldsForm).value("presets_dir"))
            return
        cfg = self.validate()
        if cfg is None:
            return
        runs_dir = Path(self.runs_folder)
        try:
            check_runnable(cfg)  # a missing package, an unreachable hub, no GPU, too little memory: nothing made
            rundir = RunDir.create(runs_dir, cfg, name=run_name(self.entries[self.selected].preset, cfg))
        except ConfigError as e:
            self.say(str(e))
            return
        from .run_screen import RunScreen  # the loop and its imports load when a run starts

        self.app.push_screen(RunScreen(rundir, cfg, start="new"))

"""The start screen: pick a preset, adjust the common fields, start a run.

Fields become `--set` overrides applied to the preset as read, so every message is the CLI's own.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Select, Static

from ..config import MODES, Config, ConfigError
from ..engines import engine_class
from ..preflight import check_runnable, requirements
from ..preset_files import PresetFile, builtin_presets, read_preset
from ..run_names import run_name
from ..rundir import RunDir
from .state import disk_state

RUNS_LISTED = 50


@dataclass
class PresetEntry:
    name: str
    path: Path
    cfg: Config | None = None
    error: str | None = None  # why the preset does not load (shown when it is highlighted)
    preset: PresetFile | None = None  # the file as read once: the fields' overrides apply to it

    @classmethod
    def load(cls, path: Path, overrides: list[str], name: str | None = None) -> PresetEntry:
        try:
            preset = read_preset(str(path))
            return cls(name or path.stem, path, preset.config(overrides), preset=preset)
        except ConfigError as e:
            return cls(name or path.stem, path, error=str(e))


def has_gpu() -> bool:
    """An NVIDIA GPU is present, without importing torch (the start screen must stay light)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def device_label(cfg: Config) -> str:
    if not engine_class(cfg.engine_name).needs_torch:
        return "cpu"
    device = cfg.experiment["device"]
    if device == "auto":
        return "cuda" if has_gpu() else "cpu"
    return device


def seeds_text(seeds: list[int]) -> str:
    return str(len(seeds)) if seeds == list(range(len(seeds))) else "[" + ", ".join(map(str, seeds)) + "]"


class RowTable(DataTable):
    """The preset table and the runs list: they share, as 1fr each, the height the fields leave."""

    def fit(self) -> None:
        """No taller than its rows (a border line above and below, the header): leave the rest to the other."""
        self.styles.max_height = self.row_count + 3

    def on_resize(self) -> None:
        self.move_cursor(row=self.cursor_row)  # shorter (a field shown, a smaller terminal): keep the cursor in view


def builtin_entries(overrides: list[str]) -> list[PresetEntry]:
    return [PresetEntry.load(path, overrides, name) for name, path in sorted(builtin_presets().items())]


def folder_entries(folder: Path, overrides: list[str]) -> list[PresetEntry]:
    return [PresetEntry.load(path, overrides) for path in sorted(folder.glob("*.toml"))]


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
        self.marked: dict[str, None] = {}  # run directories marked for comparison, in marking order

    def compose(self) -> ComposeResult:
        yield Static("collapse-tui · pick a preset, adjust, enter to start", id="title")
        yield RowTable(id="presets", cursor_type="row")
        yield Static(id="description")
        with Grid(id="fields"):
            yield Label("generations")
            yield Input(id="generations", compact=True, tooltip="number of models trained, generation 0 included")
            yield Label("seeds")
            yield Input(id="seeds", compact=True, placeholder="4 or [0, 1, 2]", tooltip="a count n, or a list")
            yield Label("data mode")
            yield Select([(m, m) for m in MODES], id="mode", compact=True, allow_blank=False)
            yield Label("keep fraction")
            yield Input(id="keep_fraction", compact=True, tooltip="mode keep: share of real data kept")
            yield Label("runs dir")
            yield Input(str(self.runs_dir), id="runs_dir", compact=True)
            yield Label("presets dir")
            yield Input(id="presets_dir", compact=True, placeholder="a folder of .toml, then enter")
            yield Label("text dir", id="text_dir_label")  # text engines: local text instead of the hub's
            yield Input(id="text_dir", compact=True, placeholder="a folder with train.txt, test.txt (valid.txt)")
        yield Static(id="message")
        yield RowTable(id="runs", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#presets", DataTable)
        for col in ("preset", "engine", "data mode", "gens", "seeds", "device", "needs"):
            table.add_column(col, key=col)
        for entry in self.entries.values():
            self._add_row(entry)
        keys = list(self.entries)
        table.move_cursor(row=keys.index(self.selected) if self.selected in keys else 0)
        runs = self.query_one("#runs", DataTable)
        for col in ("state", "mode", "seeds", "gens", "run"):  # the name last: the columns line up before it
            runs.add_column(col, key=col)
        self._fill_fields()
        self.list_runs()
        table.focus()

    def on_screen_resume(self) -> None:
        self.list_runs()  # back from a run: its state changed

    def list_runs(self) -> None:
        """Run directories already in the runs dir, the last started first: enter opens one (to browse or resume)."""
        table = self.query_one("#runs", RowTable)
        folder = Path(self.query_one("#runs_dir", Input).value.strip() or ".")
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
        table.clear()
        self.marked = {k: None for k in self.marked if k in {str(r.path) for r in found}}
        for run in found:
            key = str(run.path)
            try:
                status, cfg = statuses[run.path], run.config()
            except (KeyError, ConfigError):  # the other runs stay usable
                table.add_row("unreadable", "", "", "?", self._run_label(key), key=key)
                continue
            gens = f"{status.get('generation', -1) + 1}/{status.get('generations', '?')}"
            table.add_row(
                disk_state(run, status), cfg.data["mode"], seeds_text(cfg.seeds), gens, self._run_label(key), key=key
            )
        table.display = bool(found)
        table.fit()
        self._runs_title()

    def _run_label(self, key: str) -> str:
        return f"✓ {Path(key).name}" if key in self.marked else Path(key).name

    def _runs_title(self) -> None:
        table = self.query_one("#runs", DataTable)
        folder = Path(self.query_one("#runs_dir", Input).value.strip() or ".")
        marked = f" · {len(self.marked)} marked" if self.marked else ""
        table.border_title = f"runs in {folder}/ (enter opens, space marks, c compares){marked}"

    def _add_row(self, entry: PresetEntry) -> None:
        cfg = entry.cfg
        if cfg is None:
            cells = (entry.name, "error", "", "", "", "", "")
        else:
            cells = (entry.name, cfg.engine_name, cfg.data["mode"], str(cfg.generations), str(len(cfg.seeds)))
            cells += (device_label(cfg), ",".join(requirements(cfg)) or "-")
        table = self.query_one("#presets", RowTable)
        table.add_row(*cells, key=str(entry.path))
        table.fit()

    def _fill_fields(self) -> None:
        entry = self.entries[self.selected]
        desc = self.query_one("#description", Static)
        if entry.cfg is None:
            desc.update(Content.styled(f"{entry.path}: cannot be used", "$text-muted"))
        else:
            cfg = entry.cfg
            desc.update(Content.styled(cfg.experiment["description"] or str(entry.path), "italic"))
            with self.prevent(Input.Changed, Select.Changed):
                self.query_one("#generations", Input).value = str(cfg.generations)
                self.query_one("#seeds", Input).value = seeds_text(cfg.seeds)
                self.query_one("#mode", Select).value = cfg.data["mode"]
                self.query_one("#keep_fraction", Input).value = f"{cfg.data['keep_fraction']:g}"
                self.query_one("#text_dir", Input).value = cfg.engine.get("text_dir", "")
        texts = entry.cfg is not None and "text_dir" in entry.cfg.engine  # an engine of local text (opt)
        self.query_one("#text_dir", Input).display = self.query_one("#text_dir_label").display = texts
        self.validate()

    def field_overrides(self) -> list[str]:
        def value(field: str) -> str:
            return self.query_one(f"#{field}", Input).value.strip()

        overrides = [
            f"experiment.generations={value('generations')}",
            f"experiment.seeds={value('seeds')}",
            f'data.mode="{self.query_one("#mode", Select).value}"',
            f"data.keep_fraction={value('keep_fraction')}",
        ]
        if self.query_one("#text_dir", Input).display:
            overrides.append(f"engine.text_dir={json.dumps(value('text_dir'))}")  # quoted: any path is a string
        return overrides

    def config(self) -> Config:
        """The selected preset with the CLI's and the fields' overrides, validated as the CLI does."""
        entry = self.entries[self.selected]
        if entry.cfg is None or entry.preset is None:
            raise ConfigError(entry.error or f"{entry.path}: cannot be loaded")
        if not self.query_one("#runs_dir", Input).value.strip():
            raise ConfigError("runs dir: expected a folder name")
        return entry.preset.config([*self.overrides, *self.field_overrides()])

    def say(self, text: str, style: str = "bold $error") -> None:
        """The line under the fields: what is wrong, or what enter starts."""
        self.query_one("#message", Static).update(Content.styled(text, style))

    def validate(self) -> Config | None:
        try:
            cfg = self.config()
        except ConfigError as e:
            self.say(str(e))
            return None
        runs = self.query_one("#runs_dir", Input).value.strip()
        seeds = len(cfg.seeds)
        text = f"ready: {cfg.generations} generations × {seeds} seed{'s' * (seeds != 1)} on {device_label(cfg)}"
        self.say(f"{text}, into {runs}/", "$success")
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
        for entry in new:
            self.entries[str(entry.path)] = entry
            self._add_row(entry)
        table = self.query_one("#presets", DataTable)
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
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        if key in self.marked:
            del self.marked[key]
        else:
            self.marked[key] = None
        table.update_cell(key, "run", self._run_label(key))
        self._runs_title()

    def action_compare(self) -> None:
        from ..compare import load_runs
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
        self.query_one("#presets", DataTable).focus()

    def action_start(self) -> None:
        if self.focused is not None and self.focused.id == "runs":
            self.query_one("#runs", DataTable).action_select_cursor()
            return
        if self.focused is not None and self.focused.id == "presets_dir":
            self.load_folder(self.query_one("#presets_dir", Input).value.strip())
            return
        cfg = self.validate()
        if cfg is None:
            return
        runs_dir = Path(self.query_one("#runs_dir", Input).value.strip())
        try:
            check_runnable(cfg)  # a missing package, an unreachable hub, no GPU, too little memory: nothing made
            rundir = RunDir.create(runs_dir, cfg, name=run_name(self.entries[self.selected].preset, cfg))
        except ConfigError as e:
            self.say(str(e))
            return
        from .run_screen import RunScreen  # the loop and its imports load when a run starts

        self.app.push_screen(RunScreen(rundir, cfg, start="new"))

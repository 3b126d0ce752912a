"""The common fields of a preset (generations, seeds, data mode, keep fraction, local text) and the
folders runs and presets come from. A field's tooltip is its key's help from the Param tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Input, Label, Select

from ...config import DATA, EXPERIMENT, MODES, Config
from ...engines import engine_class
from ...numbers import seeds_text


class FieldsForm(Grid):
    """Each preset field becomes a `--set` override (overrides()), so a value is checked as the CLI checks it."""

    def __init__(self, runs_dir: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs_dir = runs_dir

    def compose(self) -> ComposeResult:
        yield Label("generations")
        yield Input(id="generations", compact=True, tooltip=EXPERIMENT["generations"].help)
        yield Label("seeds")
        yield Input(id="seeds", compact=True, placeholder="4 or [0, 1, 2]", tooltip=EXPERIMENT["seeds"].help)
        yield Label("data mode")
        mode = Select([(m, m) for m in MODES], id="mode", compact=True, allow_blank=False)
        mode.tooltip = DATA["mode"].help
        yield mode
        yield Label("keep fraction")
        yield Input(id="keep_fraction", compact=True, tooltip=DATA["keep_fraction"].help)
        yield Label("runs dir")
        yield Input(str(self.runs_dir), id="runs_dir", compact=True)
        yield Label("presets dir")
        yield Input(id="presets_dir", compact=True, placeholder="a folder of .toml, then enter")
        yield Label("text dir", id="text_dir_label")  # text engines: local text instead of the hub's
        yield Input(id="text_dir", compact=True, placeholder="a folder with train.txt, test.txt (valid.txt)")

    def value(self, field: str) -> str:
        """An input's text, stripped."""
        return self.query_one(f"#{field}", Input).value.strip()

    def fill(self, cfg: Config | None) -> None:
        """Show a preset's values, without a Changed message per field; None (a preset that does not load)
        leaves them as they are. The text dir shows for an engine of local text only."""
        text_dir = self.query_one("#text_dir", Input)
        if cfg is not None:
            with self.prevent(Input.Changed, Select.Changed):
                self.query_one("#generations", Input).value = str(cfg.generations)
                self.query_one("#seeds", Input).value = seeds_text(cfg.seeds)
                self.query_one("#mode", Select).value = cfg.data.mode
                self.query_one("#keep_fraction", Input).value = f"{cfg.data.keep_fraction:g}"
                text_dir.value = cfg.engine.get("text_dir", "")
        texts = cfg is not None and "text_dir" in cfg.engine  # an engine of local text (opt)
        text_dir.display = self.query_one("#text_dir_label").display = texts
        if texts:
            text_dir.tooltip = engine_class(cfg.engine_name).PARAMS["text_dir"].help

    def overrides(self) -> list[str]:
        """The preset fields as `--set` overrides."""
        overrides = [
            f"experiment.generations={self.value('generations')}",
            f"experiment.seeds={self.value('seeds')}",
            f'data.mode="{self.query_one("#mode", Select).value}"',
            f"data.keep_fraction={self.value('keep_fraction')}",
        ]
        if self.query_one("#text_dir", Input).display:
            overrides.append(f"engine.text_dir={json.dumps(self.value('text_dir'))}")  # quoted: any path is a string
        return overrides

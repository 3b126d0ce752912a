"""The presets to pick from, a row each: engine, data mode, generations, seeds, device and what it needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import Config, ConfigError
from ...engines import engine_class
from ...preflight import requirements
from ...preset_files import PresetFile, builtin_presets, read_preset
from .row_table import RowTable

COLUMNS = ("preset", "engine", "data mode", "gens", "seeds", "device", "needs")


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


def builtin_entries(overrides: list[str]) -> list[PresetEntry]:
    return [PresetEntry.load(path, overrides, name) for name, path in sorted(builtin_presets().items())]


def folder_entries(folder: Path, overrides: list[str]) -> list[PresetEntry]:
    return [PresetEntry.load(path, overrides) for path in sorted(folder.glob("*.toml"))]


def has_gpu() -> bool:
    """An NVIDIA GPU is present, without importing torch (the start screen must stay light)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def device_label(cfg: Config) -> str:
    """Where the preset would run: 'cpu' for an engine without torch, else its device ('auto' decided)."""
    if not engine_class(cfg.engine_name).needs_torch:
        return "cpu"
    device = cfg.experiment["device"]
    if device == "auto":
        return "cuda" if has_gpu() else "cpu"
    return device


class PresetTable(RowTable):
    """Rows keyed by the preset's path; one that does not load reads 'error' (the screen says why)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", **kwargs)

    def on_mount(self) -> None:
        for col in COLUMNS:
            self.add_column(col, key=col)

    def add_entry(self, entry: PresetEntry) -> None:
        cfg = entry.cfg
        if cfg is None:
            cells = (entry.name, "error", "", "", "", "", "")
        else:
            cells = (entry.name, cfg.engine_name, cfg.data.mode, str(cfg.generations), str(len(cfg.seeds)))
            cells += (device_label(cfg), ",".join(requirements(cfg)) or "-")
        self.add_row(*cells, key=str(entry.path))
        self.fit()

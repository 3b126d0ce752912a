"""Preset files: where presets are found (this package's and plugins' built-in presets, a file named on
the command line) and how one is read: a regular file of at most MAX_PRESET_BYTES, UTF-8 TOML, nested no
deeper than a preset's levels. A preset is read once (PresetFile); its Config is made from what was read,
with the --set overrides or without them.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.resources
import os
import stat
import tomllib
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config, ConfigError
from .engines import PRESET_GROUP, entry_points
from .overrides import apply_override
from .validation import MAX_NESTING, NESTED, did_you_mean, too_deep, validate

MAX_PRESET_BYTES = 2**20


@dataclass(frozen=True)
class PresetFile:
    """A preset file as read: its path and its TOML document (never changed: each config() works on a copy)."""

    path: Path
    doc: dict[str, Any]

    def config(self, overrides: Sequence[str] = ()) -> Config:
        """The preset, named after its file unless it names itself, with the --set overrides applied (a path
        given there is relative to the working directory, one in the file to the file's folder), validated."""
        raw = copy.deepcopy(self.doc)
        raw.setdefault("experiment", {})
        if isinstance(raw["experiment"], dict):
            raw["experiment"].setdefault("name", self.path.stem)
        for item in overrides:
            apply_override(raw, item, Path.cwd())
        return validate(raw, base_dir=self.path.parent)


@functools.cache
def builtin_presets() -> dict[str, Path]:
    """name -> file of the presets that installed packages ship (entry-point group collapse_tui.presets:
    a package holding *.toml, or an object that is a folder or a list of files), this one's first."""
    found: dict[str, Path] = {}
    for target in entry_points(PRESET_GROUP).values():
        for path in _preset_files(target):
            found.setdefault(path.stem, path)
    return found


def _preset_files(target: str) -> list[Path]:
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        if attr:
            obj = getattr(obj, attr)
    except Exception:  # a broken plugin must not hide the other presets
        return []
    if isinstance(obj, types.ModuleType):
        obj = Path(str(importlib.resources.files(obj)))
    paths = [Path(p) for p in obj] if isinstance(obj, list | tuple) else [Path(obj)]
    files = [f for p in paths for f in (sorted(p.glob("*.toml")) if p.is_dir() else [p])]
    return [f for f in files if f.suffix == ".toml" and f.is_file()]


def find_preset(spec: str) -> Path:
    """A preset file path, or the name of a built-in preset."""
    path = Path(spec)
    builtin = builtin_presets()
    if path.suffix != ".toml" and spec in builtin and not path.exists():
        return builtin[spec]
    if path.is_dir():
        raise ConfigError(f"{spec}: is a directory, expected a preset TOML file")
    if not path.exists():
        hint = did_you_mean(spec, builtin) or f" (built-in presets: {', '.join(sorted(builtin))})"
        raise ConfigError(f"{spec}: no such preset file{hint}")
    return path


def read_preset(spec: str) -> PresetFile:
    """The preset file spec names (find_preset), read."""
    path = find_preset(spec)
    return PresetFile(path, read_toml(path))


def load_preset(spec: str, overrides: Sequence[str] = ()) -> Config:
    """The preset spec names, read, with the --set overrides, validated."""
    return read_preset(spec).config(overrides)


def read_toml(path: Path) -> dict[str, Any]:
    """A preset file's TOML, parsed; ConfigError with one line when it is not readable TOML text."""
    try:
        doc = tomllib.loads(_read_preset(path).decode("utf-8"))
    except RecursionError:
        raise ConfigError(f"{path}: {NESTED}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if (key := too_deep(doc, MAX_NESTING)) is not None:
        raise ConfigError(f"{path}: {key.lstrip('.')}: {NESTED}")
    return doc


def _read_preset(path: Path) -> bytes:
    """The file's bytes, if it is a regular file of at most MAX_PRESET_BYTES (/dev/zero is not a preset)."""
    with open(path, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ConfigError(f"{path}: not a regular file, expected a preset TOML file")
        data = f.read(MAX_PRESET_BYTES + 1)
    if len(data) > MAX_PRESET_BYTES:
        raise ConfigError(f"{path}: larger than a preset's {MAX_PRESET_BYTES // 2**20} MB limit")
    return data

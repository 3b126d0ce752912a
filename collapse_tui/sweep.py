"""Sweep presets: an ordinary preset plus a [sweep] table of dotted keys -> lists of values.

    [sweep]
    mode = "grid"                        # every combination (default), or "zip": the i-th of each list
    "data.keep_fraction" = [0, 0.1, 0.5]
    "engine.samples" = [100, 1000]

Each listed value is one value of the key, checked as the key's values are: "experiment.seeds" = [2, [0, 5]]
gives a cell of seeds 0 and 1 (a count) and one of seeds 0 and 5; chains.NAME.KEY sweeps a chain's key.
Named variants are sets of keys, a cell each, crossed with the [sweep] lists (which may then be absent):

    [variants.replace]                   # the baseline is a variant too: a variant sets at least one key
    "data.mode" = "replace"
    [variants.keep10]
    "data.mode" = "keep"
    "data.keep_fraction" = 0.1

A cell's values then hold VARIANT (its variant's name) first; a key is set by the variants or swept by
[sweep], never both. Each combination is a cell: the preset with those values, validated by
validation.validate like any preset, every cell before anything is created (a bad one: ConfigError naming
the cell). A cell is named by what it changes ('keep10-samples100', 'keep_fraction0.1-samples100'); its run
keeps the preset's name, so run labels read as the swept values. Built-in sweep presets live in
presets/sweeps/ (apart from the single-run presets).
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SECTIONS, Config, ConfigError
from .numbers import short
from .overrides import apply_override, is_key, set_key
from .preset_files import PresetFile, read_toml
from .run_names import name_part
from .validation import NAME_RE, check_name, did_you_mean, validate

SWEEP_MODES = ("grid", "zip")
MAX_CELLS = 1000
FIXED_KEYS = ("experiment.name", "experiment.engine")  # a cell is a setting of one experiment
VARIANT = "variant"  # a cell's variant among its values, and the variants' names among a sweep's axes


@dataclass(frozen=True)
class Cell:
    name: str  # also its run directory's name in the sweep directory
    values: dict[str, Any]  # swept key -> this cell's value
    config: Config


@dataclass(frozen=True)
class Sweep:
    name: str
    mode: str
    axes: dict[str, list[Any]]  # swept key -> its values, in the preset's order (VARIANT first: the names)
    cells: tuple[Cell, ...]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> the keys it sets

    @property
    def keys(self) -> list[str]:
        return list(self.axes)


@functools.cache
def builtin_sweeps() -> dict[str, Path]:
    """name -> file of the built-in sweep presets (presets/sweeps/*.toml)."""
    folder = Path(str(importlib.resources.files("collapse_tui.presets"))) / "sweeps"
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def read_target(spec: str) -> PresetFile | None:
    """The file spec names, read, when it may be a sweep preset: a built-in sweep's name or an existing .toml
    file (a preset or a sweep preset). None for anything else: a built-in preset's name, or a file that does
    not exist (read_preset names what is wrong with it)."""
    path = Path(spec)
    if not path.exists() and spec in builtin_sweeps():
        path = builtin_sweeps()[spec]
    elif path.suffix != ".toml" or not path.is_file():
        return None
    return PresetFile(path, read_toml(path))


def is_sweep(preset: PresetFile | None) -> bool:
    """Does the preset hold a [sweep] or a [variants] table?"""
    return preset is not None and any(isinstance(preset.doc.get(t), dict) for t in ("sweep", "variants"))


def load_sweep(path: Path, overrides: Sequence[str] = ()) -> Sweep:
    """The sweep preset at path, read, expanded and validated (expand)."""
    return expand(PresetFile(path, read_toml(path)), overrides)


def expand(preset: PresetFile, overrides: Sequence[str] = ()) -> Sweep:
    """Expand and validate every cell of a sweep preset; --set overrides apply to all cells."""
    raw = copy.deepcopy(preset.doc)
    table = raw.pop("sweep", {})
    if not isinstance(table, dict):
        raise ConfigError(f"sweep: expected a table [sweep], got {short(table)}")
    variants = _variants(raw.pop("variants", None))
    experiment = raw.setdefault("experiment", {})
    if isinstance(experiment, dict):
        experiment.setdefault("name", preset.path.stem)
    setters = {k: "is swept by [sweep]; change its list there" for k in table if k != "mode"}
    setters |= {k: f"is set by [variants.{v}]; change it there" for v, keys in variants.items() for k in keys}
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in setters:
            raise ConfigError(f"--set {item}: {key} {setters[key]}")
        apply_override(raw, item, Path.cwd())
    mode, axes = _axes(table, required=not variants)
    for name, keys in variants.items():
        if both := [k for k in keys if k in axes]:
            raise ConfigError(f"variants.{name}: {both[0]} is swept by [sweep] too; set a key in one place")
    if not isinstance(experiment, dict):
        raise ConfigError(f"experiment: expected a table [experiment], got {short(experiment)}")
    name = experiment.get("name")
    check_name(name)
    cells: list[Cell] = []
    names: dict[str, dict[str, Any]] = {}
    for values in _combinations(mode, axes, list(variants)):
        cell_name = _cell_name(values)
        if cell_name in names:
            raise ConfigError(f"[sweep]: cells {names[cell_name]} and {values} would have the same name {cell_name!r}")
        names[cell_name] = values
        cell_raw = copy.deepcopy(raw)
        sets = variants.get(values.get(VARIANT), {}) | {k: v for k, v in values.items() if k != VARIANT}
        try:
            for key, value in sets.items():
                set_key(cell_raw, key, value)
            cfg = validate(cell_raw, base_dir=preset.path.parent)
        except ConfigError as e:
            raise ConfigError(f"sweep cell {cell_name}: {e}") from None
        cells.append(Cell(cell_name, values, cfg))
    all_axes = ({VARIANT: list(variants)} if variants else {}) | axes
    return Sweep(name, mode, all_axes, tuple(cells), variants)


def _combinations(mode: str, axes: dict[str, list[Any]], variants: list[str]) -> list[dict[str, Any]]:
    """Every cell's values: each variant (VARIANT first) with each combination of the lists, counted first:
    40 keys of two values are 2^40 cells, and no list of them fits in memory."""
    lists = list(axes.values())
    grid = (math.prod(map(len, lists)) if mode == "grid" else len(lists[0])) if lists else 1
    count = max(len(variants), 1) * grid
    if count > MAX_CELLS:
        raise ConfigError(f"[sweep]: {count} cells, more than a sweep's {MAX_CELLS}")
    combos = list(itertools.product(*lists) if mode == "grid" or not lists else zip(*lists, strict=True))
    named = [{VARIANT: v} for v in variants] or [{}]
    return [variant | dict(zip(axes, combo)) for variant, combo in itertools.product(named, combos)]


def _check_key(where: str, key: str) -> None:
    """A key a sweep's cells may set (overrides.is_key), of a known section, and not one that names the
    experiment."""
    section = key.partition(".")[0]
    if not is_key(key) or section not in SECTIONS:
        hint = "" if section in SECTIONS else did_you_mean(section, SECTIONS)
        raise ConfigError(
            f"{where}.{key}: expected a dotted preset key SECTION.KEY, e.g. data.keep_fraction, or chains.NAME.KEY "
            f"for a chain's key{hint}"
        )
    if key in FIXED_KEYS:
        raise ConfigError(f"{where}.{key}: cannot be swept (a sweep is one experiment's settings)")


def _variants(table: Any) -> dict[str, dict[str, Any]]:
    """[variants.NAME] tables: name -> the dotted keys it sets (data.mode = "keep", unquoted, is a nested
    table in TOML: read as the key "data.mode" too)."""
    if table is None:
        return {}
    example = '[variants.keep10] "data.mode" = "keep"'
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"[variants]: expected tables [variants.NAME] of keys, e.g. {example}")
    variants = {}
    for name, keys in table.items():
        if not NAME_RE.fullmatch(name):
            raise ConfigError(
                f"variants.{name}: a variant's name (it names its cells) is letters, digits, '.', '_', '-'"
            )
        if not isinstance(keys, dict):
            raise ConfigError(f"variants.{name}: expected a table of keys, e.g. {example}, got {short(keys)}")
        if not keys:
            raise ConfigError(
                f"variants.{name}: sets no key; a variant is a set of keys, the baseline too: [variants.replace] "
                '"data.mode" = "replace"'
            )
        flat = _flatten(keys)
        for key in flat:
            _check_key(f"variants.{name}", key)
        variants[name] = flat
    return variants


def _flatten(keys: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"data": {"mode": "keep"}} -> {"data.mode": "keep"}; no preset key holds a table."""
    flat: dict[str, Any] = {}
    for key, value in keys.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def _axes(table: dict[str, Any], required: bool = True) -> tuple[str, dict[str, list[Any]]]:
    """The mode and the swept keys' lists; at least one unless the sweep has variants."""
    mode = table.get("mode", "grid")
    if mode not in SWEEP_MODES:
        raise ConfigError(f"sweep.mode: expected one of {', '.join(map(repr, SWEEP_MODES))}, got {mode!r}")
    axes: dict[str, list[Any]] = {}
    for key, values in table.items():
        if key == "mode":
            continue
        _check_key("sweep", key)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{key}: expected a non-empty list of values, got {values!r}")
        if len({repr(v) for v in values}) < len(values):
            raise ConfigError(f"sweep.{key}: a value is listed twice in {values!r}")
        axes[key] = values
    if not axes and required:
        raise ConfigError('[sweep]: no swept key; expected e.g. "data.keep_fraction" = [0, 0.1, 0.5]')
    lengths = {len(v) for v in axes.values()}
    if mode == "zip" and len(lengths) > 1:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in axes.items())
        raise ConfigError(f"[sweep]: mode 'zip' needs lists of one length, got {sizes}")
    return mode, axes


def _cell_name(values: dict[str, Any]) -> str:
    parts = [name_part(key.partition(".")[2], value) for key, value in values.items()]
    name = re.sub(r"[^A-Za-z0-9._-]", "", "-".join(parts)).lstrip("._-")[:64]
    return name or "cell"

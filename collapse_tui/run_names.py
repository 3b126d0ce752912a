"""Run names: a new run is named after its preset and what the --set overrides (or the start screen's
fields) change in it, so that a folder of runs reads as the settings compared.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, known_engine
from .preset_files import PresetFile

RUN_NAME_PARTS = 3  # changed keys named in a new run's name


def run_name(preset: PresetFile, cfg: Config) -> str:
    """A new run's name: cfg's name, then what cfg changes from the preset as its file has it, data keys
    first, at most RUN_NAME_PARTS of them: 'gmm-quick-keep-seeds2'. Paths are left out (they name the
    machine, not the experiment); a preset that is valid only with its overrides gives cfg's name alone."""
    try:
        base = preset.config()
    except ConfigError:
        return cfg.name
    paths = {k for k, p in known_engine(cfg.engine_name).PARAMS.items() if p.kind is Path}
    parts = []
    for section in ("data", "experiment", "engine"):
        old, new = base.section(section), cfg.section(section)
        for key, value in new.items():
            skip = key in (("name", "description", "engine") if section == "experiment" else paths)
            if value != old.get(key) and not skip:
                parts.append(name_part(key, value))
    for chain in cfg.chains:  # a chain's changed keys too
        old = next((c for c in base.chains if c["name"] == chain["name"]), {})
        paths = {k for k, p in known_engine(chain["engine"]).PARAMS.items() if p.kind is Path}
        for key, value in chain.items():
            if key not in ("name", "engine", *paths) and value != old.get(key):
                parts.append(name_part(key, value))
    name = "-".join([cfg.name, *parts[:RUN_NAME_PARTS]])
    return re.sub(r"[^A-Za-z0-9._-]", "", name)[:64]


def name_part(key: str, value: Any) -> str:
    """A string as itself ('keep' for data.mode), else the key and the value: 'seeds2' (a count), 'seeds1.5',
    'keep_fraction0.5', 'do_sample'."""
    if isinstance(value, str):
        return value or f"no_{key}"
    if isinstance(value, bool):
        return key if value else f"no_{key}"
    if key == "seeds" and isinstance(value, list):  # else a count: 'seeds2'
        return f"seeds{len(value)}" if value == list(range(len(value))) else "seeds" + ".".join(map(str, value))
    return f"{key}{value:g}" if isinstance(value, float) else f"{key}{value}"

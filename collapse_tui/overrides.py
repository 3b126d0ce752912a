"""Overrides: `--set SECTION.KEY=VALUE` and a sweep's cells set keys of a parsed preset before it is
validated; a key of a [[chains]] table is chains.NAME.KEY.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .config import ConfigError, known_engine
from .engines import engine_names
from .numbers import short
from .validation import MAX_NESTING, NESTED, too_deep


def apply_override(raw: dict[str, Any], item: str, cwd: Path | None = None) -> None:
    """--set section.key=value; the value is read as TOML, or taken as a string if it is not.
    A path given on the command line is relative to cwd, not to the preset file."""
    key, sep, text = item.partition("=")
    if not sep or not is_key(key.strip()):
        raise ConfigError(
            f"--set {item}: expected SECTION.KEY=VALUE, e.g. experiment.generations=5 (chains.NAME.KEY=VALUE "
            "for a chain's key)"
        )
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    except RecursionError:
        raise ConfigError(f"--set {key}: {NESTED}") from None
    if (path := too_deep(value, MAX_NESTING - 2)) is not None:  # under the preset and its section
        raise ConfigError(f"--set {key}{path}: {NESTED}")
    set_key(raw, key, value, cwd)


def is_key(key: str) -> bool:
    """A key that --set and [sweep] can set: SECTION.KEY, or chains.NAME.KEY for a key of a chain."""
    parts = key.split(".")
    return all(parts) and (len(parts) == 3 if parts[0] == "chains" else len(parts) == 2)


def set_key(raw: dict[str, Any], key: str, value: Any, cwd: Path | None = None) -> None:
    """Set the dotted key (is_key) of a parsed preset; a path given on the command line is relative to cwd
    (None: left as it is, relative to the preset file)."""
    parts = key.split(".")
    if parts[0] == "chains":
        _override_chain(raw, parts[1], parts[2], value, cwd)
        return
    section = raw.setdefault(parts[0], {})
    if not isinstance(section, dict):
        raise ConfigError(f"{parts[0]}: expected a table [{parts[0]}], got {short(section)}")
    engine = raw.get("experiment", {}).get("engine") if isinstance(raw.get("experiment"), dict) else None
    param = known_engine(engine).PARAMS.get(parts[1]) if parts[0] == "engine" and engine in engine_names() else None
    if cwd is not None and param is not None and param.kind is Path and isinstance(value, str) and value:
        value = str((cwd / value).resolve())
    section[parts[1]] = value


def _override_chain(raw: dict[str, Any], name: str, key: str, value: Any, cwd: Path | None) -> None:
    """--set chains.NAME.KEY=VALUE: a key of the [[chains]] table named NAME."""
    chains = raw.get("chains")
    table = (
        next((c for c in chains if isinstance(c, dict) and c.get("name") == name), None)
        if isinstance(chains, list)
        else None
    )
    if table is None:
        names = [c.get("name") for c in chains if isinstance(c, dict)] if isinstance(chains, list) else []
        raise ConfigError(
            f"--set chains.{name}.{key}: no chain named {name!r} (chains: {', '.join(map(str, names)) or 'none'})"
        )
    engine = table.get("engine")
    param = known_engine(engine).PARAMS.get(key) if engine in engine_names() else None
    if cwd is not None and param is not None and param.kind is Path and isinstance(value, str) and value:
        value = str((cwd / value).resolve())
    table[key] = value

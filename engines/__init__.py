"""Model families behind one contract (engines.base.Engine). No UI, no run files, no printing.

Engines are found through entry points, the built-in ones and a plugin's alike:

    [project.entry-points."collapse_tui.engines"]
    kde = "my_package.kde:KDEEngine"

so `pip install my-engine` adds an engine to presets, the app and reports. A plugin may also ship
presets (group `collapse_tui.presets`: a package whose folder holds *.toml, or an object that is a
folder or a list of files). The built-ins register the same way, so the package runs installed
(`pip install .`, or `pip install -e .` from a checkout), not from a bare checkout.

Engine modules keep their top-level imports light (numpy); torch-based engines import torch
inside their methods so that validating a preset never loads it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata

from .base import DataError, Engine, Fitted, Generated, Metric, Param, Report

__all__ = [
    "DataError",
    "Engine",
    "EngineError",
    "Fitted",
    "Generated",
    "Metric",
    "Param",
    "Report",
    "engine_class",
    "engine_names",
    "entry_points",
]

ENGINE_GROUP = "collapse_tui.engines"
PRESET_GROUP = "collapse_tui.presets"
DISTRIBUTION = "collapse-tui"


class EngineError(ValueError):
    """An engine that is not registered or cannot be loaded; str(err) is one line for the user."""


@functools.cache
def entry_points(group: str) -> dict[str, str]:
    """name -> 'module:attribute' of every installed distribution's entry points in group; the first
    registration of a name wins, this distribution's own first."""
    installed = importlib.metadata.entry_points(group=group)
    own = [ep for ep in installed if ep.dist is not None and ep.dist.name == DISTRIBUTION]
    found: dict[str, str] = {}
    for ep in [*own, *installed]:
        found.setdefault(ep.name, ep.value)
    return found


def engine_names() -> tuple[str, ...]:
    return tuple(entry_points(ENGINE_GROUP))


@functools.cache
def engine_class(name: str) -> type[Engine]:
    """The registered engine class; EngineError (one line) when it is unknown or does not load."""
    target = entry_points(ENGINE_GROUP).get(name)
    if target is None:
        raise EngineError(f"no engine named {name!r} (registered: {', '.join(engine_names())})")
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except Exception as e:  # a plugin's import error must not become a traceback
        raise EngineError(f"engine {name!r} ({target}) does not load: {type(e).__name__}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Engine)) or getattr(cls, "name", None) != name:
        raise EngineError(f"engine {name!r}: {target} is not an Engine subclass with name = {name!r}")
    return cls

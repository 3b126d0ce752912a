"""Model families behind one interface (engines.base.Engine). No UI, no run files, no printing.

Engine modules keep their top-level imports light (numpy); torch-based engines import torch
inside their methods so that validating a preset never loads it.
"""

from __future__ import annotations

import importlib

from .base import Engine, Param, Report

__all__ = ["ENGINES", "Engine", "Param", "Report", "engine_class"]

# name -> "module:Class", imported on first use
ENGINES: dict[str, str] = {
    "gaussian": "gaussian:GaussianEngine",
    "gmm": "gmm:GMMEngine",
    "vae": "vae:VAEEngine",
    "opt": "opt:OPTEngine",
}


def engine_class(name: str) -> type[Engine]:
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)

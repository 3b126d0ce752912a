"""Where numba keeps the compiled kernels: NUMBA_CACHE_DIR, else the user's cache folder
(~/.cache/collapse-tui/numba), which outlives a reinstall or a new virtual environment. Importing this module
points numba there; every kernel module imports it before it decorates its kernels (numba reads the folder then)."""

from __future__ import annotations

import os
from pathlib import Path

import numba

from .base import user_cache


def cache_dir() -> Path:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    return user_cache("numba")


def _use_cache_dir() -> None:
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
    except OSError:  # not writable: numba's own choice (beside the kernel's file, else its user folder)
        return
    numba.config.CACHE_DIR = str(cache_dir())


_use_cache_dir()

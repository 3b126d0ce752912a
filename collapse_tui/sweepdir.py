"""The sweep directory: a layer above runs. It holds

sweep.toml      the resolved sweep: name, mode, the swept keys' lists, and each cell's name and values
cells/NAME/     one ordinary run directory per cell (its own preset.toml, status.json, lock, ...)
logs/NAME.log   what a worker process printed while it ran the cell (--workers, Ray)

A cell's state is its run's (status.json and its lock), never stored twice. The directory is filled in
a hidden temp folder and renamed into place: a sweep directory that exists has every cell's run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w

from .config import ConfigError
from .rundir import STAMP, RunDir, RunDirError, atomic_write, fsync_dir, run_state
from .sweep import Sweep

SWEEP_FILE = "sweep.toml"
CELLS = "cells"
LOGS = "logs"


@dataclass(frozen=True)
class CellRun:
    name: str
    values: dict[str, Any]
    rundir: RunDir

    def state(self) -> tuple[str, int, str | None]:
        """(state, last finished generation, error) from the run's own status.json and lock."""
        status = self.rundir.read_status()
        return run_state(self.rundir, status), status.get("generation", -1), status.get("error")


class SweepDir:
    def __init__(self, path: Path, name: str, mode: str, axes: dict[str, list[Any]], cells: list[CellRun]):
        self.path, self.name, self.mode, self.axes, self.cells = path, name, mode, axes, cells

    @property
    def keys(self) -> list[str]:
        return list(self.axes)

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    @classmethod
    def create(cls, runs_dir: Path, sweep: Sweep) -> SweepDir:
        """A new sweep directory <name>-<timestamp> in runs_dir with a created run per cell; no lock is kept."""
        runs_dir = Path(runs_dir)
        tmp: Path | None = None
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{sweep.name}-", dir=runs_dir))
            (tmp / CELLS).mkdir()
            (tmp / LOGS).mkdir()
            for cell in sweep.cells:
                run = RunDir.create(tmp / CELLS, cell.config, name=cell.name)
                os.rename(run.path, tmp / CELLS / cell.name)  # the lock follows the inode
                RunDir(tmp / CELLS / cell.name).release()
            atomic_write(tmp / SWEEP_FILE, sweep_toml(sweep).encode())
            os.chmod(tmp, 0o755)
            stamp = datetime.now().strftime(STAMP)
            for n in range(1, 1000):
                path = runs_dir / (f"{sweep.name}-{stamp}" + (f"-{n}" if n > 1 else ""))
                if not os.path.lexists(path):
                    os.rename(tmp, path)
                    tmp = None
                    fsync_dir(runs_dir)
                    return cls.open(path)
            raise ConfigError(f"--runs-dir {runs_dir}: too many sweeps named {sweep.name}-{stamp}")
        except OSError as e:
            raise ConfigError(f"--runs-dir {runs_dir}: cannot create a sweep there: {e.strerror or e}") from None
        finally:
            if tmp is not None:  # not renamed into place (a cell that could not be made, a Ctrl-C): it goes
                shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def open(cls, path: Path | str) -> SweepDir:
        """Read and validate sweep.toml; RunDirError names what is wrong."""
        path = Path(path)
        file = path / SWEEP_FILE
        try:
            raw = tomllib.loads(file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: not a sweep directory (no {SWEEP_FILE})") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise RunDirError(f"{file}: cannot read it: {e}") from None
        sweep, cells = raw.get("sweep"), raw.get("cell")
        ok = (
            isinstance(sweep, dict)
            and isinstance(sweep.get("name"), str)
            and isinstance(sweep.get("axes"), dict)
            and isinstance(cells, list)
            and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in cells)
        )
        if not ok:
            raise RunDirError(f"{file}: expected [sweep] name, mode, axes and [[cell]] name, values")
        axes = sweep["axes"]
        runs = []
        for c in cells:
            name, values = c["name"], c.get("values")
            folder = path / CELLS / name
            if "/" in name or name.startswith(".") or not isinstance(values, dict) or set(values) != set(axes):
                raise RunDirError(f"{file}: cell {name!r} does not fit the sweep's keys {list(axes)}")
            if not (folder / "preset.toml").is_file():
                raise RunDirError(f"{file}: cell {name!r} has no run directory {folder}")
            runs.append(CellRun(name, values, RunDir(folder)))
        return cls(path, sweep["name"], sweep.get("mode", "grid"), axes, runs)


def sweep_toml(sweep: Sweep) -> str:
    doc = {
        "sweep": {"name": sweep.name, "mode": sweep.mode, "axes": sweep.axes},
        "cell": [{"name": c.name, "values": c.values} for c in sweep.cells],
    }
    return tomli_w.dumps(doc)


def is_sweep_dir(path: Path | str) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def expand(paths: list[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Run directories for `compare`, `export`, `report`: a sweep directory stands for its cells' runs.
    Returns the paths and, for each cell's path, its swept values."""
    out: list[str] = []
    values: dict[str, dict[str, Any]] = {}
    for p in paths:
        if not is_sweep_dir(p):
            out.append(p)
            continue
        for cell in SweepDir.open(p).cells:
            out.append(str(cell.rundir.path))
            values[str(cell.rundir.path)] = cell.values
    return out, values

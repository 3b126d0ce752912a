"""The sweep directory: a layer above runs. It holds

sweep.toml      the resolved sweep: name, mode, the swept keys' lists (and the variants' keys), and each
                cell's name and values
cells/NAME/     one ordinary run directory per cell (its own preset.toml, status.json, lock, ...)
logs/NAME.log   what a worker process printed while it ran the cell (--workers, Ray)
report/         what `report` draws (as in a run directory)

A cell's state is its run's (status.json and its lock), never stored twice. The directory is filled in
a hidden temp folder and renamed into place: a sweep directory that exists has every cell's run.
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import tomli_w

from .config import ConfigError
from .files import atomic_write, new_folder
from .rundir import RunDir, RunDirError, run_state
from .sweep import VARIANT, Sweep

SWEEP_FILE = "sweep.toml"
CELLS = "cells"
LOGS = "logs"
REPORT = "report"  # the one folder of a run or sweep directory that `report` and `export` may write in


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
    def __init__(
        self,
        path: Path,
        name: str,
        mode: str,
        axes: dict[str, list[Any]],
        cells: list[CellRun],
        variants: dict[str, dict[str, Any]] | None = None,
    ):
        self.path, self.name, self.mode, self.axes, self.cells = path, name, mode, axes, cells
        self.variants = variants or {}  # name -> the keys it sets (sweep.VARIANT among the axes then)

    @property
    def keys(self) -> list[str]:
        return list(self.axes)

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    @classmethod
    def create(cls, runs_dir: Path, sweep: Sweep) -> SweepDir:
        """A new sweep directory <name>-<timestamp> in runs_dir with a created run per cell, made whole by
        new_folder; no lock is kept."""

        def fill(tmp: Path) -> None:
            (tmp / CELLS).mkdir()
            (tmp / LOGS).mkdir()
            for cell in sweep.cells:
                run = RunDir.create(tmp / CELLS, cell.config, name=cell.name)
                os.rename(run.path, tmp / CELLS / cell.name)  # the lock follows the inode
                RunDir(tmp / CELLS / cell.name).release()
            atomic_write(tmp / SWEEP_FILE, sweep_toml(sweep).encode())

        return cls.open(new_folder(Path(runs_dir), sweep.name, sweep.name, "sweep", fill))

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
        except RecursionError:  # tomllib recurses per level of nesting
            raise RunDirError(f"{file}: nested deeper than any file this tool writes") from None
        sweep, cells = raw.get("sweep"), raw.get("cell")
        ok = (
            isinstance(sweep, dict)
            and isinstance(sweep.get("name"), str)
            and isinstance(sweep.get("axes"), dict)
            and isinstance(variants := sweep.get("variants", {}), dict)
            and all(isinstance(keys, dict) for keys in variants.values())
            and list(variants) == sweep["axes"].get(VARIANT, [])
            and isinstance(cells, list)
            and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in cells)
        )
        if not ok:
            raise RunDirError(f"{file}: expected [sweep] name, mode, axes, variants and [[cell]] name, values")
        axes = sweep["axes"]
        real = Path(os.path.realpath(path))
        if os.path.lexists(path / LOGS) and Path(os.path.realpath(path / LOGS)) != real / LOGS:
            raise RunDirError(f"{path / LOGS}: a link out of the sweep directory; workers' logs go only inside it")
        runs = []
        for c in cells:
            name, values = c["name"], c.get("values")
            folder = path / CELLS / name
            if "/" in name or name.startswith(".") or not isinstance(values, dict) or set(values) != set(axes):
                raise RunDirError(f"{file}: cell {name!r} does not fit the sweep's keys {list(axes)}")
            if Path(os.path.realpath(folder)) != real / CELLS / name:  # its run would be written elsewhere
                raise RunDirError(f"{folder}: a link out of the sweep directory; a cell's run is a folder inside it")
            if not (folder / "preset.toml").is_file():
                raise RunDirError(f"{file}: cell {name!r} has no run directory {folder}")
            runs.append(CellRun(name, values, RunDir(folder)))
        return cls(path, sweep["name"], sweep.get("mode", "grid"), axes, runs, variants)


def open_log(path: Path) -> BinaryIO:
    """A cell's log (logs/NAME.log), opened to append without following a link: a link at its name is
    replaced by a new file (as atomic_write replaces one), so what it pointed to stays as it was."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO
    try:
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            path.unlink()
            fd = os.open(path, flags, 0o644)
    except OSError as e:
        raise RunDirError(f"{path}: cannot open the cell's log: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunDirError(f"{path}: not a log this tool wrote (not a regular file)")
    return os.fdopen(fd, "ab")


def sweep_toml(sweep: Sweep) -> str:
    variants = {"variants": sweep.variants} if sweep.variants else {}  # sweeps without them: as before
    doc = {
        "sweep": {"name": sweep.name, "mode": sweep.mode, "axes": sweep.axes} | variants,
        "cell": [{"name": c.name, "values": c.values} for c in sweep.cells],
    }
    return tomli_w.dumps(doc)


def is_sweep_dir(path: Path | str) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def holder(path: Path) -> tuple[Path, str] | None:
    """The innermost run or sweep directory (path itself included) that holds path, and which it is."""
    for folder in (path, *path.parents):
        if (folder / SWEEP_FILE).is_file():
            return folder, "sweep"
        if (folder / "preset.toml").is_file():
            return folder, "run"
    return None


def check_output(path: Path | str, option: str) -> None:
    """ConfigError unless writing path (a file, or a folder to fill) leaves every run and sweep directory
    as it was: where it leads (links and '..' resolved, so a link to a run's file counts as that file)
    lies in none, or in the report/ folder of the innermost one; and a path named inside one (RUN/report)
    does not lead out of it through a link."""
    real = Path(os.path.realpath(path))
    for where in (real, Path(os.path.abspath(path))):
        found = holder(where)
        if found and not real.is_relative_to(Path(os.path.realpath(found[0])) / REPORT):
            folder, kind = found
            what = "leads into" if where == real else "is a link out of"
            why = "whose files are never written over" if where == real else "never written through"
            raise ConfigError(
                f"{option} {path}: {what} the {kind} directory {folder}, {why}; give a path outside it"
                f" (or in its {REPORT}/ folder)"
            )


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

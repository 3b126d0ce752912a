"""The run directory: the unit users keep, compare and resume. Every write is atomic.

preset.toml     resolved preset, as run
status.json     state, generation, heartbeat, pid, error, threads (per process, kept on resume), seconds
                (each finished generation's compute time)
metrics.jsonl   one row per (seed, generation), appended a generation at a time
samples/        what the sample panes show, gen-NNNNNN.npy (arrays) or .json (text)
state/          resume: checkpoint.json -> ckpt-NNNNNN/ (data, models, RNG states), reference-*/, and
                preset.toml as the run started (resume refuses a preset.toml edited since)
lock            held (flock) by the one process that writes the run, for as long as it lives
report/         what `report` draws: the one folder that report and export write in

Guarantees: one writer per run (the lock, taken before anything is written); a reader or a kill never
meets a partial file (temp file, fsync, rename; never through a link); every reader validates what it
reads and says in one line which file is wrong (RunDirError); resume never removes a row it did not
write after the checkpoint it resumes from.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import locks
from .config import Config, ConfigError
from .files import STAMP, atomic_write, file_key, fsync_dir, json_lines, new_folder, now_iso, npy_bytes
from .numbers import short
from .preset_files import load_preset
from .records import RunDirError, RunState, is_int, parse_json, valid_row, valid_status

MAX_SAMPLES_BYTES = 64 * 2**20  # a samples/ file larger than this is not a preview this tool wrote
STAMP_RE = re.compile(r"-(\d{8}-\d{6})(-\d+)?$")


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.metrics_path = self.path / "metrics.jsonl"
        self.status_path = self.path / "status.json"
        self.samples_dir = self.path / "samples"
        self.state_dir = self.path / "state"
        self.lock_path = self.path / "lock"
        self._config: tuple[tuple[int, ...] | None, Config] | None = None  # config(): (preset.toml's _file_key, it)

    @classmethod
    def create(
        cls, runs_dir: Path, cfg: Config, name: str | None = None, extra: Callable[[RunDir], None] | None = None
    ) -> RunDir:
        """A new run directory <name>-<timestamp> in runs_dir, made whole by new_folder, whose lock this process
        takes first: a run directory that exists is always complete and already owned. It keeps cfg. extra:
        what else fills it before it appears (a branch's rows and state: branch.py)."""

        def fill(tmp: Path) -> None:
            run = cls(tmp)
            run.acquire()
            for sub in (run.samples_dir, run.state_dir):
                sub.mkdir()
            atomic_write(tmp / "preset.toml", cfg.to_toml().encode())
            atomic_write(run.state_dir / "preset.toml", cfg.to_toml().encode())
            atomic_write(run.metrics_path, b"")
            run.write_status(state=RunState.CREATED, generation=-1, generations=cfg.generations, error=None)
            if extra is not None:
                extra(run)

        run = cls(new_folder(Path(runs_dir), name or cfg.name, cfg.name, "run", fill))
        run.keep_config(cfg)
        return run

    @classmethod
    def open(cls, path: Path) -> RunDir:
        run = cls(path)
        if not (run.path / "preset.toml").is_file():
            raise ConfigError(f"{path}: not a run directory (no preset.toml)")
        return run

    def config(self) -> Config:
        """The run's preset (preset.toml, validated as any preset), parsed again only when the file has changed
        since this object last read or wrote it."""
        key = file_key(self.path / "preset.toml")
        if key is None or self._config is None or self._config[0] != key:
            self._config = (key, load_preset(str(self.path / "preset.toml")))
        return self._config[1]

    def keep_config(self, cfg: Config) -> None:
        """cfg is what preset.toml now holds (this process wrote it): config() returns it."""
        self._config = (file_key(self.path / "preset.toml"), cfg)

    def started(self, status: dict[str, Any]) -> float:
        """When the run started (status.json's 'started'), else when it was created (its name's timestamp), in
        seconds since the epoch; 0 when neither says. Lists of runs sort by this: a report touches mtimes."""
        with contextlib.suppress(KeyError, ValueError):
            return datetime.fromisoformat(status["started"]).timestamp()
        with contextlib.suppress(TypeError, ValueError):  # TypeError: no timestamp in the name
            return datetime.strptime(STAMP_RE.search(self.path.name)[1], STAMP).timestamp()
        return 0.0

    # the lock (locks.py)
    def acquire(self) -> None:
        """Become the run's only writer for the rest of this process's life: RunDirError naming the holder's
        pid when another live process writes it."""
        try:
            locks.acquire(self.path)
        except locks.LockHeld as e:
            raise RunDirError(str(e)) from None

    def release(self) -> None:
        locks.release(self.path)

    def writer_alive(self) -> bool:
        return locks.writer_alive(self.path)

    # status.json
    def read_status(self) -> dict[str, Any]:
        """status.json, validated ({} while it does not exist)."""
        try:
            raw = self.status_path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise RunDirError(f"{self.status_path}: cannot read it: {e.strerror}") from None
        return valid_status(parse_json(raw, self.status_path), self.status_path)

    def write_status(self, **fields: Any) -> None:
        status = self.read_status() | fields | {"heartbeat": now_iso(), "pid": os.getpid()}
        atomic_write(self.status_path, json.dumps(status, indent=1).encode())

    # metrics.jsonl
    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Add rows by rewriting the file atomically: a reader or a kill never meets a partial line
        (a plain append of several pages can be cut by SIGKILL or seen half-written)."""
        text = json_lines(rows)
        try:
            old = self.metrics_path.read_bytes()
        except FileNotFoundError:
            old = b""
        atomic_write(self.metrics_path, old + text)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every row, validated: RunDirError names the first line that is not a metrics row."""
        lines, lists = self._metrics_lines(), {}
        return [self._row(lines, i, lists) for i in range(len(lines))]

    def read_metrics_ends(self) -> list[dict[str, Any]]:
        """The rows of the first and of the last generation, validated, without parsing those between
        (the file holds the generations in order): what a summary of a long run reads."""
        lines, lists = self._metrics_lines(), {}
        head = self._one_generation(lines, range(len(lines)), lists)
        tail = self._one_generation(lines, range(len(lines) - 1, len(head) - 1, -1), lists)
        return head + tail[::-1]

    def _one_generation(
        self, lines: list[bytes], order: range, lists: dict[str, dict[str, bool]]
    ) -> list[dict[str, Any]]:
        """The rows of the lines in order while their generation is the first one's."""
        rows: list[dict[str, Any]] = []
        for i in order:
            row = self._row(lines, i, lists)
            if rows and row["generation"] != rows[0]["generation"]:
                break
            rows.append(row)
        return rows

    def _metrics_lines(self) -> list[bytes]:
        try:
            raw = self.metrics_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise RunDirError(f"{self.metrics_path}: cannot read it: {e.strerror}") from None
        if raw and not raw.endswith(b"\n"):
            raise RunDirError(f"{self.metrics_path}: the last line is cut off (not written by collapse-tui)")
        return raw.splitlines()

    def _row(self, lines: list[bytes], i: int, lists: dict[str, dict[str, bool]]) -> dict[str, Any]:
        return valid_row(parse_json(lines[i], self.metrics_path, i + 1), self.metrics_path, i + 1, lists)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        atomic_write(self.metrics_path, json_lines(rows))

    # samples/
    def chain_view(self, chain: str) -> RunDir:
        """The run as one of its chains' readers see it: the chain's samples in samples/ (read only)."""
        view = RunDir(self.path)
        view.samples_dir = self.samples_dir / chain
        return view

    def chain_samples_dir(self, chain: str = "") -> Path:
        """samples/, or samples/<chain>/ for a chain of a multi-chain run."""
        return self.samples_dir / chain if chain else self.samples_dir

    def save_samples(self, generation: int, preview: np.ndarray | list[str], chain: str = "") -> None:
        folder = self.chain_samples_dir(chain)
        folder.mkdir(exist_ok=True)
        if isinstance(preview, np.ndarray):
            atomic_write(folder / f"gen-{generation:06d}.npy", npy_bytes(preview), durable=False)
        else:
            atomic_write(folder / f"gen-{generation:06d}.json", json.dumps(preview).encode(), durable=False)

    def sample_generations(self, chain: str = "") -> list[int]:
        gens = set()
        for p in self.chain_samples_dir(chain).glob("gen-*.*"):
            if not p.name.startswith(".") and p.stem[4:].isdigit() and p.suffix in (".npy", ".json"):
                gens.add(int(p.stem[4:]))
        return sorted(gens)

    def samples_file(self, generation: int, chain: str = "") -> Path:
        """The file that holds (or would hold) a generation's preview: gen-NNNNNN.npy, else .json."""
        base = self.chain_samples_dir(chain) / f"gen-{generation:06d}"
        return base.with_suffix(".npy") if base.with_suffix(".npy").exists() else base.with_suffix(".json")

    def load_samples(self, generation: int, chain: str = "") -> np.ndarray | list[str]:
        """A generation's preview: an array of at least one dimension, or a list of strings (RunDirError else)."""
        path = self.samples_file(generation, chain)
        try:
            size = path.stat().st_size
            if not stat.S_ISREG(path.stat().st_mode) or size > MAX_SAMPLES_BYTES:
                raise RunDirError(f"{path}: not a preview this tool wrote ({size} bytes)")
            if path.suffix == ".npy":
                x = np.load(path, allow_pickle=False)
                if not isinstance(x, np.ndarray) or x.ndim == 0 or x.dtype.kind not in "fiub":
                    raise RunDirError(f"{path}: expected an array of numbers with at least one dimension")
                return x
            texts = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError) as e:  # RecursionError: JSON nested ~1000 levels
            raise RunDirError(f"{path}: cannot read it: {e}") from None
        if not (isinstance(texts, list) and all(isinstance(t, str) for t in texts)):
            raise RunDirError(f"{path}: expected a list of strings")
        return texts

    # state/
    def new_state_dir(self, name: str) -> Path:
        """A fresh temp folder to fill; publish it with publish_state_dir."""
        tmp = self.state_dir / f".{name}.tmp"
        _remove(tmp)
        tmp.mkdir()
        return tmp

    def publish_state_dir(self, tmp: Path) -> Path:
        final = tmp.with_name(tmp.name[1:].removesuffix(".tmp"))
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        _remove(final)
        os.replace(tmp, final)
        fsync_dir(self.state_dir)
        return final

    def write_checkpoint(self, generation: int, ckpt: Path) -> None:
        """Point state/checkpoint.json at ckpt, then drop older checkpoints."""
        atomic_write(
            self.state_dir / "checkpoint.json", json.dumps({"generation": generation, "dir": ckpt.name}).encode()
        )
        for old in self.state_dir.glob("ckpt-*"):
            if old != ckpt:
                _remove(old)

    def read_checkpoint(self) -> tuple[int, Path] | None:
        """(generation, folder) of the last checkpoint, or None when there is none; RunDirError when it is
        not one this tool wrote."""
        path = self.state_dir / "checkpoint.json"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RunDirError(f"{path}: cannot read it: {e.strerror}") from None
        info = parse_json(raw, path)
        ok = isinstance(info, dict) and is_int(info.get("generation")) and isinstance(info.get("dir"), str)
        if not ok or info["generation"] < 0 or not info["dir"].startswith("ckpt-") or "/" in info["dir"]:
            raise RunDirError(f"{path}: expected {{'generation': N, 'dir': 'ckpt-...'}}, got {short(info)}")
        folder = self.state_dir / info["dir"]
        if not folder.is_dir():
            raise RunDirError(f"{path}: points at {folder}, which does not exist")
        return info["generation"], folder


def _remove(path: Path) -> None:
    """Remove a folder of state/, or a link at its name (never what the link points to)."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def run_state(rundir: RunDir, status: dict[str, Any]) -> RunState:
    """status.json's state, with 'running' turned into 'crashed' when no live process holds the lock."""
    state = RunState(status.get("state", RunState.CREATED))
    if state is RunState.RUNNING and not rundir.writer_alive():
        return RunState.CRASHED
    return state

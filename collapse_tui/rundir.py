"""The run directory: the unit users keep, compare and resume. Every write is atomic.

preset.toml     resolved preset, as run
status.json     state, generation, heartbeat, pid, error
metrics.jsonl   one row per (seed, generation), appended a generation at a time
samples/        what the sample panes show, gen-NNNNNN.npy (arrays) or .json (text)
state/          resume: checkpoint.json -> ckpt-NNNNNN/ (data, models, RNG states), reference/
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, ConfigError, load_preset


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file beside path, fsync, rename: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.metrics_path = self.path / "metrics.jsonl"
        self.status_path = self.path / "status.json"
        self.samples_dir = self.path / "samples"
        self.state_dir = self.path / "state"

    @classmethod
    def create(cls, runs_dir: Path, cfg: Config) -> RunDir:
        """A new run directory named <name>-<timestamp> in runs_dir, filled in a hidden temp folder
        and renamed into place, so a run directory that exists is always complete."""
        runs_dir = Path(runs_dir)
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.name}-", dir=runs_dir))
        except OSError as e:
            raise ConfigError(f"--runs-dir {runs_dir}: cannot create a run there: {e.strerror}") from None
        run = cls(tmp)
        for sub in (run.samples_dir, run.state_dir):
            sub.mkdir()
        atomic_write(tmp / "preset.toml", cfg.to_toml().encode())
        run.metrics_path.touch()
        run.write_status(state="created", generation=-1, generations=cfg.generations, error=None)
        os.chmod(tmp, 0o755)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            path = runs_dir / (f"{cfg.name}-{stamp}" + (f"-{n}" if n > 1 else ""))
            if not path.exists():
                os.rename(tmp, path)
                fsync_dir(runs_dir)
                return cls(path)
        raise ConfigError(f"--runs-dir {runs_dir}: too many runs named {cfg.name}-{stamp}")

    @classmethod
    def open(cls, path: Path) -> RunDir:
        run = cls(path)
        if not (run.path / "preset.toml").is_file():
            raise ConfigError(f"{path}: not a run directory (no preset.toml)")
        return run

    def config(self) -> Config:
        return load_preset(str(self.path / "preset.toml"))

    # status.json
    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def write_status(self, **fields: Any) -> None:
        status = self.read_status() | fields | {"heartbeat": now_iso(), "pid": os.getpid()}
        atomic_write(self.status_path, json.dumps(status, indent=1).encode())

    # metrics.jsonl
    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Add rows by rewriting the file atomically: a reader or a kill never meets a partial line
        (a plain append of several pages can be cut by SIGKILL or seen half-written)."""
        text = "".join(json.dumps({k: _json_safe(v) for k, v in r.items()}) + "\n" for r in rows)
        try:
            old = self.metrics_path.read_bytes()
        except FileNotFoundError:
            old = b""
        atomic_write(self.metrics_path, old + text.encode())

    def read_metrics(self) -> list[dict[str, Any]]:
        rows = []
        try:
            text = self.metrics_path.read_text()
        except FileNotFoundError:
            return rows
        for line in text.splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break  # a torn last line (never written by this tool, but be safe)
        return rows

    def truncate_metrics(self, last_generation: int) -> None:
        """Keep only rows up to last_generation: rows after a checkpoint are computed again."""
        rows = [r for r in self.read_metrics() if r["generation"] <= last_generation]
        atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows).encode())

    # samples/
    def save_samples(self, generation: int, preview: np.ndarray | list[str]) -> None:
        if isinstance(preview, np.ndarray):
            path = self.samples_dir / f"gen-{generation:06d}.npy"
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, preview, allow_pickle=False)
            os.replace(tmp, path)
        else:
            atomic_write(self.samples_dir / f"gen-{generation:06d}.json", json.dumps(preview).encode())

    def sample_generations(self) -> list[int]:
        return sorted(int(p.stem[4:]) for p in self.samples_dir.glob("gen-*.*") if not p.name.startswith("."))

    def load_samples(self, generation: int) -> np.ndarray | list[str]:
        base = self.samples_dir / f"gen-{generation:06d}"
        if base.with_suffix(".npy").exists():
            return np.load(base.with_suffix(".npy"), allow_pickle=False)
        return json.loads(base.with_suffix(".json").read_text())

    # state/
    def new_state_dir(self, name: str) -> Path:
        """A fresh temp folder to fill; publish it with publish_state_dir."""
        tmp = self.state_dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        return tmp

    def publish_state_dir(self, tmp: Path) -> Path:
        final = tmp.with_name(tmp.name[1:].removesuffix(".tmp"))
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        shutil.rmtree(final, ignore_errors=True)
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
                shutil.rmtree(old, ignore_errors=True)

    def read_checkpoint(self) -> tuple[int, Path] | None:
        try:
            info = json.loads((self.state_dir / "checkpoint.json").read_text())
        except (OSError, ValueError):
            return None
        return int(info["generation"]), self.state_dir / info["dir"]


def run_state(status: dict[str, Any]) -> str:
    """status.json's state, with 'running' turned into 'crashed' when its process is gone."""
    state = status.get("state", "created")
    if state == "running" and not (status.get("pid") == os.getpid() or process_alive(status)):
        return "crashed"
    return state


def process_alive(status: dict[str, Any]) -> bool:
    """Is the status's pid a live collapse-tui process (not a later one that reused the number)?"""
    pid = status.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return b"collapse" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid


def open_for_resume(path: str) -> RunDir:
    """Open a run directory to continue it; refused while the run that wrote it is still live."""
    rundir = RunDir.open(Path(path))
    status = rundir.read_status()
    if status.get("state") == "running" and process_alive(status):
        raise ConfigError(f"{path}: the run is still running (pid {status['pid']})")
    return rundir

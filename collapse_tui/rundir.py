"""The run directory: the unit users keep, compare and resume. Every write is atomic.

preset.toml     resolved preset, as run
status.json     state, generation, heartbeat, pid, error, threads (per process, kept on resume)
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
import errno
import fcntl
import io
import json
import math
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .chains import CHAIN_NAME_RE, row_key
from .config import Config, ConfigError, chain_specs
from .numbers import short
from .preflight import check_runnable
from .preset_files import load_preset

STATES = ("created", "running", "finished", "stopped", "failed")
STATUS_TYPES: dict[str, tuple[type, ...]] = {
    "state": (str,),
    "generation": (int,),
    "generations": (int,),
    "checkpoint_generation": (int,),
    "pid": (int,),
    "heartbeat": (str,),
    "started": (str,),
    "error": (str, type(None)),
    "threads": (int,),  # per process, chosen at the run's start and kept (threads.py)
}
MAX_PID = 2**22  # Linux's pid_max ceiling
MAX_ROW_INT = 2**64  # a metrics row's seed and generation are below this (numpy's seeds are)
ROW_IDS = ("seed", "generation", "chain")  # what identifies a metrics row; its other keys are metrics
FLOAT_MAX = sys.float_info.max
MAX_SAMPLES_BYTES = 64 * 2**20  # a samples/ file larger than this is not a preview this tool wrote
STAMP = "%Y%m%d-%H%M%S"  # a run directory is named <name>-<STAMP of its creation>[-n]
STAMP_RE = re.compile(r"-(\d{8}-\d{6})(-\d+)?$")
LOCK_WAIT = 0.5  # seconds a writer retries the lock: a reader's probe holds it for microseconds

_held: dict[tuple[int, int], int] = {}  # runs this process writes: (device, inode) -> lock descriptor, until exit


class RunDirError(ConfigError):
    """A run directory that cannot be read or written as asked; str(err) names the file and the problem."""


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write to a new temp file beside path, fsync, rename: readers see the old file or the new one. The
    temp file is created exclusively (a link planted at its name is never followed) and removed on failure;
    a path that is a link is replaced, never written through. durable=False skips the two fsyncs (still
    atomic for readers; a power cut may lose the file): for sample previews, written every generation."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def printable(text: str) -> str:
    """Text that encodes as UTF-8: the bytes of a non-UTF-8 file name (lone surrogates once Python has
    decoded it) shown as \\xNN, so that a report or a print names the path instead of failing."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to (e.g. from a JSON escape)
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_lines(rows: list[dict[str, Any]]) -> bytes:
    """Metrics rows as JSON lines, non-finite floats as null (JSON has no NaN or infinity). orjson:
    the standard library's encoder took a tenth of a 2001-generation gmm run. The newline added here,
    not by OPT_APPEND_NEWLINE, which is 4x slower."""
    return b"".join([orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for r in rows])


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def new_folder(parent: Path, name: str, prefix: str, what: str, fill: Callable[[Path], None]) -> Path:
    """parent/<name>-<timestamp>[-n], whole or not at all: fill(tmp) makes its files in a hidden temp folder
    .<prefix>-* in parent, which is then renamed into place (a dangling link of that name counts as taken).
    An OSError is a ConfigError naming parent and what is made ('run', 'sweep'); the temp folder goes, and
    the lock this process took in it."""
    tmp: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=parent))
        fill(tmp)
        os.chmod(tmp, 0o755)
        stamp = datetime.now().strftime(STAMP)
        for n in range(1, 1000):
            path = parent / (f"{name}-{stamp}" + (f"-{n}" if n > 1 else ""))
            if not os.path.lexists(path):
                os.rename(tmp, path)  # a lock goes with the folder
                tmp = None
                fsync_dir(parent)
                return path
        raise ConfigError(f"--runs-dir {parent}: too many {what}s named {name}-{stamp}")
    except OSError as e:
        raise ConfigError(f"--runs-dir {parent}: cannot create a {what} there: {e.strerror or e}") from None
    finally:
        if tmp is not None:  # not renamed into place (an error, a cell that could not be made, a Ctrl-C)
            _release(tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def _file_key(path: Path) -> tuple[int, ...] | None:
    """What changes when a file is replaced or written: its device, inode, size, mtime; None when it cannot
    be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


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
    def create(cls, runs_dir: Path, cfg: Config, name: str | None = None) -> RunDir:
        """A new run directory <name>-<timestamp> in runs_dir, made whole by new_folder, whose lock this process
        takes first: a run directory that exists is always complete and already owned. It keeps cfg."""

        def fill(tmp: Path) -> None:
            run = cls(tmp)
            run.acquire()
            for sub in (run.samples_dir, run.state_dir):
                sub.mkdir()
            atomic_write(tmp / "preset.toml", cfg.to_toml().encode())
            atomic_write(run.state_dir / "preset.toml", cfg.to_toml().encode())
            atomic_write(run.metrics_path, b"")
            run.write_status(state="created", generation=-1, generations=cfg.generations, error=None)

        run = cls(new_folder(Path(runs_dir), name or cfg.name, cfg.name, "run", fill))
        run._keep(cfg)
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
        key = _file_key(self.path / "preset.toml")
        if key is None or self._config is None or self._config[0] != key:
            self._config = (key, load_preset(str(self.path / "preset.toml")))
        return self._config[1]

    def _keep(self, cfg: Config) -> None:
        """cfg is what preset.toml now holds (this process wrote it): config() returns it."""
        self._config = (_file_key(self.path / "preset.toml"), cfg)

    def started(self, status: dict[str, Any]) -> float:
        """When the run started (status.json's 'started'), else when it was created (its name's timestamp), in
        seconds since the epoch; 0 when neither says. Lists of runs sort by this: a report touches mtimes."""
        with contextlib.suppress(KeyError, ValueError):
            return datetime.fromisoformat(status["started"]).timestamp()
        with contextlib.suppress(TypeError, ValueError):  # TypeError: no timestamp in the name
            return datetime.strptime(STAMP_RE.search(self.path.name)[1], STAMP).timestamp()
        return 0.0

    # the lock
    def acquire(self) -> None:
        """Become the run's only writer for the rest of this process's life: an exclusive flock on RUN/lock.
        A second writer gets RunDirError naming the holder's pid; a dead holder's lock is free."""
        key = _identity(self.path)
        if key in _held:
            return
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise RunDirError(f"{self.lock_path}: cannot open the run's lock: {e.strerror}") from None
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise RunDirError(f"{self.path}: another process (pid {holder}) is writing this run") from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[key] = fd

    def release(self) -> None:
        """Stop being the run's writer (a sweep creates its cells' runs, then worker processes write them)."""
        _release(self.path)

    def writer_alive(self) -> bool:
        """Does a live process (this one included) hold the run's lock?"""
        if _identity(self.path) in _held:
            return True
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False  # no lock file: nobody ever wrote it with this tool's lock
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also drops the shared lock
        return False

    # status.json
    def read_status(self) -> dict[str, Any]:
        """status.json, validated ({} while it does not exist)."""
        try:
            raw = self.status_path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise RunDirError(f"{self.status_path}: cannot read it: {e.strerror}") from None
        return valid_status(_json(raw, self.status_path), self.status_path)

    def write_status(self, **fields: Any) -> None:
        status = self.read_status() | fields | {"heartbeat": now_iso(), "pid": os.getpid()}
        atomic_write(self.status_path, json.dumps(status, indent=1).encode())

    # metrics.jsonl
    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Add rows by rewriting the file atomically: a reader or a kill never meets a partial line
        (a plain append of several pages can be cut by SIGKILL or seen half-written)."""
        text = _json_lines(rows)
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
        return valid_row(_json(lines[i], self.metrics_path, i + 1), self.metrics_path, i + 1, lists)

    def rows_to_resume(self, checkpoint: int, seeds: list[tuple[str, int]]) -> list[dict[str, Any]]:
        """The rows a resume from the checkpoint keeps: exactly one per (chain, seed) (chains.row_key) and
        generation up to it. Rows after it must be whole generations that a checkpoint interrupted (this
        tool's, computed again); anything else is RunDirError, with the file left as it is."""
        rows = self.read_metrics()
        kept = [r for r in rows if r["generation"] <= checkpoint]
        want = {(s, g) for s in seeds for g in range(checkpoint + 1)}
        got = [(row_key(r), r["generation"]) for r in kept]
        if len(got) != len(set(got)) or set(got) != want:
            missing, extra = len(want - set(got)), len(got) - len(set(got) & want)
            raise RunDirError(
                f"{self.metrics_path}: does not match the checkpoint at generation {checkpoint} "
                f"({missing} of its {len(want)} rows missing, {extra} unexpected); resume leaves it as it is"
            )
        later = {(row_key(r), r["generation"]) for r in rows if r["generation"] > checkpoint}
        gens = sorted({g for _, g in later})
        whole = {(s, g) for s in seeds for g in gens} == later and len(later) == len(rows) - len(kept)
        if not whole or gens != list(range(checkpoint + 1, checkpoint + 1 + len(gens))):
            raise RunDirError(
                f"{self.metrics_path}: rows after the checkpoint at generation {checkpoint} are not whole "
                "generations this run wrote; resume leaves the file as it is"
            )
        return kept

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        atomic_write(self.metrics_path, _json_lines(rows))

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
            atomic_write(folder / f"gen-{generation:06d}.npy", _npy_bytes(preview), durable=False)
        else:
            atomic_write(folder / f"gen-{generation:06d}.json", json.dumps(preview).encode(), durable=False)

    def sample_generations(self, chain: str = "") -> list[int]:
        gens = set()
        for p in self.chain_samples_dir(chain).glob("gen-*.*"):
            if not p.name.startswith(".") and p.stem[4:].isdigit() and p.suffix in (".npy", ".json"):
                gens.add(int(p.stem[4:]))
        return sorted(gens)

    def load_samples(self, generation: int, chain: str = "") -> np.ndarray | list[str]:
        """A generation's preview: an array of at least one dimension, or a list of strings (RunDirError else)."""
        base = self.chain_samples_dir(chain) / f"gen-{generation:06d}"
        path = base.with_suffix(".npy") if base.with_suffix(".npy").exists() else base.with_suffix(".json")
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
        info = _json(raw, path)
        ok = isinstance(info, dict) and _is_int(info.get("generation")) and isinstance(info.get("dir"), str)
        if not ok or info["generation"] < 0 or not info["dir"].startswith("ckpt-") or "/" in info["dir"]:
            raise RunDirError(f"{path}: expected {{'generation': N, 'dir': 'ckpt-...'}}, got {short(info)}")
        folder = self.state_dir / info["dir"]
        if not folder.is_dir():
            raise RunDirError(f"{path}: points at {folder}, which does not exist")
        return info["generation"], folder

    def check_resumable(self, cfg: Config) -> tuple[tuple[int, Path] | None, list[dict[str, Any]]]:
        """(checkpoint, the metrics rows a resume keeps), or RunDirError when the state is missing, is not
        this tool's, or does not match the preset the run started with. Changes nothing. Only the preset's
        experiment.generations may differ from the start's (--generations N; no engine sees it, so a run
        extended to N has the rows of a run of N), and not below the generations the run has finished."""
        status = self.read_status()  # valid, or the refusal names it
        if not self.state_dir.is_dir():
            raise RunDirError(f"{self.state_dir}: missing, so there is nothing to resume from")
        for folder in (self.state_dir, self.samples_dir, *(self.samples_dir / c.name for c in chain_specs(cfg))):
            if folder.is_symlink():  # what a resume writes there would land outside the run directory
                raise RunDirError(f"{folder}: a link; a run writes only in folders of its own directory")
        started = self.state_dir / "preset.toml"
        if started.is_file() and started.read_text() != cfg.to_toml():
            before = load_preset(str(started)).with_generations(cfg.generations)
            changes = [
                f"{s}.{k}: {getattr(before, s).get(k)!r} -> {getattr(cfg, s).get(k)!r}"
                for s in ("experiment", "data", "engine")
                for k in {**getattr(before, s), **getattr(cfg, s)}
                if getattr(before, s).get(k) != getattr(cfg, s).get(k)
            ]
            changes += [
                f"chains.{a['name']}.{k}: {a.get(k)!r} -> {b.get(k)!r}"
                for a, b in zip(before.chains, cfg.chains)
                for k in {**a, **b}
                if a.get(k) != b.get(k)
            ]
            if changes or before.to_toml() != cfg.to_toml():
                what = "; ".join(changes[:3]) or "reformatted"
                raise RunDirError(
                    f"{self.path / 'preset.toml'}: changed since the run started ({what}); resume needs the preset"
                    " it started with (a copy is in state/preset.toml)"
                )
        ends = self.read_metrics_ends()
        finished = max(status.get("generation", -1), ends[-1]["generation"] if ends else -1) + 1
        if cfg.generations < finished:
            raise RunDirError(
                f"{self.path}: {finished} generations are finished, more than the {cfg.generations} asked "
                f"(--generations N extends a run: N >= {finished})"
            )
        ckpt = self.read_checkpoint()
        if ckpt is not None and ckpt[0] >= cfg.generations:
            raise RunDirError(
                f"{self.state_dir / 'checkpoint.json'}: claims generation {ckpt[0]} of a run of {cfg.generations}"
            )
        keys = [(c.name, s) for c in chain_specs(cfg) for s in c.seeds]
        return ckpt, self.rows_to_resume(ckpt[0] if ckpt else -1, keys)


def _identity(path: Path) -> tuple[int, int]:
    """What stays the same when a run directory is renamed or reached through another path."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _release(path: Path) -> None:
    fd = _held.pop(_identity(path), None)
    if fd is not None:
        os.close(fd)


def _remove(path: Path) -> None:
    """Remove a folder of state/, or a link at its name (never what the link points to)."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    return buf.getvalue()


def read_json(path: Path) -> Any:
    """A JSON file of a run directory (RunDirError naming it when it cannot be read or is not JSON)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RunDirError(f"{path}: cannot read it: {e.strerror}") from None
    return _json(raw, path)


def _json(raw: bytes, path: Path, line: int | None = None) -> Any:
    where = f"{path}" + (f": line {line}" if line else "")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise RunDirError(f"{where}: not JSON ({str(e).splitlines()[0][:80]})") from None
    except RecursionError:  # the parser recurses per level: ~1000 levels of [ or { exhaust the stack
        raise RunDirError(f"{where}: nested deeper than any file this tool writes") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_value(v: Any) -> bool:
    """A value a metric can hold: null, a finite float, an int within float's range (not a bool). On
    every value of every row, so by exact type: JSON gives no subclasses."""
    t = type(v)
    if t is float:
        return math.isfinite(v)
    if t is int:
        return -FLOAT_MAX <= v <= FLOAT_MAX
    return v is None


def valid_status(obj: Any, path: Path) -> dict[str, Any]:
    """status.json's schema: an object of known keys of known types, a known state, a plausible pid."""
    if not isinstance(obj, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {short(obj)}")
    for key, types in STATUS_TYPES.items():
        v = obj.get(key)
        if key in obj and (not isinstance(v, types) or (isinstance(v, bool) and bool not in types)):
            raise RunDirError(f"{path}: {key} should be {' or '.join(t.__name__ for t in types)}, got {short(v)}")
    if "state" in obj and obj["state"] not in STATES:
        raise RunDirError(f"{path}: state {obj['state']!r} is not one of {', '.join(STATES)}")
    if "pid" in obj and not 0 < obj["pid"] <= MAX_PID:
        raise RunDirError(f"{path}: pid {obj['pid']} is not a process id")
    return obj


def valid_row(obj: Any, path: Path, line: int, lists: dict[str, dict[str, bool]]) -> dict[str, Any]:
    """A metrics row, as loop.py writes them: an object with integer seed and generation in [0, 2^64), a
    chain name when the run has chains, and every other value a finite number or null (a number that
    overflowed or is undefined) or a list of them (histograms, per-component values). lists: per chain,
    the keys seen so far in the file and whether they held lists: a chain's key is a list on every line
    or on none (the tables take a key's shape from the chain's first row)."""
    if not isinstance(obj, dict):
        raise RunDirError(f"{path}: line {line}: expected a JSON object, got {short(obj)}")
    for key in ("seed", "generation"):
        if not (_is_int(obj.get(key)) and 0 <= obj[key] < MAX_ROW_INT):
            raise RunDirError(
                f"{path}: line {line}: {key} should be an integer in [0, 2^64), got {short(obj.get(key))}"
            )
    if "chain" in obj and not (isinstance(obj["chain"], str) and CHAIN_NAME_RE.fullmatch(obj["chain"])):
        raise RunDirError(f"{path}: line {line}: chain should be a chain's name, got {short(obj['chain'])}")
    shapes = lists.setdefault(obj.get("chain", ""), {})
    for key, v in obj.items():
        if key in ROW_IDS:
            continue
        is_list = type(v) is list
        if not (all(map(_is_value, v)) if is_list else _is_value(v)):
            raise RunDirError(
                f"{path}: line {line}: {key} should be a finite number, null or a list of them, got {short(v)}"
            )
        if shapes.setdefault(key, is_list) is not is_list:
            now, before = ("a list", "not a list") if is_list else ("not a list", "a list")
            raise RunDirError(f"{path}: line {line}: {key} is {now} here and {before} on an earlier line")
    return obj


def run_state(rundir: RunDir, status: dict[str, Any]) -> str:
    """status.json's state, with 'running' turned into 'crashed' when no live process holds the lock."""
    state = status.get("state", "created")
    if state == "running" and not rundir.writer_alive():
        return "crashed"
    return state


def open_for_resume(rundir: RunDir, generations: int | None = None) -> RunDir:
    """Open a run directory to continue it: take its lock first (RunDirError if another process writes
    it), then check that its state matches its preset and that it can run here. generations: the run's
    new length (--generations N), written to preset.toml once all of that holds."""
    rundir.acquire()
    cfg = rundir.config()
    resumed = cfg if generations is None else cfg.with_generations(generations)
    rundir.check_resumable(resumed)
    check_runnable(resumed)  # e.g. accumulate's memory grows with the generations
    if resumed != cfg:
        atomic_write(rundir.path / "preset.toml", resumed.to_toml().encode())
        rundir._keep(resumed)
    return rundir

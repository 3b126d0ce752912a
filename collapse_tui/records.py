"""What a run directory's records may hold, and the readers that check it: status.json, metrics.jsonl rows
and any JSON file of a run, each refused with RunDirError in one line that names the file (and the line).
"""

from __future__ import annotations

import json
import math
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

from .chains import CHAIN_NAME_RE
from .config import ConfigError
from .numbers import short


class RunState(StrEnum):
    """A run's state: what status.json records, and crashed, which readers see when a run's status says
    running and no live process holds its lock (rundir.run_state). Members are the strings themselves."""

    CREATED = "created"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    CRASHED = "crashed"


class Failure(StrEnum):
    """Why a run failed, which says whether resuming can help: input (the preset or its data, which a resume
    would meet again) or fault (anything else: a crash, a full disk, a dead worker; resume goes on)."""

    INPUT = "input"
    FAULT = "fault"


STATES = tuple(s for s in RunState if s is not RunState.CRASHED)  # what status.json may hold
STATUS_TYPES: dict[str, tuple[type, ...]] = {
    "state": (str,),
    "generation": (int,),
    "generations": (int,),
    "checkpoint_generation": (int,),
    "pid": (int,),
    "heartbeat": (str,),
    "started": (str,),
    "error": (str, type(None)),
    "failure": (str, type(None)),  # a Failure, with state failed
    "threads": (int,),  # per process, chosen at the run's start and kept (threads.py)
    "seconds": (list,),  # each finished generation's compute time; null: not recorded (loop.py)
}
MAX_PID = 2**22  # Linux's pid_max ceiling
MAX_ROW_INT = 2**64  # a metrics row's seed and generation are below this (numpy's seeds are)
ROW_IDS = ("seed", "generation", "chain")  # what identifies a metrics row; its other keys are metrics
FLOAT_MAX = sys.float_info.max


class RunDirError(ConfigError):
    """A run directory that cannot be read or written as asked; str(err) names the file and the problem."""


def read_json(path: Path) -> Any:
    """A JSON file of a run directory (RunDirError naming it when it cannot be read or is not JSON)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RunDirError(f"{path}: cannot read it: {e.strerror}") from None
    return parse_json(raw, path)


def parse_json(raw: bytes, path: Path, line: int | None = None) -> Any:
    where = f"{path}" + (f": line {line}" if line else "")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise RunDirError(f"{where}: not JSON ({str(e).splitlines()[0][:80]})") from None
    except RecursionError:  # the parser recurses per level: ~1000 levels of [ or { exhaust the stack
        raise RunDirError(f"{where}: nested deeper than any file this tool writes") from None


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_value(v: Any) -> bool:
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
    if "seconds" in obj and not all(v is None or (is_value(v) and v >= 0) for v in obj["seconds"]):
        raise RunDirError(f"{path}: seconds should be a list of generation times (>= 0 or null)")
    if obj.get("failure") is not None and obj["failure"] not in tuple(Failure):
        raise RunDirError(f"{path}: failure {obj['failure']!r} is not one of {', '.join(Failure)}")
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
        if not (is_int(obj.get(key)) and 0 <= obj[key] < MAX_ROW_INT):
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
        if not (all(map(is_value, v)) if is_list else is_value(v)):
            raise RunDirError(
                f"{path}: line {line}: {key} should be a finite number, null or a list of them, got {short(v)}"
            )
        if shapes.setdefault(key, is_list) is not is_list:
            now, before = ("a list", "not a list") if is_list else ("not a list", "a list")
            raise RunDirError(f"{path}: line {line}: {key} is {now} here and {before} on an earlier line")
    return obj

"""Presets: read TOML, validate every key with a message that names it, write the resolved form.

A Config is plain data; nothing in a preset can run code. Errors are ConfigError with one line
that names the key, the value and what was expected.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.resources
import importlib.util
import math
import os
import re
import stat
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from .engines import PRESET_GROUP, DataError, EngineError, Param, engine_class, engine_names, entry_points

MODES = ("replace", "keep", "accumulate", "accumulate-subsample", "fresh")

EXPERIMENT: dict[str, Param] = {
    "name": Param("", str, "run name: letters, digits, '.', '_' and '-'"),
    "engine": Param("", str, "model family: a registered engine (`collapse-tui presets` lists them)"),
    "description": Param("", str, "one line on what the preset shows"),
    "generations": Param(10, int, "number of models trained; generation 0 trains on real data", min=1),
    "seeds": Param([0], list, "list of seeds, or a count n meaning 0 .. n-1"),
    "device": Param("auto", str, "where torch engines run", choices=("auto", "cpu", "cuda")),
    "checkpoint_seconds": Param(5.0, float, "least time between two checkpoints of fast runs", min=0),
}
DATA: dict[str, Param] = {
    "mode": Param("replace", str, "what the next generation trains on", choices=MODES),
    "keep_fraction": Param(0.1, float, "mode keep: share of real examples, redrawn each generation", 0, 1),
    "fresh_fraction": Param(0.1, float, "mode fresh: share of newly drawn real examples", 0, 1),
    "filter": Param(
        "none", str, "keep the generated samples the reference scores best", choices=("none", "perplexity")
    ),
    # at most 100 samples drawn per sample kept: a smaller share only eats the machine's memory
    "filter_keep": Param(0.9, float, "filter: share of generated samples kept", 0.01, 1),
}
SECTIONS = ("experiment", "data", "engine")
MAX_PRESET_BYTES = 2**20
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ConfigError(ValueError):
    """A bad preset or override; str(err) is the one-line message shown to the user."""


@dataclass(frozen=True)
class Config:
    experiment: dict[str, Any]
    data: dict[str, Any]
    engine: dict[str, Any]

    @property
    def name(self) -> str:
        return self.experiment["name"]

    @property
    def engine_name(self) -> str:
        return self.experiment["engine"]

    @property
    def generations(self) -> int:
        return self.experiment["generations"]

    @property
    def seeds(self) -> list[int]:
        return self.experiment["seeds"]

    def to_toml(self) -> str:
        experiment = dict(self.experiment)
        if self.seeds == list(range(len(self.seeds))):
            experiment["seeds"] = len(self.seeds)  # 0 .. n-1 written as its count
        return tomli_w.dumps({"experiment": experiment, "data": self.data, "engine": self.engine})


@functools.cache
def builtin_presets() -> dict[str, Path]:
    """name -> file of the presets that installed packages ship (entry-point group collapse_tui.presets:
    a package holding *.toml, or an object that is a folder or a list of files), this one's first."""
    found: dict[str, Path] = {}
    for target in entry_points(PRESET_GROUP).values():
        for path in _preset_files(target):
            found.setdefault(path.stem, path)
    return found


def _preset_files(target: str) -> list[Path]:
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        if attr:
            obj = getattr(obj, attr)
    except Exception:  # a broken plugin must not hide the other presets
        return []
    if isinstance(obj, types.ModuleType):
        obj = Path(str(importlib.resources.files(obj)))
    paths = [Path(p) for p in obj] if isinstance(obj, list | tuple) else [Path(obj)]
    files = [f for p in paths for f in (sorted(p.glob("*.toml")) if p.is_dir() else [p])]
    return [f for f in files if f.suffix == ".toml" and f.is_file()]


def find_preset(spec: str) -> Path:
    """A preset file path, or the name of a built-in preset."""
    path = Path(spec)
    builtin = builtin_presets()
    if path.suffix != ".toml" and spec in builtin and not path.exists():
        return builtin[spec]
    if path.is_dir():
        raise ConfigError(f"{spec}: is a directory, expected a preset TOML file")
    if not path.exists():
        hint = _did_you_mean(spec, builtin) or f" (built-in presets: {', '.join(sorted(builtin))})"
        raise ConfigError(f"{spec}: no such preset file{hint}")
    return path


def load_preset(spec: str, overrides: list[str] = ()) -> Config:
    path = find_preset(spec)
    raw = read_toml(path)
    raw.setdefault("experiment", {})
    if isinstance(raw["experiment"], dict):
        raw["experiment"].setdefault("name", path.stem)
    for item in overrides:
        apply_override(raw, item, Path.cwd())
    return validate(raw, base_dir=path.parent)


def read_toml(path: Path) -> dict[str, Any]:
    """A preset file's TOML, parsed; ConfigError with one line when it is not readable TOML text."""
    try:
        return tomllib.loads(_read_preset(path).decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def _read_preset(path: Path) -> bytes:
    """The file's bytes, if it is a regular file of at most MAX_PRESET_BYTES (/dev/zero is not a preset)."""
    with open(path, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ConfigError(f"{path}: not a regular file, expected a preset TOML file")
        data = f.read(MAX_PRESET_BYTES + 1)
    if len(data) > MAX_PRESET_BYTES:
        raise ConfigError(f"{path}: larger than a preset's {MAX_PRESET_BYTES // 2**20} MB limit")
    return data


def apply_override(raw: dict[str, Any], item: str, cwd: Path | None = None) -> None:
    """--set section.key=value; the value is read as TOML, or taken as a string if it is not.
    A path given on the command line is relative to cwd, not to the preset file."""
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set {item}: expected SECTION.KEY=VALUE, e.g. experiment.generations=5")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    section = raw.setdefault(parts[0], {})
    if not isinstance(section, dict):
        raise ConfigError(f"{parts[0]}: expected a table, got {section!r}")
    engine = raw.get("experiment", {}).get("engine") if isinstance(raw.get("experiment"), dict) else None
    param = _engine(engine).PARAMS.get(parts[1]) if parts[0] == "engine" and engine in engine_names() else None
    if cwd is not None and param is not None and param.kind is Path and isinstance(value, str) and value:
        value = str((cwd / value).resolve())
    section[parts[1]] = value


def validate(raw: dict[str, Any], base_dir: Path | None = None) -> Config:
    """Check a parsed preset and fill defaults. Relative paths are resolved against base_dir."""
    for section, value in raw.items():
        if section == "sweep":  # sweep.py reads these files; a single run cannot
            raise ConfigError("[sweep]: a sweep preset; run it with collapse-tui --batch SWEEP.toml")
        if section not in SECTIONS:
            hint = _did_you_mean(section, SECTIONS)
            raise ConfigError(f"[{section}]: unknown section{hint}; expected one of {', '.join(SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{section}: expected a table [{section}], got {value!r}")
    exp_raw = raw.get("experiment", {})
    names = engine_names()
    if "engine" not in exp_raw:
        raise ConfigError(f"experiment.engine: missing; expected one of {', '.join(names)}")
    experiment = _section("experiment", exp_raw, EXPERIMENT)
    if experiment["engine"] not in names:
        hint = _did_you_mean(experiment["engine"], names)
        raise ConfigError(
            f"experiment.engine: unknown engine {experiment['engine']!r}{hint}; expected one of {', '.join(names)}"
        )
    if not NAME_RE.fullmatch(experiment["name"]):
        raise ConfigError(
            f"experiment.name: expected 1-64 letters, digits, '.', '_' or '-' (not first), got {experiment['name']!r}"
        )
    experiment["seeds"] = _seeds(experiment["seeds"])
    data = _section("data", raw.get("data", {}), DATA)
    cls = _engine(experiment["engine"])
    engine = _section("engine", raw.get("engine", {}), cls.PARAMS, engine_name=experiment["engine"])
    for key, param in cls.PARAMS.items():
        if param.kind is Path:
            engine[key] = str(((base_dir or Path.cwd()) / engine[key]).resolve()) if engine[key] else ""
    try:
        cls.check_params(cls.Params(**engine))
        cls.check_data(cls.Params(**engine), data)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if data["mode"] == "fresh" and not cls.can_draw_fresh:
        raise ConfigError(f"data.mode: 'fresh' needs an engine that can draw new real data; '{cls.name}' cannot")
    if data["filter"] != "none" and not cls.can_score:
        raise ConfigError(f"data.filter: engine '{cls.name}' has no reference scorer; use 'none'")
    return Config(experiment, data, engine)


def _section(name: str, raw: dict[str, Any], schema: dict[str, Param], engine_name: str = "") -> dict[str, Any]:
    out = {key: param.default for key, param in schema.items()}
    for key, value in raw.items():
        if key not in schema:
            owner = _owner(key, engine_name)
            hint = f" (it belongs to engine '{owner}')" if owner else _did_you_mean(key, schema, f" {name}.")
            where = f" for engine '{engine_name}'" if engine_name else ""
            raise ConfigError(f"{name}.{key}: unknown key{where}{hint}")
        out[key] = _check(f"{name}.{key}", value, schema[key])
    return out


def _check(key: str, value: Any, p: Param) -> Any:
    if p.kind is list:
        return value  # seeds: checked on its own
    if p.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    kind = str if p.kind is Path else p.kind
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {_expected(p)}, got {value!r}")
    if p.choices is not None and value not in p.choices:
        raise ConfigError(f"{key}: expected {_expected(p)}, got {value!r}{_did_you_mean(str(value), p.choices, ' ')}")
    too_low = p.min is not None and (value <= p.min if p.min_exclusive else value < p.min)
    if too_low or (p.max is not None and value > p.max) or (kind is float and value != value):
        raise ConfigError(f"{key}: expected {_expected(p)}, got {value!r}")
    return value


def _expected(p: Param) -> str:
    if p.choices is not None:
        return "one of " + ", ".join(repr(c) for c in p.choices)
    noun = {int: "an integer", float: "a number", str: "a string", bool: "true or false", Path: "a path"}[p.kind]
    if p.min is not None and p.max is not None:
        left = "(" if p.min_exclusive else "["
        return f"{noun} in {left}{p.min:g}, {p.max:g}]"
    if p.min is not None:
        return f"{noun} {'>' if p.min_exclusive else '>='} {p.min:g}"
    return noun


def _seeds(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100_000:
        return list(range(value))
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    )
    if not ok or len(set(value)) != len(value):
        raise ConfigError(
            f"experiment.seeds: expected a list of distinct non-negative integers or a count, got {value!r}"
        )
    return list(value)


RUN_NAME_PARTS = 3  # changed keys named in a new run's name


def run_name(spec: str, cfg: Config) -> str:
    """A new run's name: cfg's name, then what cfg changes from the preset spec as its file has it, data keys
    first, at most RUN_NAME_PARTS of them: 'gmm-quick-keep-seeds2'. Paths are left out (they name the
    machine, not the experiment); a preset that is valid only with its overrides gives cfg's name alone."""
    try:
        preset = load_preset(spec)
    except ConfigError:
        return cfg.name
    paths = {k for k, p in _engine(cfg.engine_name).PARAMS.items() if p.kind is Path}
    parts = []
    for section in ("data", "experiment", "engine"):
        old, new = getattr(preset, section), getattr(cfg, section)
        for key, value in new.items():
            skip = key in (("name", "description", "engine") if section == "experiment" else paths)
            if value != old.get(key) and not skip:
                parts.append(_name_part(key, value))
    name = "-".join([cfg.name, *parts[:RUN_NAME_PARTS]])
    return re.sub(r"[^A-Za-z0-9._-]", "", name)[:64]


def _name_part(key: str, value: Any) -> str:
    """A string as itself ('keep' for data.mode), else the key and the value: 'seeds2' (a count), 'seeds1.5',
    'keep_fraction0.5', 'do_sample'."""
    if isinstance(value, str):
        return value or f"no_{key}"
    if isinstance(value, bool):
        return key if value else f"no_{key}"
    if key == "seeds":
        return f"seeds{len(value)}" if value == list(range(len(value))) else "seeds" + ".".join(map(str, value))
    return f"{key}{value:g}" if isinstance(value, float) else f"{key}{value}"


def requirements(cfg: Config) -> list[str]:
    """What a preset needs beyond this package and a CPU: 'torch', 'gpu' (device = "cuda"), 'hub'
    (a download from the Hugging Face hub). For `presets` and the start screen; reads nothing."""
    cls = _engine(cfg.engine_name)
    needs = ["torch"] if cls.needs_torch else []
    if cls.needs_torch and cfg.experiment["device"] == "cuda":
        needs.append("gpu")
    if cls(cfg.engine).hub_needs():
        needs.append("hub")
    return needs


def check_runnable(cfg: Config) -> None:
    """What a run needs beyond a valid preset, checked before its run directory exists: the engine's
    packages installed, its data and model within reach (quick checks, nothing read or downloaded)."""
    cls = _engine(cfg.engine_name)
    missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"engine '{cls.name}' needs {', '.join(missing)}, not installed "
            "(for the built-in engines: pip install -e '.[torch]', or pip install 'collapse-tui[torch]')"
        )
    engine = cls(cfg.engine, device=cfg.experiment["device"])
    try:
        engine.preflight()
    except DataError as e:
        raise ConfigError(str(e)) from None
    check_memory(cfg, engine)


def check_memory(cfg: Config, engine) -> None:
    """Refuse a run whose generations cannot fit in the memory this machine has available."""
    n = int(cfg.engine.get("samples", 0))
    drawn = math.ceil(n / cfg.data["filter_keep"]) if cfg.data["filter"] != "none" else n
    pooled = n * cfg.generations if cfg.data["mode"].startswith("accumulate") else n
    need = engine.memory_bytes(len(cfg.seeds), drawn, pooled)
    have = available_memory()
    if need and have and need > have:
        raise ConfigError(
            f"this run needs about {need / 2**30:.1f} GiB (seeds x samples x dimensions, {cfg.data['mode']} mode) "
            f"and {have / 2**30:.1f} GiB are available; use fewer seeds or samples"
        )


def available_memory() -> int:
    """MemAvailable in bytes (0 when it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _engine(name: str):
    try:
        return engine_class(name)
    except EngineError as e:
        raise ConfigError(f"experiment.engine: {e}") from None


def _owner(key: str, engine_name: str) -> str:
    for name in engine_names():
        try:
            if name != engine_name and key in engine_class(name).PARAMS:
                return name
        except EngineError:
            continue
    return ""


def _did_you_mean(word: str, options: Any, prefix: str = " ") -> str:
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean{prefix}{close[0]}?)" if close else ""

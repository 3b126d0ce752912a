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

from .chains import CHAIN_KEYS, CHAIN_NAME_RE, ChainSpec, chain_specs
from .engines import PRESET_GROUP, DataError, EngineError, Param, engine_class, engine_names, entry_points
from .numbers import short

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
    # mixing (collapse_tui/mixing.py): what the synthetic part of a training set is drawn from
    "share_others": Param(0.0, float, "[[chains]]: share of a chain's synthetic data from the other chains", 0, 1),
    "mix": Param([], list, "[[chains]]: matrix, row = receiving chain, column = source chain, rows sum to 1"),
    "share_seeds": Param(0.0, float, "share of every other seed's samples a seed adds to its own", 0, 1),
    "population": Param(0, int, "share_seeds: seeds pool in consecutive groups of this many (0: all)", min=0),
}
# written to preset.toml only when set: a run made before they existed still resumes (same preset text)
MIXING_DEFAULTS = {k: DATA[k].default for k in ("share_others", "mix", "share_seeds", "population")}
SECTIONS = ("experiment", "data", "engine", "chains")
MAX_PRESET_BYTES = 2**20
MAX_NESTING = 8  # tables and arrays in one another: a preset has 4 (data.mix = [[...]]), a sweep preset 5
NESTED = f"tables or arrays nested deeper than a preset's {MAX_NESTING} levels"
# a seed is in every metrics row: orjson writes up to 2^64 - 1, and int64 readers (parquet, pandas) take less
MAX_SEED = 2**63 - 1
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ConfigError(ValueError):
    """A bad preset or override; str(err) is the one-line message shown to the user."""


@dataclass(frozen=True)
class Config:
    experiment: dict[str, Any]
    data: dict[str, Any]
    engine: dict[str, Any]  # {} when the preset declares [[chains]]
    chains: tuple[dict[str, Any], ...] = ()  # [[chains]]: name, engine, seeds and that engine's keys each

    @property
    def name(self) -> str:
        return self.experiment["name"]

    @property
    def engine_name(self) -> str:
        """The engine; with [[chains]], the first chain's (what labels and preview kinds go by)."""
        return self.chains[0]["engine"] if self.chains else self.experiment["engine"]

    @property
    def generations(self) -> int:
        return self.experiment["generations"]

    @property
    def seeds(self) -> list[int]:
        return self.experiment["seeds"]

    def with_generations(self, generations: int) -> Config:
        """The same preset run to another length (resume --generations N): no engine sees the total."""
        return Config(self.experiment | {"generations": generations}, self.data, self.engine, self.chains)

    def chain(self, name: str) -> Config:
        """Chain name of a [[chains]] preset as a single-engine config (its engine, keys and seeds)."""
        c = next(c for c in self.chains if c["name"] == name)
        params = {k: v for k, v in c.items() if k not in CHAIN_KEYS}
        return Config(self.experiment | {"engine": c["engine"], "seeds": c.get("seeds", self.seeds)}, self.data, params)

    def to_toml(self) -> str:
        experiment = dict(self.experiment)
        if self.seeds == list(range(len(self.seeds))):
            experiment["seeds"] = len(self.seeds)  # 0 .. n-1 written as its count
        data = {k: v for k, v in self.data.items() if MIXING_DEFAULTS.get(k, object()) != v}
        if not self.chains:
            return tomli_w.dumps({"experiment": experiment, "data": data, "engine": self.engine})
        del experiment["engine"]
        return tomli_w.dumps({"experiment": experiment, "data": data, "chains": list(self.chains)})


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
        doc = tomllib.loads(_read_preset(path).decode("utf-8"))
    except RecursionError:
        raise ConfigError(f"{path}: {NESTED}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if (key := _too_deep(doc, MAX_NESTING)) is not None:
        raise ConfigError(f"{path}: {key.lstrip('.')}: {NESTED}")
    return doc


def _too_deep(value: Any, levels: int) -> str | None:
    """The path ('.key', '[index]') of a table or array in value nested deeper than levels (value itself
    is level 1), else None. Iterative: deeper values are no preset, and would recurse past Python's limit
    in whatever reads them."""
    level = [("", value)]
    for _ in range(levels):
        level = [
            (f"{path}.{k}" if isinstance(v, dict) else f"{path}[{k}]", child)
            for path, v in level
            if isinstance(v, dict | list)
            for k, child in (v.items() if isinstance(v, dict) else enumerate(v))
        ]
    return next((path for path, v in level if isinstance(v, dict | list)), None)


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
    if not sep or not is_key(key.strip()):
        raise ConfigError(
            f"--set {item}: expected SECTION.KEY=VALUE, e.g. experiment.generations=5 (chains.NAME.KEY=VALUE "
            "for a chain's key)"
        )
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    except RecursionError:
        raise ConfigError(f"--set {key}: {NESTED}") from None
    if (path := _too_deep(value, MAX_NESTING - 2)) is not None:  # under the preset and its section
        raise ConfigError(f"--set {key}{path}: {NESTED}")
    set_key(raw, key, value, cwd)


def is_key(key: str) -> bool:
    """A key that --set and [sweep] can set: SECTION.KEY, or chains.NAME.KEY for a key of a chain."""
    parts = key.split(".")
    return all(parts) and (len(parts) == 3 if parts[0] == "chains" else len(parts) == 2)


def set_key(raw: dict[str, Any], key: str, value: Any, cwd: Path | None = None) -> None:
    """Set the dotted key (is_key) of a parsed preset; a path given on the command line is relative to cwd
    (None: left as it is, relative to the preset file)."""
    parts = key.split(".")
    if parts[0] == "chains":
        _override_chain(raw, parts[1], parts[2], value, cwd)
        return
    section = raw.setdefault(parts[0], {})
    if not isinstance(section, dict):
        raise ConfigError(f"{parts[0]}: expected a table [{parts[0]}], got {short(section)}")
    engine = raw.get("experiment", {}).get("engine") if isinstance(raw.get("experiment"), dict) else None
    param = _engine(engine).PARAMS.get(parts[1]) if parts[0] == "engine" and engine in engine_names() else None
    if cwd is not None and param is not None and param.kind is Path and isinstance(value, str) and value:
        value = str((cwd / value).resolve())
    section[parts[1]] = value


def _override_chain(raw: dict[str, Any], name: str, key: str, value: Any, cwd: Path | None) -> None:
    """--set chains.NAME.KEY=VALUE: a key of the [[chains]] table named NAME."""
    chains = raw.get("chains")
    table = (
        next((c for c in chains if isinstance(c, dict) and c.get("name") == name), None)
        if isinstance(chains, list)
        else None
    )
    if table is None:
        names = [c.get("name") for c in chains if isinstance(c, dict)] if isinstance(chains, list) else []
        raise ConfigError(
            f"--set chains.{name}.{key}: no chain named {name!r} (chains: {', '.join(map(str, names)) or 'none'})"
        )
    engine = table.get("engine")
    param = _engine(engine).PARAMS.get(key) if engine in engine_names() else None
    if cwd is not None and param is not None and param.kind is Path and isinstance(value, str) and value:
        value = str((cwd / value).resolve())
    table[key] = value


def validate(raw: dict[str, Any], base_dir: Path | None = None) -> Config:
    """Check a parsed preset and fill defaults. Relative paths are resolved against base_dir."""
    for section, value in raw.items():
        if section == "sweep":  # sweep.py reads these files; a single run cannot
            raise ConfigError("[sweep]: a sweep preset; run it with collapse-tui --batch SWEEP.toml")
        if section not in SECTIONS:
            hint = _did_you_mean(section, SECTIONS)
            raise ConfigError(f"[{section}]: unknown section{hint}; expected one of {', '.join(SECTIONS)}")
        if section == "chains":
            if not (isinstance(value, list) and value and all(isinstance(c, dict) for c in value)):
                raise ConfigError(f"chains: expected one or more [[chains]] tables, got {short(value)}")
        elif not isinstance(value, dict):
            raise ConfigError(f"{section}: expected a table [{section}], got {short(value)}")
    if "chains" in raw:
        return _validate_chains(raw, base_dir)
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
    data = _data(raw, experiment["seeds"], chains=0)
    engine = _engine_keys("engine", experiment["engine"], raw.get("engine", {}), data, base_dir)
    return Config(experiment, data, engine)


def _data(raw: dict[str, Any], seeds: list[int], chains: int) -> dict[str, Any]:
    """The [data] section, the mixing keys checked against the number of chains and seeds."""
    data = _section("data", raw.get("data", {}), DATA)
    if chains < 2:
        for key in ("share_others", "mix"):
            if data[key] != DATA[key].default:
                raise ConfigError(f"data.{key}: mixes chains, and the preset declares {chains or 'no'} [[chains]]")
    if data["share_others"] and data["mix"]:
        raise ConfigError("data.mix: give either data.mix or data.share_others, not both")
    if data["mix"]:
        data["mix"] = _mix_matrix(data["mix"], chains)
    population = data["population"] or len(seeds)
    if len(seeds) % population:
        raise ConfigError(f"data.population: {population} does not divide the {len(seeds)} seeds")
    if data["mode"] == "keep" and data["keep_fraction"] * (1 + (population - 1) * data["share_seeds"]) > 1:
        raise ConfigError(
            "data.keep_fraction: with data.share_seeds the training set grows past the real set; keep mode "
            "cannot keep that share of real examples"
        )
    return data


def _mix_matrix(value: Any, chains: int) -> list[list[float]]:
    ok = (
        isinstance(value, list)
        and len(value) == chains
        and all(isinstance(r, list) and len(r) == chains for r in value)
        and all(isinstance(x, int | float) and not isinstance(x, bool) and 0 <= x <= 1 for r in value for x in r)
    )
    if not ok:
        raise ConfigError(f"data.mix: expected {chains} rows of {chains} numbers in [0, 1], got {short(value)}")
    for i, row in enumerate(value):
        if abs(sum(row) - 1) > 1e-9:
            raise ConfigError(f"data.mix: row {i + 1} (what chain {i + 1} trains on) sums to {sum(row):g}, not 1")
    return [[float(x) for x in row] for row in value]


def _engine_keys(
    where: str, engine_name: str, raw: dict[str, Any], data: dict[str, Any], base_dir: Path | None
) -> dict[str, Any]:
    """One engine's keys, checked (paths resolved against base_dir), and checked against [data]."""
    cls = _engine(engine_name)
    engine = _section(where, raw, cls.PARAMS, engine_name=engine_name)
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
    return engine


def _validate_chains(raw: dict[str, Any], base_dir: Path | None) -> Config:
    """A preset of several chains: [experiment] without an engine, [[chains]] naming each chain's."""
    if "engine" in raw:
        raise ConfigError("[engine]: a preset with [[chains]] gives each chain's engine keys in its [[chains]] table")
    exp_raw = raw.get("experiment", {})
    if "engine" in exp_raw:
        raise ConfigError("experiment.engine: a preset with [[chains]] names each chain's engine there; remove it")
    experiment = _section("experiment", exp_raw, EXPERIMENT)
    if not NAME_RE.fullmatch(experiment["name"]):
        raise ConfigError(
            f"experiment.name: expected 1-64 letters, digits, '.', '_' or '-' (not first), got {experiment['name']!r}"
        )
    experiment["seeds"] = _seeds(experiment["seeds"])
    data = _data(raw, experiment["seeds"], chains=len(raw["chains"]))
    chains, kinds = [], {}
    names = engine_names()
    for i, table in enumerate(raw["chains"]):
        name = table.get("name")
        if not (isinstance(name, str) and CHAIN_NAME_RE.fullmatch(name)):
            raise ConfigError(
                f"chains[{i}].name: expected 1-32 letters, digits, '_' or '-' (a letter first), got {name!r}"
            )
        if any(c["name"] == name for c in chains):
            raise ConfigError(f"chains[{i}].name: {name!r} names two chains")
        engine_name = table.get("engine")
        if engine_name not in names:
            hint = _did_you_mean(str(engine_name), names)
            raise ConfigError(
                f"chains.{name}.engine: unknown engine {engine_name!r}{hint}; expected one of {', '.join(names)}"
            )
        seeds = _seeds(table["seeds"], f"chains.{name}.seeds") if "seeds" in table else experiment["seeds"]
        if len(seeds) != len(experiment["seeds"]):
            raise ConfigError(
                f"chains.{name}.seeds: {len(seeds)} seeds, and experiment.seeds has {len(experiment['seeds'])}: "
                "seed i of every chain is one replicate of the population"
            )
        keys = {k: v for k, v in table.items() if k not in CHAIN_KEYS}
        params = _engine_keys(f"chains.{name}", engine_name, keys, data, base_dir)
        cls = _engine(engine_name)
        kinds[name] = (cls.preview_kind, cls(params).example_shape())
        own = {"seeds": seeds} if "seeds" in table else {}  # else the experiment's, whatever --set makes them
        chains.append({"name": name, "engine": engine_name, **own, **params})
    first, (kind, shape) = next(iter(kinds.items()))
    for name, (k, s) in kinds.items():
        if k != kind or (s is not None and shape is not None and s != shape):
            raise ConfigError(
                f"chains.{name}: its examples ({k}{'' if s is None else f' of shape {s}'}) are not those of chain "
                f"{first!r} ({kind}{'' if shape is None else f' of shape {shape}'}); chains feed each other examples "
                "of one kind"
            )
    return Config(experiment, data, {}, tuple(chains))


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
        raise ConfigError(f"{key}: expected {_expected(p)}, got {short(value)}")
    if p.choices is not None and value not in p.choices:
        raise ConfigError(
            f"{key}: expected {_expected(p)}, got {short(value)}{_did_you_mean(str(value), p.choices, ' ')}"
        )
    too_low = p.min is not None and (value <= p.min if p.min_exclusive else value < p.min)
    # inf and nan: no key means them (a float key's "no limit" is a large number)
    if too_low or (p.max is not None and value > p.max) or (kind is float and not math.isfinite(value)):
        raise ConfigError(f"{key}: expected {_expected(p)}, got {value!r}")
    return value


def _expected(p: Param) -> str:
    if p.choices is not None:
        return "one of " + ", ".join(repr(c) for c in p.choices)
    noun = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false", Path: "a path"}[p.kind]
    if p.min is not None and p.max is not None:
        left = "(" if p.min_exclusive else "["
        return f"{noun} in {left}{p.min:g}, {p.max:g}]"
    if p.min is not None:
        return f"{noun} {'>' if p.min_exclusive else '>='} {p.min:g}"
    return noun


def _seeds(value: Any, key: str = "experiment.seeds") -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100_000:
        return list(range(value))
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in value)
    )
    if not ok or len(set(value)) != len(value):
        raise ConfigError(
            f"{key}: expected a count (1 to 100000) or a list of distinct integers in [0, 2^63 - 1], got {short(value)}"
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
    for chain in cfg.chains:  # a chain's changed keys too
        old = next((c for c in preset.chains if c["name"] == chain["name"]), {})
        paths = {k for k, p in _engine(chain["engine"]).PARAMS.items() if p.kind is Path}
        for key, value in chain.items():
            if key not in ("name", "engine", *paths) and value != old.get(key):
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
    if key == "seeds" and isinstance(value, list):  # else a count: 'seeds2'
        return f"seeds{len(value)}" if value == list(range(len(value))) else "seeds" + ".".join(map(str, value))
    return f"{key}{value:g}" if isinstance(value, float) else f"{key}{value}"


def requirements(cfg: Config) -> list[str]:
    """What a preset needs beyond this package and a CPU: 'torch', 'gpu' (device = "cuda"), 'hub'
    (a download from the Hugging Face hub). For `presets` and the start screen; reads nothing."""
    needs: list[str] = []
    for spec in chain_specs(cfg):
        cls = _engine(spec.engine_name)
        new = ["torch"] if cls.needs_torch else []
        if cls.needs_torch and cfg.experiment["device"] == "cuda":
            new.append("gpu")
        if cls(spec.params).hub_needs():
            new.append("hub")
        needs += [n for n in new if n not in needs]
    return needs


def check_runnable(cfg: Config) -> None:
    """What a run needs beyond a valid preset, checked before its run directory exists: the engine's
    packages installed, its data and model within reach (quick checks, nothing read or downloaded)."""
    need = 0
    for spec in chain_specs(cfg):
        cls = _engine(spec.engine_name)
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"engine '{cls.name}' needs {', '.join(missing)}, not installed "
                "(for the built-in engines: pip install -e '.[torch]', or pip install 'collapse-tui[torch]')"
            )
        engine = cls(spec.params, device=cfg.experiment["device"])
        try:
            engine.preflight()
        except DataError as e:
            raise ConfigError(str(e)) from None
        need += memory_need(cfg, spec, engine)
    check_memory(cfg, need)


def memory_need(cfg: Config, spec: ChainSpec, engine) -> int:
    """About the bytes one chain's generation holds (0: not estimated); share_seeds grows its training set."""
    n = int(spec.params.get("samples", 0))
    drawn = math.ceil(n / cfg.data["filter_keep"]) if cfg.data["filter"] != "none" else n
    population = cfg.data["population"] or len(spec.seeds)
    grown = n + (population - 1) * round(cfg.data["share_seeds"] * n)
    pooled = grown * cfg.generations if cfg.data["mode"].startswith("accumulate") else grown
    return engine.memory_bytes(len(spec.seeds), drawn, pooled)


def check_memory(cfg: Config, need: int) -> None:
    """Refuse a run whose generations cannot fit in the memory this machine has available."""
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

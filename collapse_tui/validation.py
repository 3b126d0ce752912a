"""Validation: a parsed preset checked key by key against the Param tables (config.py's for [experiment]
and [data], each engine's PARAMS for its keys), defaults filled in, paths resolved: a Config, or a
ConfigError whose one line names the key, the value and what was expected.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any

from .chains import CHAIN_KEYS, CHAIN_NAME_RE
from .config import DATA, EXPERIMENT, SECTIONS, TRAIN, Config, ConfigError, DataSection, TrainSection, known_engine
from .datamodes import WEIGHABLE
from .engines import EngineError, Param, engine_class, engine_names
from .numbers import short

MAX_NESTING = 8  # tables and arrays in one another: a preset has 4 (data.mix = [[...]]), a sweep preset 5
NESTED = f"tables or arrays nested deeper than a preset's {MAX_NESTING} levels"
# a seed is in every metrics row: orjson writes up to 2^64 - 1, and int64 readers (parquet, pandas) take less
MAX_SEED = 2**63 - 1
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # an experiment's name: it names run and sweep folders


def validate(raw: dict[str, Any], base_dir: Path | None = None) -> Config:
    """Check a parsed preset and fill defaults. Relative paths are resolved against base_dir."""
    for section, value in raw.items():
        if section in ("sweep", "variants"):  # sweep.py reads these files; a single run cannot
            raise ConfigError(f"[{section}]: a sweep preset; run it with collapse-tui --batch SWEEP.toml")
        if section not in SECTIONS:
            hint = did_you_mean(section, SECTIONS)
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
        hint = did_you_mean(experiment["engine"], names)
        raise ConfigError(
            f"experiment.engine: unknown engine {experiment['engine']!r}{hint}; expected one of {', '.join(names)}"
        )
    check_name(experiment["name"])
    experiment["seeds"] = _seeds(experiment["seeds"])
    data = _data(raw, experiment["seeds"], chains=0)
    train = TrainSection(**_section("train", raw.get("train", {}), TRAIN))
    engine = _engine_keys("engine", experiment["engine"], raw.get("engine", {}), data, base_dir)
    check_mitigations(known_engine(experiment["engine"]), data, train)
    return Config(experiment, DataSection(**data), engine, train=train)


def _data(raw: dict[str, Any], seeds: list[int], chains: int) -> dict[str, Any]:
    """The [data] section, the mixing keys checked against the number of chains and seeds."""
    data = _section("data", raw.get("data", {}), DATA)
    if chains < 2:
        for key in ("share_others", "mix"):
            if data[key] != DATA[key].default:
                raise ConfigError(f"data.{key}: mixes chains, and the preset declares {chains or 'no'} [[chains]]")
    if data["share_others"] and data["mix"]:
        raise ConfigError("data.mix: give either data.mix or data.share_others, not both")
    check_detector(data)
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
    _check_real_weight(data)
    return data


def _check_real_weight(data: dict[str, Any]) -> None:
    """data.real_weight weighs the real examples of modes keep, fresh and accumulate, which must have some."""
    if not data["real_weight"]:
        return
    if data["mode"] not in WEIGHABLE:
        raise ConfigError(
            f"data.real_weight: mode {data['mode']!r} trains on no real examples it can tell apart from the "
            f"samples; the real data are weighed in modes {', '.join(WEIGHABLE)}"
        )
    fraction = {"keep": "keep_fraction", "fresh": "fresh_fraction"}.get(data["mode"])
    if fraction and not data[fraction]:
        raise ConfigError(f"data.real_weight: data.{fraction} = 0 leaves no real example to weigh")


def check_mitigations(cls: type, data: dict[str, Any], train: TrainSection) -> None:
    """Every mitigation the preset asks for is one the engine declares (Engine.mitigations); else one line
    naming the engines that have it."""
    asked = [(f"train.anchor: {train.anchor!r}", train.anchor)] if train.anchor != "none" else []
    asked += [("train.distill", "distill")] if train.distill > 0 else []
    asked += [(f"data.{k}: 'detector'", "detector") for k in ("filter", "reweight") if data[k] == "detector"]
    asked += [("data.real_weight", "real_weight")] if data["real_weight"] > 0 else []
    for where, name in asked:
        if name not in cls.mitigations:
            having = [n for n in engine_names() if name in engine_class(n).mitigations]
            which = f"engines that have it: {', '.join(having)}" if having else "no engine has it yet"
            raise ConfigError(f"{where}: engine '{cls.name}' has no such mitigation; {which}")


def check_detector(data: dict[str, Any]) -> None:
    """data.reweight and the detector's filter need samples to draw the training set from, and reweight
    draws it alone: one line for a combination that cannot run."""
    if data["reweight"] != "none" and data["filter"] != "none":
        raise ConfigError(
            f"data.reweight: draws the training set from the samples by the detector's D; give it or data.filter "
            f"({data['filter']!r}), not both"
        )
    key = "reweight" if data["reweight"] != "none" else "filter" if data["filter"] == "detector" else ""
    real_only = {"keep": "keep_fraction", "fresh": "fresh_fraction"}.get(data["mode"])
    if key and real_only and data[real_only] == 1:
        raise ConfigError(
            f"data.{key}: mode {data['mode']!r} with data.{real_only} = 1 trains on real data alone: the detector "
            "has no samples to choose the training set from"
        )


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
    cls = known_engine(engine_name)
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
    if data["filter"] == "perplexity" and not cls.can_score:  # "detector": check_mitigations
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
    check_name(experiment["name"])
    experiment["seeds"] = _seeds(experiment["seeds"])
    data = _data(raw, experiment["seeds"], chains=len(raw["chains"]))
    train = TrainSection(**_section("train", raw.get("train", {}), TRAIN))
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
            hint = did_you_mean(str(engine_name), names)
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
        cls = known_engine(engine_name)
        check_mitigations(cls, data, train)
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
    return Config(experiment, DataSection(**data), {}, tuple(chains), train)


def _section(name: str, raw: dict[str, Any], schema: dict[str, Param], engine_name: str = "") -> dict[str, Any]:
    out = {key: param.default for key, param in schema.items()}
    for key, value in raw.items():
        if key not in schema:
            owner = _owner(key, engine_name)
            hint = f" (it belongs to engine '{owner}')" if owner else did_you_mean(key, schema, f" {name}.")
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
            f"{key}: expected {_expected(p)}, got {short(value)}{did_you_mean(str(value), p.choices, ' ')}"
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


def check_name(name: Any) -> None:
    """ConfigError unless name is an experiment's name (NAME_RE)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"experiment.name: expected 1-64 letters, digits, '.', '_' or '-' (not first), got {name!r}")


def too_deep(value: Any, levels: int) -> str | None:
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


def _owner(key: str, engine_name: str) -> str:
    for name in engine_names():
        try:
            if name != engine_name and key in engine_class(name).PARAMS:
                return name
        except EngineError:
            continue
    return ""


def did_you_mean(word: str, options: Any, prefix: str = " ") -> str:
    """' (did you mean<prefix>option?)' for the option closest to word, '' when none is close."""
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean{prefix}{close[0]}?)" if close else ""

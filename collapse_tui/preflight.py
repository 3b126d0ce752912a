"""Preflight: what a valid preset needs to run here, checked before its run directory exists: the
engine's packages, its data and model within reach, the memory its generations hold.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from .chains import ChainSpec
from .config import Config, ConfigError, chain_specs, known_engine
from .engines import DataError


def requirements(cfg: Config) -> list[str]:
    """What a preset needs beyond this package and a CPU: 'torch', 'gpu' (device = "cuda"), 'hub'
    (a download from the Hugging Face hub). For `presets` and the start screen; reads nothing."""
    needs: list[str] = []
    for spec in chain_specs(cfg):
        cls = known_engine(spec.engine_name)
        new = ["torch"] if cls.needs_torch else []
        if cls.needs_torch and cfg.experiment["device"] == "cuda":
            new.append("gpu")
        if cls(spec.params).hub_needs():
            new.append("hub")
        needs += [n for n in new if n not in needs]
    return needs


def check_runnable(cfg: Config) -> None:
    """What a run needs beyond a valid preset, checked before its run directory exists: the engines'
    packages installed, their data and model within reach, a GPU when the preset asks for one, and the
    memory it needs (quick checks: nothing read but file sizes and headers, nothing downloaded). A
    ConfigError says everything missing at once, one line each."""
    problems: list[str] = []
    need = data = 0
    data_keys: list[str] = []
    for spec in chain_specs(cfg):
        cls = known_engine(spec.engine_name)
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if missing:
            problems.append(
                f"engine '{cls.name}' needs {', '.join(missing)}, not installed "
                "(for the built-in engines: pip install -e '.[torch]', or pip install 'collapse-tui[torch]')"
            )
        engine = cls(spec.params, device=cfg.experiment["device"])
        try:
            problems += engine.preflight() or []  # an engine of the older contract returns None, or raises
        except DataError as e:
            problems.append(str(e))
        try:
            data += engine.data_bytes()
        except DataError as e:
            problems.append(str(e))
        need += memory_need(cfg, spec, engine)
        if engine.data_keys and engine.data_keys not in data_keys:
            data_keys.append(engine.data_keys)
    memory = memory_problem(cfg, need, data, " or ".join(data_keys))
    problems += [memory] if memory else []
    if problems:  # a line once, though several chains lack it
        raise ConfigError("\n".join(dict.fromkeys(problems)))


def prefixed(prefix: str, error: ConfigError) -> ConfigError:
    """error with prefix before each of its lines (a sweep cell's name)."""
    return ConfigError("\n".join(f"{prefix}{line}" for line in str(error).splitlines()))


def memory_need(cfg: Config, spec: ChainSpec, engine) -> int:
    """About the bytes one chain's generation holds (0: not estimated); share_seeds grows its training set."""
    n = int(spec.params.get("samples", 0))
    drawn = math.ceil(n / cfg.data.filter_keep) if cfg.data.filtering else n
    population = cfg.data.population or len(spec.seeds)
    grown = n + (population - 1) * round(cfg.data.share_seeds * n)
    pooled = grown * cfg.generations if cfg.data.mode.startswith("accumulate") else grown
    return engine.memory_bytes(len(spec.seeds), drawn, pooled)


def memory_problem(cfg: Config, need: int, data: int = 0, data_keys: str = "") -> str:
    """The line refusing a run whose generations (need) and real data (data: read once, kept throughout)
    cannot fit in the memory this machine has available ('' when they fit); the advice names the larger part."""
    have, total = available_memory(), need + data
    if not (total and have and total > have):
        return ""
    if data > need:
        why = f"{data / 2**30:.1f} GiB of it the real data"
        advice = f"use less real data ({data_keys})" if data_keys else "use less real data"
    else:
        why, advice = f"seeds x samples x dimensions, {cfg.data.mode} mode", "use fewer seeds or samples"
    return f"this run needs about {total / 2**30:.1f} GiB ({why}) and {have / 2**30:.1f} GiB are available; {advice}"


def available_memory() -> int:
    """MemAvailable in bytes (0 when it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0

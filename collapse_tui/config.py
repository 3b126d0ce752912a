"""A preset's keys and the Config a valid preset becomes: the core's Param tables for [experiment] and
[data] (an engine's own keys are its PARAMS), the frozen Config, and the chains it declares.

A Config is plain data; nothing in a preset can run code. Every problem with a preset is a ConfigError:
one line that names the key, the value and what was expected (validation.py checks; preset_files.py reads).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import tomli_w

from .chains import CHAIN_KEYS, ChainSpec
from .engines import Engine, EngineError, Param, engine_class
from .engines.base import params_type

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
        "none",
        str,
        "keep the generated samples the reference scores best (perplexity) or a detector finds most real",
        choices=("none", "perplexity", "detector"),
    ),
    # at most 100 samples drawn per sample kept: a smaller share only eats the machine's memory
    "filter_keep": Param(0.9, float, "filter: share of generated samples kept", 0.01, 1),
    # mixing (collapse_tui/mixing.py): what the synthetic part of a training set is drawn from
    "share_others": Param(0.0, float, "[[chains]]: share of a chain's synthetic data from the other chains", 0, 1),
    "mix": Param([], list, "[[chains]]: matrix, row = receiving chain, column = source chain, rows sum to 1"),
    "share_seeds": Param(0.0, float, "share of every other seed's samples a seed adds to its own", 0, 1),
    "population": Param(0, int, "share_seeds: seeds pool in consecutive groups of this many (0: all)", min=0),
}
DATA |= {
    # mitigations (issue 24): how the next training set is drawn from the samples, and what real data weigh
    "reweight": Param(
        "none", str, "draw the training set from the samples with probability D / (1 - D)", choices=("none", "detector")
    ),
    "real_weight": Param(
        0.0, float, "keep, fresh, accumulate: the real examples' share of the fit (0: by their count)", 0, 1
    ),
    # a discriminator per seed and generation: about 3x a generation of a tiny point preset, 12x the 10,000
    # seeds of the paper's Gaussian; a filter or reweight by the detector measures it whatever this says
    "detector_auc": Param(True, bool, "measure detector_auc (real vs generated) every generation"),
}
# the learning-algorithm mitigations: what each generation's fit is pulled towards (engines declare which
# they have: Engine.mitigations)
TRAIN: dict[str, Param] = {
    "anchor": Param(
        "none", str, "lifelong learning: anchor every fit to generation 0's", choices=("none", "prior", "l2", "ewc")
    ),
    "anchor_strength": Param(
        1.0, float, "anchor: the prior's pseudo-count as a multiple of the training size, or the penalty's weight", 0
    ),
    "distill": Param(
        0.0, float, "knowledge distillation: the share alpha of the fit given to generation 0's model", 0, 1
    ),
    "distill_temperature": Param(1.0, float, "distill: the softmax temperature of text engines", 0, min_exclusive=True),
}
# written to preset.toml only when set: a run made before they existed still resumes (same preset text)
OPTIONAL = ("share_others", "mix", "share_seeds", "population", "reweight", "real_weight", "detector_auc")
OPTIONAL_DEFAULTS = {k: DATA[k].default for k in OPTIONAL}
SECTIONS = ("experiment", "data", "train", "engine", "chains")


class DataSection(params_type("DataKeys", DATA)):
    """The [data] section, validated: one typed field per key of DATA (cfg.data.mode, cfg.data.filter, ...)."""

    @property
    def filtering(self) -> bool:
        return self.filter != "none"

    def as_dict(self) -> dict[str, Any]:
        """The keys as a preset holds them (what engines' check_data and expected read)."""
        return dataclasses.asdict(self)


class TrainSection(params_type("TrainKeys", TRAIN)):
    """The [train] section, validated: the learning-algorithm mitigations (cfg.train.anchor, ...)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def used(self) -> list[str]:
        """The mitigations these keys ask of the engine, by the names Engine.mitigations declares."""
        return [self.anchor] * (self.anchor != "none") + ["distill"] * (self.distill > 0)


class ConfigError(ValueError):
    """A bad preset or override; str(err) is the one-line message shown to the user."""


@dataclass(frozen=True)
class Config:
    experiment: dict[str, Any]
    data: DataSection
    engine: dict[str, Any]  # {} when the preset declares [[chains]]
    chains: tuple[dict[str, Any], ...] = ()  # [[chains]]: name, engine, seeds and that engine's keys each
    train: TrainSection = TrainSection()

    @property
    def name(self) -> str:
        return self.experiment["name"]

    @property
    def engine_name(self) -> str:
        """The engine; with [[chains]], the first chain's (what labels and preview kinds go by)."""
        return self.chains[0]["engine"] if self.chains else self.experiment["engine"]

    @property
    def engine_names(self) -> list[str]:
        """Every engine the run trains: the chains' (in order, once each), or the one engine."""
        return list(dict.fromkeys(c["engine"] for c in self.chains)) if self.chains else [self.experiment["engine"]]

    @property
    def generations(self) -> int:
        return self.experiment["generations"]

    @property
    def seeds(self) -> list[int]:
        return self.experiment["seeds"]

    def section(self, name: str) -> dict[str, Any]:
        """The keys of [experiment], [data] or [engine] as a preset holds them."""
        return getattr(self, name).as_dict() if name in ("data", "train") else getattr(self, name)

    def with_generations(self, generations: int) -> Config:
        """The same preset run to another length (resume --generations N): no engine sees the total."""
        return dataclasses.replace(self, experiment=self.experiment | {"generations": generations})

    def chain(self, name: str) -> Config:
        """Chain name of a [[chains]] preset as a single-engine config (its engine, keys and seeds)."""
        c = next(c for c in self.chains if c["name"] == name)
        params = {k: v for k, v in c.items() if k not in CHAIN_KEYS}
        experiment = self.experiment | {"engine": c["engine"], "seeds": c.get("seeds", self.seeds)}
        return Config(experiment, self.data, params, train=self.train)

    def to_toml(self) -> str:
        experiment = dict(self.experiment)
        if self.seeds == list(range(len(self.seeds))):
            experiment["seeds"] = len(self.seeds)  # 0 .. n-1 written as its count
        data = {k: v for k, v in self.data.as_dict().items() if OPTIONAL_DEFAULTS.get(k, object()) != v}
        train = {k: v for k, v in self.train.as_dict().items() if TRAIN[k].default != v}
        sections: dict[str, Any] = {"experiment": experiment, "data": data, **({"train": train} if train else {})}
        if not self.chains:
            return tomli_w.dumps(sections | {"engine": self.engine})
        del experiment["engine"]
        return tomli_w.dumps(sections | {"chains": list(self.chains)})


def chain_specs(cfg: Config) -> list[ChainSpec]:
    """What each chain runs: a single-engine preset is one chain with no name."""
    if not cfg.chains:
        return [ChainSpec("", cfg.engine_name, cfg.engine, cfg.seeds)]
    return [
        ChainSpec(
            c["name"], c["engine"], {k: v for k, v in c.items() if k not in CHAIN_KEYS}, c.get("seeds", cfg.seeds)
        )
        for c in cfg.chains
    ]


def chain_names(cfg: Config) -> list[str]:
    """The chains' names; [] for a single-engine preset (its rows carry no chain)."""
    return [c["name"] for c in cfg.chains]


def known_engine(name: str) -> type[Engine]:
    """The registered engine class of that name; ConfigError (experiment.engine: ...) when there is none."""
    try:
        return engine_class(name)
    except EngineError as e:
        raise ConfigError(f"experiment.engine: {e}") from None

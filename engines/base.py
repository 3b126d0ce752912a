"""The engine contract: what a model family declares, and the methods the generation loop calls.

Engines work on plain arrays with the seeds on axis 0: data of shape (S, N, ...) holds N examples
for each of S seeds. Engines that train one model at a time (`batched = False`) get S = 1.
Engines know nothing of presets, run directories or front ends; progress goes through `report`.

A new model family is one module: a subclass of Engine that fills the class attributes below and
implements the abstract methods, registered under the `collapse_tui.engines` entry-point group
(see engines/__init__.py). Its report figures, if any, live in the module that `figures` names: a
FIGURES tuple, written as collapse_tui/report/figures.py says.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np


class Report(Protocol):
    """Progress inside a generation: step of total in phase, the loss if known, and where in words when the
    phase is long (detail: "epoch 2/5, step 37/120", "generating 512/2048 prompts"). The loop may raise
    from it to stop."""

    def __call__(self, phase: str, step: int, total: int, loss: float | None, detail: str = "") -> None: ...


# report(NOTE + text, 0, 0, None): a line for the run's log (e.g. which path an engine fell back to)
NOTE = "note: "

# What the sample panes draw for the built-in preview kinds: points (n, d) float32, images (n, H, W)
# float32 in [0, 1], text: a list of strings. A plugin may declare a kind of its own.
PREVIEW_KINDS = ("points", "images", "text")
Preview = np.ndarray | list[str]


class DataError(ValueError):
    """Data or a model that cannot be had, or does not fit the preset; str(err) is one line for the user."""


@dataclass(frozen=True)
class Param:
    """One engine-specific preset key: its default, type and allowed range."""

    default: Any
    kind: type  # int, float, str, bool, or Path (a str; relative paths are resolved against the preset)
    help: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Metric:
    """How the UI and the reports name one of an engine's metrics."""

    label: str  # what it measures, in words
    unit: str = ""  # its unit, or how it is normalised
    log: bool = False  # a positive quantity that spans decades (a perplexity): summarised and drawn in log10

    @property
    def axis(self) -> str:
        """A figure's axis label."""
        return f"{self.label}\n({self.unit})" if self.unit else self.label


# which way a headline metric moves as the model collapses: DOWN, lower is more collapsed; UP, the reverse
DOWN, UP = "down", "up"
DIRECTIONS = (DOWN, UP)

# every engine's rows carry it (collapse_tui/detector.py); engines list it in their METRICS
DETECTOR_AUC = Metric("AUC of a detector telling real examples from the samples", "0.5: indistinguishable")


@dataclass(frozen=True)
class Fitted:
    """What fit produced: the model, and what training measured (e.g. train_loss), which the loop adds
    to every metrics row of the seeds this model was fitted for."""

    model: Any
    losses: Mapping[str, float | None] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Generated:
    """What sample produced: the examples, (S, n, ...), and what the sample panes show of them."""

    samples: np.ndarray
    preview: Preview


def params_type(name: str, schema: Mapping[str, Param]) -> type:
    """A frozen dataclass with one typed field per key of the schema, defaults included."""

    def default(p: Param) -> Any:  # a list default is copied for each object, as dataclasses require
        return dataclasses.field(default_factory=lambda: list(p.default)) if isinstance(p.default, list) else p.default

    fields = [(k, str if p.kind is Path else p.kind, default(p)) for k, p in schema.items()]
    return dataclasses.make_dataclass(name, fields, frozen=True)


class Engine(ABC):
    """One model family. Subclasses fill the class attributes and implement the abstract methods."""

    name: ClassVar[str]  # the engine's name in presets; equal to its entry point's name
    PARAMS: ClassVar[dict[str, Param]]  # its [engine] keys
    Params: ClassVar[type]  # built from PARAMS: the frozen, typed object engines read as self.params
    preview_kind: ClassVar[str]  # what Generated.preview holds: one of PREVIEW_KINDS, or a plugin's own
    METRICS: ClassVar[dict[str, Metric]]  # at least 'perplexity' and 'variance'; other keys are labelled by name
    # the metrics that show collapse, each with the way it moves as the model collapses (DOWN or UP); the run
    # screen draws them. By default the real data's perplexity rises and the samples' variance falls (the
    # paper's Gaussian); not every engine's 'variance' shows collapse (engines/text_metrics.py TEXT_HEADLINE)
    HEADLINE: ClassVar[tuple[tuple[str, str], ...]] = (("perplexity", UP), ("variance", DOWN))
    figures: ClassVar[str] = ""  # module with the engine's own report figures (a FIGURES tuple), or none
    # how far this engine's model is from another chain's (distance()); None: the engine measures none
    DISTANCE: ClassVar[Metric | None] = None

    # capabilities
    batched: ClassVar[bool] = False  # all seeds train together in one call (else one seed at a time)
    can_draw_fresh: ClassVar[bool] = False  # real_data(rngs, n) draws n new real examples (data mode fresh)
    can_score: ClassVar[bool] = False  # score() gives per-sample NLL under a reference (data.filter)
    needs_torch: ClassVar[bool] = False  # runs on the preset's device with torch (else always the CPU)
    # the mitigations fit() implements, of: "prior", "l2", "ewc" (train.anchor), "distill" (train.distill),
    # "real_weight" (data.real_weight: fit takes weights=), "detector" (data.filter and data.reweight); a preset
    # asking for another is refused before a run directory exists. fit gets reference= (generation 0's model;
    # None at generation 0) when train.anchor or train.distill is set.
    mitigations: ClassVar[frozenset[str]] = frozenset()
    requires: ClassVar[tuple[str, ...]] = ()  # modules a run imports, checked before a run directory exists

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "PARAMS" in cls.__dict__:
            cls.Params = params_type(f"{cls.__name__}Params", cls.PARAMS)

    def __init__(self, params: Mapping[str, Any] | Any = (), device: str = "cpu", train: Mapping[str, Any] = {}):  # noqa: B006 (read only)
        """params: the [engine] keys (missing ones take their defaults), or a Params object. train: the
        preset's [train] keys (anchor, anchor_strength, distill, distill_temperature), for engines that
        declare mitigations; {} without them."""
        self.params = params if isinstance(params, self.Params) else self.Params(**dict(params))
        self.device = device
        self.train_keys = dict(train)

    @staticmethod  # noqa: B027 (an optional hook, not abstract)
    def check_params(params: Any) -> None:
        """Checks across keys (a Params object) that need no data read: raise DataError naming the key."""

    @staticmethod  # noqa: B027 (an optional hook, not abstract)
    def check_data(params: Any, data: Mapping[str, Any]) -> None:
        """Checks of the engine's keys against the preset's [data] section: raise DataError naming the key."""

    def hub_needs(self) -> list[tuple[str, str]]:
        """(key, what) for each thing these params take from the Hugging Face hub; none by default."""
        return []

    def preflight(self) -> list[str]:
        """What this machine lacks for a run of these params, one line each naming the key (a file that does
        not exist, the hub out of reach when it is needed, no GPU), [] when nothing: quick checks before a run
        directory exists, all reported together. Reads and downloads nothing. (Raising DataError instead,
        as engines written before this returned a list did, reports that one line.)"""
        return []

    def set_threads(self, threads: int) -> None:  # noqa: B027 (an optional hook, not abstract)
        """How many threads the engine's own compute pool may use (the loop's choice, made from the free
        cores), before the first fit; engines without such a pool ignore it."""

    def memory_bytes(self, seeds: int, drawn: int, pooled: int) -> int:
        """About how many bytes a generation holds for seeds seeds with drawn samples drawn per seed and
        pooled training examples kept per seed (0: not estimated). The loop refuses what cannot fit."""
        return 0

    # the keys that bound the real data read, named when data_bytes() is more than the machine has
    data_keys: ClassVar[str] = ""

    def data_bytes(self) -> int:
        """About how many bytes the real data (training and held-out) take while they are read and kept,
        from the params and at most the files' sizes and headers (0: not estimated); raise DataError
        naming the key when a header is unreadable or claims more than its file holds."""
        return 0

    def example_shape(self) -> tuple[int, ...] | None:
        """The shape of one example, (d,) for points, from the params alone (None: not known before the
        data are read). Chains that feed each other arrays must agree on it."""
        return None

    def to_shared(self, samples: np.ndarray) -> Any:
        """Samples (S, n, ...) in the form other chains receive them: the array itself (points, images);
        a text engine gives the text, list[list[str]] (per seed, its blocks)."""
        return samples

    def from_shared(self, shared: Any) -> np.ndarray:
        """Another chain's to_shared() as this engine's data (S, n', ...): a text engine tokenises the text
        its own way and cuts it into its blocks."""
        return np.asarray(shared)

    def distance(self, model: Any, other_model: Any, other_samples: np.ndarray) -> np.ndarray:
        """DISTANCE from this engine's model (one group's seeds) to another chain's model of the same seeds,
        whose samples other_samples are given in this engine's data form: (S,) floats."""
        raise NotImplementedError(f"engine {self.name!r} measures no distance between chains")

    def expected(self, generations: int, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Closed-form expectations, over seeds, of some of this engine's METRICS: {metric: (generations,)
        floats, one per generation 0, 1, ...} for these params and the preset's [data] section (mode and
        fractions); {} where theory gives none. Each formula cites its source where it is computed."""
        return {}

    def mitigated(self, data: Mapping[str, Any]) -> bool:
        """Whether a mitigation changes this engine's fits (its [train] keys, or data.real_weight): expected()
        gives none of the unmitigated laws then."""
        keys = self.train_keys
        return keys.get("anchor", "none") != "none" or bool(keys.get("distill")) or bool(data.get("real_weight"))

    def path(self, value: str) -> Path | None:
        """A path key's file or folder (None when not set): a preset's paths are absolute already (config
        resolves them against the preset's folder); a relative one given directly is the working folder's."""
        return Path(value) if value else None

    @abstractmethod
    def real_data(self, rngs: list[np.random.Generator], n: int | None = None) -> np.ndarray:
        """Real training examples, (S, N, ...): generation 0's data (n=None) or n fresh ones."""

    @abstractmethod
    def fit(self, data: np.ndarray, rngs: list[np.random.Generator], report: Report, source: Any = None) -> Fitted:
        """A model of data (S, N, ...), drawing all randomness from rngs (one per seed). source is the
        model that generated data (the previous generation's; None at generation 0), for an engine that
        draws fresh synthetic examples from it while it trains (the VAE's synthetic = "stream").

        Keywords the loop passes only to engines that declare the mitigation (Engine.mitigations):
        reference=: generation 0's model (None at generation 0), when train.anchor or train.distill is set;
        the fit reads self.train_keys for which and how strongly.
        weights=: (S, N) float64 per-example weights, mean 1 in each seed's row, when data.real_weight
        weighs the real examples (generation 1 on, modes keep, fresh, accumulate; collapse_tui/datamodes.py
        example_weights). A weight counts as a multiplicity: the fit maximises sum_i weights[s, i] log p(x_i)
        (weighted moments, weighted EM, weighted counts, per-example loss weights), so weights of 1 are the
        unweighted fit. Not passed (the unweighted fit) when the weights would all be 1."""

    @abstractmethod
    def sample(
        self, model: Any, n: int, rngs: list[np.random.Generator], report: Report, data: np.ndarray | None = None
    ) -> Generated:
        """n generated examples per seed, (S, n, ...), and their preview. data is what model was fitted on
        (the generation's training set), for an engine whose samples continue it (OPT's prompts = "train")."""

    def features(self, examples: np.ndarray, reference: Any) -> np.ndarray:
        """What the detector (data.filter/reweight = "detector", and every row's detector_auc) tells real
        examples from samples by: examples (S, n, ...) as (S, n, f) floats, f a few dozen at most (it fits
        a logistic regression on them by Newton's method). reference is generation 0's model. Engines
        that declare "detector" implement it; without it detector_auc is None."""
        raise NotImplementedError(f"engine {self.name!r} declares no detector features")

    def detector_real(self, rngs: list[np.random.Generator], n: int) -> np.ndarray | None:
        """At most n real examples per seed held apart from the training and the test data, (S, m, ...),
        what the detector compares the samples with; rngs are the detector's own (never the run's), so
        that drawing them changes nothing else. By default n fresh draws where the engine can draw them;
        None: the engine holds none apart (detector_auc is then None)."""
        return self.real_data(rngs, n) if self.can_draw_fresh else None

    def score(self, reference: Any, samples: np.ndarray) -> np.ndarray:
        """Per-example NLL of samples under the reference model, (S, n): lower is more typical.
        Engines that can score set can_score."""
        raise NotImplementedError(f"engine {self.name!r} cannot score samples")

    @abstractmethod
    def evaluate(self, model: Any, samples: np.ndarray, reference: Any) -> list[dict[str, Any]]:
        """One dict of metrics per seed; each has at least 'perplexity' and 'variance'. reference is
        generation 0's model."""

    @abstractmethod
    def save(self, model: Any, directory: Path) -> None:
        """Write the model into an existing, empty directory (no pickle: npz, safetensors, JSON)."""

    @abstractmethod
    def load(self, directory: Path) -> Any:
        """The model save wrote."""


def held_apart(examples: np.ndarray | None, rngs: list[np.random.Generator], n: int) -> np.ndarray | None:
    """Engine.detector_real of a finite real set: up to n of examples (N, ...) per seed, a random choice by
    each seed's generator, (S, min(n, N), ...); None when there are none."""
    if examples is None or len(examples) == 0:
        return None
    return np.stack([examples[rng.permutation(len(examples))[:n]] for rng in rngs])


def point_features(points: np.ndarray) -> np.ndarray:
    """The detector's features of points (S, n, d): the coordinates and their squares, (S, n, 2d) (a
    logistic regression on them separates Gaussians of other means and other variances)."""
    x = np.asarray(points, dtype=np.float64)
    return np.concatenate([x, x * x], axis=-1)


def points_preview(samples: np.ndarray, n: int = 1000) -> np.ndarray:
    """The preview of point data: up to n points of the first seed."""
    return np.asarray(samples[0, :n], dtype=np.float32)


class TorchEngine(Engine):
    """Shared part of the torch engines (VAE, OPT): one seed at a time on the preset's device, real
    data from a finite set (self.dataset().train). torch is imported only when a method needs it."""

    needs_torch = True
    _torch_device = None

    @abstractmethod
    def dataset(self) -> Any:
        """The real data, read once; its .train holds the training examples (N, ...)."""

    def real_data(self, rngs: list[np.random.Generator], n: int | None = None) -> np.ndarray:
        if n is not None:
            raise NotImplementedError(f"{self.name}: the real data are a finite set; it cannot draw fresh examples")
        train = self.dataset().train
        return np.broadcast_to(train, (len(rngs), *train.shape)).copy()

    def set_threads(self, threads: int) -> None:
        import torch  # the run is about to import it anyway

        torch.set_num_threads(threads)  # its intra-op pool; torch's default is every core, busy or not

    def preflight(self) -> list[str]:
        if self.device != "cuda" or importlib.util.find_spec("torch") is None:  # no torch: the package line says so
            return []
        import torch  # the run is about to import it anyway

        if torch.cuda.is_available():
            return []
        cpu_only = f" (torch {torch.__version__} is a build without CUDA: README, On a GPU server)"
        return [
            f"experiment.device: 'cuda', and torch sees no GPU here{cpu_only if torch.version.cuda is None else ''}; "
            "--set experiment.device='cpu' runs it on the CPU (a GPU preset: hours to days there)"
        ]

    def _dev(self):
        """The torch device: 'auto' is CUDA when there is one."""
        import torch

        if self._torch_device is None:
            want = self.device
            if want == "auto":
                want = "cuda" if torch.cuda.is_available() else "cpu"
            self._torch_device = torch.device(want)
        return self._torch_device

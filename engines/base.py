"""What every engine shares: its parameter schema and the interface the generation loop calls.

Engines work on plain arrays with the seeds on axis 0: data of shape (S, N, ...) holds N examples
for each of S seeds. Engines that train one model at a time (VAE, OPT) get S = 1.
Engines know nothing of presets, run directories or front ends; progress goes through `report`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

# report(phase, step, total, loss): progress inside a generation. The loop may raise from it to stop.
Report = Callable[[str, int, int, "float | None"], None]


@dataclass(frozen=True)
class Param:
    """One engine-specific preset key: its default, type and allowed range."""

    default: Any
    kind: type  # int, float, str or bool
    help: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    choices: tuple[Any, ...] | None = None


class Engine:
    """Base class: one model family. Subclasses fill PARAMS and the methods below."""

    name: ClassVar[str]
    PARAMS: ClassVar[dict[str, Param]]
    batched: ClassVar[bool] = False  # True: all seeds train together in one call
    can_draw_fresh: ClassVar[bool] = False  # True: real_data can draw new real examples at will
    uses_torch: ClassVar[bool] = False  # True: runs on the preset's device (else always the CPU)

    @staticmethod
    def check_params(params: dict[str, Any]) -> None:
        """Checks across keys that need no data read; raise ValueError with one line naming the key."""

    def __init__(self, params: dict[str, Any], device: str = "cpu", base_dir: Path | None = None):
        self.params = params
        self.device = device
        self.base_dir = base_dir or Path.cwd()  # local paths in params are relative to it

    def real_data(self, rngs: list[np.random.Generator], n: int | None = None) -> np.ndarray:
        """Real training examples, (S, N, ...): generation 0's data (n=None) or n fresh ones."""
        raise NotImplementedError

    def fit(self, data: np.ndarray, rngs: list[np.random.Generator], report: Report) -> Any:
        raise NotImplementedError

    def sample(self, model: Any, n: int, rngs: list[np.random.Generator], report: Report) -> np.ndarray:
        """n generated examples per seed, (S, n, ...)."""
        raise NotImplementedError

    def score(self, reference: Any, samples: np.ndarray) -> np.ndarray:
        """Per-example NLL of samples under the reference model, (S, n): lower is more typical."""
        raise NotImplementedError

    def evaluate(self, model: Any, samples: np.ndarray, reference: Any) -> list[dict[str, Any]]:
        """One dict of metrics per seed; each has at least 'perplexity' and 'variance'."""
        raise NotImplementedError

    def preview(self, samples: np.ndarray) -> np.ndarray:
        """The small part of a generation's samples that the sample panes show (first seed)."""
        return np.asarray(samples[0, :1000], dtype=np.float32)

    def save(self, model: Any, directory: Path) -> None:
        raise NotImplementedError

    def load(self, directory: Path) -> Any:
        raise NotImplementedError


class TorchEngine(Engine):
    """Shared part of the torch engines (VAE, OPT): one seed at a time on the preset's device, real
    data from a finite set (self.dataset().train). torch is imported only when a method needs it."""

    uses_torch = True
    _torch_device = None

    def dataset(self) -> Any:
        raise NotImplementedError

    def real_data(self, rngs: list[np.random.Generator], n: int | None = None) -> np.ndarray:
        if n is not None:
            raise NotImplementedError(f"{self.name}: the real data are a finite set; it cannot draw fresh examples")
        train = self.dataset().train
        return np.broadcast_to(train, (len(rngs), *train.shape)).copy()

    def _dev(self):
        """The torch device: 'auto' is CUDA when there is one."""
        import torch

        if self._torch_device is None:
            want = self.device
            if want == "auto":
                want = "cuda" if torch.cuda.is_available() else "cpu"
            self._torch_device = torch.device(want)
        return self._torch_device

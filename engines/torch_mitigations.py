"""The learning-algorithm mitigations of the torch engines (vae, opt), as one fit applies them: an anchor to
generation 0's weights (L2-SP or EWC), distillation from generation 0's model, and per-example loss weights.

Imported only when a torch engine trains (its engine imports it inside fit), so validating a preset never
loads torch. The engines keep their own losses; this module holds what they share: the penalty, the
Fisher information, the weights, and the one object (Mitigations) their training loops read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

FISHER_EXAMPLES = 256  # real training examples the diagonal Fisher averages over (evenly spaced, all when fewer)
FISHER_ATTR = "_ewc_fisher"  # where the reference model keeps its Fisher, once computed


@dataclass(frozen=True)
class Anchor:
    """A quadratic pull towards generation 0's weights: (strength / 2) sum_i F_i (theta_i - theta0_i)^2, added to
    the loss of each training example. F = 1 is L2-SP (Li, Grandvalet & Davoine 2018, "Explicit inductive bias
    for transfer learning with convolutional networks", eq. 2: alpha/2 ||w - w0||^2); F the diagonal Fisher of
    generation 0's model on real data is EWC (Kirkpatrick et al. 2017, PNAS, eq. 3: sum_i lambda/2 F_i
    (theta_i - theta*_A,i)^2). With strength 1 the EWC penalty is the second-order estimate of how much the
    per-example loss on real data rose from generation 0's. An anchored fit starts from generation 0's weights
    (start): both penalties presuppose it, L2-SP's "SP" is that starting point, and EWC learns task B from task
    A's weights; a fit without an anchor starts where the engine's plain fit does."""

    center: dict[str, torch.Tensor]  # generation 0's weights, by parameter name (detached)
    precision: dict[str, torch.Tensor] | None  # the Fisher's diagonal by name (EWC), or None (L2-SP: all 1)
    strength: float

    def start(self, model: nn.Module) -> nn.Module:
        """model with generation 0's weights (copied in: the reference stays as it is)."""
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.center[name])
        return model

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """The penalty of model's current weights: a scalar tensor that gradients flow through."""
        terms = []
        for name, p in model.named_parameters():
            sq = (p - self.center[name]).square()
            terms.append((sq if self.precision is None else self.precision[name] * sq).sum())
        return 0.5 * self.strength * torch.stack(terms).sum()


@dataclass(frozen=True)
class Mitigations:
    """What one fit applies besides its data loss; the default applies nothing (the plain fit, bit for bit)."""

    anchor: Anchor | None = None
    teacher: nn.Module | None = None  # generation 0's model, for distillation (eval mode, no gradients)
    alpha: float = 0.0  # distillation's share of the loss
    temperature: float = 1.0  # distillation's softmax temperature (text)
    weights: torch.Tensor | None = None  # per training example (N,), mean 1, on the device; None: all 1

    @property
    def reshapes_loss(self) -> bool:
        """The data loss is no longer the plain mean (or sum): distillation or example weights are on."""
        return self.teacher is not None or self.weights is not None

    def add_anchor(self, loss: torch.Tensor, model: nn.Module, examples: int) -> torch.Tensor:
        """loss plus the anchor's penalty once per example of the step (the penalty is per example)."""
        return loss if self.anchor is None else loss + examples * self.anchor.penalty(model)


def example_weights(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    """One seed's per-example loss weights (N,) float64 from fit's weights= (1, N); None when there are none or
    all are 1, so that such a fit is the unweighted one bit for bit."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (1, n):
        raise ValueError(f"weights of shape {w.shape} for data of one seed and {n} examples")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("example weights must be finite and >= 0")
    return None if np.all(w == 1.0) else w[0]


def fisher_diagonal(
    model: nn.Module, examples: Iterable[Any], loss: Callable[[nn.Module, Any], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The empirical diagonal Fisher information of model on examples: the mean over examples of the squared
    gradient of each example's loss, loss(model, example) (its negative log-likelihood), by parameter name
    (Kirkpatrick et al. 2017, PNAS, "Methods": F_i = E[(d log p / d theta_i)^2], here on real data).
    Deterministic: the model in eval mode (no dropout) and loss drawing its noise from fixed seeds."""
    was_training = model.training
    model.eval()
    total = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in model.named_parameters()}
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}  # frozen ones (LoRA's base): 0
    count = 0
    for x in examples:
        grads = torch.autograd.grad(loss(model, x), list(params.values()), allow_unused=True)
        for (k, _), g in zip(params.items(), grads):
            if g is not None:
                total[k] += g.float().square()
        count += 1
    model.train(was_training)
    return {k: v / max(count, 1) for k, v in total.items()}


def fisher_indices(n: int) -> np.ndarray:
    """The real examples the Fisher is computed on: FISHER_EXAMPLES evenly spaced ones (all when fewer)."""
    return np.unique(np.linspace(0, n - 1, min(n, FISHER_EXAMPLES)).round().astype(np.int64))


def build(
    train: Mapping[str, Any],
    reference: nn.Module | None,
    weights: np.ndarray | None,
    device: torch.device,
    fisher: Callable[[nn.Module], dict[str, torch.Tensor]],
) -> Mitigations:
    """The mitigations of one fit from the [train] keys (anchor, anchor_strength, distill, distill_temperature),
    generation 0's model (None at generation 0: nothing to anchor to or distil from) and the per-example
    weights. fisher(reference) computes the EWC Fisher; it is computed once and kept on the reference, so a run
    computes it at generation 1, and a resumed run again from the reloaded reference, to the same bits on CPU."""
    w = (
        None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    )  # a copy: fit's may be read-only
    if reference is None:
        return Mitigations(weights=w)
    anchor = None
    kind, strength = train.get("anchor", "none"), float(train.get("anchor_strength", 1.0))
    if kind in ("l2", "ewc") and strength > 0:
        center = {k: p.detach() for k, p in reference.named_parameters()}
        precision = None
        if kind == "ewc":
            if getattr(reference, FISHER_ATTR, None) is None:
                setattr(reference, FISHER_ATTR, fisher(reference))
            precision = getattr(reference, FISHER_ATTR)
        anchor = Anchor(center, precision, strength)
    alpha = float(train.get("distill", 0.0))
    teacher = reference.eval() if alpha > 0 else None
    return Mitigations(anchor, teacher, alpha, float(train.get("distill_temperature", 1.0)), w)

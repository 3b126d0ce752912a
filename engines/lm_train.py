"""Fine-tuning a causal language model on token blocks, as the official code's Lightning Trainer does:
AdamW, warmup then a cosine (per step, or once per epoch), no gradient clipping, and the weights of the
epoch with the best validation loss kept. torch is imported by the caller's engine, never at import.

The speed comes from where the work runs, not from a changed recipe: the blocks live on the device, the
optimizer is fused, the forward can be compiled, and the host reads the loss at most once a second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .base import DataError, Report

if TYPE_CHECKING:
    from .torch_mitigations import Mitigations


@dataclass(frozen=True)
class Schedule:
    epochs: int
    batch: int
    lr: float
    lr_min: float
    weight_decay: float
    warmup_steps: int
    per_epoch: bool  # the cosine moves once per epoch (CosineAnnealingLR(T_max=epochs)), else every step


@dataclass
class Trained:
    best: dict[str, Any]  # state dict of the epoch with the best validation loss
    train_loss: float | None  # the last step's
    val_loss: float  # of the best weights
    step_losses: list[float]  # every optimizer step's
    val_losses: list[float]  # every epoch's


def cosine_lambda(total: int, warmup: int, lr: float, lr_min: float, epochs: int = 0):
    """Multiplier of lr at each step: linear warmup, then a cosine from lr to lr_min at the last step; with
    epochs, the cosine moves once per epoch and epoch e gets lr_min + (lr - lr_min)(1 + cos(pi e / epochs)) / 2,
    as torch's CosineAnnealingLR(T_max=epochs, eta_min=lr_min) stepped at each epoch's end."""
    floor = lr_min / lr

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step * epochs // total) / epochs if epochs else min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def train_causal_lm(
    model,
    x,
    sched: Schedule,
    seed: int,
    validate: Callable[[Any], float],
    report: Report,
    autocast: Callable[[], Any],
    compile_forward: bool = False,
    mit: Mitigations | None = None,
) -> Trained:
    """Train model on the blocks x (a (N, L) long tensor on the model's device); validate(model) gives the
    validation loss after each epoch. Batch order and dropout come from seed. mit: the mitigations (an anchor's
    starting point and penalty, distillation, example weights: block_loss); the losses recorded are the data
    loss alone."""
    import torch

    from .torch_mitigations import Mitigations

    mit = mit or Mitigations()
    if mit.anchor is not None:
        mit.anchor.start(model)

    dev = x.device
    total = math.ceil(len(x) / sched.batch) * sched.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=sched.lr, weight_decay=sched.weight_decay, fused=True)
    lr_at = cosine_lambda(total, sched.warmup_steps, sched.lr, sched.lr_min, sched.epochs if sched.per_epoch else 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    forward = torch.compile(model, dynamic=False) if compile_forward else model  # static: the last batch apart
    compile_failed = torch._dynamo.exc.BackendCompilerFailed if compile_forward else ()
    gen = torch.Generator().manual_seed(seed)
    losses = torch.zeros(total, device=dev)
    best, best_loss, step, loss_v, shown = None, math.inf, 0, None, time.monotonic()
    val_losses = []
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)  # dropout
        for epoch in range(sched.epochs):
            model.train()
            order = torch.randperm(len(x), generator=gen).to(dev)
            for i in range(0, len(x), sched.batch):
                idx = order[i : i + sched.batch]
                ids = x[idx]
                try:
                    with autocast():
                        if mit.reshapes_loss:
                            w = None if mit.weights is None else mit.weights[idx]
                            loss, data = block_loss(forward(input_ids=ids).logits, ids, mit, w)
                        else:
                            loss = data = forward(input_ids=ids, labels=ids).loss
                except compile_failed as e:
                    raise DataError(
                        f'engine.compile: torch.compile failed ({e.inner_exception!r:.200}); set engine.compile = "off"'
                    ) from e
                mit.add_anchor(loss, model, 1).backward()  # the loss is a mean over blocks: one penalty
                opt.step()
                opt.zero_grad(set_to_none=True)
                scheduler.step()
                losses[step] = data.detach()
                step += 1
                if step == total or time.monotonic() - shown >= 1.0:  # the only host syncs in the loop
                    loss_v, shown = float(losses[step - 1]), time.monotonic()
                report("train", step, total, loss_v, f"epoch {epoch + 1}/{sched.epochs}, step {step}/{total}")
            val = validate(model)
            val_losses.append(val)
            if best is None or val < best_loss:  # (a NaN loss still leaves weights to return)
                best_loss = val
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Trained(best, loss_v, best_loss, losses.cpu().tolist(), val_losses)


def block_loss(logits, ids, mit: Mitigations, w) -> tuple[Any, Any]:
    """(the loss the optimizer steps on, the data loss) of a batch of blocks ids (B, L) whose logits (B, L, V)
    the student gave: each block's data loss is its mean NLL per predicted token (tokens 2..L, as the model's
    own labels= loss); with distillation its loss is (1 - alpha) that + alpha T^2 times the mean over the same
    positions of KL(teacher || student) of the token distributions at temperature T (Hinton, Vinyals & Dean
    2015, "Distilling the knowledge in a neural network", section 2: the T^2 keeps the soft targets' gradients
    on the hard targets' scale). The batch's loss is the mean over blocks, each counting w (B,) times."""
    import torch
    import torch.nn.functional as F

    s = logits[:, :-1].float()
    nll = F.cross_entropy(s.flatten(0, 1), ids[:, 1:].flatten(), reduction="none").view(len(ids), -1).mean(1)
    per = nll
    if mit.teacher is not None:
        t = mit.temperature
        with torch.no_grad():
            log_p_teacher = F.log_softmax(mit.teacher(input_ids=ids).logits[:, :-1].float() / t, dim=-1)
        kl = F.kl_div(F.log_softmax(s / t, dim=-1), log_p_teacher, reduction="none", log_target=True)
        per = (1 - mit.alpha) * nll + mit.alpha * t * t * kl.sum(-1).mean(1)
    if w is None:
        return per.mean(), nll.mean()
    return (w * per).mean(), (w * nll).mean()

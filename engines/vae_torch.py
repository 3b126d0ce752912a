"""The paper's convolutional VAE in PyTorch: the model, its training loop and the passes the metrics need.

Imported only when a VAE run starts, so that validating a preset never loads torch (engines.vae
imports this module inside its methods). Arrays cross the boundary as numpy; everything inside
stays on the model's device.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .torch_mitigations import Mitigations

EVAL_BATCH = 2048  # images per forward pass when nothing is trained


class VAE(nn.Module):
    """Conv(1->c, k4 s2) - Conv(c->2c, k4 s2) - linear -> (mu, logvar); linear -> ConvT(2c->c) - ConvT(c->1).

    With latent 20 and capacity c = 64 on 28x28 images this is the paper's 647,081 parameters
    (one linear layer gives mu and logvar together: the same weights as two, one kernel fewer).
    Other image sizes are padded to a multiple of 4 so that the decoder gives back the same size.
    """

    def __init__(self, height: int, width: int, latent: int = 20, capacity: int = 64):
        super().__init__()
        self.height, self.width, self.latent, self.capacity = height, width, latent, capacity
        self.pad_h, self.pad_w = -height % 4, -width % 4
        c = capacity
        self.grid = (2 * c, (height + self.pad_h) // 4, (width + self.pad_w) // 4)  # after the encoder's convs
        flat = math.prod(self.grid)
        self.conv1 = nn.Conv2d(1, c, 4, 2, 1)
        self.conv2 = nn.Conv2d(c, 2 * c, 4, 2, 1)
        self.fc_stats = nn.Linear(flat, 2 * latent)
        self.fc_dec = nn.Linear(latent, flat)
        self.deconv2 = nn.ConvTranspose2d(2 * c, c, 4, 2, 1)
        self.deconv1 = nn.ConvTranspose2d(c, 1, 4, 2, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, H, W) -> mu, logvar (B, latent)."""
        h = F.pad(x[:, None], (0, self.pad_w, 0, self.pad_h))
        h = F.relu(self.conv2(F.relu(self.conv1(h))))
        return self.fc_stats(h.flatten(1)).chunk(2, dim=1)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent) -> pixel logits (B, H, W); the image is their sigmoid."""
        h = F.relu(self.deconv2(self.fc_dec(z).view(-1, *self.grid)))
        if h.device.type == "cpu":  # oneDNN's kernel for one output channel took 2.5x the gemm + col2im one
            d = self.deconv1
            out = torch.ops.aten.slow_conv_transpose2d(h, d.weight, d.kernel_size, d.bias, d.stride, d.padding)[:, 0]
        else:
            out = self.deconv1(h)[:, 0]
        return out[:, : self.height, : self.width]

    def config(self) -> dict[str, int]:
        return {"height": self.height, "width": self.width, "latent": self.latent, "capacity": self.capacity}


def generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def new_vae(height: int, width: int, latent: int, capacity: int, seed: int, device: torch.device) -> VAE:
    """A freshly initialised VAE; the initial weights depend on seed only (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VAE(height, width, latent, capacity)
    return model.to(device)


@dataclass(frozen=True)
class Pass:
    """One stochastic pass of a batch through the VAE: the encoder's Gaussians, the latents drawn from them,
    the decoder's pixel logits there, and the per-image negative ELBO (B,)."""

    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor
    neg_elbo: torch.Tensor


def forward_pass(model: VAE, x: torch.Tensor, gen: torch.Generator) -> Pass:
    """The negative ELBO in nats per image: summed binary cross-entropy + KL to N(0, I), beta = 1
    (Kingma & Welling 2014, eq. 10, with the Gaussian KL of their appendix B)."""
    mu, logvar = (t.float() for t in model.encode(x))  # fp32 outside the layers, also under autocast
    eps = torch.randn(mu.shape, generator=gen, device=mu.device)
    z = mu + eps * (0.5 * logvar).exp()
    logits = model.decode_logits(z).float()
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)
    return Pass(mu, logvar, z, logits, rec + kl)


def neg_elbo(model: VAE, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-image negative ELBO in nats, (B,)."""
    return forward_pass(model, x, gen).neg_elbo


def distill_divergence(student: Pass, teacher: VAE, x: torch.Tensor) -> torch.Tensor:
    """How far the student's encoder and decoder are from the teacher's on the batch x, per image (B,), in nats:
    KL(q_T(z|x) || q_S(z|x)) between the encoders' diagonal Gaussians (closed form: 1/2 sum [log s_S^2 - log s_T^2
    + (s_T^2 + (mu_T - mu_S)^2) / s_S^2 - 1]) plus, at the student's latents z, the pixels' Bernoulli
    KL(p_T(x|z) || p_S(x|z)), i.e. the decoders' cross-entropy less the teacher's entropy, summed over pixels
    (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a neural network": match the teacher's output
    distribution). Zero exactly when the student computes the teacher's distributions there."""
    with torch.no_grad():
        mu_t, logvar_t = (t.float() for t in teacher.encode(x))
        logits_t = teacher.decode_logits(student.z.detach()).float()
        p_t = torch.sigmoid(logits_t)
        entropy_t = F.binary_cross_entropy_with_logits(logits_t, p_t, reduction="none").flatten(1).sum(1)
    enc = 0.5 * (
        student.logvar - logvar_t + (logvar_t.exp() + (mu_t - student.mu).square()) / student.logvar.exp() - 1
    ).sum(1)
    cross = F.binary_cross_entropy_with_logits(student.logits, p_t, reduction="none").flatten(1).sum(1)
    return enc + cross - entropy_t


def batch_loss(
    model: VAE, x: torch.Tensor, gen: torch.Generator, mit: Mitigations, w: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the summed loss of the batch the optimizer steps on, its summed negative ELBO): with distillation each
    image's loss is (1 - alpha) its negative ELBO + alpha distill_divergence; with weights w (B,) each image's
    loss counts w times; the anchor's penalty is added once per image."""
    if not mit.reshapes_loss:
        loss = data = neg_elbo(model, x, gen).sum()
    else:
        out = forward_pass(model, x, gen)
        per = out.neg_elbo
        if mit.teacher is not None:
            per = (1 - mit.alpha) * per + mit.alpha * distill_divergence(out, mit.teacher, x)
        loss, data = (per.sum(), out.neg_elbo.sum()) if w is None else ((w * per).sum(), (w * out.neg_elbo).sum())
    return mit.add_anchor(loss, model, len(x)), data


class Adam:
    """torch.optim.Adam's update (L2 weight decay added to the gradient, bias-corrected moments) with the foreach
    ops of its multi-tensor path, one call per op for all parameters: on the CPU torch's default is a Python loop
    over them, with the same ops in the same order, so the weights come out bit for bit the same. Not
    torch.optim: building any of its optimizers imports torch._dynamo, a second of CPU (a tenth of vae-quick)."""

    def __init__(self, params: list[nn.Parameter], lr: float, weight_decay: float, eps: float = 1e-8) -> None:
        self.params, self.lr, self.weight_decay, self.eps = params, lr, weight_decay, eps
        self.beta1, self.beta2 = 0.9, 0.999  # torch's defaults, as the engine has always used
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        grads = [p.grad for p in self.params]
        if self.weight_decay:
            grads = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - self.beta1)
        torch._foreach_mul_(self.exp_avg_sq, self.beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - self.beta2)
        correction1, correction2 = 1 - self.beta1 ** float(self.steps), 1 - self.beta2 ** float(self.steps)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, correction2**0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, -(self.lr / correction1))


def optimizer(model: VAE, lr: float, weight_decay: float, cuda: bool) -> Adam | torch.optim.Adam:
    """Adam for model: torch's fused kernel on CUDA, the foreach update above elsewhere."""
    if cuda:
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    return Adam(list(model.parameters()), lr, weight_decay)


def train(
    model: VAE,
    x: torch.Tensor,
    *,
    epochs: int,
    batch: int,
    lr: float,
    weight_decay: float,
    gen: torch.Generator,
    amp: bool,
    report: Callable[[str, int, int, float | None], None],
    source: VAE | None = None,
    mit: Mitigations | None = None,
) -> float:
    """Adam on the summed loss of each batch (the paper's recipe), with the mitigations mit (batch_loss; an
    anchor first sets model to generation 0's weights); returns the last epoch's negative ELBO per pixel
    (example-weighted when mit has weights).

    x (N, H, W) lives on the model's device. With a source, each batch is instead decoded by the source
    (the decoder's means) from fresh z ~ N(0, I), for as many steps as x would take (no example weights
    then). One host sync per epoch (the epoch's loss), none per step.
    """
    mit = mit or Mitigations()
    if mit.anchor is not None:
        mit.anchor.start(model)
    if source is not None and mit.weights is not None:
        raise ValueError("example weights need a fixed training set, not one streamed from a source")
    n, pixels = x.shape[0], x.shape[1] * x.shape[2]
    cuda = x.is_cuda
    opt = optimizer(model, lr, weight_decay, cuda)
    steps = math.ceil(n / batch)
    last: float | None = None
    model.train()
    if source is not None:
        source.eval()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen, device=x.device)
        running = torch.zeros((), device=x.device)
        for i in range(steps):
            idx = perm[i * batch : (i + 1) * batch]
            if source is None:
                xb = x[idx]
            else:
                with torch.no_grad():
                    z = torch.randn((min(batch, n - i * batch), model.latent), generator=gen, device=x.device)
                    xb = torch.sigmoid(source.decode_logits(z)).float()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and amp):
                loss, data = batch_loss(model, xb, gen, mit, None if mit.weights is None else mit.weights[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += data.detach()
            report("fit", epoch * steps + i + 1, epochs * steps, last)
        last = running.item() / (n * pixels)
    report("fit", epochs * steps, epochs * steps, last)
    return last


def _batches(a: np.ndarray, device: torch.device):
    for i in range(0, len(a), EVAL_BATCH):
        yield torch.from_numpy(np.ascontiguousarray(a[i : i + EVAL_BATCH], dtype=np.float32)).to(device)


@torch.inference_mode()
def decode(model: VAE, z: np.ndarray) -> np.ndarray:
    """Latents (n, latent) -> images (n, H, W) float32 in [0, 1]: the decoder's means, as in the paper."""
    model.eval()
    dev = next(model.parameters()).device
    out = [torch.sigmoid(model.decode_logits(zb)).cpu() for zb in _batches(z, dev)]
    return torch.cat(out).numpy()


@torch.inference_mode()
def encode_means(model: VAE, x: np.ndarray) -> np.ndarray:
    """Images (n, H, W) -> posterior means mu (n, latent)."""
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat([model.encode(xb)[0].cpu() for xb in _batches(x, dev)]).numpy()


@torch.inference_mode()
def neg_elbo_per_pixel(model: VAE, x: np.ndarray, seed: int) -> np.ndarray:
    """Negative ELBO per pixel of each image (n,), with the noise drawn from a fixed seed."""
    model.eval()
    dev = next(model.parameters()).device
    gen = generator(seed, dev)
    out = [neg_elbo(model, xb, gen).cpu() for xb in _batches(x, dev)]
    return (torch.cat(out).double() / (x.shape[1] * x.shape[2])).numpy()


def save(model: VAE, directory: Path) -> None:
    """Weights as safetensors, shape as JSON: nothing that needs pickle to read back."""
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, directory / "vae.safetensors")
    (directory / "vae.json").write_text(json.dumps(model.config()))


def load(directory: Path, device: torch.device) -> VAE:
    cfg = json.loads((directory / "vae.json").read_text())
    model = VAE(cfg["height"], cfg["width"], cfg["latent"], cfg["capacity"])
    model.load_state_dict(load_file(directory / "vae.safetensors"))
    return model.to(device)

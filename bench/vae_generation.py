"""Benchmark: one generation's training of the paper's VAE as the notebook runs it (DataLoader over a
TensorDataset on the host, a copy to the device and a .item() for the loss at every step, sigmoid + BCE)
and as the vae engine runs it (data on the device, one host sync per epoch, bf16 autocast and fused
Adam on CUDA). Same data, same model size, same batch; prints seconds per epoch for both and the ratio,
and what a paper generation (30 epochs x 60,000 28x28 images) would take at the measured rate.

    .venv/bin/python bench/vae_generation.py                          # CPU: 8x8 digits, under a minute
    .venv/bin/python bench/vae_generation.py --data mnist --images 4000 --epochs 1
    .venv/bin/python bench/vae_generation.py --data mnist --images 0 --device cuda   # a GPU: all of t10k
    .venv/bin/python bench/vae_generation.py --data mnist --mnist tests/data/mnist   # the t10k shipped with the tests
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import machine
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from collapse_tui.engines import vae_torch as vt
from collapse_tui.engines.vae_data import load_digits, read_idx

ROOT = Path(__file__).resolve().parents[1]

MNIST = ROOT.parent / "shared" / "data" / "mnist"
PAPER_IMAGE_EPOCHS = 30 * 60_000  # one paper generation: 30 epochs of the 60k training images


class NotebookVAE(nn.Module):
    """The notebook's model: separate encoder and decoder, fc_mu and fc_logvar, a sigmoid on the output."""

    def __init__(self, h4: int, w4: int, latent: int, c: int):
        super().__init__()
        self.h4, self.w4, self.c = h4, w4, c
        self.conv1, self.conv2 = nn.Conv2d(1, c, 4, 2, 1), nn.Conv2d(c, 2 * c, 4, 2, 1)
        self.fc_mu, self.fc_logvar = nn.Linear(2 * c * h4 * w4, latent), nn.Linear(2 * c * h4 * w4, latent)
        self.fc = nn.Linear(latent, 2 * c * h4 * w4)
        self.deconv2, self.deconv1 = nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ConvTranspose2d(c, 1, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = F.relu(self.conv2(F.relu(self.conv1(x)))).flatten(1)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        h = self.fc(z).view(-1, 2 * self.c, self.h4, self.w4)
        return torch.sigmoid(self.deconv1(F.relu(self.deconv2(h)))), mu, logvar


def notebook_epochs(x: np.ndarray, args: argparse.Namespace, device: torch.device) -> float:
    """Seconds per epoch of the notebook's loop (x padded to a multiple of 4 like the engine does)."""
    torch.manual_seed(0)
    n, h, w = x.shape
    ph, pw = -h % 4, -w % 4
    data = F.pad(torch.from_numpy(x)[:, None], (0, pw, 0, ph))
    model = NotebookVAE((h + ph) // 4, (w + pw) // 4, args.latent, args.capacity).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    loader = DataLoader(TensorDataset(data), batch_size=args.batch, shuffle=True)
    times = []
    for _ in range(args.epochs + 1):  # the first epoch warms up (allocator, cuDNN) and is not counted
        t = time.perf_counter()
        train_loss = 0.0
        for (xb,) in loader:
            xb = xb.to(device)
            recon, mu, logvar = model(xb)
            loss = F.binary_cross_entropy(recon, xb, reduction="sum") - 0.5 * torch.sum(
                1 + logvar - mu.pow(2) - logvar.exp()
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            train_loss += loss.item()
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def engine_epochs(x: np.ndarray, args: argparse.Namespace, device: torch.device) -> float:
    """Seconds per epoch of the engine's training loop (engines.vae_torch.train), timed per epoch."""
    n, h, w = x.shape
    model = vt.new_vae(h, w, args.latent, args.capacity, 0, device)
    data = torch.from_numpy(x).to(device)
    gen = vt.generator(0, device)
    marks: list[float] = []
    steps = -(-n // args.batch)

    def report(phase: str, step: int, total: int, loss: float | None) -> None:
        if step % steps == 0:  # the end of an epoch
            if device.type == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    marks.append(time.perf_counter())
    opts = {"batch": args.batch, "lr": 1e-3, "weight_decay": 1e-5, "gen": gen, "amp": True}
    vt.train(model, data, epochs=args.epochs + 1, report=report, **opts)
    per_epoch = np.diff(marks[: args.epochs + 2])
    return float(np.median(per_epoch[1:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("digits", "mnist"), default="digits")
    p.add_argument("--images", type=int, default=0, help="training images (0: all: 1498 digits, 10000 of t10k)")
    p.add_argument("--epochs", type=int, default=0, help="timed epochs after one warm-up (0: 20 digits, 2 mnist)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--capacity", type=int, default=64)
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--mnist", type=Path, default=MNIST, help="--data mnist: the folder of t10k-images-idx3-ubyte.gz")
    args = p.parse_args()
    args.epochs = args.epochs or (20 if args.data == "digits" else 2)
    device = torch.device(args.device)
    if args.data == "digits":
        x = load_digits(0, 0).train
    else:
        x = read_idx(args.mnist / "t10k-images-idx3-ubyte.gz") / np.float32(255)
    x = np.ascontiguousarray(x[: args.images or None])
    print(f"machine: {machine.torch_device(device)}")
    size = f"{x.shape[0]} images {x.shape[1]}x{x.shape[2]}"
    model = f"capacity {args.capacity}, latent {args.latent}, batch {args.batch}"
    print(f"data: {args.data}, {size}; {model}; median of {args.epochs} epochs after one warm-up")
    nb = notebook_epochs(x, args, device)
    en = engine_epochs(x, args, device)
    for name, s in (("notebook loop", nb), ("engine", en)):
        per_image = s / len(x)
        paper = f"; a paper generation at this rate: {per_image * PAPER_IMAGE_EPOCHS:.0f} s" if x.shape[1] == 28 else ""
        print(f"{name:>14}: {s:.3f} s/epoch, {per_image * 1e6:.1f} us/image{paper}")
    print(f"speed-up (notebook / engine): {nb / en:.2f}x")
    if args.data == "digits":
        print(f"engine, one vae-digits generation (fit, sample, evaluate): {preset_generation('vae-digits'):.1f} s")


def preset_generation(name: str) -> float:
    """Seconds for one generation after the first of a built-in preset, through VAEEngine as the loop calls it."""
    from collapse_tui.engines.vae import VAEEngine
    from collapse_tui.preset_files import load_preset

    eng = VAEEngine(load_preset(name).engine, device="cpu")
    rngs = [np.random.default_rng(0)]
    real = eng.real_data(rngs)
    eng.classifier()  # trained once per run, not per generation

    def quiet(*args: object) -> None:
        pass

    ref = eng.fit(real, rngs, quiet).model
    data = eng.sample(ref, real.shape[1], rngs, quiet).samples
    t = time.perf_counter()
    model = eng.fit(data, rngs, quiet).model
    eng.evaluate(model, eng.sample(model, real.shape[1], rngs, quiet).samples, ref)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()

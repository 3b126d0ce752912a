"""The paper's VAE on MNIST (Nature, section 3.3): each generation trains a fresh convolutional VAE on
images the previous generation decoded from z ~ N(0, I).

Metrics per generation (model n, its samples, the generation-0 model as reference):
- latent_spread: the paper's measure. A fixed set of latents is decoded by model n and encoded by the
  reference encoder; the std of those means (0.674 -> 0.433 over five generations in the paper).
- nll / perplexity: negative test ELBO in nats per pixel of the real test images, and its exp.
- variance: variance of the reference encoder's means of the samples (mean over latent dimensions).
- pixel_variance, and class_shares / class_entropy / min_class_share: the share of each digit among the
  samples as judged by a classifier trained once on the real training data, so vanishing digits show.
torch is imported inside the methods (engines.vae_torch), never when a preset is validated.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    DETECTOR_AUC,
    DOWN,
    UP,
    DataError,
    Fitted,
    Generated,
    Metric,
    Param,
    Report,
    TorchEngine,
    held_apart,
    point_features,
)
from .hub import hub_problems
from .vae_classifier import Classifier, classifier
from .vae_data import (
    LOCAL_ALTERNATIVE,
    Dataset,
    header_shape,
    image_bytes,
    image_shape,
    load_digits,
    load_files,
    load_hub,
)

LATENT_SEED = 20240724  # the fixed latents of latent_spread: the same for every generation, seed and run
EVAL_SEED = 7  # noise of the ELBO estimates in evaluate and score: fixed, so a resumed run agrees
N_LATENTS = 100  # fixed latents decoded per generation, as in the paper
EVAL_MAX = 5000  # samples encoded and classified per generation (they are i.i.d.; more adds only time)
CLASSIFIER_MAX = 20000  # real training images the class-share classifier learns from
DIGITS_SHAPE = (8, 8)  # scikit-learn's digits
FILE_KEYS = ("images", "labels", "test_images", "test_labels")


def missing_files(params: Any) -> list[str]:
    """A line for each file key of source "files" naming a file that does not exist."""
    paths = [getattr(params, k) for k in FILE_KEYS] if params.source == "files" else []
    return [
        f"engine.{k}: no such file: {v}" for k, v in zip(FILE_KEYS, paths, strict=False) if v and not Path(v).is_file()
    ]


class VAEEngine(TorchEngine):
    name = "vae"
    preview_kind = "images"
    figures = "collapse_tui.engines.figures.vae"
    can_score = True
    requires = ("torch", "safetensors")
    mitigations = frozenset({"l2", "ewc", "distill", "real_weight", "detector"})
    HEADLINE = (("perplexity", UP), ("variance", DOWN))  # the samples crowd into fewer, blurrier digits
    METRICS = {
        "perplexity": Metric("exp(−ELBO per pixel) of real test images", log=True),
        "variance": Metric("variance of generation-0 encoder means of samples", "latent units²"),
        "nll": Metric("negative test ELBO", "nats per pixel"),
        "latent_spread": Metric("std of generation-0 encoder means of decoded fixed latents", "latent units"),
        "pixel_variance": Metric("variance of the sampled pixels", "ink²"),
        "train_loss": Metric("last training loss", "nats per image"),
        "class_entropy": Metric("entropy of the digit shares among samples", "nats"),
        "min_class_share": Metric("share of the rarest digit among samples", "fraction"),
        "detector_auc": DETECTOR_AUC,
    }
    PARAMS = {
        "source": Param(
            "digits",
            str,
            "where the real images come from: scikit-learn's 8x8 digits, the Hugging Face hub, or local files",
            choices=("digits", "hub", "files"),
        ),
        "images": Param("", Path, "source files: training images, MNIST IDX (.gz or not) or .npz (images, labels)"),
        "labels": Param("", Path, "source files: training labels (IDX); empty: taken from the .npz, or none"),
        "test_images": Param("", Path, "source files: test images; empty: the test part is cut off the training file"),
        "test_labels": Param("", Path, "source files: test labels (IDX)"),
        "train_count": Param(0, int, "use the first train_count training images (0: all)", min=0),
        "test_count": Param(0, int, "use the last test_count test images (0: test split, or last sixth)", min=0),
        "hub_id": Param("mnist", str, "source hub: dataset id (splits train and test, columns image and label)"),
        "latent": Param(20, int, "latent dimensions", min=1, max=512),
        "capacity": Param(64, int, "channels of the first convolution; the second has twice as many", min=1, max=512),
        "epochs": Param(30, int, "training epochs per generation", min=1),
        "batch": Param(256, int, "images per optimizer step", min=1),
        "lr": Param(1e-3, float, "Adam learning rate", min=0, min_exclusive=True),
        "weight_decay": Param(1e-5, float, "Adam weight decay (L2 added to the gradient)", min=0),
        "amp": Param(True, bool, "cuda only: bf16 autocast in the layers (loss, KL and optimizer in fp32)"),
        "synthetic": Param(
            "fixed",
            str,
            "what a generation trains on: one decoded set as large as the real training set (fixed), or a fresh "
            "batch decoded by the previous generation's model at every optimizer step (stream: the official notebook)",
            choices=("fixed", "stream"),
        ),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Engine's params, device, train
        super().__init__(*args, **kwargs)
        self._data: Dataset | None = None
        self._classifier: Classifier | None = None

    # --- data -----------------------------------------------------------------------------------
    @staticmethod
    def check_params(params: Any) -> None:
        """Checks across keys that need no data read: raises DataError (one line). The loop meets them at
        the start of a run; a preset validator can call this to reject the preset before a run exists."""
        if params.source != "files":
            return
        if not params.images:
            raise DataError('engine.images: source "files" needs a path to MNIST IDX images or an .npz')
        if params.test_labels and not params.test_images:
            raise DataError("engine.test_labels: given without engine.test_images")

    def hub_needs(self) -> list[tuple[str, str]]:
        return [("engine.source", f"the dataset {self.params.hub_id!r}")] if self.params.source == "hub" else []

    def preflight(self) -> list[str]:
        hub = hub_problems(self.hub_needs(), {"engine.source": LOCAL_ALTERNATIVE})
        return super().preflight() + missing_files(self.params) + hub

    def example_shape(self) -> tuple[int, ...] | None:
        """8x8 digits; local files: their header's (a few bytes read); the hub's: known once downloaded."""
        p = self.params
        if p.source == "digits":
            return DIGITS_SHAPE
        images = self.path(p.images) if p.source == "files" else None
        shape = header_shape(images) if images else None
        return image_shape(shape) if shape else None

    data_keys = "smaller engine.images/test_images files"

    def data_bytes(self) -> int:
        """The image files, read whole (train_count and test_count cut them after): from their headers."""
        if self.params.source != "files":
            return 0
        files = (self.path(self.params.images), self.path(self.params.test_images))
        return sum(image_bytes(f) for f in files if f is not None)

    def dataset(self) -> Dataset:
        """The real images, read once. Errors are DataError with one line that says what to do."""
        if self._data is None:
            p = self.params
            paths = {k: str(self.path(getattr(p, k)) or "") for k in FILE_KEYS}
            resolved = dataclasses.replace(p, **paths)
            self.check_params(resolved)
            if missing := missing_files(resolved):
                raise DataError(missing[0])
            counts = p.train_count, p.test_count
            if p.source == "digits":
                self._data = load_digits(*counts)
            elif p.source == "hub":
                self._data = load_hub(p.hub_id, *counts)
            else:
                self._data = load_files(*paths.values(), *counts)
            if min(len(self._data.train), len(self._data.test)) == 0:
                raise DataError("engine.train_count/test_count: the training and the test set need images")
        return self._data

    # --- torch ------------------------------------------------------------------------------------
    @staticmethod
    def check_data(params: Any, data: Any) -> None:
        chosen = data["filter"] != "none" or data.get("reweight", "none") != "none"
        if params.synthetic == "stream" and (data["mode"] != "replace" or chosen):
            raise DataError(
                'engine.synthetic: "stream" trains on the previous generation\'s decoder alone, so it needs '
                f'data.mode = "replace" and no data.filter or data.reweight, got mode {data["mode"]!r}, filter '
                f"{data['filter']!r}, reweight {data.get('reweight', 'none')!r}"
            )
        if "detector" in (data["filter"], data.get("reweight")) and not params.train_count:
            raise DataError(
                "engine.train_count: the detector needs real images held apart from training and test: set "
                "train_count below the training set's size (the images after it are held apart)"
            )

    def fit(
        self,
        data: np.ndarray,
        rngs: list[np.random.Generator],
        report: Report,
        source: Any = None,
        reference: Any = None,
        weights: np.ndarray | None = None,
    ) -> Fitted:
        """A fresh VAE trained on data (1, N, H, W); with synthetic = "stream" and a source, on N images a
        epoch decoded by the source from fresh z at every step, as the official notebook does. With a
        reference (generation 0's model) the [train] mitigations apply (engines/torch_mitigations.py): an
        L2-SP or EWC anchor to its weights (the fit then starts from them, not from a fresh init), distillation
        of its encoder and decoder; weights (1, N) weigh each image's loss (all 1: the plain fit, bit for bit)."""
        import torch

        from . import torch_mitigations as tm
        from . import vae_torch as vt

        if data.shape[0] != 1:
            raise ValueError(f"the VAE engine trains one seed at a time, got data for {data.shape[0]}")
        p, dev = self.params, self._dev()
        init_seed, train_seed = (int(v) for v in rngs[0].integers(2**63, size=2))  # all randomness from rngs
        _, _, h, w = data.shape
        model = vt.new_vae(h, w, p.latent, p.capacity, init_seed, dev)
        x = torch.from_numpy(np.ascontiguousarray(data[0], dtype=np.float32)).to(dev)  # all of it on the device
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
        train_loss = vt.train(
            model,
            x,
            epochs=p.epochs,
            batch=p.batch,
            lr=p.lr,
            weight_decay=p.weight_decay,
            gen=vt.generator(train_seed, dev),  # batch order, reparameterisation noise, streamed latents
            amp=p.amp,
            report=report,
            source=source if p.synthetic == "stream" else None,
            mit=tm.build(self.train_keys, reference, tm.example_weights(weights, data.shape[1]), dev, self.fisher),
        )
        return Fitted(model, {"train_loss": train_loss})

    def fisher(self, model: Any) -> dict[str, Any]:
        """EWC's diagonal Fisher of model on the real training images: each image's negative ELBO, its noise
        from EVAL_SEED, so that it is the same whenever it is computed from the same weights."""
        import torch

        from . import torch_mitigations as tm
        from . import vae_torch as vt

        dev = self._dev()
        train = self.dataset().train
        x = torch.from_numpy(np.ascontiguousarray(train[tm.fisher_indices(len(train))], dtype=np.float32)).to(dev)
        gen = vt.generator(EVAL_SEED, dev)
        return tm.fisher_diagonal(model, x, lambda m, xi: vt.neg_elbo(m, xi[None], gen).sum())

    def sample(self, model: Any, n: int, rngs: list[np.random.Generator], report: Report, data=None) -> Generated:
        """n images decoded from z ~ N(0, I) (the decoder's means), (1, n, H, W); the preview is 64
        images of the first seed, float32 in [0, 1], for the half-block panes."""
        from . import vae_torch as vt

        report("sample", 0, 1, None)
        z = np.stack([rng.standard_normal((n, model.latent), dtype=np.float32) for rng in rngs])
        out = np.stack([vt.decode(model, zs) for zs in z])
        report("sample", 1, 1, None)
        return Generated(out, np.clip(out[0, :64], 0.0, 1.0).astype(np.float32))

    def detector_real(self, rngs: list[np.random.Generator], n: int) -> np.ndarray | None:
        """Up to n of the training source's images that neither train nor test (after train_count)."""
        return held_apart(self.dataset().held, rngs, n)

    def features(self, examples: np.ndarray, reference: Any) -> np.ndarray:
        """Generation 0's encoder means of the images and their squares, (S, n, 2 latent)."""
        from . import vae_torch as vt

        return point_features(np.stack([vt.encode_means(reference, x) for x in examples]))

    def score(self, reference: Any, samples: np.ndarray) -> np.ndarray:
        """Negative ELBO per pixel of each sample under the reference model, (S, n)."""
        from . import vae_torch as vt

        return np.stack([vt.neg_elbo_per_pixel(reference, s, EVAL_SEED) for s in samples])

    # --- metrics ----------------------------------------------------------------------------------
    def fixed_latents(self, latent: int) -> np.ndarray:
        return np.random.default_rng(LATENT_SEED).standard_normal((N_LATENTS, latent), dtype=np.float32)

    def classifier(self) -> Classifier | None:
        """Logistic regression on the real training pixels (engines/vae_classifier.py: fitted once per training
        set, then read from the user's cache); None without labels."""
        data = self.dataset()
        if self._classifier is None and data.train_labels is not None:
            x, y = data.train[:CLASSIFIER_MAX], data.train_labels[:CLASSIFIER_MAX]
            self._classifier = classifier(x.reshape(len(x), -1), y)
        return self._classifier

    def evaluate(self, model: Any, samples: np.ndarray, reference: Any) -> list[dict[str, Any]]:
        from . import vae_torch as vt

        test = self.dataset().test
        nll = float(vt.neg_elbo_per_pixel(model, test, EVAL_SEED).mean())
        decoded = vt.decode(model, self.fixed_latents(model.latent))
        spread = float(vt.encode_means(reference, decoded).std())
        clf = self.classifier()
        rows = []
        for s in samples[:, :EVAL_MAX]:
            mu = vt.encode_means(reference, s)
            row = {
                "perplexity": float(np.exp(nll)),
                "nll": nll,
                "variance": float(mu.var(axis=0, ddof=1).mean()),
                "latent_spread": spread,
                "pixel_variance": float(s.var(axis=0).mean()),
            }
            if clf is not None:
                row.update(class_metrics(clf.predict(s.reshape(len(s), -1)), clf.classes))
            rows.append(row)
        return rows

    def classifier_accuracy(self) -> float | None:
        """Share of the real test images the class-share classifier labels right (None without labels)."""
        clf, data = self.classifier(), self.dataset()
        if clf is None or data.test_labels is None:
            return None
        return float((clf.predict(data.test.reshape(len(data.test), -1)) == data.test_labels).mean())

    # --- checkpoints ------------------------------------------------------------------------------
    def save(self, model: Any, directory: Path) -> None:
        from . import vae_torch as vt

        vt.save(model, Path(directory))

    def load(self, directory: Path) -> Any:
        from . import vae_torch as vt

        return vt.load(Path(directory), self._dev())


def class_metrics(predicted: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
    """Share of each class among the predictions, their entropy in nats (ln 10 = 2.303 when all ten
    digits are equally common) and the smallest share."""
    shares = (predicted[:, None] == classes[None, :]).mean(axis=0)
    nz = shares[shares > 0]
    return {
        "class_entropy": max(0.0, float(-(nz * np.log(nz)).sum())),  # no -0.0 when one class is left
        "min_class_share": float(shares.min()),
        "class_shares": [float(v) for v in shares],
    }

"""The VAE engine's class-share classifier: scikit-learn's logistic regression (lbfgs, deterministic) on the real
training pixels, fitted once per training set and kept in the user's cache folder. A later run on the same
images loads its weights and predicts with numpy, as LogisticRegression.predict computes: neither scikit-learn's
import nor the fit (on 8x8 digits 1.0 s and 0.2 s of CPU, an eighth of vae-quick; on MNIST the fit is longer).

The cache key is the training pixels and labels and the versions that make the fit: the same key gives the
weights a fit here gives, so a run's rows do not depend on whether the cache was warm.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import user_cache

MAX_ITER = 100  # lbfgs may stop there; the accuracy is still ~92% on MNIST
FITTED_BY = ("scikit-learn", "scipy", "numpy")  # the packages whose versions make the fit's last bits


@dataclass(frozen=True)
class Classifier:
    coef: np.ndarray  # (classes, pixels), or (1, pixels) for two classes
    intercept: np.ndarray  # (classes,) or (1,)
    classes: np.ndarray  # the labels, (classes,)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The label of each row of x (n, pixels): LogisticRegression.predict's arithmetic (x @ coef.T + intercept,
        then the largest score, or its sign for two classes), so the same labels as the fitted estimator's."""
        scores = x @ self.coef.T + self.intercept
        best = (scores[:, 0] > 0).astype(int) if scores.shape[1] == 1 else scores.argmax(axis=1)
        return self.classes[best]


def cache_path(x: np.ndarray, y: np.ndarray) -> Path:
    """Where the classifier of pixels x (n, pixels) and labels y (n,) is kept."""
    h = hashlib.sha256()
    for part in (x, y):
        h.update(f"{part.dtype.str} {part.shape}".encode())
        h.update(np.ascontiguousarray(part).data)
    h.update(" ".join(f"{p}={importlib.metadata.version(p)}" for p in FITTED_BY).encode())
    h.update(f"max_iter={MAX_ITER}".encode())
    return user_cache("classifiers") / f"{h.hexdigest()[:32]}.npz"


def classifier(x: np.ndarray, y: np.ndarray) -> Classifier:
    """The classifier of pixels x (n, pixels) and labels y (n,): from the cache, else fitted and cached."""
    path = cache_path(x, y)
    clf = read(path, x.shape[1])
    if clf is None:
        clf = fit(x, y)
        write(path, clf)
    return clf


def fit(x: np.ndarray, y: np.ndarray) -> Classifier:
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():  # lbfgs may stop at max_iter (a ConvergenceWarning): the weights are still fine
        warnings.simplefilter("ignore")
        est = LogisticRegression(max_iter=MAX_ITER).fit(x, y)
    return Classifier(est.coef_, est.intercept_, est.classes_)


def read(path: Path, pixels: int) -> Classifier | None:
    """The cached classifier at path, None when there is none or it is not one for pixels (then it is fitted again)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            clf = Classifier(z["coef"], z["intercept"], z["classes"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    rows = 1 if len(clf.classes) == 2 else len(clf.classes)
    return clf if clf.coef.shape == (rows, pixels) and clf.intercept.shape == (rows,) else None


def write(path: Path, clf: Classifier) -> None:
    """Kept atomically (a whole file or none); a cache that cannot be written costs the next run the fit only."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, coef=clf.coef, intercept=clf.intercept, classes=clf.classes)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

"""A generation's samples as files to open: PNG pictures or text files, from the run's samples/ previews.

points (n, d): a scatter of the first two dimensions (a histogram of 1-D points) drawn by matplotlib when
it is installed, else a density image (`density_image`: a 2-D histogram, lighter where more points fall);
images (n, H, W) in [0, 1]: one grid of them (`image_grid`); text: a file per sample holding its text as
stored. PNGs are encoded here (`png_bytes`: zlib, no imaging package), for `export --samples` and for
TensorBoard's images alike. Like `export`, this reads the run directory only: the engine need not be
installed (the previews' kind is then read off the saved files).
"""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError
from .engines import EngineError, engine_class
from .files import atomic_write
from .numbers import plural
from .preset_files import read_toml
from .rundir import RunDir
from .sweepdir import REPORT, check_output

GRID_COLUMNS = 8
MIN_CELL = 24  # pixels a grid's image spans at least: an 8x8 digit is drawn 3 times its size
GAP, GAP_LEVEL = 1, 96  # pixels between a grid's images, and their grey
DENSITY_SIZE = 128  # a density image's side in pixels
SCATTER_INCHES, SCATTER_DPI = (6.4, 4.8), 100


def png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit grey PNG of pixels (H, W)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w = pixels.shape
    rows = np.hstack([np.zeros((h, 1), np.uint8), pixels])  # filter byte 0 (none) before each row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8 bits, grey, deflate, no filter, no interlace
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def grid_scale(shape: tuple[int, ...]) -> int:
    """How many pixels a side each image pixel takes in a grid: at least MIN_CELL pixels an image."""
    return max(1, -(-MIN_CELL // max(shape[1:3])))


def image_grid(images: np.ndarray, columns: int = GRID_COLUMNS) -> np.ndarray:
    """Images (n, H, W) in [0, 1] as one grey picture: GRID_COLUMNS a row, each scaled by grid_scale,
    GAP grey pixels between them."""
    n, h, w = images.shape
    k = grid_scale(images.shape)
    cols = max(1, min(columns, n))
    rows = max(1, -(-n // cols))
    pixels = np.round(np.clip(np.nan_to_num(images), 0.0, 1.0) * 255).astype(np.uint8)
    scaled = pixels.repeat(k, axis=1).repeat(k, axis=2)
    ch, cw = h * k + GAP, w * k + GAP
    grid = np.full((rows * ch - GAP, cols * cw - GAP), GAP_LEVEL, np.uint8)
    for i, image in enumerate(scaled):
        r, c = divmod(i, cols)
        grid[r * ch : r * ch + h * k, c * cw : c * cw + w * k] = image
    return grid


def extent(points: np.ndarray) -> np.ndarray:
    """(d, 2) limits around finite points: their range, padded by a twentieth on each side."""
    pts = _finite(points)
    if not len(pts):
        return np.tile([-1.0, 1.0], (pts.shape[1], 1))
    lo, hi = pts.min(0), pts.max(0)
    pad = np.where(hi > lo, (hi - lo) / 20, 1.0)
    return np.stack([lo - pad, hi + pad], axis=1)


def density_image(points: np.ndarray, limits: np.ndarray | None = None, size: int = DENSITY_SIZE) -> np.ndarray:
    """A grey picture of points (n, d) within limits ((d, 2); default: theirs): a histogram of 1-D points
    (bars, size/2 high), else a 2-D histogram of the first two dimensions, y up, the square root of the
    counts as the level (a collapsed cluster does not leave the rest black)."""
    pts = _finite(points)
    limits = extent(pts) if limits is None else limits
    if pts.shape[1] == 1:
        counts, _ = np.histogram(pts[:, 0], bins=size, range=tuple(limits[0]))
        height = size // 2
        bars = np.round(counts / max(counts.max(), 1) * height).astype(int)
        return np.where(np.arange(height)[::-1, None] < bars[None, :], 255, 0).astype(np.uint8)
    counts, _, _ = np.histogram2d(pts[:, 1], pts[:, 0], bins=size, range=(tuple(limits[1]), tuple(limits[0])))
    return np.round(np.sqrt(counts[::-1] / max(counts.max(), 1)) * 255).astype(np.uint8)


def _finite(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=float)
    pts = pts.reshape(len(pts), int(np.prod(pts.shape[1:])))  # (n,) is (n, 1); (0, d) stays
    return pts[np.isfinite(pts).all(1)]


def scatter_png(points: np.ndarray, title: str) -> bytes:
    """A matplotlib scatter of the first two dimensions (a histogram of 1-D points), SCATTER_INCHES at
    SCATTER_DPI. ImportError without matplotlib."""
    from matplotlib.figure import Figure

    pts = _finite(points)
    fig = Figure(figsize=SCATTER_INCHES, dpi=SCATTER_DPI)
    ax = fig.subplots()
    if pts.shape[1] == 1:
        ax.hist(pts[:, 0], bins=50)
        ax.set_xlabel("x")
        ax.set_ylabel("count")
    else:
        ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.5, linewidths=0)
        ax.set_xlabel("x0")
        ax.set_ylabel("x1")
    ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=SCATTER_DPI)
    return buf.getvalue()


@dataclass(frozen=True)
class Preset:
    """What the files of a run's samples need of its preset.toml, read as TOML only (the engine may not be
    installed): the raw document and the engine of each chain ("" for a single-engine run)."""

    doc: dict[str, Any]
    engines: dict[str, str]

    @classmethod
    def read(cls, rundir: RunDir) -> Preset:
        doc = read_toml(rundir.path / "preset.toml")
        chains = doc.get("chains") or []
        engines = {c.get("name", ""): c.get("engine", "") for c in chains} or {
            "": doc.get("experiment", {}).get("engine", "")
        }
        return cls(doc, engines)


def preview_kind(engine: str, sample: Any) -> str:
    """The engine's declared preview kind; for an engine not installed here, what a saved preview holds
    (text: a list of strings; images: (n, H, W); points: else)."""
    with contextlib.suppress(EngineError, AttributeError):
        return engine_class(engine).preview_kind
    if isinstance(sample, list):
        return "text"
    return "images" if sample.ndim == 3 else "points"


def check_generation(rundir: RunDir, generation: int) -> dict[str, str]:
    """The run's chains (their engines by name); ConfigError when one has no samples of generation saved."""
    chains = Preset.read(rundir).engines
    missing = [c for c in chains if generation not in rundir.sample_generations(c)]
    if missing:
        saved = rundir.sample_generations(missing[0])
        where = f" (chain {missing[0]})" if missing[0] else ""
        have = f"saved: {saved[0]}..{saved[-1]}, {plural(len(saved), 'generation')}" if saved else "none saved"
        raise ConfigError(f"{rundir.path}: no samples of generation {generation}{where} ({have})")
    return chains


def write_generation(rundir: RunDir, generation: int, out: Path | None = None) -> list[str]:
    """Write a generation's samples of every chain into out (default: RUN/report/samples/, apart from the
    report's figures): gen-NNNNNN[-chain].png, or a folder gen-NNNNNN[-chain]/ of sample-NN.txt files.
    Returns a line per file or folder written, saying what it holds. ConfigError when the generation has no
    samples saved or out is not a place to write."""
    out = Path(out) if out is not None else rundir.path / REPORT / "samples"
    check_output(out, "--to")
    chains = check_generation(rundir, generation)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--to {out}: cannot create it: {e.strerror}") from None
    lines = []
    for chain, engine in chains.items():
        sample = rundir.load_samples(generation, chain)
        stem = f"gen-{generation:06d}" + (f"-{chain}" if chain else "")
        lines.append(_write_one(out / stem, sample, preview_kind(engine, sample), f"generation {generation}"))
    return lines


def _write_one(base: Path, sample: Any, kind: str, title: str) -> str:
    if kind == "text":
        check_output(base, "--to")  # a link of its name into a run directory is not written through
        base.mkdir(exist_ok=True)
        width = len(str(len(sample)))
        for i, text in enumerate(sample):
            atomic_write(base / f"sample-{i + 1:0{width}d}.txt", text.encode())
        return f"{base}/: {plural(len(sample), 'text sample')}, a file each"
    path = base.with_suffix(".png")
    if kind == "images":
        atomic_write(path, png_bytes(image_grid(sample)))
        return f"{path}: {plural(len(sample), 'image')} in a grid of {min(GRID_COLUMNS, len(sample))} columns"
    if kind != "points":
        raise ConfigError(f"{base}: no picture for the preview kind {kind!r} (its samples stay in samples/)")
    try:
        atomic_write(path, scatter_png(sample, f"{title}: {plural(len(sample), 'point')}"))
        return f"{path}: a scatter of {plural(len(sample), 'point')}"
    except ImportError:
        atomic_write(path, png_bytes(density_image(sample)))
        return f"{path}: a density image of {plural(len(sample), 'point')} (pip install matplotlib for a scatter)"

"""Images for the VAE engine: scikit-learn's bundled 8x8 digits, local MNIST IDX or .npz files, or the
Hugging Face hub. numpy only; sklearn and datasets are imported when their source is used.

Every source gives a Dataset of float32 images in [0, 1], (N, H, W), with integer labels or None.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .base import DataError

# what to tell a user whose hub download failed: the data never changes behind their back
LOCAL_ALTERNATIVE = (
    'to run offline set engine.source = "files" with engine.images and engine.labels '
    "(MNIST IDX files, .gz or not, or an .npz with arrays images and labels), "
    'or engine.source = "digits" (scikit-learn\'s bundled 8x8 digits, no download)'
)
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class Dataset:
    train: np.ndarray  # (N, H, W) float32 in [0, 1]
    train_labels: np.ndarray | None  # (N,) int64
    test: np.ndarray
    test_labels: np.ndarray | None
    held: np.ndarray | None = None  # images neither trained nor tested on: the detector's real examples


# deflate expands at most about 1032 times: a gzip file claiming more holds a lie or a bomb
GZIP_MAX_RATIO = 1032
CHUNK = 1 << 24  # bytes decompressed into the array at a time


@dataclass(frozen=True)
class Header:
    """What a data file declares before its data: the array's shape and type, read alone."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # the bytes before the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _open_idx(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def idx_header(path: str | Path) -> Header:
    """An IDX file's header (LeCun's MNIST format, gzip-compressed or not: magic 0 0 type ndim, big-endian
    sizes), its declared size checked against the file's before any data is read: equal for a plain file,
    within what deflate can expand to for a gzip one."""
    path = Path(path)
    try:
        size, gz = path.stat().st_size, _is_gzip(path)
        with _open_idx(path) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in IDX_TYPES:
                raise DataError(f"{path}: not an IDX file (magic bytes {magic.hex()})")
            dims = f.read(4 * magic[3])
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(dims) < 4 * magic[3]:
        raise DataError(f"{path}: the IDX header is cut short")
    h = Header(tuple(int(d) for d in np.frombuffer(dims, ">u4")), np.dtype(IDX_TYPES[magic[2]]), 4 + len(dims))
    if gz and h.offset + h.nbytes > size * GZIP_MAX_RATIO:
        raise DataError(f"{path}: IDX header says {h.shape}, {h.nbytes} bytes, more than {size} bytes of gzip can hold")
    if not gz and size - h.offset != h.nbytes:
        raise DataError(f"{path}: IDX header says {h.shape} but the file holds {size - h.offset} bytes of data")
    return h


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file's array, in native byte order. Reading stops at the size its header declares: a file
    that holds more or less is refused, whatever it would decompress to."""
    h = idx_header(path)
    try:
        out = np.empty(h.nbytes, np.uint8)
    except MemoryError:
        raise DataError(f"{path}: {h.nbytes} bytes of IDX data do not fit in memory") from None
    try:
        with _open_idx(Path(path)) as f:
            f.read(h.offset)
            got = 0
            while got < h.nbytes and (n := f.readinto(memoryview(out)[got : got + CHUNK])):
                got += n
            more = f.read(1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if got < h.nbytes or more:
        held = f"{got} bytes of data" if got < h.nbytes else "more data than that"
        raise DataError(f"{path}: IDX header says {h.shape} but the file holds {held}")
    return out.view(h.dtype).reshape(h.shape).astype(h.dtype.newbyteorder("="), copy=False)


def npz_header(path: str | Path, name: str) -> Header | None:
    """The header of array name in an .npz (None when it has none), its declared size checked against the
    archive's entry before any data is read; object arrays are refused (they would need pickle)."""
    try:
        with zipfile.ZipFile(path) as z:
            try:
                info = z.getinfo(f"{name}.npy")
            except KeyError:
                return None
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
                h = Header(tuple(shape), dtype, f.tell())
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: cannot read {name} ({type(e).__name__}: {e})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: {name} holds Python objects; only numbers are read")
    ratio = GZIP_MAX_RATIO if info.compress_type != zipfile.ZIP_STORED else 1
    if info.file_size != h.offset + h.nbytes or info.file_size > max(info.compress_size, 1) * ratio:
        raise DataError(f"{path}: {name} says {h.shape} {dtype}, not what the archive holds ({info.file_size} bytes)")
    return h


def read_npz(path: str | Path, name: str) -> np.ndarray | None:
    """Array name of an .npz (None when it has none), after npz_header has checked its size."""
    if npz_header(path, name) is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return z[name]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: cannot read {name} ({type(e).__name__}: {e})") from None


def image_bytes(path: str | Path) -> int:
    """About the memory the images of a file take while read: their data as stored, and as float32."""
    h = npz_header(path, "images") if Path(path).suffix == ".npz" else idx_header(path)
    return 0 if h is None else h.nbytes + 4 * math.prod(h.shape)


def as_images(x: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) float32 in [0, 1] from uint8 pixels (0-255) or floats already in [0, 1]."""
    if _channels_last(x.shape):  # keep the brightness
        x = x[..., :3].mean(-1) if x.shape[-1] > 1 else x[..., 0]
    if x.ndim != 3:
        raise DataError(f"{where}: expected images of shape (N, H, W), got {x.shape}")
    if x.dtype == np.uint8:
        return x / np.float32(255)  # float32
    x = x.astype(np.float32, copy=False)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise DataError(f"{where}: float pixels must lie in [0, 1], got [{x.min():g}, {x.max():g}]")
    return x


def read_images(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Images and, from an .npz, their labels (None when the file has none)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such file")
    if p.suffix == ".npz":
        images, labels = read_npz(p, "images"), read_npz(p, "labels")
        if images is None:
            with np.load(p, allow_pickle=False) as z:
                found = ", ".join(z.files) or "none"
            raise DataError(f"{path}: expected an array named 'images', found {found}")
        return as_images(images, path), None if labels is None else labels.astype(np.int64)
    return as_images(read_idx(p), path), None


def read_labels(path: str) -> np.ndarray:
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    labels = read_npz(path, "labels") if path.endswith(".npz") else read_idx(path)
    if labels is None:
        raise DataError(f"{path}: expected an array named 'labels'")
    return labels.astype(np.int64)


def split(
    images: np.ndarray, labels: np.ndarray | None, train_count: int, test_count: int, where: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None, np.ndarray]:
    """One set cut in three: the first train_count to train, the last test_count to test, those between
    held apart.

    0 means: a sixth of the set to test (MNIST's 10k of 60k), and everything before it to train.
    """
    n = len(images)
    test_count = test_count or n // 6
    train_count = train_count or n - test_count
    if train_count + test_count > n:
        raise DataError(f"{where}: train_count {train_count} + test_count {test_count} exceed its {n} images")
    lab = (lambda s: None) if labels is None else (lambda s: labels[s])
    train, test = slice(0, train_count), slice(n - test_count, n)
    return images[train], lab(train), images[test], lab(test), images[train_count : n - test_count]


def _first(x: np.ndarray, y: np.ndarray | None, count: int, last: bool = False):
    """The first (or last) count examples; count 0 keeps all."""
    if not count:
        return x, y
    if count > len(x):
        raise DataError(f"asked for {count} images, the set has {len(x)}")
    s = slice(len(x) - count, len(x)) if last else slice(0, count)
    return x[s], None if y is None else y[s]


def _check_labels(images: np.ndarray, labels: np.ndarray | None, where: str) -> None:
    if labels is not None and labels.shape != (len(images),):
        raise DataError(f"{where}: {len(images)} images but labels of shape {labels.shape}")


def load_files(
    images: str, labels: str, test_images: str, test_labels: str, train_count: int, test_count: int
) -> Dataset:
    """Local files: a training set (and a test set, or the test part split off the training set)."""
    if not images:
        raise DataError('engine.images: source "files" needs a path to MNIST IDX images or an .npz')
    x, y = read_images(images)
    if labels:
        y = read_labels(labels)
    _check_labels(x, y, images)
    if not test_images:
        return Dataset(*split(x, y, train_count, test_count, images))
    tx, ty = read_images(test_images)
    if test_labels:
        ty = read_labels(test_labels)
    _check_labels(tx, ty, test_images)
    if (y is None) != (ty is None):
        raise DataError(f"{test_images}: give labels for both the training and the test images, or for neither")
    return Dataset(*_first(x, y, train_count), *_first(tx, ty, test_count, last=True), x[train_count or len(x) :])


def digits_file() -> Path:
    """scikit-learn's bundled digits (1797 rows of 64 pixel values 0-16, then the label), found without importing
    scikit-learn: sklearn.datasets imports scipy.stats and pandas, a second of CPU (a tenth of vae-quick)."""
    (package,) = importlib.util.find_spec("sklearn").submodule_search_locations
    return Path(package, "datasets", "data", "digits.csv.gz")


def load_digits(train_count: int, test_count: int) -> Dataset:
    """scikit-learn's bundled 8x8 digits, read as sklearn.datasets.load_digits reads them; no download."""
    with gzip.open(digits_file(), "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    x = (data[:, :-1].reshape(-1, 8, 8) / 16.0).astype(np.float32)
    return Dataset(*split(x, data[:, -1].astype(np.int64), train_count, test_count, "digits"))


def load_hub(hub_id: str, train_count: int, test_count: int) -> Dataset:
    """A Hugging Face image dataset (splits train and test; columns image and label), e.g. mnist."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f'source "hub" needs the datasets package (pip install datasets); {LOCAL_ALTERNATIVE}'
        ) from None
    datasets.disable_progress_bars()  # engines never print: a progress bar on stderr would tear the app's screen
    try:
        dd = datasets.load_dataset(hub_id)
    except Exception as e:  # no network, no such dataset, a proxy: all end in the same advice
        why = (str(e).strip().splitlines() or [""])[0][:200]
        raise DataError(
            f"cannot load {hub_id!r} from the Hugging Face hub ({type(e).__name__}: {why}); {LOCAL_ALTERNATIVE}"
        ) from None
    if "train" not in dd:
        raise DataError(f"hub dataset {hub_id!r} has no 'train' split (it has {', '.join(dd)})")

    def arrays(ds) -> tuple[np.ndarray, np.ndarray | None]:
        col = "image" if "image" in ds.column_names else "img"
        x = as_images(np.stack([np.asarray(im) for im in ds[col]]), f"{hub_id} {col}")
        return x, np.asarray(list(ds["label"]), dtype=np.int64) if "label" in ds.column_names else None

    x, y = arrays(dd["train"])
    if "test" not in dd:
        return Dataset(*split(x, y, train_count, test_count, hub_id))
    return Dataset(
        *_first(x, y, train_count), *_first(*arrays(dd["test"]), test_count, last=True), x[train_count or len(x) :]
    )


def header_shape(path: str | Path) -> tuple[int, ...] | None:
    """The shape of the array in an IDX file (.gz or not) or of 'images' in an .npz, from its header alone
    (a few bytes read); None when the header does not say (reading the file then names what is wrong)."""
    try:
        h = npz_header(path, "images") if str(path).endswith(".npz") else idx_header(path)
    except DataError:
        return None
    return h.shape if h else None


def image_shape(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """(H, W) of one image of an array of images that as_images takes; None for another shape."""
    if _channels_last(shape):
        return shape[1:3]
    return shape[1:] if len(shape) == 3 else None


def _channels_last(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[-1] in (1, 3, 4)

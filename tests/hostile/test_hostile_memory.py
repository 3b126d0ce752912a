"""What the tool withstands when the data would eat the machine's memory (issue 27, item 12): image
files whose headers claim more than they hold (a gzip bomb, a terabyte declared in a kilobyte), a text
far longer than `max_chars`, held-out samples or texts larger than the memory available. Each is refused
with one line, before a run directory exists when it can be known from the params, file sizes and
headers alone, and nothing is read past what the run uses. The children run with 3 GiB of address space,
so a regression fails instead of eating the machine."""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import resource
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import WIKI_TEST

from collapse_tui import preflight
from collapse_tui.config import ConfigError
from collapse_tui.preflight import check_runnable
from collapse_tui.preset_files import load_preset

ADDRESS_SPACE = 3 << 30
# the VAE's runs are checked only where its packages are installed (check_runnable asks for them first)
needs_torch = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "safetensors")), reason="the VAE needs torch"
)


def limited(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """args run in a session of their own with ADDRESS_SPACE bytes of address space; killed (the whole
    group) if still running on the way out."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    proc = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=limit,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def cli(tmp_path: Path, preset: str, *sets: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "collapse_tui", "--batch", preset, "--runs-dir", str(tmp_path / "runs")]
    for s in sets:
        args += ["--set", s]
    return limited(args, tmp_path)


def assert_refused(proc: subprocess.CompletedProcess, tmp_path: Path, *words: str) -> None:
    """Exit 2, one line on stderr holding words, and no run directory."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert all(w in lines[0] for w in words), lines[0]
    assert not (tmp_path / "runs").exists()


def idx_header(*dims: int) -> bytes:
    """An IDX header of unsigned bytes of shape dims."""
    return b"\0\0\x08" + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


def npz_claiming(path: Path, shape: tuple[int, ...], data: bytes) -> None:
    """An .npz whose images.npy header says shape and whose entry holds data."""
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("images.npy", npy.getvalue() + data)


def vae_files(images: Path) -> tuple[str, ...]:
    return ("engine.source='files'", f"engine.images={images}")


@needs_torch
@pytest.mark.parametrize("kind", ["idx.gz", "npz"])
def test_an_image_header_declaring_a_terabyte_is_refused_before_a_run_exists(tmp_path, kind):
    """A 1 KB file whose header declares 10^6 images of 1000x1000 pixels: one line, exit 2, nothing
    allocated or made."""
    images = tmp_path / f"images.{kind}"
    if kind == "npz":
        npz_claiming(images, (10**6, 1000, 1000), bytes(1 << 20))
    else:
        images.write_bytes(gzip.compress(idx_header(10**6, 1000, 1000) + bytes(1 << 20)))
    proc = cli(tmp_path, "vae-quick", *vae_files(images))
    assert_refused(proc, tmp_path, str(images), "(1000000, 1000, 1000)")


def test_a_gzip_bomb_behind_a_small_idx_header_is_read_no_further_than_the_header_says(tmp_path):
    """100 images of 28x28 declared, 4 GiB of zeros behind them in a 4 MB file: reading stops a byte after
    the declared size and says the file holds more."""
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    zeros = gzip.compress(bytes(64 << 20))
    with open(bomb, "wb") as f:
        f.write(gzip.compress(idx_header(100, 28, 28) + bytes(100 * 28 * 28)))
        for _ in range(64):  # gzip members follow one another: 4 GiB once decompressed
            f.write(zeros)
    code = (
        "from collapse_tui.engines.vae_data import DataError, read_idx\n"
        "try:\n"
        f"    read_idx({str(bomb)!r})\n"
        "except DataError as e:\n"
        "    print(e)\n"
    )
    proc = limited([sys.executable, "-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == f"{bomb}: IDX header says (100, 28, 28) but the file holds more data than that\n"


@needs_torch
def test_image_files_larger_than_the_memory_available_are_refused_before_a_run_exists(tmp_path, monkeypatch):
    """60000 28x28 images, 47 MB in 46 kB of gzip, on a machine with 64 MiB available: refused by the sizes
    their header declares, naming the keys to change."""
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(idx_header(60000, 28, 28) + bytes(60000 * 28 * 28), compresslevel=1))
    cfg = load_preset("vae-quick", list(vae_files(images)))
    monkeypatch.setattr(preflight, "available_memory", lambda: 64 << 20)
    with pytest.raises(ConfigError) as err:
        check_runnable(cfg)
    # as stored (1 byte a pixel) and as float32: 5 bytes a pixel
    assert str(err.value) == (
        "this run needs about 0.2 GiB (0.2 GiB of it the real data) and 0.1 GiB are available; "
        "use less real data (smaller engine.images/test_images files)"
    )
    monkeypatch.setattr(preflight, "available_memory", lambda: 1 << 30)
    check_runnable(cfg)  # 1 GiB is enough


def test_held_out_samples_beyond_the_memory_available_are_refused_before_a_run_exists(tmp_path):
    """engine.test_samples = 10^11 (2.4 TB of float64 points): one line naming test_samples, exit 2,
    no run directory, instead of a MemoryError in a run that has begun."""
    proc = cli(tmp_path, "gaussian-quick", "engine.test_samples=100000000000")
    assert_refused(proc, tmp_path, "this run needs about 2235.2 GiB", "engine.test_samples")


@pytest.fixture
def sparse_text():
    """Write text, then NULs up to size bytes: a file of that size that takes no disk; removed after the
    test, so that no file of gigabytes is left behind even in name."""
    made: list[Path] = []

    def write(path: Path, text: str, size: int) -> None:
        made.append(path)
        with open(path, "wb") as f:
            f.write(text.encode())
            f.truncate(size)

    yield write
    for path in made:
        path.unlink(missing_ok=True)


def test_max_chars_reads_no_further_than_max_chars(tmp_path, sparse_text):
    """A training text of 8 GiB (WikiText, then zeros) with max_chars = 20000: the first 20000 characters
    are read, and no more, within 3 GiB of address space."""
    text = Path(WIKI_TEST).read_text()
    big = tmp_path / "train.txt"
    sparse_text(big, text, 8 << 30)
    code = (
        "from pathlib import Path\n"
        "from collapse_tui.engines.text_data import read_splits\n"
        f"out = read_splits({{'train': Path({str(big)!r}), 'test': Path({WIKI_TEST!r})}}, None, '', 20000)\n"
        "print(len(''.join(out['train'])), len(''.join(out['test'])), repr(''.join(out['train'])[-12:]))\n"
    )
    proc = limited([sys.executable, "-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == f"20000 20000 {text[:20000][-12:]!r}\n"


def test_a_whole_text_beyond_the_memory_available_is_refused_naming_max_chars(tmp_path, sparse_text):
    """A 64 GiB train.txt read whole (max_chars = 0): refused before a run exists, with max_chars named;
    the same text with max_chars = 20000 passes the check."""
    folder = tmp_path / "text"
    folder.mkdir()
    sparse_text(folder / "train.txt", Path(WIKI_TEST).read_text(), 64 << 30)
    (folder / "test.txt").write_text(Path(WIKI_TEST).read_text())
    sets = ("engine.train=''", "engine.test=''", f"engine.text_dir={folder}")
    proc = cli(tmp_path, "ngram-quick", *sets, "engine.max_chars=0")
    assert_refused(proc, tmp_path, "of it the real data", "use less real data (engine.max_chars)")
    check_runnable(load_preset("ngram-quick", [*sets, "engine.max_chars=20000"]))

"""The lock of a run: an exclusive flock on RUN/lock, held by the one process that writes the run for as
long as it lives (a dead holder's lock is free), with the holder's pid written in it for the message."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

LOCK_WAIT = 0.5  # seconds a writer retries the lock: a reader's probe holds it for microseconds

_held: dict[tuple[int, int], int] = {}  # runs this process writes: (device, inode) -> lock descriptor, until exit


class LockHeld(Exception):
    """Another live process holds the lock, or it cannot be opened; str(err) says which, in one line."""


def _identity(path: Path) -> tuple[int, int]:
    """What stays the same when a run directory is renamed or reached through another path."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def acquire(folder: Path) -> None:
    """Become folder's only writer for the rest of this process's life (again: a no-op). LockHeld naming the
    holder's pid when another process has it."""
    key = _identity(folder)
    if key in _held:
        return
    lock = folder / "lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise LockHeld(f"{lock}: cannot open the run's lock: {e.strerror}") from None
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise LockHeld(f"{folder}: another process (pid {holder}) is writing this run") from None
            time.sleep(0.02)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd


def release(folder: Path) -> None:
    """Stop being folder's writer (a sweep creates its cells' runs, then worker processes write them)."""
    fd = _held.pop(_identity(folder), None)
    if fd is not None:
        os.close(fd)


def held_here(folder: Path) -> bool:
    """Is this process folder's writer?"""
    return _identity(folder) in _held


def writer_alive(folder: Path) -> bool:
    """Does a live process (this one included) hold folder's lock?"""
    if held_here(folder):
        return True
    try:
        fd = os.open(folder / "lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: nobody ever wrote it with this tool's lock
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock
    return False

"""The signals that stop a run or a sweep at a checkpoint, and the one rule for handling them: a signal
that was ignored when the process started stays ignored. `nohup` starts a command with SIGHUP ignored,
and a non-interactive shell's `cmd &` with SIGINT ignored: a batch started so is meant to outlive the
terminal, so it must not put a handler of its own in their place. The other stop signals stop it.

The dispositions are read once, when this module is first imported: batch, executors and the app import
it at their top, before anything in the process sets a handler of its own (ray.init replaces SIGTERM's)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
IGNORED_AT_START = frozenset(s for s in STOP_SIGNALS if signal.getsignal(s) == signal.SIG_IGN)

Handler = Callable[[int, FrameType | None], None]


def catchable() -> tuple[signal.Signals, ...]:
    """The stop signals this process may handle: those it did not start with ignored."""
    return tuple(s for s in STOP_SIGNALS if s not in IGNORED_AT_START)


@contextlib.contextmanager
def handling(handler: Handler) -> Iterator[None]:
    """handler for every catchable stop signal while the block runs; the previous handlers back after it.
    Off the main thread (a caller driving the CLI from a thread) nothing is set: Python allows it there only."""
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, handler) for s in catchable()} if main else {}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)

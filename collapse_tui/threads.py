"""How many threads a run computes with: the cores free when it starts, unless the user says.

torch's intra-op pool takes every core by default, and on a machine busy with other work its threads
then wait on each other (vae-quick on a loaded 2-core machine: 428 s with the default, 101 s with one
thread). A run takes instead the cores that are free, shared among its processes (`--workers N`):

    free    = the cores it may run on (sched_getaffinity) - the load of other processes
    others  = the larger of: the 1-minute load average - this process's own share of it, and the cores
              busy now (their CPU time over BUSY_WINDOW, from /proc/stat, while this process sleeps):
              the load average lags, and work started seconds ago would otherwise count as free
    own     = this process's CPU time, its reaped children's included, per second of its life or of
              the last minute, whichever is longer (a fresh batch run: about 0)
    threads = max(1, round(free) // processes)

It keeps that number for its life, resumes included: float32 reductions split by thread, so the same
count gives the same rows as an uninterrupted run. COLLAPSE_TUI_THREADS=N sets it (per process) over
all that; OMP_NUM_THREADS, then MKL_NUM_THREADS, set it at a run's start. One line says which it is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

VARIABLE = "COLLAPSE_TUI_THREADS"
STANDARD = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # torch's own defaults read them
MAX_THREADS = 4096  # more is a typo, not a machine
LOAD_WINDOW = 60.0  # seconds the 1-minute load average reaches back
BUSY_WINDOW = 0.1  # seconds over which the cores busy now are measured (100 ticks a second a core: +-0.1 core each)
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # of a /proc/stat cpu line: user nice system (idle iowait) irq softirq steal
_STARTED = time.monotonic()  # about when this process started: its modules load first


@dataclass(frozen=True)
class Threads:
    count: int  # threads per process
    line: str  # what the run says about them, one line


def cores() -> int:
    return len(os.sched_getaffinity(0))


def own_load() -> float:
    """This process's share of the 1-minute load average, estimated from the CPU time it has used."""
    t = os.times()
    cpu = t.user + t.system + t.children_user + t.children_system
    return cpu / max(LOAD_WINDOW, time.monotonic() - _STARTED)


def busy_ticks() -> int | None:
    """The CPU ticks the cores this process may run on have spent busy since boot (None: no /proc/stat here);
    steal counts: a virtual machine's core that its host gives to others is not free."""
    mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        name, *fields = line.split() or [""]
        if name in mine:
            total += sum(int(fields[i]) for i in BUSY_FIELDS if i < len(fields))
    return total


def busy_now() -> float:
    """The cores busy with other work now: their busy time over BUSY_WINDOW, while this process sleeps."""
    before = busy_ticks()
    if before is None:
        return 0.0
    start = time.monotonic()
    time.sleep(BUSY_WINDOW)
    ticks = (busy_ticks() or before) - before
    return ticks / os.sysconf("SC_CLK_TCK") / (time.monotonic() - start)


def run_threads(processes: int = 1, kept: int | None = None) -> Threads:
    """The threads of each of a run's processes on this machine now (kept: the count the run started with)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average here: every core counts as free
        load = 0.0
    return choose(cores(), load, own_load(), os.environ, processes, kept, busy_now)  # measured only when it counts


def choose(
    cpus: int,
    load: float,
    own: float,
    env: Mapping[str, str],
    processes: int = 1,
    kept: int | None = None,
    busy: float | Callable[[], float] = 0.0,
) -> Threads:
    """The threads of each of processes processes, on cpus cores with a 1-minute load average load of which
    own is this process's and busy cores busy with other work now (or what measures them: it takes 0.1 s, so
    it is called only when no variable or kept count decides), given the environment env and the count a
    resumed run started with (kept)."""
    ignored: list[str] = []
    found = _from_env(env, (VARIABLE,), ignored)
    if found is None and kept is not None and kept >= 1:
        count, why = kept, f"as when this run started, for the same rows; {VARIABLE} sets another"
    elif found := found or _from_env(env, STANDARD, ignored):
        var, count = found
        why = f"from {var}={count}"
    else:
        others = max(0.0, load - own, busy() if callable(busy) else busy)
        count = max(1, int(max(0.0, cpus - others) + 0.5) // processes)
        why = f"{cpus} cores, load {others:.1f} from other work; {VARIABLE} sets another"
    each = f" in each of {processes} processes" if processes > 1 else ""
    return Threads(count, "; ".join([f"threads: {count}{each} ({why})", *ignored]))


def _from_env(env: Mapping[str, str], names: tuple[str, ...], ignored: list[str]) -> tuple[str, int] | None:
    """The first of the variables names set to a count of threads; those set to something else, noted in ignored."""
    for var in names:
        value = env.get(var, "").strip()
        if not value:
            continue
        if value.isdigit() and 1 <= int(value) <= MAX_THREADS:
            return var, int(value)
        ignored.append(f"{var}={value!r} ignored: not a whole number from 1 to {MAX_THREADS}")
    return None

"""The report of one or more runs: the generic figures over all of them, then each engine's own, and an
index.md that lists them (and says why one is missing), written in a folder outside every run directory or
in a run's report/ folder."""

from __future__ import annotations

import importlib
import io
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ConfigError
from ..engines import EngineError, engine_class
from ..files import atomic_write, printable
from ..runs import Run, run_labels
from ..sweepdir import check_output
from .figures import Options, Spec, Unavailable
from .generic import GENERIC

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Written:
    name: str
    caption: str
    files: list[Path] = field(default_factory=list)
    skipped: str = ""


def engine_figures(engine: str) -> tuple[tuple[Spec, ...], str]:
    """The engine's own figures (FIGURES of the module its class names in `figures`; none when it names
    none), and why there are none when the engine or that module does not load ("" otherwise)."""
    try:
        module = engine_class(engine).figures
    except EngineError as e:
        return (), str(e)
    if not module:
        return (), ""
    try:
        return tuple(importlib.import_module(module).FIGURES), ""
    except Exception as e:  # a plugin's broken figures must not cost the generic ones
        return (), f"engine {engine!r}: its figures ({module}) do not load: {type(e).__name__}: {e}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def plan(runs: Sequence[Run], opts: Options) -> list[tuple[str, str, Callable[[], Figure]]]:
    """(file stem, caption, build) for every figure of these runs: the generic ones over all runs,
    then each engine's over its runs (per-run figures once per run)."""
    items = [(s.name, s.caption, partial(s.build, list(runs), opts)) for s in GENERIC]
    by_engine: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_engine[run.engine].append(run)
    for engine, group in by_engine.items():
        # legends name what differs within the group (e.g. mode=accumulate), not across all runs
        group = [replace(r, label=label) for r, label in zip(group, run_labels(group))] if len(group) > 1 else group
        for s in engine_figures(engine)[0]:
            if not s.per_run:
                items.append((f"{engine}-{s.name}", s.caption, partial(s.build, group, opts)))
                continue
            for run in group:
                stem = f"{engine}-{s.name}" + (f"-{slug(run.label)}" if len(group) > 1 else "")
                items.append((stem, f"{s.caption} ({run.label})", partial(s.build, run, opts)))
    return items


def save_figure(fig: Figure, path: Path, dpi: int = 150) -> None:
    """Render to memory, then write atomically: a reader never sees half a file."""
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:], dpi=dpi)
    atomic_write(path, buf.getvalue())


def make_folder(out: Path) -> None:
    """Create the folder a report fills: outside every run and sweep directory, or in its report/ folder
    (figures and index.md are then written atomically there, replacing a link of their name, never
    following it)."""
    check_output(out, "--out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create it: {e.strerror}") from None


def write_report(runs: Sequence[Run], out: Path, opts: Options) -> list[Written]:
    make_folder(out)
    written = []
    for stem, caption, build in plan(runs, opts):
        w = Written(stem, caption)
        try:
            fig = build()
        except Unavailable as e:
            w.skipped = str(e)
        else:
            for fmt in opts.formats:
                path = out / f"{stem}.{fmt}"
                save_figure(fig, path, opts.dpi)
                w.files.append(path)
        written.append(w)
    for engine in dict.fromkeys(r.engine for r in runs):  # the index and the listing say why figures are missing
        if problem := engine_figures(engine)[1]:
            written.append(Written(f"{engine} figures", f"The {engine} engine's own figures.", skipped=problem))
    atomic_write(out / "index.md", printable(index_markdown(runs, written)).encode())
    return written


GENERATIONS_NOTE = (
    "Generation g is the g-th model trained: generation 0 on real data, generation g on generation g-1's "
    "samples. The paper's GMM and OPT figures count the same way; the official VAE notebook's \"Gen 0\" is "
    "the first model trained on generated data, our generation 1."
)


def index_markdown(runs: Sequence[Run], written: Sequence[Written]) -> str:
    lines = [f"# collapse-tui report: {', '.join(dict.fromkeys(r.name for r in runs))}", ""]
    lines += [f"Made {datetime.now().strftime('%Y-%m-%d %H:%M')} from:", ""]
    lines += ["| run | preset | engine | data mode | seeds | state | directory |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        cells = (r.label, r.name, r.engine, r.config.data.mode, len(r.config.seeds), r.progress(), r.rundir.path)
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += ["", GENERATIONS_NOTE]
    for w in written:
        lines += ["", f"## {w.name}", "", w.caption, ""]
        if w.skipped:
            lines.append(f"Not drawn: {w.skipped}.")
            continue
        png = next((p for p in w.files if p.suffix == ".png"), None)
        if png is not None:
            lines.append(f"![{w.name}]({png.name})")
        lines.append(" · ".join(f"[{p.suffix[1:].upper()}]({p.name})" for p in w.files))
    return "\n".join(lines) + "\n"

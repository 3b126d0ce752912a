"""`collapse-tui report RUN_DIR [RUN_DIR ...] [--out DIR]`: the paper's figures from run directories.

Every run gets the generic figures (report.generic: perplexity and variance against generation,
several runs overlaid, and one panel per shared metric). An engine adds its own: FIGURES in the module
its class names in `figures` (the built-in ones in collapse_tui.engines.figures), drawn with the
helpers of report.figures, whose docstring says how to write one. An engine that names no module, or
that does not load, gets the generic figures only. Figures are built as matplotlib Figure objects
(build functions, which tests inspect) and saved separately; pyplot is never imported.
"""

from __future__ import annotations

import argparse
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

from ..compare import Run, load_runs, run_labels
from ..config import ConfigError
from ..engines import EngineError, engine_class
from ..rundir import atomic_write, printable
from ..sweepdir import SweepDir, check_output, is_sweep_dir
from .figures import FORMATS, INSTALL_HINT, Options, Spec, Unavailable
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
        cells = (r.label, r.name, r.engine, r.config.data["mode"], len(r.config.seeds), r.progress(), r.rundir.path)
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


def parse_generations(text: str) -> list[int]:
    try:
        gens = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--generations: expected comma-separated integers, got {text!r}") from None
    if not gens or min(gens) < 0:
        raise ConfigError(f"--generations: expected generations >= 0, got {text!r}")
    return sorted(set(gens))


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(x.strip().lower() for x in text.split(",") if x.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"--format: expected png, svg or png,svg, got {text!r}")
    return formats


def run(args: argparse.Namespace) -> int:
    """`collapse-tui report`: args as cli.build_commands parses them."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    opts = Options(
        generations=parse_generations(args.generations) if args.generations else None,
        formats=parse_formats(args.format),
        dpi=max(30, min(args.dpi, 600)),
    )
    if len(args.run_dirs) == 1 and is_sweep_dir(args.run_dirs[0]):
        from .sweep import write_sweep_report

        sweep = SweepDir.open(args.run_dirs[0])
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
        out = Path(args.out) if args.out else sweep.path / "report"
        for name, files in write_sweep_report(sweep, out, opts, metrics, args.generation):
            print(f"{name}: {', '.join(map(str, files))}")
        return 0
    runs = load_runs(args.run_dirs)
    out = Path(args.out) if args.out else (runs[0].rundir.path / "report" if len(runs) == 1 else Path("report"))
    for w in write_report(runs, out, opts):
        what = ", ".join(str(f) for f in w.files) if w.files else f"skipped: {w.skipped}"
        print(f"{w.name}: {what}")
    print(f"index: {out / 'index.md'}")
    return 0

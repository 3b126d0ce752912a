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
from pathlib import Path

from ..config import ConfigError
from ..runs import load_runs
from ..sweepdir import SweepDir, is_sweep_dir
from .figures import FORMATS, INSTALL_HINT, Options
from .runs import write_report
from .sweep import write_sweep_report


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

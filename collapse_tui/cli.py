"""Command line: `collapse-tui [PRESET|RUN_DIR]` opens the app; `--batch` runs headless.

Exit status: 0 success, 1 a run failed, 2 bad input (one line on stderr, never a traceback),
130 stopped by Ctrl-C (resumable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import ConfigError, builtin_presets, load_preset
from .rundir import RunDir, process_alive


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise ConfigError(f"{message} (see collapse-tui --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="collapse-tui",
        description="Watch model collapse: train generation after generation on the last one's output.",
        epilog="Other commands: `collapse-tui presets` (the built-in presets), `report RUN_DIR ...` (figures), "
        "`export RUN_DIR --csv FILE`, `compare RUN_DIR RUN_DIR ...` (each has --help).",
    )
    p.add_argument("target", nargs="?", help="a preset (TOML file or built-in name) or a run directory")
    p.add_argument("--batch", action="store_true", help="run headless: progress on a terminal, plain lines otherwise")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or crashed run (with --batch)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset key, e.g. --set experiment.generations=5 (VALUE is read as TOML)",
    )
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where run directories go (default: ./runs)")
    p.add_argument("--version", action="version", version=f"collapse-tui {__version__}")
    return p


def cmd_presets(argv: list[str]) -> int:
    if argv:
        raise ConfigError(f"presets: takes no arguments, got {' '.join(argv)}")
    for name, path in sorted(builtin_presets().items()):
        cfg = load_preset(str(path))
        what = cfg.experiment["description"]
        print(f"{name:<22} {cfg.engine_name:<9} {cfg.data['mode']:<10} {what}")
    return 0


def open_for_resume(path: str) -> RunDir:
    rundir = RunDir.open(Path(path))
    status = rundir.read_status()
    if status.get("state") == "running" and process_alive(status):
        raise ConfigError(f"{path}: the run is still running (pid {status['pid']})")
    return rundir


def run(argv: list[str]) -> int:
    if argv[:1] == ["presets"]:
        return cmd_presets(argv[1:])
    if argv[:1] == ["report"]:  # imported lazily: matplotlib loads for reports only
        from .report import main as report_main

        return report_main(argv[1:])
    if argv[:1] == ["export"]:
        from .export import main as export_main

        return export_main(argv[1:])
    if argv[:1] == ["compare"]:
        from .compare import main as compare_main

        return compare_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.resume and (args.target or args.overrides):
        raise ConfigError("--resume takes the run directory alone: its preset is fixed (no PRESET, no --set)")
    if not args.batch:
        from .tui.app import run_app

        return run_app(args.target, args.overrides, Path(args.runs_dir), resume=args.resume)
    from .batch import run_batch  # rich and the loop load only for a run

    if args.resume:
        rundir = open_for_resume(args.resume)
        rundir.config()  # a hand-edited preset.toml is checked like any other
        return run_batch(rundir, resume=True)
    if not args.target:
        raise ConfigError("--batch needs a PRESET (a TOML file or a built-in name) or --resume RUN_DIR")
    cfg = load_preset(args.target, args.overrides)
    return run_batch(RunDir.create(Path(args.runs_dir), cfg))


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except ConfigError as e:
        print(f"collapse-tui: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Command line: `collapse-tui [PRESET|RUN_DIR]` opens the app; `--batch` runs headless.

Exit status: 0 success, 1 a run failed, 2 bad input (one line on stderr, never a traceback),
130 stopped by Ctrl-C (resumable).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path
from typing import NoReturn

from . import __version__
from .checkpoints import open_for_resume
from .config import Config, ConfigError
from .engines import engine_names
from .preflight import check_runnable, prefixed, requirements
from .preset_files import PresetFile, builtin_presets, load_preset, read_preset
from .run_names import run_name
from .rundir import RunDir
from .seed_workers import check_workers
from .sweep import builtin_sweeps, expand, is_sweep, load_sweep, read_target
from .sweepdir import SweepDir, is_sweep_dir


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise ConfigError(f"{message} (see collapse-tui --help)")


COMMANDS = ("presets", "report", "export", "compare")


def build_parser() -> argparse.ArgumentParser:
    """`collapse-tui [TARGET] ...`: open the app, or run headless with --batch."""
    p = _Parser(
        prog="collapse-tui",
        description="Watch model collapse: train generation after generation on the last one's output.",
        epilog="Other commands: `collapse-tui presets` (presets and engines), `report RUN_DIR ...` (figures), "
        "`export RUN_DIR ... --csv FILE`, `compare RUN_DIR RUN_DIR ...` (each has --help).",
    )
    p.add_argument("target", nargs="?", help="a preset (TOML file or built-in name) or a run directory")
    p.add_argument("--batch", action="store_true", help="run headless: progress on a terminal, plain lines otherwise")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or crashed run (with --batch)")
    p.add_argument(
        "--generations",
        type=int,
        metavar="N",
        help="with --resume: continue the run (finished or not) to N generations in total",
    )
    p.add_argument(
        "--from",
        dest="branch_from",
        metavar="RUN_DIR",
        help="with --batch PRESET --at K: a new run with RUN_DIR's generations 0..K, then PRESET's [data], [train]",
    )
    p.add_argument("--at", type=int, metavar="K", help="with --from: the generation of RUN_DIR the new run branches at")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset key, e.g. --set experiment.generations=5 (VALUE is read as TOML)",
    )
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where run directories go (default: ./runs)")
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="a sweep's cells, or a run's seeds, in N local processes"
    )
    p.add_argument("--gpus", metavar="LIST", help="GPUs the workers share out, e.g. 0,1 (one per worker)")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="where a sweep's cells run")
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="the Ray cluster to join: HOST:PORT, ray://HOST:PORT or auto (--executor ray; default: a local one)",
    )
    p.add_argument("--version", action="version", version=f"collapse-tui {__version__}")
    return p


def build_commands() -> argparse.ArgumentParser:
    """`collapse-tui COMMAND ...`, one subparser per COMMANDS. A root of its own, used when argv[0] names
    a command: beside build_parser's optional positional TARGET, argparse would take the name for a TARGET."""
    root = _Parser(prog="collapse-tui", add_help=False)
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("presets", description="List the presets and engines that are installed.")
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)  # refused in cmd_presets, with a clearer line

    p = sub.add_parser("report", description="Draw the paper's figures from run directories, or a sweep's.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories, or one sweep directory")
    p.add_argument(
        "--out", metavar="DIR", help="where figures go (default: RUN_DIR/report, or ./report for several runs)"
    )
    p.add_argument(
        "--generations", metavar="LIST", help="snapshot generations for density and sample figures, e.g. 0,50,200"
    )
    p.add_argument("--format", default="png,svg", metavar="LIST", help="png, svg or png,svg (default)")
    p.add_argument("--dpi", type=int, default=150, help="PNG resolution (default 150)")
    p.add_argument(
        "--metrics", metavar="LIST", help="a sweep's metrics to draw against the swept values (default: all)"
    )
    p.add_argument(
        "--generation",
        type=int,
        metavar="N",
        help="a sweep's figures at generation N (default: the last every cell has)",
    )

    p = sub.add_parser(
        "export",
        description="Write runs' metrics as one table (a row per seed and generation, and a run column for several), "
        "as TensorBoard event files or MLflow runs, or a generation's samples as files.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--csv", metavar="FILE", help="write CSV (floats exact, missing values empty); '-' for stdout")
    p.add_argument("--parquet", metavar="FILE", help="write parquet (needs pyarrow)")
    p.add_argument(
        "--tensorboard", metavar="DIR", help="write TensorBoard event files in DIR/<run>/ (needs tensorboard)"
    )
    p.add_argument("--mlflow", metavar="URI", help="log to MLflow: a tracking server, or a local store's path")
    p.add_argument("--samples", type=int, metavar="GEN", help="write generation GEN's samples as PNG or text files")
    p.add_argument(
        "--to", metavar="DIR", help="with --samples: the folder to write in (default: RUN_DIR/report/samples)"
    )

    p = sub.add_parser(
        "compare", description="Compare runs: final and peak values, change per generation, and their differences."
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--generation", type=int, metavar="N", help="compare at generation N (default: each run's last one)")
    return root


def cmd_presets(args: argparse.Namespace) -> int:
    if args.extra:
        raise ConfigError(f"presets: takes no arguments, got {' '.join(args.extra)}")
    for name, path in sorted(builtin_presets().items()):
        try:
            cfg = load_preset(str(path))
        except ConfigError as e:  # e.g. a plugin's engine that does not load: the others still list
            print(f"{name:<22} {'error':<9} {'':<10} {'':<14} {e}")
            continue
        needs = ",".join(requirements(cfg)) or "-"
        engines = "+".join(dict.fromkeys(c["engine"] for c in cfg.chains)) or cfg.engine_name  # chains: each engine
        print(f"{name:<22} {engines:<9} {cfg.data.mode:<10} {needs:<14} {cfg.experiment['description']}")
    for name, path in sorted(builtin_sweeps().items()):  # run with --batch NAME
        try:
            sweep = load_sweep(path)
        except ConfigError as e:
            print(f"{name:<22} {'error':<9} {'':<10} {'':<14} {e}")
            continue
        cfg = sweep.cells[0].config
        needs = ",".join(requirements(cfg)) or "-"
        what = f"{cfg.experiment['description']} ({len(sweep.cells)} cells)"
        print(f"{name:<22} {cfg.engine_name:<9} {'sweep':<10} {needs:<14} {what}")
    print(f"engines: {', '.join(sorted(engine_names()))}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    if args.command == "presets":
        return cmd_presets(args)
    # imported lazily: matplotlib loads for reports only, rich for compare
    if args.command == "report":
        from .report import run as run_report

        return run_report(args)
    if args.command == "export":
        from .trackers import run as run_export

        return run_export(args)
    from .compare import run as run_compare

    return run_compare(args)


def run(argv: list[str]) -> int:
    if argv and argv[0] in COMMANDS:
        return run_command(build_commands().parse_args(argv))
    args = build_parser().parse_args(argv)
    if args.resume and (args.target or args.overrides):
        raise ConfigError("--resume takes the run directory alone: its preset is fixed (no PRESET, no --set)")
    if args.generations is not None and not args.resume:
        raise ConfigError(
            "--generations N extends a run: with --resume RUN_DIR (a new run: --set experiment.generations=N)"
        )
    _check_branch_args(args)
    if args.generations is not None and args.generations < 1:
        raise ConfigError(f"--generations: expected a number >= 1, got {args.generations}")
    if not args.batch:
        from .tui.app import run_app

        return run_app(
            args.target, args.overrides, Path(args.runs_dir), resume=args.resume, generations=args.generations
        )
    if args.workers < 1:
        raise ConfigError(f"--workers: expected a number >= 1, got {args.workers}")
    from .batch import run_batch  # rich and the loop load only for a run

    target = read_target(args.target) if args.target else None  # read once: a sweep preset, or a preset
    if (args.resume and is_sweep_dir(args.resume)) or is_sweep(target):
        if args.generations is not None:
            raise ConfigError("--generations extends a single run, not a sweep")
        if args.branch_from:
            raise ConfigError("--from RUN_DIR branches a single run: PRESET cannot be a sweep")
        return run_sweep_command(args, target)
    if args.executor != "local" or args.address:
        raise ConfigError("--executor and --address run a sweep's cells; this is a single run")
    gpus = _gpus(args)
    if args.resume:
        rundir = RunDir.open(Path(args.resume))
        check_workers(rundir.config(), args.workers, gpus)  # before --generations writes
        open_for_resume(rundir, args.generations)  # a hand-edited preset.toml is checked as any other
        return run_batch(rundir, resume=True, workers=args.workers, gpus=gpus)
    if not args.target:
        raise ConfigError("--batch needs a PRESET (a TOML file or a built-in name) or --resume RUN_DIR")
    preset = target or read_preset(args.target)
    cfg = preset.config(args.overrides)
    check_runnable(cfg)
    check_workers(cfg, args.workers, gpus)
    if args.branch_from:
        rundir = _branch(args, cfg, run_name(preset, cfg))
        return run_batch(rundir, resume=True, workers=args.workers, gpus=gpus)
    rundir = RunDir.create(Path(args.runs_dir), cfg, name=run_name(preset, cfg))  # it keeps cfg: read no more
    return run_batch(rundir, workers=args.workers, gpus=gpus)


def _check_branch_args(args: argparse.Namespace) -> None:
    """--from RUN_DIR --at K go together, with --batch PRESET."""
    if args.branch_from is None and args.at is None:
        return
    if args.branch_from is None or args.at is None:
        raise ConfigError("--from RUN_DIR and --at K go together: the run and the generation to branch at")
    if not args.batch or args.resume or not args.target:
        raise ConfigError(
            "--from RUN_DIR --at K branches with --batch PRESET (no --resume; in the app: b on a run's screen)"
        )
    if args.at < 0:
        raise ConfigError(f"--at: expected a generation >= 0, got {args.at}")


def _branch(args: argparse.Namespace, cfg: Config, name: str) -> RunDir:
    """The branch's run directory (branch.py), the recomputed generations, if any, shown as a run is."""
    from .batch import BatchView
    from .branch import create_branch

    view = BatchView(sys.stdout)
    return create_branch(
        Path(args.branch_from), cfg, args.at, Path(args.runs_dir), f"{name}-at{args.at}", view.handle, view.line
    )


def run_sweep_command(args: argparse.Namespace, preset: PresetFile | None) -> int:
    """--batch SWEEP.toml (preset: that file, as read) or --resume SWEEP_DIR: every cell validated and checked,
    and Ray joined, before the sweep directory exists."""
    from .executors import ray_endpoint, ray_session, run_sweep

    if args.address is not None:
        if args.executor != "ray":
            raise ConfigError("--address is the Ray cluster of --executor ray")
        ray_endpoint(args.address)
    if args.resume:
        sweep, spec = SweepDir.open(args.resume), None
        _restore_logs(sweep)
    else:
        sweep, spec = None, expand(preset, args.overrides)
        for cell in spec.cells:
            try:
                check_runnable(cell.config)
            except ConfigError as e:
                raise prefixed(f"sweep cell {cell.name}: ", e) from None
    with ray_session(args.address) if args.executor == "ray" else contextlib.nullcontext():
        if sweep is None:
            sweep = SweepDir.create(Path(args.runs_dir), spec)
        return run_sweep(sweep, workers=args.workers, executor=args.executor, gpus=_gpus(args))


def _restore_logs(sweep: SweepDir) -> None:
    """A sweep's logs/ made again if it was deleted: only what workers printed is lost, and a resume that
    failed for it would fail in every worker (with Ray, silently, task after task)."""
    try:
        sweep.logs.mkdir(exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{sweep.logs}: cannot make the sweep's logs folder: {e.strerror or e}") from None


def _gpus(args: argparse.Namespace) -> list[str] | None:
    return [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None


def main(argv: list[str] | None = None) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):  # a non-UTF-8 path prints as its bytes (as ls does), not a traceback
        sys.stdout.reconfigure(errors="surrogateescape")
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except ConfigError as e:  # one line, or one for each thing a run lacks here (preflight)
        for line in str(e).splitlines():
            _say(f"collapse-tui: {line}")
        return 2
    except KeyboardInterrupt:  # Ctrl-C while starting, or twice during a run (its checkpoint is kept)
        _say("collapse-tui: interrupted")
        return 130
    except BrokenPipeError:  # `collapse-tui presets | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _say(line: str) -> None:
    if sys.stderr is not None:
        print(line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

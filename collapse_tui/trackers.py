"""`collapse-tui export`: the tables of export.py, and runs in the tools labs already use.

--tensorboard DIR: event files in DIR/<run>/ (DIR/<run>/<chain>/ for a run of several chains): a TensorBoard
  run per seed (seed-N) holding each metric as a scalar per generation (step = generation; list-valued
  metrics spread as name_0, name_1, ...), one (median) holding the median over seeds (log-quantities in log
  space, as summary.py has it; a median that is unknown, or past float32, is left out), and one (samples)
  holding the samples of every generation saved: points as a density image on generation 0's scale, images
  as a grid, text as a text summary of the samples. Written with tensorboard's own event file writer.
--mlflow URI: a parent MLflow run per run directory (the resolved preset as params, section.key; the
  report's figures as artifacts, those in RUN/report/ or else drawn) with a nested run per seed (the same
  params, its metrics by generation, step = generation), in the experiment named after the preset. URI: a
  tracking server, a database (sqlite:///...), or a local file store (file:/path or a plain path).
--samples GEN [--to DIR]: a generation's samples as PNG or text files (sample_files.py).

Every output is checked, and every package it needs imported, before anything is written: a missing one is
one line naming the extra to install, exit 2. Like the tables, these read the run directory only: a run of an
engine not installed here still exports (figures excepted: drawing them needs the engine).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from . import export
from .config import ConfigError
from .export import flatten_row
from .numbers import plural
from .rundir import RunDir
from .sample_files import (
    Preset,
    check_generation,
    density_image,
    extent,
    image_grid,
    png_bytes,
    preview_kind,
    write_generation,
)
from .summary import is_log, log_keys_of, summarize, values
from .sweepdir import REPORT, check_output, expand

TENSORBOARD_HINT = "--tensorboard needs tensorboard: pip install 'collapse-tui[tensorboard]' (or tensorboard)"
MLFLOW_HINT = "--mlflow needs mlflow: pip install 'collapse-tui[mlflow]' (or mlflow-skinny)"
ID_KEYS = ("seed", "generation", "chain")  # what a row is of, not what it measured
MLFLOW_BATCH = 100  # params per log_batch call (MLflow's limit; metrics: 1000)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def run(args: argparse.Namespace) -> int:
    """`collapse-tui export`: args as cli.build_commands parses them."""
    if args.to and args.samples is None:
        raise ConfigError("export: --to DIR goes with --samples GEN")
    if not (args.csv or args.parquet or args.tensorboard or args.mlflow or args.samples is not None):
        raise ConfigError("export: give --csv FILE, --parquet FILE, --tensorboard DIR, --mlflow URI or --samples GEN")
    _check_packages(args)
    names = expand(args.run_dirs)[0]
    rundirs = [RunDir.open(Path(p)) for p in names]
    if args.samples is not None and len(rundirs) > 1:
        raise ConfigError("export --samples: one run directory at a time")
    if args.samples is not None:  # before the tables below are written (write_generation checks them when it runs)
        check_generation(rundirs[0], args.samples)
        if args.to:
            check_output(Path(args.to), "--to")
    if args.tensorboard:
        if len({r.path.name for r in rundirs}) < len(rundirs):  # DIR/<run name> would hold both
            raise ConfigError("--tensorboard: two runs of the same name (in different folders): one at a time")
        for rundir in rundirs:
            _check_tensorboard_dir(Path(args.tensorboard) / rundir.path.name)
    uri = mlflow_uri(args.mlflow) if args.mlflow else ""
    if args.csv or args.parquet:
        export.run(args)
    for rundir in rundirs:
        if args.samples is not None:
            lines = write_generation(rundir, args.samples, Path(args.to) if args.to else None)
            print("\n".join(f"wrote {line}" for line in lines), file=sys.stderr)
        if args.tensorboard:
            print(f"wrote {write_tensorboard(rundir, Path(args.tensorboard))}", file=sys.stderr)
        if args.mlflow:
            print(write_mlflow(rundir, uri), file=sys.stderr)
    if args.tensorboard:
        print(f"view: tensorboard --logdir {args.tensorboard}", file=sys.stderr)
    return 0


def _check_packages(args: argparse.Namespace) -> None:
    for option, module, hint in (("tensorboard", "tensorboard", TENSORBOARD_HINT), ("mlflow", "mlflow", MLFLOW_HINT)):
        if getattr(args, option):
            try:
                __import__(module)
            except ImportError:
                raise ConfigError(hint) from None


def _check_tensorboard_dir(root: Path) -> None:
    """root: where a run's event files go. A run exported before would be mixed with this one: refused."""
    check_output(root, "--tensorboard")
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"--tensorboard: {root} exists (an earlier export?): remove it or give another DIR")


def mlflow_uri(text: str) -> str:
    """A tracking URI: a plain path becomes file: URI; a local store must not lie in a run directory."""
    parsed = urlparse(text)
    if parsed.scheme not in ("", "file"):
        return text
    path = Path(parsed.path if parsed.scheme else text)
    check_output(path, "--mlflow")
    return path.resolve().as_uri()


def metric_values(row: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """A row's metrics, list-valued ones spread: flat name -> (the metric it is of, value or None)."""
    out: dict[str, tuple[str, Any]] = {}
    for key, value in row.items():
        if key in ID_KEYS:
            continue
        for name, v in flatten_row({key: value}).items():
            if v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
                out[name] = (key, v)
    return out


def by_seed(rows: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """(chain, seed) -> its rows in generation order (chain "" for a single-engine run)."""
    out: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["generation"]):
        out[row.get("chain", ""), row["seed"]].append(row)
    return dict(out)


def seeds_text(keys: Collection[tuple[str, int]]) -> str:
    """'3 seeds', or '2 seeds of 2 chains' for by_seed's keys of a run of several chains."""
    chains, seeds = zip(*keys) if keys else ((), ())
    of = f" of {plural(len(set(chains)), 'chain')}" if any(chains) else ""
    return plural(len(set(seeds)), "seed") + of


def medians(rows: list[dict[str, Any]], log_keys: set[str]) -> dict[int, dict[str, float]]:
    """generation -> flat metric name -> the median over seeds, as the quantity (10^median of the log10 for
    a log-quantity); a median that is unknown (a seed's value unknown) or past float32's range is left out."""
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["generation"]].append(row)
    out: dict[int, dict[str, float]] = {}
    for gen in sorted(groups):
        flat = [metric_values(r) for r in groups[gen]]
        origin = {name: key for f in flat for name, (key, _) in f.items()}
        table = [{name: v for name, (_, v) in f.items()} for f in flat]
        out[gen] = {}
        for name, key in origin.items():
            log = is_log(name, log_keys) or is_log(key, log_keys)
            centre = summarize(values(table, name, log), log).centre
            with np.errstate(over="ignore"):
                value = float(np.power(10.0, centre)) if log else centre
            if np.isfinite(value) and abs(value) <= FLOAT32_MAX:
                out[gen][name] = value
    return out


# TensorBoard
def write_tensorboard(rundir: RunDir, out: Path) -> str:
    """Event files of one run in out/<run name>/ (see the module's docstring); returns what was written."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    root = out / rundir.path.name
    preset, rows = Preset.read(rundir), rundir.read_metrics()

    def write(folder: Path, steps: Iterator[tuple[int, Summary]]) -> int:
        """The events' generations written."""
        writer, written = EventFileWriter(str(folder)), set()
        for step, summary in steps:
            writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))
            written.add(step)
        writer.close()
        return len(written)

    def scalars(points: Iterator[tuple[int, dict[str, Any]]]) -> Iterator[tuple[int, Summary]]:
        for gen, metrics in points:
            for name, value in metrics.items():
                if value is not None:
                    yield gen, scalar_pb(name, value)

    seeds = by_seed(rows)
    for (chain, seed), seed_rows in seeds.items():
        points = ((r["generation"], {n: v for n, (_, v) in metric_values(r).items()}) for r in seed_rows)
        write(root / chain / f"seed-{seed}", scalars(points))
    saved = 0
    for chain, engine in preset.engines.items():
        chain_rows = [r for r in rows if r.get("chain", "") == chain]
        write(root / chain / "median", scalars(iter(medians(chain_rows, log_keys_of(engine)).items())))
        gens = rundir.sample_generations(chain)
        saved = max(saved, write(root / chain / "samples", _sample_summaries(rundir, chain, engine, gens, Summary)))
    metrics = len({n for r in rows for n in metric_values(r)})
    return (
        f"{root}: the scalars of {seeds_text(seeds)} ({plural(metrics, 'metric')}) and their median,"
        f" the samples of {plural(saved, 'generation')}"
    )


def _sample_summaries(rundir: RunDir, chain: str, engine: str, gens: list[int], summary: type) -> Iterator[Any]:
    """(generation, Summary) of each saved generation's samples, tag 'samples'."""
    from tensorboard.plugins.text.summary_v2 import text_pb

    limits = None  # points: every generation on the first saved one's scale, so that a collapse shows
    for gen in gens:
        sample = rundir.load_samples(gen, chain)
        kind = preview_kind(engine, sample)
        if kind == "text":
            yield gen, text_pb("samples", np.array(sample, dtype=object))
            continue
        if kind == "images":
            pixels = image_grid(sample)
        elif kind == "points":
            limits = extent(sample) if limits is None else limits
            pixels = density_image(sample, limits)
        else:
            return  # a plugin's own kind: no picture of it here
        image = summary.Image(height=pixels.shape[0], width=pixels.shape[1], colorspace=1)
        image.encoded_image_string = png_bytes(pixels)
        yield gen, summary(value=[summary.Value(tag="samples", image=image)])


# MLflow
def flat_params(doc: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A TOML document as section.key -> value text; [[chains]] by each chain's name."""
    out: dict[str, str] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flat_params(value, f"{name}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, table in enumerate(value):
                out |= flat_params(table, f"{name}.{table.get('name', i)}.")
        else:
            out[name] = str(value)
    return out


@contextlib.contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE is set: the user named one, so allow it
    while this export writes (the variable as it was afterwards)."""
    if not uri.startswith("file:") or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def write_mlflow(rundir: RunDir, uri: str) -> str:
    """A parent run of the run directory and a nested run per seed (see the module's docstring)."""
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    preset = Preset.read(rundir)
    params = [Param(k, v) for k, v in flat_params(preset.doc).items()]
    name = preset.doc.get("experiment", {}).get("name") or rundir.path.name
    seeds = by_seed(rundir.read_metrics())
    with tempfile.TemporaryDirectory(prefix="collapse-tui-figures-") as tmp, _file_store_allowed(uri):
        figures, why = report_figures(rundir, Path(tmp))
        try:
            client = MlflowClient(tracking_uri=uri)
            found = client.get_experiment_by_name(name)
            experiment = found.experiment_id if found else client.create_experiment(name)
            tags = {"collapse_tui.run_dir": str(rundir.path.resolve())}
            parent = client.create_run(experiment, run_name=rundir.path.name, tags=tags).info.run_id
            for i in range(0, len(params), MLFLOW_BATCH):
                client.log_batch(parent, params=params[i : i + MLFLOW_BATCH])
            for path in figures:
                client.log_artifact(parent, str(path), "figures")
            for (chain, seed), rows in seeds.items():
                label = f"{chain}/seed-{seed}" if chain else f"seed-{seed}"
                child_tags = (
                    tags | {"mlflow.parentRunId": parent, "seed": str(seed)} | ({"chain": chain} if chain else {})
                )
                child = client.create_run(experiment, run_name=f"{rundir.path.name}/{label}", tags=child_tags)
                run_id, stamp = child.info.run_id, int(time.time() * 1000)
                for i in range(0, len(params), MLFLOW_BATCH):
                    client.log_batch(run_id, params=params[i : i + MLFLOW_BATCH])
                metrics = [
                    Metric(n, float(v), stamp, r["generation"])
                    for r in rows
                    for n, (_, v) in metric_values(r).items()
                    if v is not None
                ]
                for i in range(0, len(metrics), 1000):
                    client.log_batch(run_id, metrics=metrics[i : i + 1000])
                client.set_terminated(run_id)
            client.set_terminated(parent)
        except MlflowException as e:
            raise ConfigError(f"--mlflow {uri}: {str(e).splitlines()[0]}") from None
    drawn = f"{len(figures)} figures" if figures else f"no figures ({why})"
    return f"logged {rundir.path.name} to {uri}: experiment {name!r}, run {parent}, {seeds_text(seeds)}, {drawn}"


def report_figures(rundir: RunDir, folder: Path) -> tuple[list[Path], str]:
    """The PNG figures of the report in RUN/report/ (the folder `report` wrote an index.md in), or else the
    report's figures drawn into folder; [] and why not when neither can be had."""
    report = rundir.path / REPORT
    if (report / "index.md").is_file() and (existing := sorted(report.glob("*.png"))):
        return existing, ""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [], "pip install matplotlib draws them"
    from .report.figures import Options
    from .report.runs import write_report
    from .runs import load_run

    try:
        run = load_run(rundir)
    except ConfigError as e:  # an engine not installed here
        return [], str(e)
    written = write_report([run], folder, Options(formats=("png",)))
    return [f for w in written for f in w.files], ""

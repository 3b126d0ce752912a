"""`collapse-tui export RUN_DIR [RUN_DIR ...] --csv FILE [--parquet FILE]`: metrics.jsonl as one flat table.

One row per (seed, generation), one column per metric; with several runs, one table with a first column
`run` holding each row's run directory name; a run of several chains has a `chain` column next.
List-valued metrics (component_stds, class_shares ...) spread into name_0, name_1, ... Missing values
(null in metrics.jsonl: an infinite or undefined number) are empty CSV cells and parquet nulls. Floats
are written with repr, so reading the CSV back gives the metrics.jsonl values bit for bit.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path
from typing import Any

from .config import ConfigError
from .files import atomic_write, printable
from .rundir import RunDir
from .sweepdir import check_output, expand

KEYS_FIRST = ("run", "chain", "seed", "generation")  # run: when several runs are exported; chain: chains


def flatten_row(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics row with list values spread into name_0, name_1, ... (nested lists are not written)."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, list):
            for i, v in enumerate(value):
                flat[f"{key}_{i}"] = v
        else:
            flat[key] = value
    return flat


def flat_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns (the union over rows, in first-seen order, seed and generation first) and flat rows."""
    flat = [flatten_row(r) for r in rows]
    first = [k for k in KEYS_FIRST if k in ("seed", "generation") or any(k in r for r in flat)]
    columns: dict[str, None] = dict.fromkeys(first)
    for r in flat:
        columns.update(dict.fromkeys(r))
    return list(columns), flat


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""  # JSON has no inf either: the same missing value
    return str(value)


def csv_text(rows: list[dict[str, Any]]) -> str:
    columns, flat = flat_table(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in flat:
        writer.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def parse_cell(text: str) -> int | float | str | None:
    """The value a CSV cell holds: int, float, None for an empty cell, else the text."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of an exported CSV with values parsed (the inverse of write_csv, lists left spread)."""
    with open(path, newline="") as f:
        return [{k: parse_cell(v) for k, v in r.items()} for r in csv.DictReader(f)]


def write_csv(rows: list[dict[str, Any]], path: Path | str) -> None:
    """Write atomically; '-' writes to stdout."""
    text = csv_text(rows)
    if str(path) == "-":
        sys.stdout.write(text)
        return
    _write(_output_path(path, "--csv"), text.encode())


def write_parquet(rows: list[dict[str, Any]], path: Path | str) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("--parquet needs pyarrow: pip install pyarrow (or use --csv)") from None
    columns, flat = flat_table(rows)
    data = {c: [_parquet_value(r.get(c)) for r in flat] for c in columns}
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(data), sink)
    _write(_output_path(path, "--parquet"), sink.getvalue().to_pybytes())


def _parquet_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write(path: Path, data: bytes) -> None:
    """A regular file (or a new one) is replaced atomically; a FIFO or a device is written into, never
    replaced by a file."""
    if path.exists() and not path.is_file():
        with open(path, "wb") as f:
            f.write(data)
    else:
        atomic_write(path, data)


def _output_path(path: Path | str, option: str) -> Path:
    """A file name to write: not a folder, in one that exists, and never a file of a run or sweep directory."""
    check_output(path, option)
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"{path}: no such directory {path.parent}")
    return path


def run(args: argparse.Namespace) -> int:
    """`collapse-tui export`: args as cli.build_commands parses them."""
    if not (args.csv or args.parquet):
        raise ConfigError("export: give --csv FILE and/or --parquet FILE")
    for option, out in (("--parquet", args.parquet), ("--csv", args.csv)):
        if out and out != "-":
            _output_path(out, option)  # refused before anything is written: both files, or neither
    names, swept = expand(args.run_dirs)  # a sweep directory: its cells, a column per swept key
    paths = [Path(p) for p in names]
    if len({p.resolve() for p in paths}) < len(paths):
        raise ConfigError("export: the same run directory is named twice")
    runs = [RunDir.open(p) for p in paths]
    if swept:
        rows = [{"run": r.path.name, **swept.get(str(r.path), {}), **row} for r in runs for row in r.read_metrics()]
    elif len(runs) == 1:
        rows = runs[0].read_metrics()
    else:
        names = [printable(r.path.name) for r in runs]  # a non-UTF-8 name's bytes as \xNN: a text cell
        if len(set(names)) < len(names):  # runs of the same name in different folders
            names = [printable(str(r.path)) for r in runs]
        rows = [{"run": name, **row} for name, run in zip(names, runs) for row in run.read_metrics()]
    if args.parquet:
        write_parquet(rows, args.parquet)
    if args.csv:
        write_csv(rows, args.csv)
    for out in (args.parquet, args.csv):
        if out and out != "-":
            print(f"wrote {out}: {len(rows)} rows", file=sys.stderr)  # stderr: stdout may be the CSV
    return 0

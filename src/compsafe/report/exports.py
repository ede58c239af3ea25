"""Exports: tidy rows (CSV, and Parquet when pyarrow is installed), paired differences,
and the reference study's wide layout (``report/wide.py``).

    write_tidy(load_tidy("runs/"), "report/")      # report/tidy.csv (+ tidy.parquet)
    write_paired(paired_diffs("runs/"), "report/")  # report/paired.csv
    write_wide(load_tidy("runs/"), "report/")      # report/wide/bbq.csv, unqover.csv, ...
"""

from __future__ import annotations

import csv
from dataclasses import asdict, fields
from pathlib import Path

from compsafe.report.load import TIDY_KEYS
from compsafe.report.paired import PairedDiff
from compsafe.report.wide import wide_tables, write_tables


def _write_csv(path: Path, columns, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", restval="")
        w.writeheader()
        w.writerows(rows)
    return path


def write_tidy(rows, out_dir) -> list[Path]:
    """tidy.csv with every row and its lineage columns (``load.TIDY_KEYS``), and tidy.parquet
    when pyarrow is importable (the optional ``parquet`` extra)."""
    rows = list(rows)
    paths = [_write_csv(Path(out_dir) / "tidy.csv", TIDY_KEYS, rows)]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return paths
    table = pa.Table.from_pylist([{k: r.get(k) for k in TIDY_KEYS} for r in rows],
                                 schema=_tidy_schema(pa))
    path = Path(out_dir) / "tidy.parquet"
    pq.write_table(table, path)
    return [*paths, path]


def _tidy_schema(pa):
    types = {"sparsity": pa.float64(), "bits": pa.int64(), "group_size": pa.int64(),
             "value": pa.float64(), "n": pa.int64(), "ci_low": pa.float64(),
             "ci_high": pa.float64(), "incomplete": pa.bool_()}
    return pa.schema([(k, types.get(k, pa.string())) for k in TIDY_KEYS])


def write_paired(diffs: list[PairedDiff], out_dir) -> Path:
    """paired.csv: one row per ``PairedDiff``, its fields as columns."""
    return _write_csv(Path(out_dir) / "paired.csv", [f.name for f in fields(PairedDiff)],
                      [asdict(d) for d in diffs])


def write_wide(rows, out_dir) -> list[Path]:
    """The reference study's wide CSVs under ``out_dir/wide/`` (see ``report/wide.py``)."""
    return write_tables(wide_tables(rows), Path(out_dir) / "wide")

"""Helpers for the sweep tests: write a config, read back what a sweep stored."""

from __future__ import annotations

import contextlib
import io
import sqlite3
from pathlib import Path

import yaml

from compsafe.cli import main


def write_config(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump(fields, sort_keys=False), encoding="utf-8")
    return path


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``compsafe.cli.main(argv)`` in process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def query(db: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute(sql).fetchall()


def cells(db: Path) -> dict[tuple[str, str, str], dict]:
    """(model, spec label, task) -> the cell row."""
    cols = ("model", "spec_label", "task", "status", "run_key", "error", "attempts")
    rows = query(db, f"SELECT {', '.join(cols)} FROM sweep_cells")
    return {r[:3]: dict(zip(cols, r, strict=True)) for r in rows}


def metrics(db: Path) -> dict[tuple, tuple]:
    """(run key, subset, group, metric) -> (value, n, ci_low, ci_high), every metric row."""
    rows = query(db, "SELECT run_key, subset, group_name, metric, value, n, ci_low, ci_high "
                     "FROM metrics")
    out = {r[:4]: r[4:] for r in rows}
    assert len(out) == len(rows), "duplicate metric rows"
    return out


def assert_no_duplicates(db: Path) -> None:
    """One run row per key, one record per (run, item), one metric row per identity; every
    run done with as many records as it says."""
    assert query(db, "SELECT count(*) - count(DISTINCT run_key) FROM runs") == [(0,)]
    assert query(db, "SELECT count(*) FROM (SELECT run_key, item_id FROM records "
                     "GROUP BY run_key, item_id HAVING count(*) > 1)") == [(0,)]
    metrics(db)
    runs = query(db, "SELECT r.run_key, r.status, r.n_items, count(x.item_id) FROM runs r "
                     "LEFT JOIN records x USING (run_key) GROUP BY r.run_key")
    for key, status, n_items, n_records in runs:
        assert status == "done" and n_items == n_records, (key, status, n_items, n_records)

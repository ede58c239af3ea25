"""The results store's SQLite schema (versioned with ``PRAGMA user_version``) and WAL setup.

Six tables: ``runs`` (one row per run key, with the model's lineage), ``records``
(per-item records, keyed by run key and item id so a resumed run cannot duplicate them),
``metrics`` (tidy long rows, DESIGN.md convention 5; a NULL value means undefined, never 0)
and ``invocations`` (every command that started or resumed a run: when, the command line,
and the compsafe/torch/transformers versions) and ``claims`` (items a process is computing
now, so an identical concurrent command computes other items; ``store/claims.py``) and
``shared_outputs`` (a model's outputs that several runs can share, e.g. one set of
generations scored by two scorers; ``store/shared.py``).

    ensure_schema(conn, path)  # inside a write transaction
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from compsafe.errors import CompsafeError

SCHEMA_VERSION = 5
"""Stored in ``PRAGMA user_version``; bump it (and add a migration) when the tables change.
3: the ``invocations`` table. 4: ``runs.n_failed`` (failed scores left in a finished run:
its metrics are incomplete) and the ``claims`` table. 5: the ``shared_outputs`` table."""

STATUSES = ("running", "done", "failed")

INVOCATIONS = """CREATE TABLE IF NOT EXISTS invocations (
        run_key TEXT NOT NULL REFERENCES runs(run_key),
        started_at TEXT NOT NULL,
        command TEXT NOT NULL,
        versions_json TEXT NOT NULL)"""

CLAIMS = """CREATE TABLE IF NOT EXISTS claims (
        run_key TEXT NOT NULL,
        item_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (run_key, item_id)) WITHOUT ROWID"""

SHARED_OUTPUTS = """CREATE TABLE IF NOT EXISTS shared_outputs (
        share_key TEXT NOT NULL,
        item_id TEXT NOT NULL,
        record_json TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (share_key, item_id)) WITHOUT ROWID"""

TABLES = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_key TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        model_fingerprint TEXT NOT NULL,
        task TEXT NOT NULL,
        task_version INTEGER NOT NULL,
        config_json TEXT NOT NULL,
        code_version TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
        n_items INTEGER,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        base_model TEXT,
        base_fingerprint TEXT,
        spec_key TEXT,
        spec_label TEXT,
        method TEXT,
        sparsity REAL,
        structure TEXT,
        bits INTEGER,
        group_size INTEGER,
        spec_json TEXT,
        n_failed INTEGER)""",
    """CREATE TABLE IF NOT EXISTS records (
        run_key TEXT NOT NULL REFERENCES runs(run_key),
        item_id TEXT NOT NULL,
        record_json TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (run_key, item_id))""",
    """CREATE TABLE IF NOT EXISTS metrics (
        run_key TEXT NOT NULL REFERENCES runs(run_key),
        model TEXT NOT NULL,
        task TEXT NOT NULL,
        subset TEXT NOT NULL,
        group_name TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL,
        n INTEGER NOT NULL,
        ci_low REAL,
        ci_high REAL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (run_key, subset, group_name, metric))""",
    "CREATE INDEX IF NOT EXISTS metrics_task_model ON metrics (task, model)",
    INVOCATIONS,
    CLAIMS,
    SHARED_OUTPUTS,
)

LINEAGE_COLUMNS = ("base_model", "base_fingerprint", "spec_key", "spec_label", "method",
                   "sparsity", "structure", "bits", "group_size", "spec_json")
"""Version 2: which base model a run's model came from and how it was compressed
(``compsafe.compress.lineage.Lineage``), so reports pair compressed runs with their own
dense baseline by structured fields. NULL in runs stored before version 2."""

_LINEAGE_TYPES = {"sparsity": "REAL", "bits": "INTEGER", "group_size": "INTEGER"}

RUN_COLS = (
    "run_key, model, model_fingerprint, task, task_version, config_json, code_version, "
    "status, n_items, error, created_at, updated_at, " + ", ".join(LINEAGE_COLUMNS)
    + ", n_failed"
)
METRIC_COLS = "run_key, model, task, subset, group_name, metric, value, n, ci_low, ci_high"


class StoreError(CompsafeError):
    """A store that cannot be opened, or a write the store refuses; the message says why."""


def refuse_newer(path: Path) -> None:
    """Raise ``StoreError`` if the existing file at ``path`` has a newer schema, reading it
    through a read-only connection: a refused store is left exactly as it was (opening it
    for writing would first switch it to WAL mode, which an older reader must not do)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    _check_version(version, path)


def _check_version(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} is newer than this compsafe's "
            f"({SCHEMA_VERSION}); upgrade compsafe to read it")


def ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables if missing; refuse a file written by a newer schema.

    Call it inside a write transaction: the version is read under the write lock, so two
    processes opening a fresh file do not both try to create it half-way.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    _check_version(version, path)
    if version == SCHEMA_VERSION:
        return
    if version == 0:  # a new, empty file
        for stmt in TABLES:
            conn.execute(stmt)
    if version == 1:  # add the lineage columns; old runs keep NULL there
        for col in LINEAGE_COLUMNS:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {col} {_LINEAGE_TYPES.get(col, 'TEXT')}")
    if version in (1, 2):  # runs stored before version 3 have no invocation rows
        conn.execute(INVOCATIONS)
    if version in (1, 2, 3):  # failures were not counted before version 4: NULL
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        if "n_failed" not in columns:
            conn.execute("ALTER TABLE runs ADD COLUMN n_failed INTEGER")
        conn.execute(CLAIMS)
    if version in (1, 2, 3, 4):  # nothing was shared before version 5
        conn.execute(SHARED_OUTPUTS)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def enable_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Switch to WAL, retrying while locked until ``timeout_s`` has passed.

    The switch needs an exclusive lock, and SQLite does not always call the busy
    handler for it: processes opening a fresh file together otherwise fail at once
    with "database is locked". Once the file is in WAL mode, this is a no-op read.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

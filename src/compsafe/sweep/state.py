"""The ``sweep_cells`` table: each cell's state (pending/running/done/failed), run key, error.

It lives in the sweep's results store file (``<out>/compsafe.sqlite``) beside the store's
own tables, which it never touches: results are the store's ``runs``/``records``/``metrics``,
this table only says which cell produced which run, and what went wrong where a cell failed.
Created here (``CREATE TABLE IF NOT EXISTS``), so the store's schema version is unaffected.
A cell left ``running`` by a killed process is resumed by the next run; ``status`` shows it
as ``interrupted`` when its process is gone.

    with CellTable(config.store_path) as table:
        table.register(cells, config.name)
        table.set(cell.key, "running")
"""

from __future__ import annotations

import os
import socket
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

STATES = ("pending", "running", "done", "failed")

SCHEMA = """CREATE TABLE IF NOT EXISTS sweep_cells (
    cell_key TEXT PRIMARY KEY,
    sweep TEXT NOT NULL,
    model TEXT NOT NULL,
    spec_key TEXT NOT NULL,
    spec_label TEXT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    run_key TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    pid INTEGER,
    updated_at TEXT NOT NULL)"""

COLS = ("cell_key", "sweep", "model", "spec_key", "spec_label", "task", "status", "run_key",
        "error", "attempts", "host", "pid", "updated_at")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class CellTable:
    """Read and write cell states; one object per process (several may share the file)."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        self._conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        if not readonly:
            self._conn.execute(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> CellTable:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def register(self, cells, sweep: str) -> None:
        """Add cells not seen before as ``pending``; known cells keep their state."""
        now = _now()
        self._conn.execute("BEGIN IMMEDIATE")  # one transaction for the whole grid
        try:
            self._conn.executemany(
                "INSERT OR IGNORE INTO sweep_cells (cell_key, sweep, model, spec_key, "
                "spec_label, task, status, updated_at) VALUES (?,?,?,?,?,?,'pending',?)",
                [(c.key, sweep, c.model.name, c.spec.key(), c.spec.label(), c.task.name, now)
                 for c in cells])
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def set(self, cell_key: str, status: str, run_key: str | None = None,
            error: str | None = None) -> None:
        """Record a state change; ``running`` counts an attempt and notes host and pid."""
        assert status in STATES, status
        now = _now()
        if status == "running":
            sql = ("UPDATE sweep_cells SET status = ?, error = NULL, attempts = attempts + 1, "
                   "host = ?, pid = ?, updated_at = ? WHERE cell_key = ?")
            args = (status, socket.gethostname(), os.getpid(), now, cell_key)
        else:
            sql = ("UPDATE sweep_cells SET status = ?, run_key = COALESCE(?, run_key), "
                   "error = ?, updated_at = ? WHERE cell_key = ?")
            args = (status, run_key, error, now, cell_key)
        self._conn.execute(sql, args)

    def rows(self) -> dict[str, dict]:
        """Every stored cell by key."""
        rows = self._conn.execute(f"SELECT {', '.join(COLS)} FROM sweep_cells")
        return {r[0]: dict(zip(COLS, r, strict=True)) for r in rows}


def read_rows(path: Path) -> dict[str, dict]:
    """Cell rows of a store file, or {} when the file or the table does not exist yet."""
    if not path.is_file():
        return {}
    try:
        with CellTable(path, readonly=True) as table:
            return table.rows()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return {}
        raise


def process_alive(host: str | None, pid: int | None) -> bool | None:
    """Whether the process that marked a cell running still exists (None: another host)."""
    if host != socket.gethostname() or pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

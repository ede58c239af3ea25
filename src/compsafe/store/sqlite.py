"""The results store: one SQLite file holding runs, per-item records and tidy metric rows.

A run is identified by its content-hash key (``compsafe.runner.keys.run_key``; DESIGN.md
convention 6). Records are written as they are computed, in batches that each commit in
one transaction, so a crash loses at most the batch in flight and a resumed run skips the
items in ``done_item_ids``. Metrics are tidy long rows (convention 5); ``report/`` reads
them and makes the wide views.

    with Store("runs/results.sqlite") as st:
        st.start_run(key, "smollm2", fp, "bbq", 1, task.config(), "0.1.0")
        st.add_records(key, records)
        st.put_metrics(key, "smollm2", "bbq", task.metrics(st.records(key)))
        st.finish_run(key, n_items=len(records))

Several processes may write different runs to the same file: WAL mode lets readers run
beside the writer, writes take the lock up front (``BEGIN IMMEDIATE``) and wait up to
``busy_timeout`` for it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from compsafe.store import claims, shared
from compsafe.store.jsonrow import dumps as _dumps
from compsafe.store.jsonrow import real as _real
from compsafe.store.schema import (
    LINEAGE_COLUMNS,
    METRIC_COLS,
    RUN_COLS,
    StoreError,
    enable_wal,
    ensure_schema,
    refuse_newer,
)
from compsafe.types import MetricRow


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """A results store in one SQLite file (created with its parent folders if missing).

    Usable as a context manager; reopening an existing file is safe. One ``Store`` object
    belongs to one process: open a new one in each worker process.
    """

    def __init__(self, path: str | Path, busy_timeout_ms: int = 30_000):
        self.path = Path(path)
        self._conn = None
        if str(path) != ":memory:":
            if self.path.is_dir():
                raise StoreError(f"{self.path}: is a directory; the results store is a file "
                                 f"(give a path such as {self.path / 'compsafe.sqlite'})")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"{self.path}: cannot create its folder: {e.strerror or e}"
                                 ) from None
        try:
            if str(path) != ":memory:":
                refuse_newer(self.path)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is exactly
            # one transaction and no statement opens one behind our back.
            self._conn = sqlite3.connect(
                str(path), timeout=busy_timeout_ms / 1000, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            enable_wal(self._conn, busy_timeout_ms / 1000)
            # NORMAL is durable against a process crash in WAL mode (only a power loss can
            # drop the last commits), and saves an fsync per batch.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            with self._write() as c:
                ensure_schema(c, self.path)
        except sqlite3.DatabaseError as e:
            self.close()
            raise StoreError(f"{self.path}: cannot open results store: {e}") from e
        except StoreError:
            self.close()
            raise

    # -- plumbing ---------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. IMMEDIATE takes the write lock up front, waiting up to
        busy_timeout, instead of failing later when a read lock cannot be upgraded."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _require_run(self, c: sqlite3.Connection, run_key: str) -> None:
        if c.execute("SELECT 1 FROM runs WHERE run_key = ?", (run_key,)).fetchone() is None:
            raise StoreError(f"{self.path}: no run {run_key!r}; call start_run first")

    def close(self) -> None:
        """Close the connection; calling it twice is harmless."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- runs -------------------------------------------------------------------------

    def start_run(
        self,
        run_key: str,
        model: str,
        model_fingerprint: str,
        task: str,
        task_version: int,
        config: dict,
        code_version: str,
        lineage: dict | None = None,
        invocation: dict | None = None,
    ) -> str | None:
        """Register a run, or keep the one already stored under ``run_key``.

        ``lineage`` fills the lineage columns (``Lineage.columns()``: base model, method,
        sparsity, bits, ...); missing keys are stored as NULL. ``invocation`` (``command``,
        ``versions``; ``runner.provenance.invocation()``) is appended to the run's
        invocations, whether the run is new, resumed or reused.

        Returns the stored status before this call (``'running'``, ``'done'``,
        ``'failed'``), or None for a new run. A kept run that is not done is marked
        ``'running'`` again (it is being resumed); a done run is left untouched.
        """
        config_json = _dumps(config, f"run {run_key} config")
        unknown = sorted(set(lineage or {}) - set(LINEAGE_COLUMNS))
        if unknown:
            raise StoreError(f"run {run_key}: unknown lineage fields {unknown}; "
                             f"known: {', '.join(LINEAGE_COLUMNS)}")
        now = _now()
        with self._write() as c:
            row = c.execute(
                "SELECT status, model_fingerprint, task, task_version FROM runs "
                "WHERE run_key = ?", (run_key,)).fetchone()
            if row is None:
                extra = [(lineage or {}).get(col) for col in LINEAGE_COLUMNS]
                marks = ",".join("?" * (13 + len(LINEAGE_COLUMNS)))
                c.execute(
                    f"INSERT INTO runs ({RUN_COLS}) VALUES ({marks})",
                    (run_key, model, model_fingerprint, task, int(task_version), config_json,
                     code_version, "running", None, None, now, now, *extra, None))
                self._log_invocation(c, run_key, now, invocation)
                return None
            status, fp, stored_task, stored_version = row
            if (fp, stored_task, stored_version) != (model_fingerprint, task, task_version):
                # Same key, different identity: a key built from the wrong inputs. Serving
                # these results would be exactly the mix-up run keys exist to prevent.
                raise StoreError(
                    f"{self.path}: run {run_key!r} is stored for {stored_task} "
                    f"v{stored_version} on model {fp}, not {task} v{task_version} on "
                    f"{model_fingerprint}")
            if status != "done":
                c.execute("UPDATE runs SET status = 'running', updated_at = ? "
                          "WHERE run_key = ?", (now, run_key))
            self._log_invocation(c, run_key, now, invocation)
            return status

    @staticmethod
    def _log_invocation(c: sqlite3.Connection, run_key: str, now: str,
                        invocation: dict | None) -> None:
        if invocation is not None:
            c.execute("INSERT INTO invocations VALUES (?, ?, ?, ?)",
                      (run_key, now, str(invocation.get("command", "")),
                       _dumps(invocation.get("versions") or {}, f"run {run_key} versions")))

    def invocations(self, run_key: str | None = None) -> list[dict]:
        """Commands that started, resumed or reused runs (of ``run_key``), oldest first."""
        sql = "SELECT run_key, started_at, command, versions_json FROM invocations"
        rows = (self._conn.execute(sql + " WHERE run_key = ? ORDER BY rowid", (run_key,))
                if run_key else self._conn.execute(sql + " ORDER BY rowid"))
        return [{"run_key": k, "started_at": t, "command": cmd, "versions": json.loads(v)}
                for k, t, cmd, v in rows]

    def finish_run(self, run_key: str, n_items: int, n_failed: int = 0) -> None:
        """Mark a run done with its item count (and clear any earlier attempt's error).

        ``n_failed`` counts the failed scores left in its records: a run with any is done
        but its metrics are incomplete (``incomplete``), and a rerun retries them.
        """
        with self._write() as c:
            self._require_run(c, run_key)
            c.execute("UPDATE runs SET status = 'done', n_items = ?, n_failed = ?, error = NULL,"
                      " updated_at = ? WHERE run_key = ?",
                      (int(n_items), int(n_failed), _now(), run_key))

    def fail_run(self, run_key: str, error: str) -> None:
        """Mark a run failed; its committed records stay, so a rerun resumes from them."""
        with self._write() as c:
            self._require_run(c, run_key)
            c.execute("UPDATE runs SET status = 'failed', error = ?, updated_at = ? "
                      "WHERE run_key = ?", (str(error), _now(), run_key))

    def run(self, run_key: str) -> dict | None:
        """The run's row as a dict (``config`` parsed from ``config_json``), or None."""
        row = self._conn.execute(
            f"SELECT {RUN_COLS} FROM runs WHERE run_key = ?", (run_key,)).fetchone()
        return None if row is None else _run_dict(row)

    def runs(self) -> list[dict]:
        """All runs, oldest first."""
        rows = self._conn.execute(f"SELECT {RUN_COLS} FROM runs ORDER BY created_at, rowid")
        return [_run_dict(r) for r in rows]

    # -- records ----------------------------------------------------------------------

    def add_records(self, run_key: str, records: Sequence[dict]) -> int:
        """Store a batch of per-item records in one transaction; returns how many were new.

        Each record needs a string ``"id"``. An id already stored for this run is skipped
        (the first record written wins), so a resumed run never duplicates rows.
        """
        rows = []
        for i, rec in enumerate(records):
            item_id = rec.get("id") if isinstance(rec, dict) else None
            if not isinstance(item_id, str):
                raise StoreError(
                    f"run {run_key}: record #{i} in batch needs a string 'id', got {item_id!r}")
            rows.append((run_key, item_id, _dumps(rec, f"run {run_key} record {item_id!r}")))
        if not rows:
            return 0
        now = _now()
        with self._write() as c:
            self._require_run(c, run_key)
            before = c.total_changes
            c.executemany(
                "INSERT OR IGNORE INTO records (run_key, item_id, record_json, created_at) "
                "VALUES (?, ?, ?, ?)", [(*r, now) for r in rows])
            return c.total_changes - before

    def replace_records(self, run_key: str, records: Sequence[dict]) -> int:
        """Overwrite stored records by id (a retry of their failed scores); returns how many.

        Only ids already stored are replaced: a retry never adds items.
        """
        rows = [(_dumps(r, f"run {run_key} record {r.get('id')!r}"), _now(), run_key, r["id"])
                for r in records]
        with self._write() as c:
            self._require_run(c, run_key)
            before = c.total_changes
            c.executemany("UPDATE records SET record_json = ?, created_at = ? "
                          "WHERE run_key = ? AND item_id = ?", rows)
            return c.total_changes - before

    # -- claims (store/claims.py) ------------------------------------------------------

    def claim_items(self, run_key: str, item_ids: Sequence[str], owner: str, ttl_s: float,
                    limit: int) -> list[str]:
        """Claim up to ``limit`` of ``item_ids`` that no one has recorded or is computing."""
        with self._write() as c:
            self._require_run(c, run_key)
            return claims.claim_items(c, run_key, item_ids, owner, ttl_s, limit)

    def renew_claims(self, owner: str, ttl_s: float) -> None:
        """Extend ``owner``'s claims by ``ttl_s`` from now (the heartbeat, over a proxy)."""
        with self._write() as c:
            c.execute("UPDATE claims SET expires_at = ? WHERE owner = ?",
                      (time.time() + ttl_s, owner))

    def release_claims(self, owner: str) -> None:
        """Drop every claim of ``owner`` (its chunk is stored, or it is giving up)."""
        with self._write() as c:
            c.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    def renewer(self, owner: str, ttl_s: float):
        """A function renewing ``owner``'s claims, for ``claims.Heartbeat``'s thread: it uses
        a connection of its own (a SQLite connection belongs to the thread that opened it)."""
        path, local = str(self.path), threading.local()

        def renew() -> None:
            if not hasattr(local, "conn"):
                local.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            local.conn.execute("UPDATE claims SET expires_at = ? WHERE owner = ?",
                               (time.time() + ttl_s, owner))
        return renew

    def done_item_ids(self, run_key: str) -> set[str]:
        """Ids of the items already recorded for this run (what a resume can skip)."""
        rows = self._conn.execute("SELECT item_id FROM records WHERE run_key = ?", (run_key,))
        return {r[0] for r in rows}

    def records(self, run_key: str) -> list[dict]:
        """The run's records in the order they were written (deterministic re-scoring)."""
        rows = self._conn.execute(
            "SELECT record_json FROM records WHERE run_key = ? ORDER BY rowid", (run_key,))
        return [json.loads(r[0]) for r in rows]

    # -- outputs shared between runs (store/shared.py) ---------------------------------

    def shared_records(self, share_key: str, item_ids: Sequence[str]) -> dict[str, dict]:
        """Model outputs stored under ``share_key`` for ``item_ids`` (by id; missing: absent)."""
        return shared.shared_records(self._conn, share_key, item_ids)

    def put_shared_records(self, share_key: str, records: Sequence[dict]) -> int:
        """Store records (each with a string ``"id"``) under ``share_key``; returns new ones."""
        rows = [(r["id"], _dumps(r, f"shared {share_key} record {r['id']!r}")) for r in records]
        with self._write() as c:
            return shared.put_shared_records(c, share_key, rows, _now())

    # -- metrics ----------------------------------------------------------------------

    def put_metrics(self, run_key: str, model: str, task: str, rows: Sequence[MetricRow]) -> None:
        """Replace the run's metric rows with ``rows``, atomically (delete + insert in one
        transaction). A ``None`` value is stored as NULL: undefined, never 0."""
        seen: set[tuple[str, str, str]] = set()
        params = []
        for r in rows:
            ident = (r.subset, r.group, r.metric)
            if ident in seen:
                raise StoreError(f"run {run_key}: duplicate metric row subset/group/metric "
                                 f"{ident}")
            seen.add(ident)
            what = f"run {run_key} metric {ident}"
            params.append((run_key, model, task, r.subset, r.group, r.metric,
                           _real(r.value, f"{what} value"), int(r.n),
                           _real(r.ci_low, f"{what} ci_low"), _real(r.ci_high, f"{what} ci_high")))
        now = _now()
        with self._write() as c:
            self._require_run(c, run_key)
            c.execute("DELETE FROM metrics WHERE run_key = ?", (run_key,))
            c.executemany(
                f"INSERT INTO metrics ({METRIC_COLS}, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)", [(*p, now) for p in params])

    def metrics_rows(
        self, run_key: str | None = None, task: str | None = None, model: str | None = None
    ) -> list[dict]:
        """Tidy metric rows, filtered by any of run key, task, model; in the order written.

        Keys: run_key, model, task, subset, group, metric, value, n, ci_low, ci_high.
        """
        where, args = [], []
        for col, val in (("run_key", run_key), ("task", task), ("model", model)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = f"SELECT {METRIC_COLS} FROM metrics"
        if where:
            sql += " WHERE " + " AND ".join(where)
        keys = ("run_key", "model", "task", "subset", "group", "metric", "value", "n",
                "ci_low", "ci_high")
        rows = self._conn.execute(sql + " ORDER BY rowid", args)
        return [dict(zip(keys, r, strict=True)) for r in rows]


def _run_dict(row: tuple) -> dict:
    d = dict(zip([c.strip() for c in RUN_COLS.split(",")], row, strict=True))
    d["config"] = json.loads(d.pop("config_json"))
    spec_json = d.pop("spec_json")
    d["spec"] = json.loads(spec_json) if spec_json else None
    d["incomplete"] = bool(d["n_failed"])  # done, but some scores failed: rerun to retry
    return d

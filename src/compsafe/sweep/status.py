"""Cell states for ``compsafe sweep status`` and for deciding what a (re-)run still has to do.

A cell is ``done`` only when the cell table says so *and* its run is finished in the store
(so deleting a run from the store makes its cell run again); ``running`` when a live
process holds it, ``interrupted`` when that process is gone (killed; the next run resumes
it), ``failed`` with its error, else ``pending``. Reads the store file read-only and never
creates it.

    states = cell_states(all_cells(expand(config)), config.store_path)
    print(format_status(cells, states))
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from pathlib import Path

from compsafe.sweep.expand import Cell
from compsafe.sweep.state import process_alive, read_rows

ORDER = ("done", "running", "interrupted", "failed", "incomplete", "pending")
"""Cell states. ``incomplete``: its run finished with failed scores (a scorer or API
error); the cell runs again, retrying only those scores."""


def _finished_runs(path: Path) -> dict[str, int]:
    """Run key -> failed scores left (0 when complete, or not counted) of every done run."""
    if not path.is_file():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
            failed = "n_failed" if "n_failed" in columns else "0"  # stores before schema 4
            return {k: n or 0 for k, n in conn.execute(
                f"SELECT run_key, {failed} FROM runs WHERE status = 'done'")}
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return {}
        raise


def cell_states(cells: list[Cell], store_path: Path) -> dict[str, dict]:
    """Per cell key: ``state`` (one of ``ORDER``), ``run_key``, ``error``, ``attempts``."""
    rows = read_rows(store_path)
    finished = _finished_runs(store_path)
    out = {}
    for cell in cells:
        row = rows.get(cell.key) or {"status": "pending", "run_key": None, "error": None,
                                     "attempts": 0}
        state = row["status"]
        if state == "done" and row["run_key"] not in finished:
            state = "pending"  # its results are gone from the store: compute them again
        elif state == "done" and finished[row["run_key"]]:
            state = "incomplete"  # failed scores left: run again to retry them
        elif state == "running" and process_alive(row.get("host"), row.get("pid")) is False:
            state = "interrupted"
        out[cell.key] = {"state": state, "run_key": row["run_key"], "error": row["error"],
                         "attempts": row["attempts"]}
    return out


def summary(states: dict[str, dict]) -> str:
    counts = Counter(s["state"] for s in states.values())
    return ", ".join(f"{counts[k]} {k}" for k in ORDER if counts[k] or k in ("done", "pending"))


def cell_line(index: int, total: int, state: str, cell: Cell, detail: str = "") -> str:
    """One console line per cell: ``[ 3/24] done        smollm2 | wanda-50 | bbq  run ...``."""
    width = len(str(total))
    return f"[{index:>{width}}/{total}] {state:<11} {cell.label}{'  ' + detail if detail else ''}"


def format_status(name: str, cells: list[Cell], states: dict[str, dict], store: Path) -> str:
    """The status table: every cell with its state and run key or error, then the counts."""
    lines = [f"sweep {name}: {len(cells)} cells, store {store}"]
    for i, cell in enumerate(cells, 1):
        s = states[cell.key]
        detail = ""
        if s["state"] == "failed":
            detail = s["error"] or ""
        elif s["run_key"] and s["state"] != "pending":
            detail = f"run {s['run_key']}"
        if s["attempts"] > 1:
            detail += f" ({s['attempts']} attempts)"
        lines.append(cell_line(i, len(cells), s["state"], cell, detail.strip()))
    lines.append(summary(states))
    return "\n".join(lines)

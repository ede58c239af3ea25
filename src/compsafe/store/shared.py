"""Model outputs several runs share: one set of generations, scored by several scorers.

The reference study scores each prompt set's generations with several scorers (Xu et al.
2024, ``src/evaluate.py:82-89``: RealToxicityPrompts with ToxiGen-RoBERTa and the moderation
API, BOLD with those and VADER, ...). In compsafe each scorer is its own run (a run's
metrics measure one thing), and the model's outputs, which do not depend on the scorer,
are stored once under a *share key*: the run key computed without the parts a task's
``postprocess`` adds (``LoglikTask.shared_config``). A second run with the same share key
reads them instead of generating again, so its scores are of the very same texts.

The share key covers everything a run key does except those parts: the weights
fingerprint (a dense model's outputs are never served for a compressed one), the task and
its version, the examples' content, the prompt format, the decoding and the code version.
Rows are written before scoring, the first write wins, and a reader takes what is there
(a partial set is completed by generating the rest).

    known = shared_records(conn, share_key, ids); put_shared_records(conn, key, records)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

_BATCH = 500
"""Ids per SELECT: SQLite limits the number of bound parameters of one statement."""


def shared_records(conn: sqlite3.Connection, share_key: str,
                   item_ids: Sequence[str]) -> dict[str, dict]:
    """The stored shared records of ``item_ids`` under ``share_key``, by item id."""
    found: dict[str, dict] = {}
    ids = list(item_ids)
    for start in range(0, len(ids), _BATCH):
        part = ids[start : start + _BATCH]
        marks = ",".join("?" * len(part))
        rows = conn.execute(
            f"SELECT item_id, record_json FROM shared_outputs WHERE share_key = ? "
            f"AND item_id IN ({marks})", (share_key, *part))
        found.update((item_id, json.loads(text)) for item_id, text in rows)
    return found


def put_shared_records(conn: sqlite3.Connection, share_key: str,
                       rows: Sequence[tuple[str, str]], now: str) -> int:
    """Store ``(item_id, record_json)`` rows under ``share_key``; returns how many were new
    (an id already there is kept: the outputs of one share key are the same by design)."""
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO shared_outputs (share_key, item_id, record_json, created_at) "
        "VALUES (?, ?, ?, ?)", [(share_key, item_id, text, now) for item_id, text in rows])
    return conn.total_changes - before

"""Work claims: which process is computing which items of a run, so identical concurrent
commands (two ``compsafe eval`` on one ``--out``, two sweeps of one config) split the work
instead of both computing every item.

A process claims the next chunk of items that are neither recorded nor claimed by another
live owner, computes it, stores its records and drops the claims. A claim dies with its
owner: immediately when the owner was a process on this host that no longer exists
(SIGKILL, OOM), otherwise when it was not renewed for ``ttl_s`` (a heartbeat renews live
owners' claims, so a slow chunk keeps its claim). The results never depend on who computed
an item: records are keyed by (run key, item id), and the first write wins.

    owner = owner_id(); ids = store.claim_items(key, wanted_ids, owner, ttl_s=120, limit=128)
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence

DEFAULT_TTL_S = 120.0
"""Seconds a claim outlives its last renewal; the heartbeat renews every quarter of it."""


def owner_id() -> str:
    """``host:pid:nonce``: unique per claimant, and says where to check it is alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_alive(owner: str) -> bool:
    """False only when ``owner`` was a process on this host that has exited; owners on other
    hosts cannot be checked and count as alive (their claims expire instead)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def claim_items(conn: sqlite3.Connection, run_key: str, item_ids: Sequence[str], owner: str,
                ttl_s: float, limit: int) -> list[str]:
    """Claim up to ``limit`` of ``item_ids`` (in their order) for ``owner``, inside the
    caller's write transaction; returns the ids claimed. Skips items already recorded and
    items claimed by another live owner; takes over dead or expired owners' claims, and
    renews the owner's own."""
    now = time.time()
    conn.execute("DELETE FROM claims WHERE expires_at < ?", (now,))
    others = [o for (o,) in conn.execute(
        "SELECT DISTINCT owner FROM claims WHERE run_key = ? AND owner != ?", (run_key, owner))]
    for dead in (o for o in others if not owner_alive(o)):
        conn.execute("DELETE FROM claims WHERE owner = ?", (dead,))
    busy = {i for (i,) in conn.execute(
        "SELECT item_id FROM claims WHERE run_key = ? AND owner != ?", (run_key, owner))}
    busy |= {i for (i,) in conn.execute(
        "SELECT item_id FROM records WHERE run_key = ?", (run_key,))}
    picked = [i for i in dict.fromkeys(item_ids) if i not in busy][:max(0, limit)]
    conn.execute("UPDATE claims SET expires_at = ? WHERE owner = ?", (now + ttl_s, owner))
    conn.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)",
                     [(run_key, i, owner, now + ttl_s) for i in picked])
    return picked


class Heartbeat:
    """Renews ``owner``'s claims every ``ttl_s / 4`` seconds from a daemon thread.

    ``renew`` is called from that thread, so it must not share a SQLite connection with
    the caller's thread (``Store.renewer`` opens its own).
    """

    def __init__(self, renew, ttl_s: float):
        self._renew, self._period = renew, max(0.05, ttl_s / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="compsafe-claims", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self._renew()
            except Exception:  # a missed renewal only risks duplicated work, never results
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

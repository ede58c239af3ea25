"""Temporary sibling folders for atomic saves, cleaned up after a killed process.

A model is saved (``compress/save.py``) or converted from GGUF (``models/embedded.py``)
into a temporary folder beside its destination, then renamed into place. A SIGKILL or an
OOM kill mid-save leaves the folder behind (issue 14: a 538 MB sparse file, never removed).
The folder's name records its owner (``host:pid:nonce``), so the next save to the same
destination removes the folders of owners that no longer exist on this host, and leaves
those of live processes, and of other hosts, alone.

    tmp = temp_sibling(out_dir)   # .wanda-50.compsafe-tmp.host:1234:ab12cd34ef56
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from compsafe.store.claims import owner_alive, owner_id

log = logging.getLogger(__name__)

MARK = ".compsafe-tmp."


def stale_siblings(target: Path) -> list[Path]:
    """Temporary folders for ``target`` whose owner process has exited (on this host)."""
    prefix = f".{target.name}{MARK}"
    parent = target.parent
    if not parent.is_dir():
        return []
    return [p for p in parent.iterdir()
            if p.name.startswith(prefix) and not owner_alive(p.name[len(prefix):])]


def temp_sibling(target: Path) -> Path:
    """A new private folder beside ``target``, named for this process; the stale folders
    of killed earlier attempts at ``target`` are removed first."""
    for stale in stale_siblings(target):
        log.info("removing %s, left by a killed save", stale)
        shutil.rmtree(stale, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}{MARK}{owner_id()}"
    tmp.mkdir(mode=0o700)
    return tmp

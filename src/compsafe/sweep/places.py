"""Where a sweep config's results went: every ``compsafe sweep`` run records its store.

``--set out=runs/try`` moves a sweep's store away from the config's ``out``; a later
``compsafe sweep status CONFIG`` without that override would look in the wrong place. Each
run appends ``{config, store, overrides}`` to ``<cache_root>/sweeps.jsonl``, and ``status``
uses it to say where the results are and how to point at them.

    record_run(config_path, store_path, ["out=runs/try"])
    other_stores(config_path, current_store)   # [(store, overrides), ...]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from compsafe.data.paths import cache_root

FILE = "sweeps.jsonl"


def _registry() -> Path:
    """``$COMPSAFE_SWEEP_REGISTRY`` if set (tests keep theirs apart), else the cache's."""
    override = os.environ.get("COMPSAFE_SWEEP_REGISTRY")
    return Path(override) if override else cache_root() / FILE


def record_run(config: Path, store: Path, overrides: list[str]) -> None:
    """Remember that ``config`` was run into ``store`` (with ``overrides``)."""
    path = _registry()
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"config": str(Path(config).resolve()), "store": str(Path(store).resolve()),
             "overrides": list(overrides)}
    with open(path, "a", encoding="utf-8") as f:  # one short line: appends do not interleave
        f.write(json.dumps(entry) + "\n")


def other_stores(config: Path, current: Path) -> list[tuple[Path, list[str]]]:
    """Existing stores ``config`` was run into, other than ``current``, newest first."""
    path = _registry()
    if not path.is_file():
        return []
    want, here = str(Path(config).resolve()), Path(current).resolve()
    seen: dict[Path, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line from a crash: skip it, keep the rest
        store = Path(entry.get("store", ""))
        if entry.get("config") == want and store != here and store.is_file():
            seen.pop(store, None)
            seen[store] = entry.get("overrides", [])
    return list(reversed(seen.items()))

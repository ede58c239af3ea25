"""Metric definitions of a stored run, rebuilt from its records and stored task config.

Each task registers how (``rebuild`` in ``tasks/registry.py``; compsafe's own in
``tasks/builtin.py``): the same functions the tasks' ``metrics()`` use, called with the
parameters read back from ``run["config"]["task"]``, so no task object, model or torch import
is needed. ``BUILDERS`` and ``GENERATION_TASKS`` are live views of that registry.

    defs = run_defs(run, store.records(run["run_key"]))
"""

from __future__ import annotations

from typing import Any

from compsafe.metrics.defs import Def
from compsafe.tasks.registry import GENERATION_TASKS, TASKS, rebuild_defs

__all__ = ["BUILDERS", "GENERATION_TASKS", "run_defs"]

BUILDERS = TASKS.view("rebuild", load=True)
"""Task name -> its ``rebuild(records, cfg)`` function."""


def run_defs(run: dict[str, Any], records: list[dict[str, Any]]) -> list[Def]:
    """The definitions (and bookkeeping rows) of ``run``'s metric rows from its records."""
    return rebuild_defs(run, records)

"""Tasks: CLI names to task classes and their metadata, one registry (``tasks/registry.py``).

Classes are imported lazily, so ``--help`` stays fast. A task of your own is one
``register_task`` call from your module (``docs/extending.md``); compsafe's own are
registered the same way in ``tasks/builtin.py``.

    task_cls = get_task("bbq")
    "bbq" in TASKS, task_info("bbq").dimension   # True, "representational"
"""

from __future__ import annotations

from compsafe.tasks import builtin as _builtin  # noqa: F401  (registers compsafe's tasks)
from compsafe.tasks.registry import (
    DIMENSIONS,
    GENERATION_TASKS,
    TASK_DIMENSION,
    TASKS,
    GenerationRebuild,
    MetricDecl,
    TaskInfo,
    get_task,
    register_task,
    task_info,
    unregister_task,
)

__all__ = ["DIMENSIONS", "GENERATION_TASKS", "TASKS", "TASK_DIMENSION", "GenerationRebuild",
           "MetricDecl", "TaskInfo", "get_task", "register_task", "task_info", "unregister_task"]

"""The task registry: every task's class and what the rest of compsafe must know about it.

A task is registered once, with its safety dimension (``DIMENSIONS``), how its stored
records rebuild into metric definitions without the model (``rebuild(records, cfg)``, ``cfg``
being the stored ``task.config()``; reports pair runs on these), whether it generates text,
and the harm direction and label of each metric it computes (``metrics/decl.py``: exact
names or patterns). The CLI's task list, the report's builders, dimensions, harm directions
and labels are all read from here; nothing else lists them.

    register_task("toy", "my_tasks:ToyTask", dimension="representational",
                  rebuild="my_tasks:rebuild", metrics={"toy_rate": ("higher", "Toy rate")})
    get_task("toy")        # the class, imported now
    task_info("toy").dimension

Built-in tasks are registered the same way, in ``tasks/builtin.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compsafe.errors import CompsafeError, UnknownNameError
from compsafe.metrics import degeneration, prompt_perplexity
from compsafe.metrics.decl import MetricDecl, MetricTable, declare
from compsafe.registry import Entry, Registry, RegistryError, check_target, resolve

if TYPE_CHECKING:
    from compsafe.tasks.base import LoglikTask

DIMENSIONS = ("degeneration", "representational", "dialect", "language_modeling", "downstream")
"""The reference study's four dimensions (Xu et al. 2024, section 3), ability split into
language modelling and downstream tasks (``report/metric_info.py``)."""

Rebuild = Callable[[list, dict], list]
"""``rebuild(records, cfg) -> [Def, ...]``: the task's metric definitions from its stored
records and stored ``config()``, with no task object, model or torch."""


@dataclass(frozen=True)
class TaskInfo:
    """What a registered task declares besides its class."""

    dimension: str
    rebuild: Rebuild | str  # the function, or a lazy "module:attr" path to it
    generation: bool = False  # generates text (takes --samples, --scorer, ...)
    metrics: MetricTable = field(default_factory=lambda: MetricTable({}))
    """The task's declared metrics (exact names and patterns), checked and compiled."""


@dataclass(frozen=True)
class GenerationRebuild:
    """The rebuild of a degeneration task (``tasks/degeneration.py``): per-sample scores
    aggregated by the kind of the stored scorer, plus prompt perplexity if the task
    computed it; the metrics' subset is the task's name, as the task itself writes it."""

    task: str

    def __call__(self, records: list, cfg: dict) -> list:
        from compsafe.metrics.generation import generation_defs, scorer_kind

        kind = scorer_kind(cfg["scorer"]["scorer"])
        return generation_defs(records, self.task, kind, bool(cfg.get("prompt_perplexity")),
                               cfg["seed"])


GENERATION_METRICS = {**degeneration.METRICS, **prompt_perplexity.METRICS}
"""What ``GenerationRebuild``'s definitions are: every generation task declares these, plus
whatever it declares itself (which takes precedence)."""
_GENERATION_TABLE = declare(GENERATION_METRICS, "generation tasks")


TASKS: Registry[TaskInfo] = Registry("task")
"""Task name -> ``Entry`` (class or "module:Class", ``TaskInfo``); a read-only mapping."""
TASK_DIMENSION = TASKS.view("dimension")
GENERATION_TASKS = TASKS.select(lambda info: info.generation)


def register_task(name: str, task: type[LoglikTask] | str, *, dimension: str,
                  rebuild: Rebuild | str | None = None, generation: bool = False,
                  metrics: Mapping[str, MetricDecl | tuple[str | None, str]] | None = None
                  ) -> Entry[TaskInfo]:
    """Register task ``name``: its ``LoglikTask`` subclass (or a "module:Class" path, which
    keeps ``--help`` from importing it), its dimension, its ``rebuild`` function (a
    generation task may omit it: ``GenerationRebuild``), and ``metrics``: metric name, or a
    pattern starting with "^", -> ``MetricDecl(worse_when, label)`` or ``(worse_when,
    label)`` (``metrics/decl.py``). Reports know a metric's direction and label only from
    here; an undeclared metric has none (counts, bookkeeping). A generation task declares
    ``GENERATION_METRICS`` besides its own. A name already registered is an error;
    ``unregister_task`` undoes this.
    """
    where = f"task {name!r}"
    if dimension not in DIMENSIONS:
        raise RegistryError(f"{where}: unknown dimension {dimension!r}; known: "
                            f"{', '.join(DIMENSIONS)}")
    if rebuild is None:
        if not generation:
            raise RegistryError(f"{where}: give rebuild, the function (records, cfg) -> "
                                f"metric definitions that reports rebuild stored runs with")
        rebuild = GenerationRebuild(name)
    elif not callable(rebuild):
        check_target(rebuild, f"{where} rebuild")
        if not isinstance(rebuild, str):
            raise RegistryError(f"{where}: rebuild must be a function or a 'module:attr' path")
    declared = declare(metrics, where)
    if generation:
        declared = _GENERATION_TABLE.merged(declared)
    info = TaskInfo(dimension, rebuild, bool(generation), declared)
    return TASKS.add(name, task, info)


def unregister_task(name: str) -> None:
    TASKS.remove(name)


def get_task(name: str) -> type[LoglikTask]:
    """The task class registered under ``name``; an unknown name lists the known ones."""
    cls = TASKS.load(name)
    own = getattr(cls, "name", name)
    if own != name:  # stored runs are named by the class; reports look them up here
        raise RegistryError(f"task {name!r} is registered with class {cls.__qualname__}, "
                            f"whose name is {own!r}; register it under that name")
    return cls


def task_info(name: str) -> TaskInfo:
    return TASKS.entry(name).meta


def declared_metric(task: str, metric: str) -> MetricDecl | None:
    """``metric`` as task ``task`` declared it (an exact name first, then its patterns in
    order), its label as text; None if it did not, or if no such task is registered."""
    entry = TASKS.get(task)
    return None if entry is None else entry.meta.metrics.lookup(metric)


def rebuild_defs(run: dict[str, Any], records: list[dict[str, Any]]) -> list:
    """The definitions (and bookkeeping rows) of stored ``run``'s metric rows, rebuilt by
    its task's registered ``rebuild`` from ``records`` and the stored task config."""
    task = run["task"]
    if task not in TASKS:
        raise CompsafeError(f"run {run['run_key']}: no metric definitions for task {task!r}; "
                            f"known: {', '.join(TASKS)} (a task of your own: register it "
                            f"before reporting, docs/extending.md)")
    build = resolve(task_info(task).rebuild, f"task {task!r} rebuild")
    cfg = (run.get("config") or {}).get("task") or {}
    try:
        return build(records, cfg)
    except KeyError as e:
        raise CompsafeError(f"run {run['run_key']} ({task}): stored config or records lack "
                            f"{e}; re-run it with this compsafe version") from e
    except UnknownNameError as e:  # a scorer of its config that is not registered here
        raise CompsafeError(f"run {run['run_key']} ({task}): {e}") from e

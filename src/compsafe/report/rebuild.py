"""Metric definitions of a stored run, rebuilt from its records and stored task config.

The same functions the tasks' ``metrics()`` use (``metric_defs`` in each task module,
``metrics/generation.py`` for degeneration tasks), called with the parameters read back from
``run["config"]["task"]``, so no task object, model or torch import is needed.

    defs = run_defs(run, store.records(run["run_key"]))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compsafe.errors import CompsafeError
from compsafe.metrics.defs import Def

GENERATION_TASKS = ("rtp", "bold", "toxigen", "advpromptset", "holisticbias", "regard")


def _bbq(records, cfg):
    from compsafe.tasks.bbq import metric_defs
    return metric_defs(records, cfg["seed"])


def _mmlu(records, cfg):
    from compsafe.tasks.mmlu import metric_defs
    return metric_defs(records, cfg["seed"])


def _truthfulqa(records, cfg):
    from compsafe.tasks.truthfulqa import metric_defs
    return metric_defs(records, cfg["seed"])


def _crows_pairs(records, cfg):
    from compsafe.tasks.crows_pairs import metric_defs
    return metric_defs(records, cfg["seed"])


def _unqover(records, cfg):
    from compsafe.metrics.unqover import unqover_defs
    return unqover_defs(records, cfg["seed"])


def _wikitext2(records, cfg):
    from compsafe.tasks.perplexity import wikitext2_defs
    return wikitext2_defs(records, cfg["protocol"], cfg["seed"])


def _dialect(records, cfg):
    from compsafe.tasks.perplexity import dialect_defs
    return dialect_defs(records, cfg["corpora"], cfg["seed"],
                        cfg.get("ppl_protocol", "documents"))


def _stereoset(records, cfg):
    from compsafe.tasks.stereoset import metric_defs
    return metric_defs(records, cfg["seed"])


def _generation(task: str) -> Callable[[list, dict], list[Def]]:
    def build(records, cfg):
        from compsafe.metrics.generation import generation_defs, scorer_kind
        kind = scorer_kind(cfg["scorer"]["scorer"])
        return generation_defs(records, task, kind, bool(cfg.get("prompt_perplexity")),
                               cfg["seed"])
    return build


BUILDERS: dict[str, Callable[[list, dict], list[Def]]] = {
    "bbq": _bbq, "mmlu": _mmlu, "truthfulqa": _truthfulqa, "unqover": _unqover,
    "wikitext2": _wikitext2, "dialect": _dialect, "crows_pairs": _crows_pairs,
    "stereoset": _stereoset,
    **{t: _generation(t) for t in GENERATION_TASKS},
}


def run_defs(run: dict[str, Any], records: list[dict[str, Any]]) -> list[Def]:
    """The definitions (and bookkeeping rows) of ``run``'s metric rows from its records."""
    task = run["task"]
    if task not in BUILDERS:
        raise CompsafeError(f"run {run['run_key']}: no metric definitions for task {task!r}; "
                            f"known: {', '.join(BUILDERS)}")
    cfg = (run.get("config") or {}).get("task") or {}
    try:
        return BUILDERS[task](records, cfg)
    except KeyError as e:
        raise CompsafeError(f"run {run['run_key']} ({task}): stored config or records lack "
                            f"{e}; re-run it with this compsafe version") from e

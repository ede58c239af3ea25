"""What a metric measures: its safety dimension, which direction is harm, and a label.

The four dimensions are the reference study's (Xu et al. 2024, section 3): degeneration
harm (toxicity, regard and sentiment of generations), representational harm (BBQ, UnQover),
dialect bias (perplexity of AAVE vs SAE text), and language modeling / downstream ability.
``worse_when`` says which change is harm: ``"higher"``, ``"lower"``, ``"away_from_zero"``
(signed bias scores, where both signs are bias: BBQ's s_DIS is -1 when every non-unknown
answer is anti-stereotyped), ``"away_from_<c>"`` for a preference rate whose unbiased value
is ``c`` (StereoSet's SS, 50; CrowS-Pairs' pct_stereotype, 0.5), or None for counts and
diagnostics with no safety direction.

Nothing here lists metrics: each task declares its own when it is registered
(``tasks/registry.py``, ``metrics/decl.py``; compsafe's own in ``tasks/builtin.py``), and
this module only reads those declarations and does the arithmetic of directions.

    metric_info("bbq", "s_dis")  # MetricInfo("representational", "away_from_zero", ...)
"""

from __future__ import annotations

from dataclasses import dataclass

from compsafe.metrics.degeneration import KINDS
from compsafe.tasks.registry import DIMENSIONS, TASK_DIMENSION, declared_metric

__all__ = ["AGGREGATE_SUBSETS", "DIMENSIONS", "MEASURES", "SAFETY_DIMENSIONS", "SCORED",
           "TASK_DIMENSION", "MetricInfo", "badness", "harm", "metric_info", "scored_label",
           "unbiased_centre", "whole_task"]


@dataclass(frozen=True)
class MetricInfo:
    """A metric's dimension, harmful direction (None: no safety direction) and label;
    ``context``: without a direction, yet shown beside the harm metrics (a dialect corpus's
    own perplexity)."""

    dimension: str
    worse_when: str | None
    label: str
    context: bool = False


def metric_info(task: str, metric: str) -> MetricInfo:
    """The ``MetricInfo`` of ``metric`` as computed by ``task``.

    The dimension is the one ``task`` was registered with; direction and label are the
    task's declaration of ``metric`` (its exact name, else the first pattern it matches).
    A metric the task does not declare (counts such as ``n_failed``, ``target_coverage``,
    ``units_per_cell``) has no direction and its own name as label. A task not registered
    here (a plugin not loaded) is "downstream" and declares nothing: its stored numbers
    show, but nothing about them is called harm (pairing its runs asks for the plugin).
    """
    dimension = TASK_DIMENSION.get(task, "downstream")
    declared = declared_metric(task, metric)
    if declared is None:
        return MetricInfo(dimension, None, metric)
    return MetricInfo(dimension, declared.worse_when, declared.label, declared.context)


AGGREGATE_SUBSETS = ("all", "mean_over_categories")
"""Subsets that stand for a whole task: pooled over its subsets, or BBQ's category mean."""
SAFETY_DIMENSIONS = ("degeneration", "representational", "dialect")
"""The dimensions a report leads with; language modelling and downstream are context."""

SCORED = frozenset(m for _, metrics in KINDS.values() for m in metrics)
"""Degeneration metrics computed from a scorer's output: their label names the scorer."""
MEASURES = {"profanity": ("profanity", "profane")}
"""What a scorer measures when it is not what the metric's label says (the offline default
``profanity`` is a profanity classifier, so its "toxicity" metrics are profanity metrics)."""


def scored_label(task: str, metric: str, scorer: str | None) -> str:
    """The metric's label with its scorer named: ``"Expected maximum profanity [profanity]"``
    for the profanity classifier, ``"Mean toxicity score [toxigen-roberta]"``."""
    label = metric_info(task, metric).label
    if metric not in SCORED or not scorer:
        return label
    if scorer in MEASURES:
        noun, adjective = MEASURES[scorer]
        label = label.replace("Toxicity", noun.capitalize()).replace("toxicity", noun)
        label = label.replace("toxic ", f"{adjective} ")
    return f"{label} [{scorer}]"


def unbiased_centre(worse_when: str | None) -> float | None:
    """The unbiased value of an ``away_from_<c>`` metric (0 for ``away_from_zero``), else None."""
    if not worse_when or not worse_when.startswith("away_from_"):
        return None
    text = worse_when.removeprefix("away_from_")
    return 0.0 if text == "zero" else float(text)


def badness(worse_when: str | None, value: float) -> float | None:
    """How bad ``value`` is on the metric's own scale (larger is worse); None: no direction."""
    if worse_when == "higher":
        return value
    if worse_when == "lower":
        return -value
    centre = unbiased_centre(worse_when)
    return None if centre is None else abs(value - centre)


def harm(worse_when: str | None, baseline: float | None, value: float | None) -> float | None:
    """The harmful part of a change, > 0 when ``value`` is worse than ``baseline``.

    higher: value - baseline; lower: baseline - value; away_from_<c>: |value - c| -
    |baseline - c|; None when there is no direction or a side is undefined.
    """
    if worse_when is None or baseline is None or value is None:
        return None
    if worse_when not in ("higher", "lower") and unbiased_centre(worse_when) is None:
        raise ValueError(f"unknown direction {worse_when!r}")
    return badness(worse_when, value) - badness(worse_when, baseline)


def whole_task(rows: list) -> list:
    """The rows that stand for their whole task: a task with a pooled ``"all"`` subset keeps
    only its ``AGGREGATE_SUBSETS`` rows, any other task all of its subsets. ``rows`` are
    tidy-row dicts or objects with ``task`` and ``subset`` (``PairedDiff``)."""
    def get(r, key):
        return r[key] if isinstance(r, dict) else getattr(r, key)

    pooled = {get(r, "task") for r in rows if get(r, "subset") == "all"}
    return [r for r in rows
            if get(r, "task") not in pooled or get(r, "subset") in AGGREGATE_SUBSETS]

"""Divergent groups: where compression moves a group, not (or not only) the aggregate.

Two kinds, found in ``paired_diffs`` output (so "significant" already means Benjamini-
Hochberg q <= the report's FDR):

- ``group_moves_aggregate_does_not``: for one compressed model, task, subset and metric,
  groups whose difference is significant while the aggregate row (group "all") is not. This
  is the case averages hide: one group's bias rises while the overall score stays put.
- ``opposite_directions``: along one compression series (same base model and method, and
  same structure kind for pruning, or same group size for quantization; ordered by sparsity,
  or by decreasing bits), groups whose differences trend in opposite directions as the
  compression rate grows. A group's trend is the sign of Spearman's rank correlation between
  rate and difference; a group counts only when its difference at the highest rate is
  significant and has that same sign, so a trend must end in a real change.

    for d in divergent_groups(paired_diffs("runs/")): print(d.kind, d.groups, d.detail)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compsafe.report.paired import PairedDiff

AGGREGATE = "all"


@dataclass(frozen=True)
class Divergence:
    """Groups that diverge under compression (see the module docstring for the kinds)."""

    kind: str  # "group_moves_aggregate_does_not" | "opposite_directions"
    base_model: str
    method: str
    task: str
    subset: str
    metric: str
    groups: tuple[str, ...]
    detail: str


def _fmt(d: PairedDiff) -> str:
    ci = "" if d.ci_low is None else f" [{d.ci_low:+.3g}, {d.ci_high:+.3g}]"
    return f"{d.group} {d.diff:+.3g}{ci}"


def _rate(d: PairedDiff) -> float | None:
    """How compressed: sparsity for pruning, minus bits for quantization (more = stronger)."""
    if d.sparsity is not None:
        return float(d.sparsity)
    return None if d.bits is None else -float(d.bits)


def _series_key(d: PairedDiff) -> tuple:
    kind = ("unstructured" if d.structure in (None, "unstructured") else "N:M"
            if d.sparsity is not None else f"g{d.group_size}")
    return (d.base_model, d.method, kind, d.task, d.subset, d.metric)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (Pearson on average ranks); 0 when either side is constant."""
    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for val in np.unique(v):  # average ranks over ties
            r[v == val] = r[v == val].mean()
        return r
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def moves_without_aggregate(diffs: Sequence[PairedDiff]) -> list[Divergence]:
    by: dict[tuple, list[PairedDiff]] = defaultdict(list)
    for d in diffs:
        if d.diff is not None:
            by[(d.base_model, d.model, d.task, d.subset, d.metric)].append(d)
    out = []
    for rows in by.values():
        agg = [d for d in rows if d.group == AGGREGATE]
        if not agg or agg[0].significant:
            continue
        moved = [d for d in rows if d.group != AGGREGATE and d.significant]
        if moved:
            a, first = agg[0], moved[0]
            q = "" if a.q_value is None else f" (q={a.q_value:.3g})"
            detail = (f"{first.spec_label}: {'; '.join(_fmt(d) for d in moved)}; "
                      f"aggregate {_fmt(a)}{q}")
            out.append(Divergence(
                "group_moves_aggregate_does_not", first.base_model, first.method, first.task,
                first.subset, first.metric, tuple(d.group for d in moved), detail))
    return out


def opposite_directions(diffs: Sequence[PairedDiff]) -> list[Divergence]:
    series: dict[tuple, dict[str, dict[float, PairedDiff]]] = defaultdict(dict)
    for d in diffs:
        rate = _rate(d)
        if d.diff is None or rate is None or d.group == AGGREGATE:
            continue
        series[_series_key(d)].setdefault(d.group, {}).setdefault(rate, d)
    out = []
    for key, groups in series.items():
        trend: dict[int, list[PairedDiff]] = {1: [], -1: []}
        for by_rate in groups.values():
            if len(by_rate) < 2:
                continue
            rates = np.array(sorted(by_rate))
            values = np.array([by_rate[r].diff for r in rates])
            sign = int(np.sign(_spearman(rates, values)))
            end = by_rate[rates[-1]]
            if sign != 0 and end.significant and np.sign(end.diff) == sign:
                trend[sign].append(end)
        if trend[1] and trend[-1]:
            base, method, _, task, subset, metric = key
            out.append(Divergence(
                "opposite_directions", base, method, task, subset, metric,
                tuple(d.group for d in trend[1] + trend[-1]),
                f"up with compression: {'; '.join(_fmt(d) for d in trend[1])}; down: "
                f"{'; '.join(_fmt(d) for d in trend[-1])} (differences at the strongest "
                f"setting, {trend[1][0].spec_label})"))
    return out


def divergent_groups(diffs: list[PairedDiff]) -> list[Divergence]:
    """Both kinds of divergence, groups that move without the aggregate first."""
    return moves_without_aggregate(diffs) + opposite_directions(diffs)

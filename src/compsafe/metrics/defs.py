"""Metric definitions: a metric row as data, so that it can be recomputed on any resample.

A ``MetricDef`` holds what a metric row is computed from: one or more strata of
item-aligned columns (one row per item, with the item's id) and the statistic. The task's
metric rows are each definition's point value with its percentile bootstrap CI
(``MetricDef.row``); ``compsafe.report.paired`` aligns two models' definitions on item ids and
resamples items jointly, recomputing the statistic (a ratio stays a ratio) on each resample.

Strata are resampled independently (two corpora of a dialect gap; Efron & Tibshirani 1993,
section 8.3, the two-sample bootstrap); items within a stratum with replacement.

``batch`` is the same statistic vectorised over leading replicate axes (columns of shape
``(B, n)``, result of shape ``(B,)``, NaN where undefined); it only makes resampling fast and
is tested against ``statistic``. ``binary`` gives the per-item 0/1 outcome whose mean is the
statistic (accuracies), which makes McNemar's test applicable.

    defs = [MetricDef("Age", "all", "acc_ambig", (Stratum(ids, {"correct": c}),), stat, seed, n)]
    rows = rows_of(defs, n_boot=1000)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from compsafe.metrics.stats import Columns, bootstrap_ci, two_sample_bootstrap_ci
from compsafe.types import MetricRow


@dataclass(frozen=True, eq=False)
class Stratum:
    """Item-aligned columns (equal lengths) and the item ids that pair them across models."""

    ids: np.ndarray
    columns: Mapping[str, np.ndarray]

    @property
    def n(self) -> int:
        return len(self.ids)


def stratum(ids: Sequence[str] | np.ndarray | None, columns: Mapping[str, np.ndarray]
            ) -> Stratum:
    """A ``Stratum``; ``ids=None`` numbers the items (such a definition cannot be paired)."""
    cols = {k: np.asarray(v) for k, v in columns.items()}
    n = len(next(iter(cols.values()))) if cols else 0
    if ids is None:
        ids = [f"#{i}" for i in range(n)]
    ids = np.asarray(ids, dtype=str)
    if any(len(v) != len(ids) for v in cols.values()):
        raise ValueError(f"{len(ids)} ids for columns of lengths "
                         f"{sorted({len(v) for v in cols.values()})}")
    return Stratum(ids, cols)


@dataclass(frozen=True, eq=False)
class MetricDef:
    """One metric row: strata of items, the statistic on them, its CI seed and reported n."""

    subset: str
    group: str
    metric: str
    strata: tuple[Stratum, ...]
    statistic: Callable[..., float | None]  # statistic(*columns, one mapping per stratum)
    seed: int  # the bootstrap seed of this row's CI
    n: int  # the n reported with the row (e.g. samples, where items are prompts)
    batch: Callable[..., np.ndarray] | None = None
    binary: Callable[[Columns], np.ndarray] | None = None
    # False where a single model's percentile bootstrap CI is not valid (maxima and means
    # of absolute cell means: resampling repeats items, which inflates them): the row has
    # no CI. Paired differences still resample it, both models jointly (report.paired);
    # their intervals share the bias and are rough.
    ci: bool = True

    def value(self) -> float | None:
        """The statistic on all items; None when a stratum is empty."""
        if any(s.n == 0 for s in self.strata):
            return None
        return self.statistic(*(s.columns for s in self.strata))

    def row(self, n_boot: int) -> MetricRow:
        """The point value with its 95% percentile bootstrap CI (None, None if undefined
        or not valid for this statistic, ``ci``)."""
        value = self.value()
        lo = hi = None
        if value is not None and self.ci:
            cols = [s.columns for s in self.strata]
            if len(cols) == 1:
                lo, hi = bootstrap_ci(cols[0], self.statistic, n_boot=n_boot, seed=self.seed)
            elif len(cols) == 2:
                lo, hi = two_sample_bootstrap_ci(cols[0], cols[1], self.statistic, n_boot,
                                                 self.seed)
            else:
                raise ValueError(f"{self.metric}: CIs over {len(cols)} strata are not defined")
        return MetricRow(self.subset, self.group, self.metric, value, self.n, lo, hi)


Def = MetricDef | MetricRow
"""What a task's ``metric_defs`` lists: definitions, and bookkeeping rows (counts such as
``n_failed``) that are reported as they are and never paired."""


def rows_of(defs: Sequence[Def], n_boot: int) -> list[MetricRow]:
    """Metric rows, in order: each definition's ``row``, bookkeeping rows unchanged."""
    return [d.row(n_boot) if isinstance(d, MetricDef) else d for d in defs]


def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, NaN where den is 0 (an undefined replicate)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def record_ids(records: Sequence[Mapping]) -> np.ndarray:
    """Each record's ``"id"`` (stored records always have one; hand-made ones may not, and
    are numbered ``#i``)."""
    return np.asarray([str(r.get("id", f"#{i}")) for i, r in enumerate(records)], dtype=str)

"""Multiple-choice accuracy metrics: micro and macro accuracy, TruthfulQA's MC2.

Pure functions on per-item numpy arrays, with bootstrap CIs from ``metrics.stats``.

    micro accuracy  = (1/N) * sum_i [pred_i == label_i]               pooled over items
    macro accuracy  = (1/S) * sum_s acc_s                             mean over subjects s
    MC2 (Lin et al., 2022, TruthfulQA, ACL)
                    = sum_{j true} p_j / sum_j p_j,  p_j = exp(loglik_j)

lm-evaluation-harness's MMLU group score (``aggregate_metric_list: weight_by_size: True``)
is the size-weighted mean of subject accuracies, i.e. the micro accuracy; the unweighted
mean over subjects (the macro accuracy) is what some leaderboards report instead.

    rows = accuracy_rows("stem", "all", correct, unit=subject_codes, n_boot=1000, seed=1234)
"""

from __future__ import annotations

import numpy as np

from compsafe.metrics.decl import MetricDecl
from compsafe.metrics.defs import MetricDef, rows_of, safe_div, stratum
from compsafe.metrics.stats import Columns, stable_seed
from compsafe.types import MetricRow

METRICS = {
    "acc": MetricDecl("lower", "Accuracy"),
    "acc_macro": MetricDecl("lower", "Accuracy (macro over subjects)"),
}
"""``accuracy_defs``' metrics under their default name (``metrics/decl.py``); a task that
names them otherwise (TruthfulQA's mc1, mc2) declares its own."""


def mc2_score(logprobs, labels) -> float:
    """Normalised probability mass on the true answers (lm-eval ``process_results_mc2``).

    Computed as a softmax shifted by the maximum, which equals lm-eval's
    ``exp(ll) / sum(exp(ll))`` but does not underflow to 0/0 for long answers.
    """
    ll = np.asarray(logprobs, dtype=np.float64)
    true = np.asarray(labels, dtype=np.int64) == 1
    if ll.shape != true.shape or ll.size == 0:
        raise ValueError(f"need one label per log-likelihood, got {ll.shape} and {true.shape}")
    p = np.exp(ll - ll.max())
    return float(p[true].sum() / p.sum())


def mean_of(values: np.ndarray) -> float | None:
    """Mean; None for no items (undefined, never 0)."""
    return float(np.mean(values)) if len(values) else None


def macro_mean(values: np.ndarray, unit: np.ndarray) -> float | None:
    """Mean over units (e.g. subjects) of each unit's mean; units absent from ``unit`` skip."""
    if not len(values):
        return None
    unit = np.asarray(unit, dtype=np.int64)
    counts = np.bincount(unit)
    sums = np.bincount(unit, weights=np.asarray(values, dtype=np.float64))
    present = counts > 0
    return float(np.mean(sums[present] / counts[present]))


def _micro(c: Columns) -> float | None:
    return mean_of(c["value"])


def _macro(c: Columns) -> float | None:
    return macro_mean(c["value"], c["unit"])


def _micro_batch(c: Columns) -> np.ndarray:
    return np.asarray(c["value"], dtype=float).mean(axis=-1)


def _macro_batch(c: Columns) -> np.ndarray:
    """macro_mean per replicate row: per-unit sums and counts by one bincount over
    (row, unit) cells, then the mean over the units present in each row."""
    values, unit = np.asarray(c["value"], dtype=float), np.asarray(c["unit"], dtype=np.int64)
    rows, n_units = values.shape[0], int(unit.max()) + 1
    cell = (np.arange(rows)[:, None] * n_units + unit).ravel()
    counts = np.bincount(cell, minlength=rows * n_units).reshape(rows, n_units)
    sums = np.bincount(cell, values.ravel(), rows * n_units).reshape(rows, n_units)
    return np.nanmean(safe_div(sums, counts), axis=-1)


def _value(c: Columns) -> np.ndarray:
    return c["value"]


def accuracy_defs(
    subset: str,
    group: str,
    values: np.ndarray,
    unit: np.ndarray | None = None,
    metric: str = "acc",
    seed: int = 0,
    ids=None,
) -> list[MetricDef]:
    """Definitions of ``metric`` (micro mean) and, with ``unit``, ``<metric>_macro``.

    When every value is 0 or 1 (correctness), the micro mean is marked ``binary`` so a
    paired comparison can use McNemar's test.
    """
    cols = {"value": np.asarray(values, dtype=np.float64)}
    binary = _value if np.isin(cols["value"], (0.0, 1.0)).all() else None
    specs = [(metric, _micro, _micro_batch, binary)]
    if unit is not None:
        cols["unit"] = np.asarray(unit, dtype=np.int64)
        specs.append((f"{metric}_macro", _macro, _macro_batch, None))
    n = len(cols["value"])
    st = stratum(ids, cols)
    return [MetricDef(subset, group, name, (st,), stat, stable_seed(seed, subset, group, name),
                      n, batch=batch, binary=bin_)
            for name, stat, batch, bin_ in specs]


def accuracy_rows(
    subset: str,
    group: str,
    values: np.ndarray,
    unit: np.ndarray | None = None,
    metric: str = "acc",
    n_boot: int = 1000,
    seed: int = 0,
) -> list[MetricRow]:
    """``metric`` (micro mean of per-item ``values``) and, with ``unit``, ``<metric>_macro``.

    ``values`` are per-item scores (1/0 correctness, or MC2 probabilities). The CI resamples
    items (not subjects), so the macro interval reflects item noise within the fixed subjects.
    ``n`` is the number of items.
    """
    return rows_of(accuracy_defs(subset, group, values, unit, metric, seed), n_boot)

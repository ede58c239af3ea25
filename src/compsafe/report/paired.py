"""Paired differences, compressed - baseline, on the same items, with CIs, tests and FDR.

A compressed run is paired with the baseline run (``baseline``: a spec label, "dense" by
default) of the same base model (weights fingerprint, else name), the same task and the same
task configuration (``n_boot`` aside) under the same protocol ("compsafe" or "reference",
docs/protocol.md), so both answered the same items the same way; ``compare_runs`` refuses
two runs of different protocols. For every metric
row the task defines (``compsafe.metrics.defs``), the two definitions are aligned on the item
ids present in both, and

    diff  = stat(compressed items) - stat(baseline items)
    CI    = 2.5 and 97.5 percentiles of diff over B paired bootstrap replicates: the same
            resampled item indices for both models (Efron & Tibshirani 1993, ch. 13 and 16),
            each statistic recomputed on the resample, so ratio metrics (s_DIS, s_AMB,
            expected max toxicity, perplexities and their ratios) stay ratios
    test  = McNemar's test where the statistic is the mean of a per-item 0/1 outcome
            (accuracies, toxicity probability), else the paired sign-flip permutation test
            with each statistic recomputed on the swapped items, exact up to 12 items
            (``report/stats.py``); strata (the two corpora of a dialect gap) are resampled
            and swapped independently of each other, each jointly across the two models;
            rows over fewer than ``MIN_N`` items are "untestable"
    MDE   = the minimum detectable effect at 80% power from the paired bootstrap spread
    q     = Benjamini-Hochberg over every row returned by one call (all base models,
            settings, tasks, groups and metrics): the family of a report, or of a gate

Bookkeeping rows (``n_failed``, ``target_coverage``, ``units_per_cell``, ...) are not
paired. A row whose statistic is undefined on either side has no difference or test.

    diffs = paired_diffs("runs/", baseline="dense", fdr=0.05, n_boot=1000)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from compsafe.errors import CompsafeError
from compsafe.metrics.defs import MetricDef, Stratum
from compsafe.metrics.stats import percentile_interval, stable_seed
from compsafe.report.load import load_runs, resolve_store, run_protocol, run_scorer
from compsafe.report.metric_info import badness, harm, metric_info
from compsafe.report.rebuild import run_defs
from compsafe.report.stats import (
    MIN_N,
    bh_adjust,
    mcnemar,
    minimum_detectable_effect,
    sign_flip_p,
    sign_flip_patterns,
)
from compsafe.store import Store

BLOCK_CELLS = 4_000_000
"""Resampled cells (replicates x items) per vectorised block: bounds memory on big tasks."""
N_PERM_MIN = 1000
"""Random sign-flip patterns per Monte Carlo permutation test (at least; n_boot if more)."""


@dataclass(frozen=True)
class PairedDiff:
    """One metric row compared between a compressed model and its baseline on paired items."""

    base_model: str
    model: str
    spec_label: str
    method: str
    sparsity: float | None
    structure: str | None
    bits: int | None
    group_size: int | None
    task: str
    subset: str
    group: str
    metric: str
    dimension: str
    n: int  # paired items (all strata)
    baseline: float | None  # baseline value on the paired items
    value: float | None  # compressed value on the paired items
    diff: float | None  # value - baseline
    ci_low: float | None  # paired bootstrap 95% CI of diff
    ci_high: float | None
    test: str  # "mcnemar" | "sign_flip" | "untestable" (n < MIN_N) | "none" (undefined)
    p_value: float | None
    q_value: float | None  # Benjamini-Hochberg across the paired_diffs call
    significant: bool  # q_value <= fdr and the 95% CI excludes 0
    worse: bool | None  # significant and harmful (None: the metric has no direction)
    mde: float | None = None  # minimum detectable |diff| at 80% power (alpha 0.05)
    scorer: str | None = None  # the generation scorer behind a degeneration metric
    harm_upper: float | None = None  # one-sided upper 95% bootstrap bound of the harm
    ratio_upper: float | None = None  # one-sided upper 95% bound of value / baseline
    protocol: str = "compsafe"  # the protocol both runs followed (docs/protocol.md)


# -- pairing runs ------------------------------------------------------------------------

def _comparable(config: dict | None) -> Any:
    """A run's task config without settings that do not change the items (n_boot), with its
    protocol filled in (runs stored before protocols were recorded are compsafe's)."""
    config = dict(config or {})
    config["task"] = {k: v for k, v in (config.get("task") or {}).items() if k != "n_boot"}
    config["protocol"] = run_protocol({"config": config})
    return dict(sorted(config.items()))  # compared by repr: filled-in keys must not reorder


def check_same_protocol(run_a: dict, run_b: dict) -> None:
    """Refuse to compare runs of different protocols (docs/protocol.md): a difference between
    them would mix a compression effect with a protocol change."""
    a, b = run_protocol(run_a), run_protocol(run_b)
    if a != b:
        raise CompsafeError(f"runs {run_a.get('run_key')} ({run_a.get('model')}) and "
                            f"{run_b.get('run_key')} ({run_b.get('model')}) follow different "
                            f"protocols ({a} vs {b}); compare runs of one protocol")


def _base_id(run: dict) -> tuple[str, str]:
    """Which dense model a run descends from: its weights fingerprint where recorded, else
    its name (a checkpoint quantized elsewhere, named by ``eval --base-model``)."""
    if run.get("base_fingerprint"):
        return ("fingerprint", run["base_fingerprint"])
    return ("name", run["base_model"])


def _base_ids(run: dict) -> list[tuple[str, str]]:
    """Every id under which a baseline run can be found: fingerprint and name."""
    return [_base_id(run), ("name", run["base_model"])]


def _matches(run: dict, name: str) -> bool:
    return name in (run["model"], run.get("spec_label"))


def pair_runs(runs: Sequence[dict], baseline: str = "dense",
              models: Iterable[str] | None = None) -> list[tuple[dict, dict]]:
    """(baseline run, compressed run) pairs: same base model, task and task config.

    The base model is matched on its weights fingerprint when the compressed run records
    one, and on its name otherwise (``_base_id``).

    ``models`` keeps compressed runs whose model name or spec label is listed. The newest
    baseline run wins when several match.
    """
    done = [r for r in runs if r["status"] == "done"]
    wanted = None if models is None else set(models)
    base: dict[tuple, dict] = {}
    for r in done:
        if r.get("spec_label") == baseline or (baseline == "dense" and r["method"] == "dense"):
            for base_id in _base_ids(r):
                base[(base_id, r["task"], repr(_comparable(r["config"])))] = r
    pairs = []
    for r in done:
        key = (_base_id(r), r["task"], repr(_comparable(r["config"])))
        b = base.get(key)
        if b is None or b["run_key"] == r["run_key"]:
            continue
        if wanted is not None and not (wanted & {r["model"], r.get("spec_label")}):
            continue
        pairs.append((b, r))
    return pairs


def pair_models(runs: Sequence[dict], model_a: str, model_b: str) -> list[tuple[dict, dict]]:
    """(run of A, run of B) for every task both ran with the same task config; A's run of
    B's base model is preferred when A names runs of several base models."""
    done = [r for r in runs if r["status"] == "done"]
    for name in (model_a, model_b):
        if not any(_matches(r, name) for r in done):
            known = sorted({r["model"] for r in done} | {r.get("spec_label") or "" for r in done})
            raise CompsafeError(f"no finished run for {name!r}; known models and spec labels: "
                                f"{', '.join(k for k in known if k)}")
    a_runs: dict[tuple, dict] = {}
    for r in done:
        if _matches(r, model_a):  # a spec label may name runs of several base models
            k = (r["task"], repr(_comparable(r["config"])))
            a_runs[(_base_id(r), *k)] = r
            a_runs.setdefault(k, r)
    pairs = []
    for r in done:
        k = (r["task"], repr(_comparable(r["config"])))
        a = a_runs.get((_base_id(r), *k)) or a_runs.get(k)
        if _matches(r, model_b) and a is not None and a["run_key"] != r["run_key"]:
            pairs.append((a, r))
    return pairs


# -- one metric row ------------------------------------------------------------------------

def _align(a: Stratum, b: Stratum) -> tuple[np.ndarray, np.ndarray]:
    """Positions in a and in b of the ids present in both, in a's order."""
    pos_b = {x: i for i, x in enumerate(b.ids.tolist())}
    pa = [i for i, x in enumerate(a.ids.tolist()) if x in pos_b]
    return np.asarray(pa, dtype=np.int64), np.asarray([pos_b[a.ids[i]] for i in pa],
                                                      dtype=np.int64)


def _take(s: Stratum, pos: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[pos] for k, v in s.columns.items()}


def _replicates(d: MetricDef, cols: list[dict], idx: list[np.ndarray]) -> np.ndarray:
    """The statistic on each resample (idx[s]: replicates x items of stratum s); NaN undefined."""
    return _on_rows(d, [{k: v[i] for k, v in c.items()} for c, i in zip(cols, idx, strict=True)])


def _swapped(a: dict, b: dict, flips: np.ndarray) -> tuple[dict, dict]:
    """Per replicate row, a's and b's columns with the items where ``flips`` is True swapped."""
    def pick(x, y):
        f = flips.reshape(flips.shape + (1,) * (np.ndim(x) - 1))
        return np.where(f, y[None], x[None])
    return ({k: pick(a[k], b[k]) for k in a}, {k: pick(b[k], a[k]) for k in b})


def _sign_flip_null(da: MetricDef, db: MetricDef, ca: list[dict], cb: list[dict],
                    n_perm: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Differences db - da with the two models' outputs swapped on random (or, for few
    items, all) subsets of items, each stratum swapped on its own."""
    sizes = [len(next(iter(c.values()))) for c in ca]
    flips, exact = sign_flip_patterns(sum(sizes), n_perm, rng)
    width = max(1, sum(sizes) * max(len(c) for c in ca))
    block = max(1, BLOCK_CELLS // width)
    bounds = np.cumsum([0, *sizes])
    out = []
    for start in range(0, len(flips), block):
        rows = flips[start: start + block]
        parts = [_swapped(a, b, rows[:, lo:hi])
                 for a, b, lo, hi in zip(ca, cb, bounds[:-1], bounds[1:], strict=True)]
        out.append(_on_rows(db, [p[1] for p in parts]) - _on_rows(da, [p[0] for p in parts]))
    return np.concatenate(out), exact


def _on_rows(d: MetricDef, resampled: list[dict]) -> np.ndarray:
    """The statistic on each replicate row of already resampled columns; NaN undefined."""
    if d.batch is not None:
        return np.asarray(d.batch(*resampled), dtype=float)
    out = np.empty(len(next(iter(resampled[0].values()))))
    for r in range(len(out)):
        v = d.statistic(*({k: x[r] for k, x in c.items()} for c in resampled))
        out[r] = np.nan if v is None else v
    return out


def _harm_replicates(worse_when: str | None, ra: np.ndarray, rb: np.ndarray
                     ) -> np.ndarray | None:
    """The harm (``metric_info.harm``) on every paired replicate; None without a direction."""
    if worse_when is None or len(ra) == 0:
        return None
    return np.asarray(badness(worse_when, rb)) - np.asarray(badness(worse_when, ra))


def _upper95(reps: np.ndarray | None) -> float | None:
    """The one-sided upper 95% percentile bound of defined replicates (None: none defined)."""
    if reps is None:
        return None
    reps = reps[np.isfinite(reps)]
    return float(np.quantile(reps, 0.95)) if len(reps) else None


def paired_stat(da: MetricDef, db: MetricDef, n_boot: int, seed: int,
                worse_when: str | None = None) -> dict[str, Any] | None:
    """baseline, value, diff, CI, test, p-value and MDE of ``db - da`` on their common items,
    and one-sided upper 95% bounds of the harm (for ``worse_when``) and of the ratio
    value / baseline, from the same paired replicates (what ``compsafe gate`` needs).

    None when a stratum has no common item.
    """
    aligned = [_align(sa, sb) for sa, sb in zip(da.strata, db.strata, strict=True)]
    if not aligned or any(len(pa) == 0 for pa, _ in aligned):
        return None
    ca = [_take(s, pa) for s, (pa, _) in zip(da.strata, aligned, strict=True)]
    cb = [_take(s, pb) for s, (_, pb) in zip(db.strata, aligned, strict=True)]
    sizes = [len(pa) for pa, _ in aligned]
    out = {"n": sum(sizes), "baseline": da.statistic(*ca), "value": db.statistic(*cb),
           "diff": None, "ci_low": None, "ci_high": None, "test": "none", "p_value": None,
           "mde": None, "harm_upper": None, "ratio_upper": None}
    if out["baseline"] is None or out["value"] is None:
        return out
    out["diff"] = float(out["value"]) - float(out["baseline"])
    rng = np.random.default_rng(seed)
    width = max(1, sum(sizes) * max(len(c) for c in ca))
    block = max(1, min(n_boot, BLOCK_CELLS // width))
    base_reps, comp_reps = [], []
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        idx = [rng.integers(0, m, size=(b, m)) for m in sizes]
        base_reps.append(_replicates(da, ca, idx))
        comp_reps.append(_replicates(db, cb, idx))
    ra, rb = (np.concatenate(r) if r else np.array([]) for r in (base_reps, comp_reps))
    reps = rb - ra
    out["ci_low"], out["ci_high"] = percentile_interval(reps[np.isfinite(reps)])
    out["mde"] = minimum_detectable_effect(reps)
    out["harm_upper"] = _upper95(_harm_replicates(worse_when, ra, rb))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio_upper"] = _upper95(rb / ra)
    if sum(sizes) < MIN_N:  # no exact test could reach p <= 0.05: say so, test nothing
        out["test"] = "untestable"
    elif da.binary is not None and db.binary is not None and len(ca) == 1:
        ya, yb = (np.asarray(f(c), dtype=bool) for f, c in ((da.binary, ca[0]),
                                                              (db.binary, cb[0])))
        out["test"], out["p_value"] = "mcnemar", mcnemar(int(np.sum(ya & ~yb)),
                                                         int(np.sum(~ya & yb)))
    else:
        null, exact = _sign_flip_null(da, db, ca, cb, max(n_boot, N_PERM_MIN), rng)
        out["test"], out["p_value"] = "sign_flip", sign_flip_p(out["diff"], null, exact)
    return out


def compare_runs(run_a: dict, records_a: list[dict], run_b: dict, records_b: list[dict],
                 n_boot: int = 1000, seed: int = 0) -> list[PairedDiff]:
    """Unadjusted paired differences (run_b - run_a) for every metric row both define; runs
    of different protocols are refused (``check_same_protocol``)."""
    check_same_protocol(run_a, run_b)
    defs_a = {(d.subset, d.group, d.metric): d for d in run_defs(run_a, records_a)
              if isinstance(d, MetricDef)}
    task = run_b["task"]
    out = []
    for d in run_defs(run_b, records_b):
        key = (d.subset, d.group, d.metric)
        if not isinstance(d, MetricDef) or key not in defs_a:
            continue
        stat = paired_stat(defs_a[key], d, n_boot, stable_seed(seed, "paired", task, *key),
                           metric_info(task, d.metric).worse_when)
        if stat is None:
            continue
        out.append(PairedDiff(
            base_model=run_a["base_model"], model=run_b["model"],
            spec_label=run_b.get("spec_label") or run_b["model"], method=run_b["method"],
            sparsity=run_b.get("sparsity"), structure=run_b.get("structure"),
            bits=run_b.get("bits"), group_size=run_b.get("group_size"), task=task,
            subset=d.subset, group=d.group, metric=d.metric,
            dimension=metric_info(task, d.metric).dimension, q_value=None, significant=False,
            worse=None, scorer=(run_scorer(run_b) or {}).get("scorer"),
            protocol=run_protocol(run_b), **stat))
    return out


def adjust(diffs: Sequence[PairedDiff], fdr: float = 0.05) -> list[PairedDiff]:
    """Benjamini-Hochberg q-values across ``diffs``; ``significant`` (q <= ``fdr`` and the
    paired CI excludes 0) and ``worse`` set."""
    q = bh_adjust([d.p_value for d in diffs])
    out = []
    for d, qv in zip(diffs, q, strict=True):
        # Flag only when the paired 95% CI agrees (excludes 0): at small n the bootstrap
        # distribution is skewed and the z-approximation's p-value can pass BH while the
        # percentile interval still touches 0. Dropping discoveries keeps the FDR bound.
        ci_excludes_zero = (d.ci_low is None or d.ci_high is None
                            or d.ci_low > 0 or d.ci_high < 0)
        sig = qv is not None and qv <= fdr and ci_excludes_zero
        direction = metric_info(d.task, d.metric).worse_when
        h = harm(direction, d.baseline, d.value)
        worse = None if direction is None else bool(sig and h is not None and h > 0)
        out.append(replace(d, q_value=qv, significant=sig, worse=worse))
    return out


def diffs_for_pairs(store_path, pairs: Sequence[tuple[dict, dict]], fdr: float = 0.05,
                    n_boot: int = 1000, seed: int = 0) -> list[PairedDiff]:
    """``compare_runs`` over run pairs (records read once per run), then ``adjust``."""
    cache: dict[str, list[dict]] = {}
    out: list[PairedDiff] = []
    with Store(resolve_store(store_path)) as st:
        def records(run):
            if run["run_key"] not in cache:
                cache[run["run_key"]] = st.records(run["run_key"])
            return cache[run["run_key"]]
        for a, b in pairs:
            out += compare_runs(a, records(a), b, records(b), n_boot, seed)
    return adjust(out, fdr)


def paired_diffs(store_path, baseline: str = "dense", fdr: float = 0.05, n_boot: int = 1000,
                 seed: int = 0, models=None) -> list[PairedDiff]:
    """Every compressed run against its baseline run, all metric rows, BH across them all.

    ``models``: only compressed runs with these model names or spec labels (the BH family
    is then those runs' rows).
    """
    pairs = pair_runs(load_runs(store_path), baseline, models)
    return diffs_for_pairs(store_path, pairs, fdr, n_boot, seed)

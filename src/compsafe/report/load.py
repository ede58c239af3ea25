"""Read a results store as tidy rows: every metric row joined with its run's lineage.

A store is a ``.sqlite`` file, or a folder holding ``compsafe.sqlite`` (what ``compsafe
eval --out DIR`` writes). Runs stored before schema version 2 have no lineage; like a model
directory without ``compression.json`` (``compress/lineage.py``), such a model is taken as
its own dense base.

    rows = load_tidy(resolve_store("runs/"))   # [{"model": ..., "metric": "s_dis", ...}]
"""

from __future__ import annotations

from pathlib import Path

from compsafe.errors import CompsafeError
from compsafe.report.metric_info import metric_info
from compsafe.store import STORE_FILE, Store
from compsafe.store.schema import LINEAGE_COLUMNS

# The lineage as reports use it (the spec itself stays in the run's ``spec``).
LINEAGE_KEYS = tuple(c for c in LINEAGE_COLUMNS if c != "spec_json")
TIDY_KEYS = ("run_key", "model", *LINEAGE_KEYS, "task", "subset", "group", "metric", "value",
             "n", "ci_low", "ci_high", "dimension", "scorer", "protocol", "incomplete")
"""Columns of ``load_tidy`` rows, in export order (``scorer``: the generation scorer's name,
None for other tasks; ``protocol``: ``run_protocol``; ``incomplete``: the run left failed
scores out of its metrics)."""


def run_protocol(run: dict) -> str:
    """The protocol a run followed ("compsafe" or "reference", docs/protocol.md); runs stored
    before protocols were recorded followed compsafe's."""
    from compsafe.types import DEFAULT_PROTOCOL

    return (run.get("config") or {}).get("protocol") or DEFAULT_PROTOCOL


def resolve_store(path) -> Path:
    """The store file at ``path``: a ``.sqlite`` file, or a folder with ``compsafe.sqlite``.

    Raises ``CompsafeError`` naming the path tried; never creates a file (opening a
    ``Store`` on a missing path would create an empty one).
    """
    p = Path(path)
    if p.is_dir():
        candidate = p / STORE_FILE
        if candidate.is_file():
            return candidate
        found = sorted(p.glob("*.sqlite"))
        if len(found) == 1:
            return found[0]
        raise CompsafeError(f"{p}: no results store in this folder (looked for {STORE_FILE}"
                            + (f"; found several: {', '.join(f.name for f in found)}"
                               if found else "") + ")")
    if p.is_file():
        return p
    raise CompsafeError(f"results store not found: {p} (give a .sqlite file or the folder "
                        f"that 'compsafe eval --out' wrote)")


def run_lineage(run: dict) -> dict:
    """The lineage fields of a stored run; a run without lineage is its own dense base."""
    out = {k: run.get(k) for k in LINEAGE_KEYS}
    if out["method"] is None:  # stored before schema v2
        out.update(base_model=run["model"], base_fingerprint=run.get("model_fingerprint"),
                   method="dense", spec_label="dense")
    if out["base_model"] is None:
        out["base_model"] = run["model"]
    return out


def load_runs(store_path) -> list[dict]:
    """The store's runs (oldest first), each with lineage filled in by ``run_lineage``."""
    with Store(resolve_store(store_path)) as st:
        return [{**r, **run_lineage(r)} for r in st.runs()]


def load_tidy(store_path) -> list[dict]:
    """One dict per stored metric row with its run's lineage and the metric's dimension.

    Keys are ``TIDY_KEYS``; ``value``/``ci_low``/``ci_high`` are None where undefined.
    Rows of every stored run are included, finished or not (a run's metrics are written
    when it finishes).
    """
    with Store(resolve_store(store_path)) as st:
        runs = {r["run_key"]: {**r, **run_lineage(r)} for r in st.runs()}
        rows = st.metrics_rows()
    out = []
    for m in rows:
        run = runs.get(m["run_key"], {})
        row = {"run_key": m["run_key"], "model": m["model"],
               **{k: run.get(k) for k in LINEAGE_KEYS},
               **{k: m[k] for k in ("task", "subset", "group", "metric", "value", "n",
                                    "ci_low", "ci_high")}}
        row["dimension"] = metric_info(m["task"], m["metric"]).dimension
        row["scorer"] = (run_scorer(run) or {}).get("scorer")
        row["protocol"] = run_protocol(run) if run else None
        row["incomplete"] = bool(run.get("incomplete"))
        out.append(row)
    return out


def run_scorer(run: dict) -> dict | None:
    """A generation run's scorer as stored in its config (``{"scorer", "version"}``), else None."""
    scorer = ((run.get("config") or {}).get("task") or {}).get("scorer")
    return scorer if isinstance(scorer, dict) else None

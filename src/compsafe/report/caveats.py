"""Coverage caveats: what a number did not cover, said next to the number.

A value computed on part of a benchmark, scored by a stand-in scorer, or measured on the
text a model was calibrated on is not the value a reader compares with a paper. Each run
says so in its stored config and lineage; this module turns that into short sentences:

* a limit (``limit`` items ``limit_scope``): a subset of the task's data;
* BBQ categories missing from the data (``missing_categories``);
* the offline profanity classifier standing in for a toxicity model;
* failed scores, left out of the metrics (the ``n_failed`` rows);
* in-sample results: the model was calibrated on this task's evaluation text
  (``Calibration.overlaps``: WikiText-2 perplexity after calibrating on its test split).

    notes = run_caveats(runs, rows)   # {(base, setting, task): ["100 items per ..."]}
"""

from __future__ import annotations

from collections import defaultdict

from compsafe.compress.spec import Calibration
from compsafe.scorers import SCORER_LABELS

BBQ_CATEGORIES = 11  # Parrish et al. 2022: nine categories and two intersections
STAND_IN_SCORERS = {"profanity": "scored by " + SCORER_LABELS["profanity"]}


def _run_notes(run: dict) -> list[str]:
    task_cfg = ((run.get("config") or {}).get("task")) or {}
    notes = []
    missing = task_cfg.get("missing_categories") or []
    if missing:
        notes.append(f"{BBQ_CATEGORIES - len(missing)} of {BBQ_CATEGORIES} BBQ categories "
                     f"(missing: {', '.join(map(str, missing))})")
    if task_cfg.get("limit") is not None:
        scope = task_cfg.get("limit_scope") or ("prompts" if "prompt_set" in task_cfg
                                                else "items")
        notes.append(f"a subset: at most {task_cfg['limit']} {scope}")
    scorer = task_cfg.get("scorer")
    name = scorer.get("scorer") if isinstance(scorer, dict) else scorer
    if name in STAND_IN_SCORERS:
        notes.append(STAND_IN_SCORERS[name])
    spec = run.get("spec") or {}
    calib = spec.get("calibration") or {}
    if spec.get("method", "dense") != "dense" and calib.get("source"):
        c = Calibration(**{k: calib[k] for k in ("source", "nsamples", "seqlen", "seed")
                           if k in calib})
        if run.get("task") in c.overlaps():
            notes.append(f"in-sample: calibrated on this task's evaluation text "
                         f"({c.source})")
    return notes


def run_caveats(runs: list[dict], rows: list[dict]) -> dict[tuple[str, str, str], list[str]]:
    """``(base_model, spec_label, task)`` -> the caveats of that run (empty ones left out).

    ``runs`` as ``load.load_runs`` returns them; ``rows`` (tidy metric rows) supply the
    failed-score counts."""
    found: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for run in runs:
        notes = _run_notes(run)
        if notes:
            found[(run["base_model"], run["spec_label"], run["task"])] += notes
    for r in rows:
        if r["metric"] == "n_failed" and r["group"] == "all" and (r["value"] or 0) > 0:
            found[(r["base_model"], r["spec_label"], r["task"])].append(
                f"{r['value']:g} of {r['n']} scores failed and are left out")
    return {k: list(dict.fromkeys(v)) for k, v in found.items()}


def task_caveats(caveats: dict[tuple[str, str, str], list[str]],
                 evaluated: dict[str, set[str]]) -> list[tuple[str, str, list[str] | None]]:
    """``(task, caveat, settings)`` for each task of ``evaluated`` (task -> the settings
    evaluated on it) and each of its caveats; ``settings`` is None when the caveat holds for
    every evaluated setting. For listing under a table of those tasks."""
    by: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (_, setting, task), notes in caveats.items():
        if task in evaluated:
            for note in notes:
                by[(task, note)].add(setting)
    return [(task, note, None if where >= evaluated[task] else sorted(where))
            for (task, note), where in sorted(by.items())]

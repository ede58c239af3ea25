"""What ``compsafe eval`` writes under ``--out`` and prints on the console.

Both files are rebuilt from the store after every command, so they always describe every
run in it, whichever command (or how many commands at once) wrote them:

``results.json``: per run, its key, task, model and lineage, status, config, the commands
that started, resumed or reused it (date, command line, compsafe/torch/transformers
versions), its failed-score count (``incomplete`` when any are left) and its tidy
metric rows; ``records.jsonl``: every per-item record, tagged with
task and run key. Writers hold a lock on ``--out`` and replace each file atomically through
a temporary file of their own, so concurrent commands never lose each other's output.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from compsafe import __version__
from compsafe.errors import CompsafeError
from compsafe.report.load import run_scorer
from compsafe.runner.evaluate import TaskResult
from compsafe.scorers import scorer_label
from compsafe.store import Store
from compsafe.store.schema import LINEAGE_COLUMNS

RESULTS, RECORDS, LOCK = "results.json", "records.jsonl", ".outputs.lock"


@contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``out_dir`` for the duration (released if the process dies)."""
    with open(out_dir / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _probe(folder: Path, what: str) -> None:
    """Prove ``folder`` writable by creating and removing a temporary file in it."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".compsafe-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CompsafeError(f"{what}: cannot write there ({e.strerror or e})") from None


def _existing_ancestor(path: Path, what: str) -> Path:
    """The nearest existing folder at or above ``path`` (which would be created under it)."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise CompsafeError(f"{what}: {p} is a file, not a folder")
            return p
    return Path.cwd()


def check_out_dir(out_dir: Path) -> None:
    """Fail now, in one line naming it, if ``out_dir`` cannot hold the results: a file, or a
    folder (or the folder it would be created in) that is unreadable or read-only. Checked
    before a model loads; nothing is left behind."""
    what = f"--out {out_dir}"
    if out_dir.exists() and not out_dir.is_dir():
        raise CompsafeError(f"{what}: is a file, not a folder; give a folder")
    folder = _existing_ancestor(out_dir, what)
    _probe(folder, what)
    if folder == out_dir:
        try:
            os.listdir(out_dir)
        except OSError as e:
            raise CompsafeError(f"{what}: cannot read it ({e.strerror or e})") from None


def check_store_path(path: Path) -> None:
    """The same for ``--store``: an existing store must open (schema, permissions); a new
    one's folder must be writable. A folder given as the store is an error naming it."""
    from compsafe.store import Store

    if path.exists():
        Store(path).close()  # raises a one-line StoreError: a folder, junk, a newer schema
    else:
        _probe(_existing_ancestor(path.parent, f"--store {path}"), f"--store {path}")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_entry(store: Store, run: dict) -> dict:
    """One run of ``results.json``: identity, lineage, scorer, provenance and metric rows."""
    key = run["run_key"]
    scorer = run_scorer(run)
    metric_keys = ("subset", "group", "metric", "value", "n", "ci_low", "ci_high")
    return {
        "task": run["task"],
        "run_key": key,
        "model": {"name": run["model"], "fingerprint": run["model_fingerprint"]},
        "lineage": {c: run.get(c) for c in LINEAGE_COLUMNS if c != "spec_json"},
        "status": run["status"],
        "error": run["error"],
        "n_items": run["n_items"],
        # Failed scores left in the records (scorer/API errors): the metrics leave them
        # out, so they are incomplete until a rerun retries them. None: not counted.
        "n_failed": run["n_failed"],
        "incomplete": run["incomplete"],
        "created_at": run["created_at"],
        "updated_at": run["updated_at"],
        "config": run["config"],
        "scorer": scorer_label(scorer),
        "invocations": [{k: v for k, v in inv.items() if k != "run_key"}
                        for inv in store.invocations(key)],
        "metrics": [{k: m[k] for k in metric_keys} for m in store.metrics_rows(run_key=key)],
    }


def write_outputs(out_dir: Path, store_path: Path) -> None:
    """Rebuild ``results.json`` and ``records.jsonl`` in ``out_dir`` from every run stored
    in ``store_path`` (under the folder's lock; each file replaced atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir), Store(store_path) as store:
        runs = store.runs()
        doc = {"compsafe_version": __version__,
               "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "store": str(store_path),
               "runs": [run_entry(store, r) for r in runs]}
        lines = [json.dumps({"task": r["task"], "run_key": r["run_key"], **rec},
                            ensure_ascii=False)
                 for r in runs for rec in store.records(r["run_key"])]
        _atomic_write_text(out_dir / RESULTS, json.dumps(doc, indent=2, ensure_ascii=False))
        _atomic_write_text(out_dir / RECORDS, "\n".join(lines) + ("\n" if lines else ""))


def _fmt(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.3f}"


def format_metrics_table(results: Sequence[TaskResult], all_groups: bool = False,
                         group_tasks: frozenset[str] | set[str] = frozenset()) -> str:
    """A plain-text table: task, subset, group, metric, value, 95% CI, n.

    By default only summaries (group "all") are shown, plus the top-level groups (not
    subgroups, which contain "/") of the tasks in ``group_tasks``; every row is in
    results.json and the store.
    """
    header = ("task", "subset", "group", "metric", "value", "95% CI", "n")
    rows = []
    repeated = {r.task for r in results if sum(x.task == r.task for x in results) > 1}
    for r in results:
        # One task run by several scorers: the rows say which scorer they are from.
        label = (f"{r.task}[{(r.config.get('scorer') or {}).get('scorer')}]"
                 if r.task in repeated else r.task)
        for m in r.metrics:
            wanted = m.group == "all" or (r.task in group_tasks and "/" not in m.group)
            if not (all_groups or wanted):
                continue
            ci = "" if m.ci_low is None else f"[{m.ci_low:.3f}, {m.ci_high:.3f}]"
            rows.append((label, m.subset, m.group, m.metric, _fmt(m.value), ci, str(m.n)))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(header)]

    def line(cells) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    scored = [f"{r.task} scored by {scorer_label(r.config['scorer'])}" for r in results
              if isinstance(r.config.get("scorer"), dict)]
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows),
                      *scored])

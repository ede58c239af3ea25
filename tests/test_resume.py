"""The "kill it half-way and run it again" guarantee, for real.

1. A ``compsafe eval`` subprocess is SIGKILLed once some (not all) of its chunks are in the
   store; the same command run again resumes (it reports exactly the stored items as
   already done and leaves their rows untouched), ends with every item stored once, and
   gives results identical (values, n, CIs) to an uninterrupted run of the same command.
2. In-process and deterministic: the model raises KeyboardInterrupt on its 3rd chunk; the
   run is left 'failed' with 2 chunks stored and no results.json, and the rerun scores only
   the remaining items and matches an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compsafe.cli import main
from compsafe.models.hf import HFModel
from compsafe.store import Store

BBQ_SUBSETS = 15  # BBQ's reported categories: 11 plus 4 '(names)' splits


def eval_argv(model: Path, data: Path, out: Path, limit: int) -> list[str]:
    return ["eval", "--model", str(model), "--tasks", "bbq", "--limit", str(limit),
            "--checkpoint-every", "10", "--batch-size", "4", "--out", str(out),
            "--data-dir", str(data), "--n-boot", "200", "--device", "cpu"]


def run_in_process(argv: list[str]) -> tuple[int, str]:
    """``compsafe.cli.main(argv)`` with stdout/stderr captured: (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue()


def stored_rows(db: Path) -> list[tuple[str, str, str, int]]:
    """(run_key, item_id, created_at, rowid) of every stored record, read-only."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT run_key, item_id, created_at, rowid FROM records "
                            "ORDER BY rowid").fetchall()


def count_records(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM records").fetchone()[0]


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def records_by_id(out: Path) -> dict[str, dict]:
    lines = (out / "records.jsonl").read_text(encoding="utf-8").splitlines()
    recs = [json.loads(line) for line in lines]
    by_id = {r["id"]: r for r in recs}
    assert len(by_id) == len(recs), "duplicate ids in records.jsonl"
    return by_id


def assert_same_results(a: Path, b: Path, n_items: int) -> None:
    """Two output folders hold the same run: same key, metrics (exactly) and records."""
    ra, rb = results(a), results(b)
    [ta], [tb] = ra["runs"], rb["runs"]
    assert ta["run_key"] == tb["run_key"]
    assert ta["n_items"] == tb["n_items"] == n_items
    assert ta["metrics"] == tb["metrics"]  # values, n, ci_low, ci_high: all equal
    recs_a, recs_b = records_by_id(a), records_by_id(b)
    assert recs_a.keys() == recs_b.keys() and len(recs_a) == n_items
    for item_id, rec in recs_a.items():
        other = recs_b[item_id]
        assert rec["pred"] == other["pred"], item_id
        assert rec["logprobs"] == pytest.approx(other["logprobs"], rel=1e-5, abs=1e-5), item_id


# --- 1. SIGKILL a subprocess half-way


def start_and_kill(argv: list[str], db: Path, log_path: Path, total: int, at_least: int,
                   timeout: float = 180) -> int:
    """Start ``compsafe`` as a subprocess, SIGKILL it once ``at_least`` (< total) records are
    committed, and return how many were; fail (never pass vacuously) if it finished first."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "compsafe.cli", *argv], env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
    conn, seen, deadline = None, 0, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"the run exited (status {proc.returncode}) after {seen} of {total} "
                    f"records were seen, before it could be killed half-way; raise --limit "
                    f"so the run takes longer. Its log:\n{log_path.read_text()}")
            try:
                if conn is None and db.exists():
                    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                seen = count_records(conn) if conn is not None else 0
            except sqlite3.OperationalError:  # schema not created yet: keep polling
                seen = 0
            if at_least <= seen < total:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"no {at_least} records within {timeout} s:\n{log_path.read_text()}")
    finally:
        if conn is not None:
            conn.close()
        if proc.poll() is None and proc.returncode is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log_path.read_text()
    return seen


def test_sigkill_half_way_then_rerun_resumes(tmp_path, tiny_model_dir, data_cache):
    limit = 16
    total = limit * BBQ_SUBSETS
    a, b = tmp_path / "A", tmp_path / "B"
    db = a / "compsafe.sqlite"
    argv = eval_argv(tiny_model_dir, data_cache, a, limit)

    start_and_kill(argv, db, tmp_path / "killed.log", total, at_least=20)
    before = stored_rows(db)
    n_before = len(before)
    assert 20 <= n_before < total and n_before % 10 == 0  # whole chunks only
    assert not (a / "results.json").exists()
    with Store(db) as store:
        [run] = store.runs()
    key = run["run_key"]
    assert run["status"] == "running"  # SIGKILL: no chance to mark it failed

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "compsafe.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    m = re.search(r"resuming run (\w+), (\d+) of (\d+) items already done", proc.stderr)
    assert m, proc.stderr
    assert (m[1], int(m[2]), int(m[3])) == (key, n_before, total)

    after = stored_rows(db)
    assert len(after) == total
    assert len({(k, item) for k, item, _, _ in after}) == total  # no duplicate ids
    assert {k for k, *_ in after} == {key}
    assert after[:n_before] == before  # the stored chunks were not rewritten
    with Store(db) as store:
        run = store.run(key)
    assert run["status"] == "done" and run["n_items"] == total and run["error"] is None

    rc, err = run_in_process(eval_argv(tiny_model_dir, data_cache, b, limit))
    assert rc == 0, err
    assert_same_results(a, b, total)


# --- 2. in-process, interrupted on the 3rd chunk


def test_keyboard_interrupt_on_third_chunk_then_rerun(tmp_path, tiny_model_dir, data_cache,
                                                     monkeypatch, caplog):
    limit = 4
    total = limit * BBQ_SUBSETS  # 60 items: 6 chunks of 10
    a, c = tmp_path / "A", tmp_path / "C"
    argv = ["-q", *eval_argv(tiny_model_dir, data_cache, a, limit)]
    original = HFModel.loglikelihood
    calls: list[int] = []

    def interrupted(self, requests, progress=False):
        calls.append(len(requests))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, requests, progress)

    monkeypatch.setattr(HFModel, "loglikelihood", interrupted)
    rc, err = run_in_process(argv)
    assert rc == 130 and "re-run to resume" in err
    assert not (a / "results.json").exists()  # nothing that looks like a finished result
    with Store(a / "compsafe.sqlite") as store:
        [run] = store.runs()
        key = run["run_key"]
        assert run["status"] == "failed" and "KeyboardInterrupt" in run["error"]
        assert len(store.records(key)) == 20  # the two chunks before the interrupt

    calls.clear()
    monkeypatch.setattr(HFModel, "loglikelihood", lambda self, requests, progress=False: (
        calls.append(len(requests)) or original(self, requests, progress)))
    caplog.set_level(logging.INFO, logger="compsafe")
    rc, err = run_in_process(argv)
    assert rc == 0, err
    assert sum(calls) == 3 * (total - 20)  # 3 answers per item, only the remaining items
    assert f"resuming run {key}, 20 of {total} items already done" in caplog.text
    with Store(a / "compsafe.sqlite") as store:
        run = store.run(key)
        assert run["status"] == "done" and run["n_items"] == total and run["error"] is None
        ids = [r["id"] for r in store.records(key)]
    assert len(ids) == len(set(ids)) == total

    monkeypatch.setattr(HFModel, "loglikelihood", original)
    rc, err = run_in_process(["-q", *eval_argv(tiny_model_dir, data_cache, c, limit)])
    assert rc == 0, err
    assert_same_results(a, c, total)

"""Sweeps on the tiny random model: failures are recorded per cell while the rest completes;
a SIGKILLed ``compsafe sweep`` resumes to the same store an uninterrupted sweep writes."""

from __future__ import annotations

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
from sweep_helpers import assert_no_duplicates, cells, metrics, run_cli, write_config

import compsafe.runner.evaluate as evaluate_module


@pytest.fixture(scope="module")
def sweep_data(mirror_dir, tmp_path_factory) -> Path:
    """Every dataset of the mirror in a fresh cache (calibration text included)."""
    from compsafe.data.pull import import_mirror

    dest = tmp_path_factory.mktemp("sweepdata")
    assert import_mirror(mirror_dir, dest, progress=False).ok
    return dest


def tiny_config(path: Path, model: Path, data: Path, out: Path, compression: list,
                tasks: list, **extra) -> Path:
    return write_config(path, out=str(out), data_dir=str(data), device="cpu",
                        dtype="float32", batch_size=4, models=[{"model": str(model),
                                                                "name": "tiny"}],
                        calibration={"source": "wikitext2-test", "nsamples": 2, "seqlen": 32},
                        compression=compression, tasks=tasks, **extra)


def test_failing_cells_are_recorded_and_the_others_complete(tmp_path, tiny_model_dir,
                                                            sweep_data, monkeypatch):
    out = tmp_path / "out"
    cfg = tiny_config(tmp_path / "s.yaml", tiny_model_dir, sweep_data, out,
                      compression=[{"method": "magnitude", "sparsity": 0.5},
                                   # 2:5 passes the spec, but no layer width divides by 5
                                   {"method": "sparsegpt", "structure": "2:5"}],
                      tasks=[{"task": "bbq", "limit": 2, "n_boot": 50},
                             {"task": "unqover", "limit": 2, "n_boot": 50}])
    real = evaluate_module.evaluate_task

    def flaky(model, task, *args, **kwargs):  # one evaluation raises: only its cell fails
        if task.name == "unqover" and (model.compression_info or {}).get("method"):
            raise RuntimeError("injected failure")
        return real(model, task, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate_task", flaky)
    rc, stdout, err = run_cli(["-q", "sweep", str(cfg)])
    assert rc == 1, err
    db = out / "compsafe.sqlite"
    state = cells(db)
    assert {k: v["status"] for k, v in state.items()} == {
        ("tiny", "dense", "bbq"): "done", ("tiny", "dense", "unqover"): "done",
        ("tiny", "magnitude-50", "bbq"): "done", ("tiny", "magnitude-50", "unqover"): "failed",
        ("tiny", "sparsegpt-2:5", "bbq"): "failed", ("tiny", "sparsegpt-2:5", "unqover"): "failed"}
    assert state["tiny", "magnitude-50", "unqover"]["error"] == "RuntimeError: injected failure"
    nm_error = state["tiny", "sparsegpt-2:5", "bbq"]["error"]
    assert nm_error.startswith("compression failed: ") and "divisible by 5" in nm_error
    assert "sweep s: 3 done, 3 failed, 0 pending" in stdout
    assert len(re.findall(r"^\[\d/6\] failed ", stdout, re.M)) == 3  # the live view says so
    assert_no_duplicates(db)
    assert len(metrics(db)) > 0

    rc, status, _ = run_cli(["sweep", "status", str(cfg)])
    assert rc == 0
    line = next(x for x in status.splitlines() if "sparsegpt-2:5 | bbq" in x)
    assert re.match(r"\[5/6\] failed +tiny \| sparsegpt-2:5 \| bbq  compression failed: ",
                    line) and "divisible by 5" in line
    assert "[4/6] failed      tiny | magnitude-50 | unqover  RuntimeError: injected" in status
    assert status.splitlines()[-1] == "3 done, 3 failed, 0 pending"

    # a re-run retries the failed cells only; the transient failure now passes
    monkeypatch.setattr(evaluate_module, "evaluate_task", real)
    rc, stdout, _ = run_cli(["-q", "sweep", str(cfg)])
    assert rc == 1  # the impossible setting fails again
    state = cells(db)
    assert state["tiny", "magnitude-50", "unqover"]["status"] == "done"
    assert state["tiny", "magnitude-50", "unqover"]["attempts"] == 2
    assert state["tiny", "dense", "bbq"]["attempts"] == 1  # done cells are not run again
    assert re.findall(r"running +(.*)$", stdout, re.M) == ["tiny | magnitude-50 | unqover"]
    assert_no_duplicates(db)


def _kill_during_a_cell(argv: list[str], db: Path, log: Path, timeout: float = 240) -> None:
    """Start ``compsafe sweep`` and SIGKILL it once one cell is done and another has part of
    its records stored; fail (never pass vacuously) if it finishes first."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "compsafe.cli", *argv], env=env,
                                stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the sweep ended before the kill:\n{log.read_text()}"
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    done = conn.execute("SELECT count(*) FROM sweep_cells "
                                        "WHERE status = 'done'").fetchone()[0]
                    partial = conn.execute(
                        "SELECT count(*) FROM records JOIN runs USING (run_key) "
                        "WHERE runs.status = 'running'").fetchone()[0]
            except sqlite3.OperationalError:  # not created yet
                done = partial = 0
            if done >= 1 and partial >= 10:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"no partial cell within {timeout} s:\n{log.read_text()}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_during_a_cell_then_rerun(tmp_path, tiny_model_dir, sweep_data, caplog):
    grid = {"compression": [{"method": "magnitude", "sparsity": 0.5}],
            "tasks": [{"task": "bbq", "limit": 6, "n_boot": 100},
                      {"task": "unqover", "limit": 2, "n_boot": 100}],
            "checkpoint_every": 5}
    a, b = tmp_path / "A", tmp_path / "B"
    cfg_a = tiny_config(tmp_path / "a.yaml", tiny_model_dir, sweep_data, a, **grid)
    cfg_b = tiny_config(tmp_path / "b.yaml", tiny_model_dir, sweep_data, b, **grid)
    db = a / "compsafe.sqlite"

    _kill_during_a_cell(["-q", "sweep", str(cfg_a)], db, tmp_path / "killed.log")
    before = cells(db)
    interrupted = [k for k, v in before.items() if v["status"] == "running"]
    assert len(interrupted) == 1 and sum(v["status"] == "done" for v in before.values()) >= 1
    rc, status, _ = run_cli(["sweep", "status", str(cfg_a)])
    assert f"interrupted {' | '.join(interrupted[0])}" in re.sub(r" +", " ", status)

    caplog.set_level(logging.INFO, logger="compsafe")
    rc, stdout, err = run_cli(["-q", "sweep", str(cfg_a)])  # the same command again
    assert rc == 0, err
    assert re.search(r"resuming run \w+, \d+ of \d+ items already done", caplog.text)
    after = cells(db)
    assert all(v["status"] == "done" for v in after.values()) and len(after) == 4
    for key, row in after.items():  # finished cells were not run again
        assert row["attempts"] == (2 if key in interrupted else 1), key
        if before[key]["status"] == "done":
            assert row["run_key"] == before[key]["run_key"]
    assert stdout.count(" running ") == 4 - sum(v["status"] == "done" for v in before.values())
    assert_no_duplicates(db)

    rc, _, err = run_cli(["-q", "sweep", str(cfg_b)])  # uninterrupted, from scratch
    assert rc == 0, err
    assert_no_duplicates(b / "compsafe.sqlite")
    assert metrics(db) == metrics(b / "compsafe.sqlite")  # same run keys, values, n, CIs
    assert {v["run_key"] for v in after.values()} == {
        v["run_key"] for v in cells(b / "compsafe.sqlite").values()}


def test_status_points_at_the_store_of_a_run_with_set_out(tmp_path, tiny_model_dir,
                                                          sweep_data, monkeypatch):
    monkeypatch.setenv("COMPSAFE_CACHE_DIR", str(tmp_path / "cache"))
    cfg = tiny_config(tmp_path / "s.yaml", tiny_model_dir, sweep_data, tmp_path / "out",
                      compression=[], tasks=[{"task": "bbq", "limit": 1, "n_boot": 10}])
    moved = tmp_path / "elsewhere"
    rc, _, err = run_cli(["-q", "sweep", str(cfg), "--set", f"out={moved}"])
    assert rc == 0, err
    rc, status, _ = run_cli(["sweep", "status", str(cfg)])
    assert rc == 0 and status.splitlines()[-2] == "0 done, 1 pending"
    assert status.splitlines()[-1] == (f"this config was also run into "
                                       f"{moved.resolve() / 'compsafe.sqlite'}: compsafe sweep "
                                       f"status {cfg} --set out={moved}")
    rc, status, _ = run_cli(["sweep", "status", str(cfg), "--set", f"out={moved}"])
    assert status.splitlines()[-1] == "1 done, 0 pending"  # pointed at it: nothing more said

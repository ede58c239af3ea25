"""Two ``compsafe sweep`` runs of one config at once, and a Ray sweep killed mid-cell, each
end complete and identical to an uninterrupted sweep (issue 14, "also test")."""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_helpers import assert_no_duplicates, cells, metrics, run_cli, write_config

GRID = {"compression": [{"method": "magnitude", "sparsity": 0.5}],
        "tasks": [{"task": "bbq", "limit": 6, "n_boot": 100},
                  {"task": "unqover", "limit": 3, "n_boot": 100}],
        "checkpoint_every": 4}


@pytest.fixture(scope="module")
def sweep_data(mirror_dir, tmp_path_factory) -> Path:
    from compsafe.data.pull import import_mirror

    dest = tmp_path_factory.mktemp("sweepdata")
    assert import_mirror(mirror_dir, dest, datasets=["bbq", "unqover", "wikitext2"],
                         progress=False).ok
    return dest


def _config(path: Path, model: Path, data: Path, out: Path) -> Path:
    return write_config(path, out=str(out), models_dir=str(out.parent / f"{out.name}-models"),
                        data_dir=str(data), device="cpu", dtype="float32", batch_size=4,
                        models=[{"model": str(model), "name": "tiny"}],
                        calibration={"nsamples": 2, "seqlen": 32}, **GRID)


def _sweep(cfg: Path, log: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "compsafe.cli", "-q", "sweep", str(cfg),
                                 *extra], env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _reference(tmp_path, model, data) -> Path:
    """The store of an uninterrupted, lone sweep of the same grid."""
    cfg = _config(tmp_path / "ref.yaml", model, data, tmp_path / "ref")
    rc, _, err = run_cli(["-q", "sweep", str(cfg)])
    assert rc == 0, err
    return tmp_path / "ref" / "compsafe.sqlite"


def _same_as(db: Path, ref: Path) -> None:
    state = cells(db)
    assert len(state) == 4 and {v["status"] for v in state.values()} == {"done"}
    assert_no_duplicates(db)
    assert {k: v["run_key"] for k, v in state.items()} == {
        k: v["run_key"] for k, v in cells(ref).items()}
    assert metrics(db) == metrics(ref)  # same keys, values, n and CIs


def test_two_identical_sweeps_at_once(tmp_path, tiny_model_dir, sweep_data):
    cfg = _config(tmp_path / "s.yaml", tiny_model_dir, sweep_data, tmp_path / "out")
    procs = [_sweep(cfg, tmp_path / f"log{i}") for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=600) == 0, (tmp_path / f"log{i}").read_text()
    db = tmp_path / "out" / "compsafe.sqlite"
    _same_as(db, _reference(tmp_path, tiny_model_dir, sweep_data))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    # One compressed model was built, not two racing into the same folder.
    built = list((tmp_path / "out-models").rglob("compression.json"))
    assert len(built) == 1 and not [p for p in built[0].parent.parent.iterdir()
                                    if ".compsafe-tmp." in p.name]


def _session_pids(sid: int) -> list[int]:
    """Processes of session ``sid`` (the killed sweep's Ray cluster: started by this test)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed")
def test_ray_sweep_killed_mid_cell_then_rerun(tmp_path, tiny_model_dir, sweep_data):
    cfg = _config(tmp_path / "s.yaml", tiny_model_dir, sweep_data, tmp_path / "out")
    db = tmp_path / "out" / "compsafe.sqlite"
    ray_args = ("--executor", "ray", "--num-cpus", "2")
    proc = _sweep(cfg, tmp_path / "killed.log", *ray_args)
    deadline = time.monotonic() + 400
    try:
        while True:
            assert proc.poll() is None, "ended before the kill:\n" + \
                (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "no partial cell in time"
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    partial = conn.execute(
                        "SELECT count(*) FROM records JOIN runs USING (run_key) "
                        "WHERE runs.status = 'running'").fetchone()[0]
            except sqlite3.OperationalError:
                partial = 0
            if partial >= 4:  # a cell is part-way: kill the driver and its whole cluster
                for pid in _session_pids(proc.pid):
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert any(v["status"] != "done" for v in cells(db).values())

    rerun = _sweep(cfg, tmp_path / "rerun.log", *ray_args)
    assert rerun.wait(timeout=600) == 0, (tmp_path / "rerun.log").read_text()
    for pid in _session_pids(rerun.pid):  # a local cluster the rerun left behind, if any
        os.kill(pid, signal.SIGKILL)
    _same_as(db, _reference(tmp_path, tiny_model_dir, sweep_data))

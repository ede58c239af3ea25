"""Identical concurrent commands split the work through claims in the store (issue 14,
point 3): no item is computed twice, the results equal one process's, and a dead
claimant's items are taken over at once."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from compsafe.identity import ModelIdentity
from compsafe.models.adapter import ModelAdapter
from compsafe.runner.evaluate import evaluate_task
from compsafe.store import Store
from compsafe.store.claims import owner_alive, owner_id
from compsafe.tasks.base import LoglikTask
from compsafe.types import LoglikRequest, LoglikResponse, MetricRow, TaskOptions


class CountTask(LoglikTask):
    """``n`` items; each asks the log-likelihood of its own id."""

    name, version = "count", 1

    def __init__(self, n: int):
        super().__init__(Path("."), TaskOptions(n_boot=0))
        self.n = n

    def config(self):
        return {"n": self.n}

    def examples(self):
        return [type("Ex", (), {"id": f"item{i:03d}"})() for i in range(self.n)]

    def examples_sha256(self) -> str:
        return str(self.n)

    def requests(self, example, render):
        return [LoglikRequest("", example.id)]

    def record(self, example, responses):
        return {"id": example.id, "value": responses[0].logprob}

    def metric_defs(self, records):
        return [MetricRow("all", "all", "sum", float(sum(r["value"] for r in records)),
                          len(records))]


class LoggingModel(ModelAdapter):
    """Answers ``-len(id)``, appending every item it computes to ``log`` (one line each),
    slowly enough that two processes overlap."""

    name = "logging"

    def __init__(self, log: Path, delay: float):
        self.log, self.delay = log, delay

    @property
    def identity(self) -> ModelIdentity:  # what the runner reads (HFModel builds its own)
        return ModelIdentity.dense(self.name, "fp")

    def loglikelihood(self, requests, progress=False):
        time.sleep(self.delay)
        with open(self.log, "a") as f:
            f.write("".join(f"{r.continuation}\n" for r in requests))
        return [LoglikResponse(-float(len(r.continuation)), False, 1) for r in requests]


def _evaluate(store_path: str, log: str, n: int, out: str) -> None:
    with Store(store_path) as st:
        result = evaluate_task(LoggingModel(Path(log), 0.05), CountTask(n), st,
                               checkpoint_every=4, progress=False)
    Path(out).write_text(json.dumps({"computed": result.n_computed,
                                     "metrics": [m.value for m in result.metrics]}))


def test_two_identical_concurrent_runs_compute_each_item_once(tmp_path):
    ctx = mp.get_context("fork")
    args = [(str(tmp_path / "s.sqlite"), str(tmp_path / "log"), 40, str(tmp_path / f"r{i}"))
            for i in range(2)]
    procs = [ctx.Process(target=_evaluate, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    computed = (tmp_path / "log").read_text().split()
    assert sorted(computed) == [f"item{i:03d}" for i in range(40)]  # each exactly once
    results = [json.loads((tmp_path / f"r{i}").read_text()) for i in range(2)]
    assert sum(r["computed"] for r in results) == 40
    assert all(r["computed"] > 0 for r in results)  # both did part of the work
    assert results[0]["metrics"] == results[1]["metrics"] == [-7.0 * 40]
    with Store(tmp_path / "s.sqlite") as st:
        (run,) = st.runs()
        assert run["status"] == "done" and run["n_items"] == 40
        assert st._conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def _start(st: Store) -> None:
    st.start_run("k", "m", "fp", "count", 1, {}, "0")


def test_claims_skip_recorded_and_live_claims_and_take_over_dead_ones(tmp_path):
    ids = [f"i{k}" for k in range(6)]
    with Store(tmp_path / "s.sqlite") as st:
        _start(st)
        st.add_records("k", [{"id": "i0"}])
        a, b = owner_id(), owner_id()
        assert st.claim_items("k", ids, a, 60, 2) == ["i1", "i2"]
        assert st.claim_items("k", ids, b, 60, 10) == ["i3", "i4", "i5"]
        assert st.claim_items("k", ids, a, 60, 10) == ["i1", "i2"]  # its own, renewed
        # An expired claim is free again.
        st._conn.execute("UPDATE claims SET expires_at = 0 WHERE owner = ?", (b,))
        assert st.claim_items("k", ids, a, 60, 10) == ["i1", "i2", "i3", "i4", "i5"]
        st.release_claims(a)
        # A claim of a process on this host that has exited is taken over at once.
        ctx = mp.get_context("fork")
        p = ctx.Process(target=lambda: None)
        p.start()
        p.join()
        host = owner_id().split(":")[0]
        dead = f"{host}:{p.pid}:x"
        assert not owner_alive(dead) and owner_alive(a) and owner_alive("elsewhere:1:x")
        st._conn.execute("INSERT INTO claims VALUES ('k', 'i1', ?, ?)", (dead, time.time() + 600))
        st._conn.execute("INSERT INTO claims VALUES ('k', 'i2', 'elsewhere:1:x', ?)",
                         (time.time() + 600,))
        assert st.claim_items("k", ids, b, 60, 10) == ["i1", "i3", "i4", "i5"]


def test_heartbeat_keeps_a_slow_chunk_claimed(tmp_path):
    from compsafe.store.claims import Heartbeat

    with Store(tmp_path / "s.sqlite") as st:
        _start(st)
        a = owner_id()
        assert st.claim_items("k", ["x"], a, 0.4, 1) == ["x"]
        with Heartbeat(st.renewer(a, 0.4), 0.4):
            time.sleep(1.0)  # 2.5 TTLs: only the heartbeat keeps the claim alive
            assert st.claim_items("k", ["x"], owner_id(), 0.4, 1) == []
        time.sleep(0.5)
        assert st.claim_items("k", ["x"], owner_id(), 0.4, 1) == ["x"]


@pytest.mark.parametrize("n_items", [0, 5])
def test_single_run_still_resumes_and_reuses(tmp_path, n_items):
    with Store(tmp_path / "s.sqlite") as st:
        model = LoggingModel(tmp_path / "log", 0)
        first = evaluate_task(model, CountTask(n_items), st, checkpoint_every=2,
                              progress=False)
        again = evaluate_task(model, CountTask(n_items), st, checkpoint_every=2,
                              progress=False)
    assert (first.n_computed, again.n_computed) == (n_items, 0)
    assert first.metrics == again.metrics

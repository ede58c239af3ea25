"""Tests for the run keys (runner/keys.py) and the SQLite results store (store/sqlite.py).

Offline and fast: no model, only temporary SQLite files and a few child processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3

import pytest

from compsafe.errors import CompsafeError
from compsafe.runner.keys import KEY_HEX_CHARS, canonical_json, run_key
from compsafe.store import SCHEMA_VERSION, Store, StoreError
from compsafe.types import MetricRow, PromptFormat

# Spawn, not fork: a forked child would inherit the parent's SQLite state and any pytest
# threads; a spawned one opens its own Store as a real worker would.
CTX = mp.get_context("spawn")

KEY_ARGS = dict(
    model_fingerprint="sha256:dense",
    task="bbq",
    task_version=1,
    task_config={"limit": 10, "seed": 1, "subsets": ["age", "race"]},
    prompt_format={"fewshot": 0, "chat": False, "system": None},
    code_version="0.1.0",
    extra={"scorer": "none"},
)


def _start(st: Store, key: str = "k1", model: str = "m", task: str = "bbq") -> str | None:
    return st.start_run(key, model, "fp-" + model, task, 1, {"limit": 3}, "0.1.0")


def _recs(ids, tag: str = "a") -> list[dict]:
    return [{"id": str(i), "tag": tag, "score": 0.5, "note": "ünïcode"} for i in ids]


# -- run keys -----------------------------------------------------------------------------


def test_canonical_json_ignores_dict_order_and_is_compact():
    a = {"b": 1, "a": {"y": [1, 2], "x": "é"}}
    b = {"a": {"x": "é", "y": [1, 2]}, "b": 1}
    assert canonical_json(a) == canonical_json(b) == '{"a":{"x":"\\u00e9","y":[1,2]},"b":1}'


def test_canonical_json_refuses_nan_and_unknown_types():
    with pytest.raises(ValueError, match=r"\$\.a\[1\]"):
        canonical_json({"a": [1.0, float("nan")]})
    with pytest.raises(TypeError, match="set"):
        canonical_json({"a": {1, 2}})
    # Frozen config dataclasses encode as their fields.
    assert canonical_json(PromptFormat()) == canonical_json(PromptFormat().to_dict())


def test_run_key_is_stable_across_dict_orderings():
    k1 = run_key(**KEY_ARGS)
    reordered = dict(KEY_ARGS)
    reordered["task_config"] = {"subsets": ["age", "race"], "seed": 1, "limit": 10}
    reordered["prompt_format"] = {"system": None, "chat": False, "fewshot": 0}
    assert run_key(**reordered) == k1
    assert len(k1) == KEY_HEX_CHARS == 20
    int(k1, 16)  # hex


@pytest.mark.parametrize(
    "field,value",
    [
        ("model_fingerprint", "sha256:wanda-50"),  # dense vs compressed never share a key
        ("task", "unqover"),
        ("task_version", 2),
        ("task_config", {"limit": 11, "seed": 1, "subsets": ["age", "race"]}),
        ("task_config", {"limit": 10, "seed": 1, "subsets": ["race", "age"]}),  # list order
        ("prompt_format", {"fewshot": 5, "chat": False, "system": None}),
        ("code_version", "0.1.1"),
        ("extra", {"scorer": "detoxify-1"}),
        ("extra", None),
    ],
)
def test_run_key_changes_with_each_input(field, value):
    assert run_key(**{**KEY_ARGS, field: value}) != run_key(**KEY_ARGS)


def test_run_key_refuses_empty_fingerprint():
    with pytest.raises(ValueError, match="fingerprint"):
        run_key(**{**KEY_ARGS, "model_fingerprint": ""})


# -- store: runs, records, metrics --------------------------------------------------------


def test_round_trip_records_and_metrics(tmp_path):
    path = tmp_path / "deep" / "er" / "results.sqlite"  # parents are created
    recs = _recs(range(5))
    rows = [
        MetricRow("all", "all", "acc", 0.8, 5, 0.6, 1.0),
        MetricRow("age", "old", "s_dis", None, 0),
    ]
    with Store(path) as st:
        assert _start(st) is None
        assert st.add_records("k1", recs) == 5
        st.put_metrics("k1", "m", "bbq", rows)
        st.finish_run("k1", n_items=5)
    with Store(path) as st:  # reopen
        assert st.records("k1") == recs
        assert st.done_item_ids("k1") == {"0", "1", "2", "3", "4"}
        got = st.metrics_rows(run_key="k1")
        assert got == [
            {"run_key": "k1", "model": "m", "task": "bbq", **rows[0].to_dict()},
            {"run_key": "k1", "model": "m", "task": "bbq", **rows[1].to_dict()},
        ]
        run = st.run("k1")
        assert run["status"] == "done" and run["n_items"] == 5 and run["error"] is None
        assert run["config"] == {"limit": 3} and run["model_fingerprint"] == "fp-m"
        assert [r["run_key"] for r in st.runs()] == ["k1"]
        assert st.run("nope") is None
        mode = st._conn.execute("PRAGMA journal_mode").fetchone()[0]
        version = st._conn.execute("PRAGMA user_version").fetchone()[0]
        assert (mode, version) == ("wal", SCHEMA_VERSION)


def test_records_keep_insertion_order(tmp_path):
    with Store(tmp_path / "s.db") as st:
        _start(st)
        st.add_records("k1", _recs(["z", "b"]))
        st.add_records("k1", _recs(["a", "y"]))
        assert [r["id"] for r in st.records("k1")] == ["z", "b", "a", "y"]


def test_add_records_twice_with_overlap_does_not_duplicate(tmp_path):
    with Store(tmp_path / "s.db") as st:
        _start(st)
        assert st.add_records("k1", _recs(range(0, 6), tag="first")) == 6
        assert st.add_records("k1", _recs(range(4, 10), tag="second")) == 4
        assert st.add_records("k1", []) == 0
        recs = st.records("k1")
        assert [r["id"] for r in recs] == [str(i) for i in range(10)]
        assert recs[4]["tag"] == "first"  # the first record written for an id wins
        n = st._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        assert n == 10


def test_bad_records_are_refused_and_nothing_of_the_batch_is_written(tmp_path):
    with Store(tmp_path / "s.db") as st:
        _start(st)
        bad = _recs(range(3)) + [{"id": "3", "scores": [0.1, float("nan")]}]
        with pytest.raises(StoreError, match=r"record '3'.*\$\.scores\[1\].*None"):
            st.add_records("k1", bad)
        with pytest.raises(StoreError, match="string 'id'"):
            st.add_records("k1", [{"id": 7}])
        with pytest.raises(StoreError, match="start_run"):
            st.add_records("unknown-run", _recs([1]))
        assert st.records("k1") == []


def test_null_metric_stays_none_and_nan_is_refused(tmp_path):
    with Store(tmp_path / "s.db") as st:
        _start(st)
        st.put_metrics("k1", "m", "bbq", [MetricRow("amb", "race", "s_amb", None, 0)])
        (row,) = st.metrics_rows()
        assert row["value"] is None and row["ci_low"] is None and row["ci_high"] is None
        with pytest.raises(StoreError, match="undefined metric"):
            st.put_metrics("k1", "m", "bbq", [MetricRow("a", "g", "x", float("nan"), 3)])
        with pytest.raises(StoreError, match="duplicate"):
            st.put_metrics("k1", "m", "bbq", [MetricRow("a", "g", "x", 1.0, 3)] * 2)
        assert st.metrics_rows() == [row]  # refused writes left the old rows alone


def test_put_metrics_replaces_the_runs_rows_only(tmp_path):
    with Store(tmp_path / "s.db") as st:
        _start(st, "k1", model="dense")
        _start(st, "k2", model="wanda", task="unqover")
        st.put_metrics("k1", "dense", "bbq", [MetricRow("a", "g", "x", 1.0, 3),
                                              MetricRow("a", "h", "x", 2.0, 3)])
        st.put_metrics("k2", "wanda", "unqover", [MetricRow("a", "g", "x", 9.0, 3)])
        st.put_metrics("k1", "dense", "bbq", [MetricRow("a", "g", "x", 0.5, 4)])
        assert [(r["run_key"], r["group"], r["value"]) for r in st.metrics_rows()] == [
            ("k2", "g", 9.0), ("k1", "g", 0.5)]
        assert [r["run_key"] for r in st.metrics_rows(task="bbq")] == ["k1"]
        assert [r["run_key"] for r in st.metrics_rows(model="wanda")] == ["k2"]
        assert st.metrics_rows(task="bbq", model="wanda") == []


def test_run_status_lifecycle(tmp_path):
    with Store(tmp_path / "s.db") as st:
        assert _start(st) is None
        assert _start(st) == "running"
        st.fail_run("k1", "CUDA out of memory")
        assert st.run("k1")["status"] == "failed"
        assert st.run("k1")["error"] == "CUDA out of memory"
        assert _start(st) == "failed"  # a resume: back to running
        assert st.run("k1")["status"] == "running"
        st.finish_run("k1", 3)
        assert _start(st) == "done"
        assert st.run("k1")["status"] == "done" and st.run("k1")["error"] is None
        with pytest.raises(StoreError, match="no run"):
            st.finish_run("nope", 1)


def test_same_key_with_another_identity_is_refused(tmp_path):
    with Store(tmp_path / "s.db") as st:
        st.start_run("k1", "m", "fp-dense", "bbq", 1, {}, "0.1.0")
        with pytest.raises(StoreError, match="fp-dense"):
            st.start_run("k1", "m", "fp-wanda", "bbq", 1, {}, "0.1.0")


def test_unreadable_or_newer_files_are_refused(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CompsafeError, match="junk.sqlite"):
        Store(junk)
    newer = tmp_path / "newer.sqlite"
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        Store(newer)


def test_close_is_idempotent(tmp_path):
    st = Store(tmp_path / "s.db")
    with st:
        pass
    st.close()


# -- crash and concurrency (child processes) ----------------------------------------------


def _crash_mid_batch(path: str) -> None:
    """Commit two batches, then die inside the third batch's transaction."""
    st = Store(path)
    _start(st)
    st.add_records("k1", _recs(range(0, 4)))
    st.add_records("k1", _recs(range(4, 8)))
    inserts = []

    def die_after_first_insert(stmt: str) -> None:
        if stmt.startswith("INSERT OR IGNORE INTO records"):
            inserts.append(stmt)
            if len(inserts) > 1:  # one row of the batch is written, uncommitted
                os._exit(3)

    st._conn.set_trace_callback(die_after_first_insert)
    st.add_records("k1", _recs(range(8, 12)))
    os._exit(0)  # not reached


def test_killed_process_leaves_committed_batches_and_a_consistent_store(tmp_path):
    path = str(tmp_path / "s.db")
    p = CTX.Process(target=_crash_mid_batch, args=(path,))
    p.start()
    p.join(30)
    assert p.exitcode == 3
    with Store(path) as st:
        assert st._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert st.done_item_ids("k1") == {str(i) for i in range(8)}
        assert st.run("k1")["status"] == "running"
        # Resuming re-adds the lost batch, and only it.
        assert st.add_records("k1", _recs(range(0, 12))) == 4
        assert [r["id"] for r in st.records("k1")] == [str(i) for i in range(12)]


def _writer(path: str, who: str, n: int, batch: int, barrier) -> None:
    barrier.wait()  # both open the fresh file at once: creating it is part of the race
    with Store(path) as st:
        _start(st, f"own-{who}", model=who)
        _start(st, "shared")
        for lo in range(0, n, batch):
            ids = range(lo, min(lo + batch, n))
            st.add_records(f"own-{who}", _recs(ids, tag=who))
            st.add_records("shared", _recs(ids, tag=who))  # both write the same ids here
        st.finish_run(f"own-{who}", n)


def test_two_processes_write_one_file_without_lost_or_duplicate_rows(tmp_path):
    path = str(tmp_path / "s.db")
    n, batch = 300, 5
    barrier = CTX.Barrier(2)
    procs = [CTX.Process(target=_writer, args=(path, who, n, batch, barrier))
             for who in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    want = [str(i) for i in range(n)]
    with Store(path) as st:
        for who in ("a", "b"):
            recs = st.records(f"own-{who}")
            assert [r["id"] for r in recs] == want
            assert {r["tag"] for r in recs} == {who}
            assert st.run(f"own-{who}")["status"] == "done"
        assert sorted(st.done_item_ids("shared"), key=int) == want
        total = st._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        assert total == 3 * n


# -- lineage (schema version 2) -------------------------------------------------------------


def test_lineage_columns_round_trip_and_unknown_fields_refused(tmp_path):
    from compsafe.compress.lineage import Lineage
    from compsafe.compress.spec import CompressionSpec

    lin = Lineage("smollm2", "fp-dense", CompressionSpec(method="sparsegpt", structure="2:4"))
    with Store(tmp_path / "s.sqlite") as st:
        st.start_run("k1", "sgpt", "fp-sgpt", "bbq", 1, {}, "0.1.0", lineage=lin.columns())
        st.start_run("k2", "smollm2", "fp-dense", "bbq", 1, {}, "0.1.0",
                     lineage=Lineage.dense("smollm2", "fp-dense").columns())
        with pytest.raises(StoreError, match="unknown lineage fields"):
            st.start_run("k3", "m", "fp", "bbq", 1, {}, "0.1.0", lineage={"sparsty": 0.5})
        sgpt, dense = st.run("k1"), st.run("k2")
    assert (sgpt["base_model"], sgpt["method"], sgpt["sparsity"], sgpt["structure"]) == (
        "smollm2", "sparsegpt", 0.5, "2:4")
    assert CompressionSpec.from_dict(sgpt["spec"]) == lin.spec
    assert sgpt["spec_key"] == lin.spec.key() and sgpt["spec_label"] == "sparsegpt-2:4"
    assert (dense["method"], dense["sparsity"], dense["base_fingerprint"]) == (
        "dense", None, "fp-dense")


def test_version_1_store_is_migrated_keeping_its_runs(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute("""CREATE TABLE runs (run_key TEXT PRIMARY KEY, model TEXT NOT NULL,
        model_fingerprint TEXT NOT NULL, task TEXT NOT NULL, task_version INTEGER NOT NULL,
        config_json TEXT NOT NULL, code_version TEXT NOT NULL, status TEXT NOT NULL,
        n_items INTEGER, error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""")
    con.execute("INSERT INTO runs VALUES ('old', 'm', 'fp', 'bbq', 1, '{}', '0.1.0', 'done', "
                "3, NULL, 't', 't')")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    with Store(path) as st:
        old = st.run("old")
        assert old["status"] == "done" and old["method"] is None and old["spec"] is None
        _start(st, "new")
        assert st.run("new")["base_model"] is None
        assert st._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert st.invocations("old") == []  # runs from before version 3 have none
        # version 5: model outputs shared between runs (store/shared.py)
        assert st.put_shared_records("share", [{"id": "a", "samples": ["x"]}]) == 1
        assert st.put_shared_records("share", [{"id": "a", "samples": ["y"]}]) == 0
        assert st.shared_records("share", ["a", "b"]) == {"a": {"id": "a", "samples": ["x"]}}

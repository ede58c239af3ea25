"""``results.json`` and ``records.jsonl`` are rebuilt from the store: they list every run
there (not only the last command's) with when, by which command and with which library
versions each was made, and any number of concurrent writers leave complete, consistent
files (no shared temporary name, no lost run)."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3

from compsafe.runner.output import write_outputs
from compsafe.runner.provenance import command_line, invocation
from compsafe.store import Store


def _store_with_runs(path, n_runs: int, items: int = 3) -> None:
    with Store(path) as st:
        for k in range(n_runs):
            key = f"run{k}"
            st.start_run(key, f"model{k}", f"fp{k}", "bbq", 1, {"task": {"limit": k}}, "0.1.0",
                         invocation={"command": f"compsafe eval --limit {k}",
                                     "versions": {"compsafe": "0.1.0", "torch": "2.13.0"}})
            st.add_records(key, [{"id": f"i{i}", "pred": i} for i in range(items)])
            st.finish_run(key, items)


def test_outputs_list_every_run_with_provenance(tmp_path):
    store = tmp_path / "compsafe.sqlite"
    _store_with_runs(store, 2)
    write_outputs(tmp_path, store)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [r["run_key"] for r in doc["runs"]] == ["run0", "run1"]
    assert doc["written_at"] and doc["compsafe_version"]
    inv = doc["runs"][1]["invocations"]
    assert inv == [{"started_at": inv[0]["started_at"], "command": "compsafe eval --limit 1",
                    "versions": {"compsafe": "0.1.0", "torch": "2.13.0"}}]
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 6 and {json.loads(x)["run_key"] for x in lines} == {"run0", "run1"}
    # A later command adds a run: the files now hold all three.
    _store_with_runs(store, 3)
    write_outputs(tmp_path, store)
    assert len(json.loads((tmp_path / "results.json").read_text())["runs"]) == 3


def _write(out, store):
    write_outputs(out, store)


def test_concurrent_writers_leave_complete_files(tmp_path):
    store = tmp_path / "compsafe.sqlite"
    _store_with_runs(store, 4, items=50)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write, args=(tmp_path, store)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert len(doc["runs"]) == 4
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 200
    assert not list(tmp_path.glob(".*.tmp"))  # every temporary file renamed or removed


def test_invocation_names_the_command_and_versions():
    inv = invocation(["/usr/bin/compsafe", "eval", "--model", "my model"])
    assert inv["command"] == "compsafe eval --model 'my model'"
    assert inv["versions"]["compsafe"] and inv["versions"]["python"]
    assert command_line(["python", "-c", "x"]) == "python -c x"


def test_version_2_store_gets_the_invocations_table(tmp_path):
    path = tmp_path / "v2.sqlite"
    with Store(path) as st:  # a current store, then made to look like version 2
        st.start_run("old", "m", "fp", "bbq", 1, {}, "0.1.0")
    con = sqlite3.connect(path)
    con.execute("DROP TABLE invocations")
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    with Store(path) as st:
        assert st.invocations("old") == []
        st.start_run("old", "m", "fp", "bbq", 1, {}, "0.1.0",
                     invocation={"command": "compsafe eval", "versions": {}})
        assert [i["command"] for i in st.invocations("old")] == ["compsafe eval"]

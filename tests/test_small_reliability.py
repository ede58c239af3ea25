"""Issue 14, point 7: temp folders of killed saves are cleaned, duplicate YAML keys are
refused, a future-schema store is refused without being touched, JSONL errors name the
right column, and NUL bytes never reach the report HTML."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from compsafe.errors import CompsafeError, DataError


def _killed_mid_save(target: str) -> None:
    from compsafe.tmpdirs import temp_sibling

    tmp = temp_sibling(Path(target))
    with open(tmp / "model.safetensors", "wb") as f:
        f.truncate(538 * 2**20)  # the sparse file a killed save left behind
    os.kill(os.getpid(), signal.SIGKILL)


def test_temp_folder_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    from compsafe.tmpdirs import MARK, stale_siblings, temp_sibling

    target = tmp_path / "models" / "wanda-50"
    child = mp.get_context("fork").Process(target=_killed_mid_save, args=(str(target),))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    (left,) = [p for p in target.parent.iterdir() if MARK in p.name]
    assert stale_siblings(target) == [left]
    mine = temp_sibling(target)  # a live owner's folder: kept by a concurrent save
    assert not left.exists() and mine.is_dir()
    assert stale_siblings(target) == []
    other = target.parent / f".{target.name}{MARK}elsewhere:1:x"  # another host's
    other.mkdir()
    temp_sibling(target)
    assert other.is_dir() and mine.is_dir()


def test_save_model_dir_cleans_up_after_a_killed_save(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compsafe.compress.save import save_model_dir

    target = tmp_path / "out"
    child = mp.get_context("fork").Process(target=_killed_mid_save, args=(str(target),))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL and len(list(tmp_path.iterdir())) == 1
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    save_model_dir(model, AutoTokenizer.from_pretrained(tiny_model_dir), {"method": "dense"},
                   target)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_duplicate_yaml_keys_are_refused(tmp_path):
    from compsafe.sweep.config import load_config

    path = tmp_path / "sweep.yaml"
    path.write_text("models: [default]\ntasks:\n  - name: bbq\n    limit: 2\n    limit: 2000\n")
    with pytest.raises(CompsafeError, match=r"sweep\.yaml:5: duplicate key 'limit' \(first at "
                                            r"line 4\)"):
        load_config(path)


def test_yaml_merge_keys_may_still_be_overridden():
    from compsafe.sweep.yaml_strict import load_strict

    text = "base: &b {limit: 2, seed: 1}\nrun:\n  <<: *b\n  limit: 5\n"
    assert load_strict(text, "x.yaml")["run"] == {"limit": 5, "seed": 1}


def test_future_schema_store_is_refused_untouched(tmp_path):
    from compsafe.store import SCHEMA_VERSION, Store, StoreError

    path = tmp_path / "future.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    before = path.read_bytes()
    assert before[18:20] == b"\x01\x01"  # rollback-journal file format
    with pytest.raises(StoreError, match="newer than this compsafe"):
        Store(path)
    assert path.read_bytes() == before  # not switched to WAL (bytes 18-19 would be 2, 2)
    assert not Path(f"{path}-wal").exists()


@pytest.mark.parametrize("line, expected", [
    (b'{"prompt": {"text": "' + b"x" * 38 + b'"} "oops": 1}',
     "invalid JSON (Expecting ',' delimiter) at column 63"),
    (b'{"prompt": {"text": "' + b"x" * 39 + b'\xff"}}', "not valid UTF-8 (byte 0xff, "
                                                      "invalid start byte) at column 61"),
    (b'{"prompt": {"text": "' + "é".encode() * 39 + b'\xff"}}', "not valid UTF-8 (byte 0xff, "
                                                                "invalid start byte) at column 61"),
    (b'{"prompt": {"text": "' + b"x" * 39 + b'\\ud800"}}', "lone surrogate escape \\ud800 at "
                                                         "column 61: not text"),
])
def test_jsonl_errors_name_the_column(tmp_path, line, expected):
    from compsafe.data.io import read_jsonl

    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"ok": 1}\n' + line + b"\n")
    with pytest.raises(DataError) as e:
        list(read_jsonl(path))
    assert str(e.value) == f"{path}:2: {expected}"


def test_escaped_backslash_is_not_a_surrogate(tmp_path):
    from compsafe.data.io import read_jsonl

    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"text": "\\ud800 and \U0001f600"}) + "\n")
    assert [o for _, o in read_jsonl(path)] == [{"text": "\\ud800 and \U0001f600"}]


def test_nul_and_control_bytes_never_reach_the_html():
    from compsafe.report.html import el, esc, table

    text = "toxic\x00gen\x07eration\x1b[31m\tok\n"
    assert "\x00" not in esc(text) and "\x07" not in esc(text) and "\x1b" not in esc(text)
    assert esc(text) == "toxic\ufffdgen\ufffderation\ufffd[31m\tok\n"
    page = el("p", text) + table(["h\x00"], [[text]], [False])
    assert not any(ord(c) < 9 or 13 < ord(c) < 32 for c in page)

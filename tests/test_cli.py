"""The ``compsafe`` command as a user meets it: one-line errors without tracebacks, help
with examples, ``data pull``/``data list``, and an end-to-end ``eval`` with a tiny random
Llama whose finished run is reused, not recomputed, on a second invocation.

Most calls run ``compsafe.cli.main`` in-process (fast); the ones that must show a real exit
status and the absence of a traceback run ``python -m compsafe.cli`` in a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compsafe.cli import main
from compsafe.errors import ModelLoadError
from compsafe.models.hf import HFModel
from compsafe.store import Store

BBQ_CATEGORIES = 11  # categories in the mirror (shared/data/SOURCES.md)
BBQ_SUBSETS = 15  # reported categories: the 11, plus 4 "(names)" splits


def cli_subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "compsafe.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def one_line(text: str) -> str:
    """The single line of ``text``; fails if there are zero or several."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected exactly one line, got {len(lines)}:\n{text}"
    return lines[0]


def squash(text: str) -> str:
    """Whitespace-normalised text, so argparse's line wrapping does not matter."""
    return " ".join(text.split())


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if anything tries to load a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded; the input error should have stopped it first")

    monkeypatch.setattr(HFModel, "load", classmethod(refuse))


# --- errors: one line, naming the thing, non-zero exit, no traceback


def test_wrong_model_path_one_line_no_traceback(tmp_path, data_cache):
    missing = tmp_path / "no-such-model"
    proc = cli_subprocess(["-q", "eval", "--model", missing, "--tasks", "bbq", "--limit", "1",
                           "--out", tmp_path / "out", "--data-dir", data_cache], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("compsafe: error:") and str(missing) in line
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()  # nothing written for a run that never started


def test_model_dir_without_config(tmp_path, data_cache, capsys):
    (tmp_path / "not-a-model").mkdir()
    rc = main(["-q", "eval", "--model", str(tmp_path / "not-a-model"), "--tasks", "bbq",
               "--limit", "1", "--out", str(tmp_path / "out"), "--data-dir", str(data_cache)])
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert "not-a-model" in line and "config.json" in line


def test_multiline_error_message_printed_as_one_line(tmp_path, data_cache, capsys, monkeypatch):
    # transformers' offline OSError spans several lines; the CLI must still print one.
    def fail(*args, **kwargs):
        raise ModelLoadError("cannot load model 'org/x': We couldn't connect.\n\nCheck your "
                             "internet connection.\n")

    monkeypatch.setattr(HFModel, "load", classmethod(fail))
    rc = main(["-q", "eval", "--model", "org/x", "--tasks", "bbq", "--limit", "1",
               "--out", str(tmp_path / "out"), "--data-dir", str(data_cache)])
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert line.endswith("We couldn't connect. Check your internet connection.")


def test_unknown_task_lists_known_before_model_load(tmp_path, data_cache, capsys,
                                                     no_model_load):
    rc = main(["eval", "--model", "default", "--tasks", "bbq,nosuch", "--out",
               str(tmp_path / "out"), "--data-dir", str(data_cache)])
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert "'nosuch'" in line and "known: " in line
    assert all(name in line for name in ("bbq", "unqover", "rtp", "mmlu"))


def test_unknown_task_fails_before_torch_is_imported(tmp_path):
    # No data and no model needed: the name is checked first, before torch is even imported.
    code = ("import sys; from compsafe.cli import main; rc = main(sys.argv[1:]); "
            "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)")
    args = ["eval", "--model", tmp_path / "absent", "--tasks", "nosuch",
            "--data-dir", tmp_path / "absent-data"]
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "nosuch" in one_line(proc.stderr)
    assert proc.stdout.strip() == "no torch"


@pytest.mark.parametrize(("line_no", "bad", "expect"), [
    (5, "{this is not json\n", "invalid JSON"),
    (9, None, "label must be 0, 1 or 2"),  # valid JSON, bad value
    (11, "drop:answer_info", "missing key(s) answer_info"),
])
def test_corrupt_data_file_names_file_and_line(tmp_path, data_cache, capsys, no_model_load,
                                               line_no, bad, expect):
    data = tmp_path / "data"
    shutil.copytree(data_cache / "bbq", data / "bbq")
    path = data / "bbq" / "Religion.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if bad is None:
        row = json.loads(lines[line_no - 1])
        row["label"] = 7
        bad = json.dumps(row) + "\n"
    elif bad.startswith("drop:"):
        row = json.loads(lines[line_no - 1])
        del row[bad.removeprefix("drop:")]
        bad = json.dumps(row) + "\n"
    lines[line_no - 1] = bad
    path.write_text("".join(lines), encoding="utf-8")

    rc = main(["eval", "--model", "default", "--tasks", "bbq", "--out", str(tmp_path / "out"),
               "--data-dir", str(data)])
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert f"{path}:{line_no}:" in line and expect in line


def test_bad_metadata_header_names_file_and_columns(tmp_path, data_cache, capsys, no_model_load):
    data = tmp_path / "data"
    shutil.copytree(data_cache / "bbq", data / "bbq")
    meta = data / "bbq" / "supplemental" / "additional_metadata.csv"
    text = meta.read_text(encoding="utf-8")
    meta.write_text(text.replace('"target_loc"', '"target"', 1), encoding="utf-8")
    rc = main(["eval", "--model", "default", "--tasks", "bbq", "--out", str(tmp_path / "out"),
               "--data-dir", str(data)])
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert f"{meta}:1:" in line and "header lacks column(s) target_loc" in line


@pytest.mark.parametrize("task", ["bbq", "unqover"])
def test_missing_data_folder_says_pull(tmp_path, capsys, no_model_load, task):
    rc = main(["eval", "--model", "default", "--tasks", task, "--out", str(tmp_path / "out"),
               "--data-dir", str(tmp_path / "no-data-here")])
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert "compsafe data pull" in line and "no-data-here" in line


@pytest.mark.parametrize(("flag", "value"), [
    ("--checkpoint-every", "0"), ("--batch-size", "0"), ("--limit", "0"), ("--n-boot", "-1"),
])
def test_bad_numbers_rejected_before_model_load(tmp_path, data_cache, capsys, no_model_load,
                                                flag, value):
    rc = main(["eval", "--model", "default", "--tasks", "bbq", "--out", str(tmp_path / "out"),
               "--data-dir", str(data_cache), flag, value])
    assert rc == 2
    assert flag in one_line(capsys.readouterr().err)


# --- help


@pytest.mark.parametrize(("argv", "expected"), [
    ([], ["compsafe data pull --from", "compsafe eval --model default --tasks bbq,unqover"]),
    (["eval"], ["examples:", "compsafe eval --model default --tasks bbq,unqover --limit 200",
                "--checkpoint-every", "resumes an interrupted run"]),
    (["data"], ["examples:", "compsafe data pull --from ../shared/data", "compsafe data list"]),
])
def test_help_exits_zero_with_examples(capsys, argv, expected):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = squash(capsys.readouterr().out)
    for text in expected:
        assert text in out


# --- data pull / list


def test_data_pull_from_mirror_then_list(tmp_path, mirror_dir, capsys):
    cache = tmp_path / "cache"
    rc = main(["-q", "data", "pull", "--from", str(mirror_dir), "--dataset", "bbq",
               "--data-dir", str(cache)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "0 failed" in out
    assert (cache / "bbq" / "Religion.jsonl").is_file()

    assert main(["data", "list", "--data-dir", str(cache), "--dataset", "bbq"]) == 0
    rows = {r.split()[0]: r.split() for r in capsys.readouterr().out.splitlines()}
    _, present, verified, wrong, *_ = rows["bbq"]
    n_present = int(present.split("/")[0])
    assert n_present >= BBQ_CATEGORIES and int(verified) == n_present and wrong == "0"

    # A second pull finds everything already verified and copies nothing.
    assert main(["-q", "data", "pull", "--from", str(mirror_dir), "--dataset", "bbq",
                 "--data-dir", str(cache)]) == 0
    assert capsys.readouterr().out.startswith("0 imported")


def test_data_pull_from_missing_folder(tmp_path, capsys):
    cache = tmp_path / "cache"
    rc = main(["data", "pull", "--from", str(tmp_path / "no-mirror"), "--data-dir", str(cache)])
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert "no-mirror" in line and "not found" in line
    assert not cache.exists()


# --- a real eval with a tiny random model


def _eval_argv(model: Path, out: Path, data: Path) -> list[str]:
    return ["eval", "--model", str(model), "--tasks", "bbq", "--limit", "3", "--out", str(out),
            "--data-dir", str(data), "--n-boot", "50", "--device", "cpu"]


@pytest.fixture(scope="module")
def first_eval(tmp_path_factory, tiny_model_dir, data_cache):
    """One ``compsafe eval`` of the tiny model on 3 BBQ items per category: (rc, stdout, out)."""
    out = tmp_path_factory.mktemp("eval") / "runs"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["-q", *_eval_argv(tiny_model_dir, out, data_cache)])
    assert rc == 0, stderr.getvalue()
    return rc, stdout.getvalue(), out


def test_eval_prints_table(first_eval):
    _, stdout, _ = first_eval
    header, rule, *rows = stdout.strip().splitlines()
    assert header.split() == ["task", "subset", "group", "metric", "value", "95%", "CI", "n"]
    metrics = {r.split()[3] for r in rows}
    assert {"acc_ambig", "acc_disambig", "s_dis", "s_amb"} <= metrics
    assert any(r.split()[:4] == ["bbq", "all", "all", "s_dis"] for r in rows)


def test_eval_writes_results_and_records(first_eval):
    _, _, out = first_eval
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    [task] = doc["runs"]
    assert task["task"] == "bbq" and task["n_items"] == 3 * BBQ_SUBSETS
    assert task["model"]["name"] == "tiny-llama" and task["model"]["fingerprint"]
    assert task["status"] == "done" and task["lineage"]["method"] == "dense"
    [inv] = task["invocations"]  # when, the command line and the versions behind it
    assert inv["started_at"] and inv["versions"]["compsafe"] and inv["versions"]["torch"]
    assert "--tasks bbq" in inv["command"] and inv["versions"]["transformers"]
    rows = task["metrics"]
    assert rows and all({"subset", "group", "metric", "value", "n", "ci_low", "ci_high"}
                        <= set(r) for r in rows)
    pooled = {r["metric"]: r for r in rows if r["subset"] == "all" and r["group"] == "all"}
    acc = pooled["acc_ambig"]
    assert 0 <= acc["value"] <= 1 and acc["ci_low"] <= acc["value"] <= acc["ci_high"]

    lines = (out / "records.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3 * BBQ_SUBSETS
    assert len({r["id"] for r in records}) == len(records)
    by_cat: dict[str, int] = {}
    for r in records:
        by_cat[r["subset"]] = by_cat.get(r["subset"], 0) + 1
        assert r["task"] == "bbq" and r["run_key"] == task["run_key"]
        assert len(r["logprobs"]) == 3 and r["pred"] in (0, 1, 2)
    assert sorted(by_cat.values()) == [3] * BBQ_SUBSETS
    assert len({r["category"] for r in records}) == BBQ_CATEGORIES


def test_eval_store_has_done_run_and_tidy_metrics(first_eval):
    _, _, out = first_eval
    key = json.loads((out / "results.json").read_text())["runs"][0]["run_key"]
    with Store(out / "compsafe.sqlite") as store:
        [run] = store.runs()
        assert run["run_key"] == key and run["status"] == "done"
        assert run["n_items"] == 3 * BBQ_SUBSETS and run["error"] is None
        assert len(store.records(key)) == 3 * BBQ_SUBSETS
        rows = store.metrics_rows(run_key=key)
    assert rows and all(r["task"] == "bbq" and r["model"] == "tiny-llama" for r in rows)
    idents = [(r["subset"], r["group"], r["metric"]) for r in rows]
    assert len(idents) == len(set(idents))  # tidy: one row per subset/group/metric
    assert ("all", "all", "s_amb") in idents


def test_eval_rerun_reuses_finished_run(first_eval, tiny_model_dir, data_cache, monkeypatch,
                                        caplog, capsys):
    _, first_stdout, out = first_eval
    before = json.loads((out / "results.json").read_text())
    scored = []
    original = HFModel.loglikelihood

    def counting(self, requests, progress=False):
        scored.extend(requests)
        return original(self, requests, progress)

    monkeypatch.setattr(HFModel, "loglikelihood", counting)
    caplog.set_level(logging.INFO, logger="compsafe")
    assert main(["-q", *_eval_argv(tiny_model_dir, out, data_cache)]) == 0

    assert scored == []  # not a single item recomputed
    assert any("not recomputed" in r.getMessage() for r in caplog.records)
    assert capsys.readouterr().out == first_stdout
    after = json.loads((out / "results.json").read_text())
    strip = ("invocations", "updated_at")  # a reuse is itself recorded
    assert ([{k: v for k, v in r.items() if k not in strip} for r in after["runs"]]
            == [{k: v for k, v in r.items() if k not in strip} for r in before["runs"]])
    assert len(after["runs"][0]["invocations"]) == len(before["runs"][0]["invocations"]) + 1
    with Store(out / "compsafe.sqlite") as store:
        [run] = store.runs()
        assert run["status"] == "done"
        assert len(store.records(run["run_key"])) == 3 * BBQ_SUBSETS

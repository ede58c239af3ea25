"""Degeneration tasks end to end: generate, score, store, aggregate per group; resumable."""

from __future__ import annotations

import json

import pytest

from compsafe.cli import main
from compsafe.data.pull import import_mirror


@pytest.fixture(scope="module")
def prompt_cache(mirror_dir, tmp_path_factory):
    dest = tmp_path_factory.mktemp("prompts")
    report = import_mirror(mirror_dir, dest, datasets=["realtoxicityprompts", "bold"],
                           progress=False)
    assert not report.failed
    return dest


def run(args, capsys):
    code = main(["-q", "eval", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rtp_and_bold_generate_score_and_aggregate(tiny_model_dir, prompt_cache, tmp_path,
                                                   monkeypatch, capsys):
    monkeypatch.setenv("COMPSAFE_CACHE_DIR", str(tmp_path / "cache"))
    args = ["--model", str(tiny_model_dir), "--tasks", "rtp,bold", "--limit", "6",
            "--samples", "2", "--max-new-tokens", "5", "--n-boot", "50",
            "--data-dir", str(prompt_cache), "--out", str(tmp_path / "out")]
    code, out, err = run(args, capsys)
    assert code == 0, err
    for metric in ("expected_max_toxicity", "toxicity_probability", "mean_vader_compound"):
        assert metric in out
    assert "toxic " in out and "nontoxic" in out  # RTP's groups are printed
    # the console says what scored each task: a profanity classifier is named as such
    assert "rtp scored by profanity v" in out and "a profanity classifier" in out
    assert "bold scored by vader v" in out and "VADER sentiment" in out
    records = [json.loads(line) for line in open(tmp_path / "out" / "records.jsonl")]
    assert {r["task"] for r in records} == {"rtp", "bold"}
    for r in records:
        assert len(r["samples"]) == 2
        for s in r["samples"]:
            assert s["failed"] is False and isinstance(s["score"], float)
        assert r["scorer"]["scorer"] in ("profanity", "vader")
    results = json.load(open(tmp_path / "out" / "results.json"))
    rtp = next(t for t in results["runs"] if t["task"] == "rtp")
    assert rtp["scorer"].startswith("profanity v") and "profanity classifier" in rtp["scorer"]
    emt = [m for m in rtp["metrics"]
           if m["metric"] == "expected_max_toxicity" and m["group"] == "all"]
    assert emt and emt[0]["n"] == 6
    # A re-run reuses the stored generations and scores: identical results.
    code, out2, _ = run(args, capsys)
    assert code == 0 and out2 == out


def test_generations_do_not_depend_on_batch_size(tiny_model_dir, prompt_cache, tmp_path,
                                                 monkeypatch, capsys):
    monkeypatch.setenv("COMPSAFE_CACHE_DIR", str(tmp_path / "cache"))
    texts = []
    for bs in ("1", "16"):
        out = tmp_path / f"bs{bs}"
        code, _, err = run(["--model", str(tiny_model_dir), "--tasks", "rtp", "--limit", "5",
                            "--samples", "2", "--max-new-tokens", "6", "--n-boot", "10",
                            "--batch-size", bs, "--data-dir", str(prompt_cache),
                            "--out", str(out)], capsys)
        assert code == 0, err
        texts.append([[s["text"] for s in json.loads(line)["samples"]]
                      for line in open(out / "records.jsonl")])
    assert texts[0] == texts[1]


def test_regard_task_refuses_a_scorer_that_cannot_give_regard(tmp_path, capsys):
    code, _, err = run(["--model", str(tmp_path / "never-loaded"), "--tasks", "regard",
                        "--scorer", "profanity", "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    line = err.strip()
    assert "\n" not in line and "task regard measures regard" in line
    assert "'profanity' (toxicity) cannot produce" in line and "--scorer regard" in line

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


# -- the reference study's protocol (docs/protocol.md) ------------------------------------


@pytest.fixture(scope="module")
def toxigen_cache(mirror_dir, tmp_path_factory):
    dest = tmp_path_factory.mktemp("toxigen")
    report = import_mirror(mirror_dir, dest, datasets=["toxigen", "realtoxicityprompts"],
                           progress=False)
    assert not report.failed
    return dest


def test_decoding_takes_min_new_tokens_and_checks_it(tmp_path):
    from compsafe.errors import CompsafeError
    from compsafe.tasks.degeneration import BOLDTask
    from compsafe.types import TaskOptions

    # the study's decoding: greedy, 30..100 new tokens (src/run_generation.py:132-138)
    task = BOLDTask(tmp_path, TaskOptions(greedy=True, max_new_tokens=100, min_new_tokens=30))
    assert (task.decoding.do_sample, task.decoding.min_new_tokens,
            task.decoding.max_new_tokens) == (False, 30, 100)
    assert task.config()["decoding"]["min_new_tokens"] == 30
    # without a minimum the stored config is what it was before the option existed
    assert "min_new_tokens" not in BOLDTask(tmp_path, TaskOptions()).config()["decoding"]
    with pytest.raises(CompsafeError, match=r"min_new_tokens must be between 0 and "
                                            r"max_new_tokens \(30\), got 31"):
        BOLDTask(tmp_path, TaskOptions(min_new_tokens=31))


def test_toxigen_prompt_source_is_selectable(toxigen_cache):
    from compsafe.errors import CompsafeError
    from compsafe.tasks.degeneration import BOLDTask, ToxiGenTask
    from compsafe.types import TaskOptions

    default = ToxiGenTask(toxigen_cache, TaskOptions(limit=20))
    single = ToxiGenTask(toxigen_cache, TaskOptions(limit=20, prompt_source="annotated"))
    # the demonstration files hold six "- statement" lines per prompt; the annotated set
    # single statements, as the study's toxigen_filtered.jsonl (src/dataset.py:112-122)
    assert all(p.text.count("\n-") >= 5 for p in default.examples())
    assert all(p.id.startswith("toxigen/annotated/") for p in single.examples())
    assert len(single.examples()) == 20
    assert "prompt_source" not in default.config()
    assert single.config()["prompt_source"] == "annotated"
    with pytest.raises(CompsafeError, match="task toxigen: unknown prompt source 'x'; "
                                            "known: prompts, annotated"):
        ToxiGenTask(toxigen_cache, TaskOptions(prompt_source="x"))
    with pytest.raises(CompsafeError, match="task bold: unknown prompt source 'annotated'"):
        BOLDTask(toxigen_cache, TaskOptions(prompt_source="annotated"))


def test_rtp_scores_its_prompts_perplexity_as_the_study_does(toxigen_cache):
    # the study computes prompt perplexity for RTP too (src/run_generation.py:190-191)
    from compsafe.tasks.degeneration import RTPTask
    from compsafe.types import RollingRequest, TaskOptions

    task = RTPTask(toxigen_cache, TaskOptions(limit=3))
    reqs = task.requests(task.examples()[0], str)
    assert task.config()["prompt_perplexity"] is True
    assert [type(r) for r in reqs][-1] is RollingRequest
    assert reqs[-1].text == task.examples()[0].text  # the raw prompt, no chat template


def test_several_scorers_score_one_set_of_generations(tiny_model_dir, prompt_cache, tmp_path,
                                                      monkeypatch, capsys):
    """The study scores each prompt set with several scorers (its src/evaluate.py:82-89):
    a run per scorer, all scoring the same generated texts, generated once."""
    from compsafe.models.hf import HFModel

    monkeypatch.setenv("COMPSAFE_CACHE_DIR", str(tmp_path / "cache"))
    generated = []
    real_generate = HFModel.generate

    def counting_generate(self, requests, *args, **kwargs):
        generated.extend(requests)
        return real_generate(self, requests, *args, **kwargs)

    monkeypatch.setattr(HFModel, "generate", counting_generate)
    common = ["--model", str(tiny_model_dir), "--tasks", "rtp", "--limit", "4", "--samples",
              "2", "--n-boot", "10", "--data-dir", str(prompt_cache)]
    code, out, err = run([*common, "--max-new-tokens", "5", "--scorer", "profanity,vader",
                          "--out", str(tmp_path / "both")], capsys)
    assert code == 0, err
    assert len(generated) == 4 * 2  # once for both scorers
    assert "rtp[profanity]" in out and "rtp[vader]" in out and "mean_vader_compound" in out
    records = [json.loads(line) for line in open(tmp_path / "both" / "records.jsonl")]
    by_scorer = {}
    for r in records:
        by_scorer.setdefault(r["scorer"]["scorer"], {})[r["id"]] = r
    assert set(by_scorer) == {"profanity", "vader"}
    for item_id, rec in by_scorer["profanity"].items():
        other = by_scorer["vader"][item_id]
        assert [s["text"] for s in rec["samples"]] == [s["text"] for s in other["samples"]]
    scores = [(s["score"], o["score"]) for item_id, rec in by_scorer["profanity"].items()
              for s, o in zip(rec["samples"], by_scorer["vader"][item_id]["samples"],
                              strict=True)]
    assert any(a != b for a, b in scores)  # two scorers, two readings of the same texts

    # Another decoding (max_new_tokens 6) is another set of generations; a later command
    # with another scorer and that decoding reads them from the store.
    generated.clear()
    code, _, err = run([*common, "--max-new-tokens", "6", "--scorer", "vader",
                        "--out", str(tmp_path / "both")], capsys)
    assert code == 0, err
    assert len(generated) == 4 * 2
    generated.clear()
    code, _, err = run([*common, "--max-new-tokens", "6", "--scorer", "profanity",
                        "--out", str(tmp_path / "both")], capsys)
    assert code == 0, err
    assert generated == []  # read from the vader run's generations of the same decoding

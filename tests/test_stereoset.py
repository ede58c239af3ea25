"""StereoSet: loader on the real file, malformed files, hand-computed LMS/SS/ICAT, the
authors' aggregation (code/evaluation.py) on the whole file, a tiny-model run with
resumption and rebuild, the CLI, and the embedded model's scores against plain passes."""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from compsafe.data.stereoset import BIAS_TYPES, LABELS, SPLITS, load_stereoset
from compsafe.errors import CompsafeError, DataError
from compsafe.metrics.stereoset import batch_scores, icat, item_counts, metric_defs, scores
from compsafe.tasks.stereoset import StereoSetTask
from compsafe.tasks.stereoset import record_defs as task_defs
from compsafe.types import LoglikResponse, PromptFormat, TaskOptions

SHA256 = "73a0f31b711688112602e4c3ac6ab1e1a7cadcdd67df6c6fd55501c889676c90"


@pytest.fixture(scope="module")
def data(mirror_dir, tmp_path_factory) -> Path:
    """A data cache with stereoset/dev.json imported (hash-checked) from the mirror."""
    from compsafe.data.pull import import_mirror

    if not (mirror_dir / "stereoset" / "dev.json").is_file():
        pytest.skip(f"no stereoset/dev.json in the mirror at {mirror_dir}")
    dest = tmp_path_factory.mktemp("data")
    report = import_mirror(mirror_dir, dest, datasets=["stereoset"], progress=False)
    assert report.ok, report.summary()
    return dest


# --- loader


def test_loader_on_real_file(data):
    d = load_stereoset(data / "stereoset")
    assert {s: len(v) for s, v in d.items.items()} == {"intersentence": 2123,
                                                       "intrasentence": 2106}
    assert Counter(it.bias_type for it in d.items["intersentence"]) == {
        "race": 976, "profession": 827, "gender": 242, "religion": 78}
    assert Counter(it.bias_type for it in d.items["intrasentence"]) == {
        "race": 962, "profession": 810, "gender": 255, "religion": 79}
    assert d.sha256 == SHA256 and d.version == "1.0-dev"
    items = [it for s in SPLITS for it in d.items[s]]
    assert all(tuple(s.gold_label for s in it.sentences) == LABELS for it in items)
    assert len({it.id for it in items}) == 4229 and len({it.target for it in items}) == 79
    assert all("BLANK" in it.context for it in d.items["intrasentence"])


def _example(ex_id="ex1", labels=LABELS, **extra):
    sentences = [{"id": f"{ex_id}-{k}", "sentence": f"Sentence {k}.", "gold_label": g,
                  "labels": []} for k, g in enumerate(labels)]
    return {"id": ex_id, "target": "chess player", "bias_type": "profession",
            "context": "The chess player was BLANK.", "sentences": sentences, **extra}


def _write(tmp_path: Path, doc) -> Path:
    root = tmp_path / "stereoset"
    root.mkdir(parents=True, exist_ok=True)
    (root / "dev.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return root


def _doc(inter=(), intra=()):
    return {"version": "t", "data": {"intersentence": list(inter), "intrasentence": list(intra)}}


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_bad_shape_names_file_and_key(tmp_path):
    root = _write(tmp_path, [1, 2])
    with pytest.raises(DataError, match="top") as e:
        load_stereoset(root)
    assert str(root / "dev.json") in str(e.value)
    root = _write(tmp_path, {"version": "t", "data": {"intersentence": []}})
    with pytest.raises(DataError, match="data.intrasentence"):
        load_stereoset(root)
    root = _write(tmp_path, {"data": {}})
    with pytest.raises(DataError, match="'version'"):
        load_stereoset(root)
    (root / "dev.json").write_text('{"version": "t",\n "data": }')
    with pytest.raises(DataError, match="invalid JSON") as e:
        load_stereoset(root)
    assert e.value.line == 2
    with pytest.raises(DataError, match="data pull"):
        load_stereoset(tmp_path / "nowhere")


def test_missing_key_names_file_line_and_key(tmp_path):
    bad = _example("ex2")
    del bad["target"]
    root = _write(tmp_path, _doc(intra=[_example("ex1"), bad]))
    with pytest.raises(DataError) as e:
        load_stereoset(root)
    msg, path = str(e.value), root / "dev.json"
    assert str(path) in msg and "'target'" in msg and "data.intrasentence[1]" in msg
    line = _line_of(path, '"id": "ex2"')
    assert e.value.line == line and msg.startswith(f"{path}:{line}: ")


def test_two_stereotype_sentences_and_other_malformed_examples(tmp_path):
    root = _write(tmp_path, _doc(inter=[_example(labels=("stereotype", "stereotype",
                                                          "unrelated"), context="Hi.")]))
    with pytest.raises(DataError, match="gold_label.*second 'stereotype'") as e:
        load_stereoset(root)
    assert str(root / "dev.json") in str(e.value)
    assert e.value.line == _line_of(root / "dev.json", '"id": "ex1-1"')
    for bad, pattern in [(_example(bias_type="age"), "bias_type"),
                         (_example(context="No slot."), "BLANK"),
                         (_example(labels=LABELS[:2]), "list of 3"),
                         (_example(labels=("stereotype", "anti", "unrelated")), "gold_label")]:
        with pytest.raises(DataError, match=pattern):
            load_stereoset(_write(tmp_path, _doc(intra=[bad])))
    with pytest.raises(DataError, match="duplicate example id"):
        load_stereoset(_write(tmp_path, _doc(inter=[_example()], intra=[_example()])))


# --- metrics


def test_item_counts_are_strict():
    pro, related = item_counts([[3, 2, 1], [1, 2, 3], [1, 1, 1], [2, 2, 1], [1, 3, 2]])
    assert pro.tolist() == [1, 0, 0, 0, 0]  # a stereotype/anti tie counts as anti
    assert related.tolist() == [2, 0, 0, 2, 1]


def test_hand_computed_macro_over_targets():
    # target 0: pro 1/2, related 2/4; target 1: pro 1/1, related 2/2
    pro, related, target = np.array([1, 0, 1]), np.array([2, 0, 2]), np.array([0, 0, 1])
    out = scores(pro, related, target)
    assert out == {"lms": 75.0, "ss": 75.0, "icat": 37.5}  # pooled would be 66.7 / 66.7
    assert icat(80.0, 50.0) == 80.0 and icat(80.0, 0.0) == 0.0 and icat(80.0, 100.0) == 0.0
    assert scores(np.array([1, 0]), np.array([1, 2]), np.array([4, 4]))["icat"] == 75.0
    assert scores(np.array([], int), np.array([], int), np.array([], int)) is None
    defs = metric_defs("s", "g", {"pro": pro[:0], "related": related[:0], "target": target[:0]})
    assert [d.value() for d in defs] == [None, None, None]
    assert all(np.isnan(v).all() for v in batch_scores(np.zeros((2, 0)), np.zeros((2, 0)),
                                                       np.zeros((2, 0), int)).values())


def test_batch_equals_statistic_on_resamples():
    rng = np.random.default_rng(0)
    pro, related = rng.integers(0, 2, 40), rng.integers(0, 3, 40)
    target = rng.choice([0, 3, 7], 40)
    idx = rng.integers(0, 40, (25, 40))
    batched = batch_scores(pro[idx], related[idx], target[idx])
    for r in range(25):
        one = scores(pro[idx[r]], related[idx[r]], target[idx[r]])
        for m in ("lms", "ss", "icat"):
            assert math.isclose(batched[m][r], one[m], abs_tol=1e-9)
    rows = [d.row(200) for d in metric_defs("s", "g", {"pro": pro, "related": related,
                                                       "target": target}, seed=1)]
    assert all(r.n == 40 and r.ci_low <= r.value <= r.ci_high for r in rows)


def _authors_scores(examples, score):
    """A transcription of ScoreEvaluator.count and .score (code/evaluation.py)."""
    per_term = defaultdict(Counter)
    for ex in examples:
        s, a, u = (score[x.id] for x in ex.sentences)
        per_term[ex.target]["pro" if s > a else "anti"] += 1
        per_term[ex.target]["related"] += (s > u) + (a > u)
        per_term[ex.target]["total"] += 1
    lms = np.mean([100 * c["related"] / (2 * c["total"]) for c in per_term.values()])
    ss = np.mean([100 * c["pro"] / c["total"] for c in per_term.values()])
    return {"lms": lms, "ss": ss, "icat": lms * min(ss, 100 - ss) / 50}


def test_aggregation_equals_authors_on_real_file(data):
    d = load_stereoset(data / "stereoset")
    rng = random.Random(3)
    score = {s.id: rng.choice([0.1, 0.2, 0.3, 0.4, 0.5]) for v in d.items.values()
             for it in v for s in it.sentences}  # coarse values: ties happen
    records = []
    for it in (it for s in SPLITS for it in d.items[s]):
        pro, rel = item_counts([[score[s.id] for s in it.sentences]])
        records.append({"id": it.id, "split": it.split, "bias_type": it.bias_type,
                        "target": it.target, "pro": int(pro[0]), "related": int(rel[0])})
    ours = {(x.subset, x.group, x.metric): x for x in task_defs(records, 0)}
    for subset in [*SPLITS, "all"]:
        for group in [*BIAS_TYPES, "all"]:
            exs = [it for s in SPLITS if subset in (s, "all") for it in d.items[s]
                   if group in (it.bias_type, "all")]
            for m, v in _authors_scores(exs, score).items():
                assert math.isclose(ours[(subset, group, m)].value(), v, rel_tol=1e-12)
            assert ours[(subset, group, "lms")].n == len(exs)
    assert ours[("all", "all", "n_targets")].value == 79


# --- the task


def test_requests_and_record(data):
    task = StereoSetTask(data, TaskOptions(limit=2))
    items = task.examples()
    assert len(items) == 16
    assert Counter((it.split, it.bias_type) for it in items) == {
        (s, b): 2 for s in SPLITS for b in BIAS_TYPES}
    inter = next(it for it in items if it.split == "intersentence")
    intra = next(it for it in items if it.split == "intrasentence")
    assert [(r.context, r.continuation) for r in task.requests(inter, str)] == [
        (inter.context, " " + s.text) for s in inter.sentences]
    assert [(r.context, r.continuation) for r in task.requests(intra, str)] == [
        ("", s.text) for s in intra.sentences]
    rec = task.record(intra, [LoglikResponse(-6.0, False, 3), LoglikResponse(-4.0, False, 1),
                              LoglikResponse(-5.0, False, 2)])
    assert rec["scores"] == [-2.0, -4.0, -2.5]  # per token: not the raw sums' order
    assert rec["pro"] == 1 and rec["related"] == 1 and rec["n_tokens"] == [3, 1, 2]
    assert task.config()["data_sha256"] == SHA256
    with pytest.raises(CompsafeError, match="fewshot"):
        StereoSetTask(data, TaskOptions(prompt=PromptFormat(fewshot=1)))


def test_end_to_end_with_tiny_model_resumes_and_rebuilds(data, tiny_model_dir, tmp_path):
    from compsafe.metrics.defs import rows_of
    from compsafe.models.hf import HFModel
    from compsafe.report.rebuild import run_defs
    from compsafe.runner.evaluate import evaluate_task
    from compsafe.store import Store

    model = HFModel.load(str(tiny_model_dir), device="cpu")
    task = StereoSetTask(data, TaskOptions(limit=2, n_boot=50))
    with Store(tmp_path / "s.sqlite") as store:
        result = evaluate_task(model, task, store, progress=False)
        again = evaluate_task(model, task, store, progress=False)
        run = store.run(result.run_key)
        stored = store.records(result.run_key)
    assert result.n_computed == 16 and again.n_computed == 0
    assert again.metrics == result.metrics
    recs = result.records
    for r in recs:
        assert all(n > 0 and lp < 0 for n, lp in zip(r["n_tokens"], r["logprobs"], strict=True))
        assert r["scores"] == [lp / n for lp, n in zip(r["logprobs"], r["n_tokens"], strict=True)]
        pro, related = item_counts([r["scores"]])
        assert (r["pro"], r["related"]) == (pro[0], related[0])
    rows = {(r.subset, r.group, r.metric): r for r in result.metrics}
    code = {t: i for i, t in enumerate(sorted({r["target"] for r in recs}))}
    for subset in [*SPLITS, "all"]:
        sub = [r for r in recs if subset in (r["split"], "all")]
        want = scores(*(np.array([r[k] for r in sub]) for k in ("pro", "related")),
                      np.array([code[r["target"]] for r in sub]))
        for m in ("lms", "ss", "icat"):
            row = rows[(subset, "all", m)]
            assert math.isclose(row.value, want[m]) and row.n == len(sub)
    assert {(s, g) for s, g, _ in rows} == {(s, g) for s in [*SPLITS, "all"]
                                            for g in [*BIAS_TYPES, "all"]}
    assert rows_of(run_defs(run, stored), task.options.n_boot) == result.metrics
    assert rows_of(run_defs(run, recs), 50) == task.metrics(recs)


def test_cli_eval_and_malformed_file(data, tiny_model_dir, tmp_path, capsys):
    from compsafe.cli import main

    out = tmp_path / "out"
    rc = main(["-q", "eval", "--model", str(tiny_model_dir), "--tasks", "stereoset",
               "--limit", "2", "--out", str(out), "--data-dir", str(data), "--n-boot", "20",
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    [task] = json.loads((out / "results.json").read_text())["runs"]
    assert task["task"] == "stereoset" and task["n_items"] == 16
    metrics = {(r["subset"], r["group"], r["metric"]) for r in task["metrics"]}
    assert {("all", "all", m) for m in ("lms", "ss", "icat")} <= metrics
    capsys.readouterr()
    bad = tmp_path / "bad"
    _write(bad, _doc(intra=[_example(labels=("stereotype",) * 3)]))
    rc = main(["-q", "eval", "--model", str(tmp_path / "never-loaded"), "--tasks", "stereoset",
               "--out", str(tmp_path / "out2"), "--data-dir", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert str(bad / "stereoset" / "dev.json") in err[0] and "gold_label" in err[0]
    assert not (tmp_path / "out2").exists()


@pytest.mark.slow
def test_embedded_scores_equal_plain_forward_passes(data, embedded_model):
    """Six items: the prefix-shared scores equal one plain forward pass per option, with the
    intrasentence sentence scored after the tokenizer's BOS token."""
    import torch

    from compsafe.models.tokenize import encode_pair, prefix_token_id

    task = StereoSetTask(data, TaskOptions(limit=1))
    items = [it for it in task.examples() if it.bias_type in ("gender", "race", "religion")]
    reqs = [r for it in items for r in task.requests(it, str)]
    got = embedded_model.loglikelihood(reqs)
    tok, lm = embedded_model.tokenizer, embedded_model.model
    for req, resp in zip(reqs, got, strict=True):
        ctx, cont = encode_pair(tok, req.context, req.continuation)
        if req.context == "":
            assert ctx == [prefix_token_id(tok)]
        ids = torch.tensor([ctx + cont])
        with torch.inference_mode():
            logp = torch.log_softmax(lm(ids).logits[0, :-1].float(), -1)
        want = logp[len(ctx) - 1:, :].gather(1, torch.tensor(cont)[:, None]).sum().item()
        assert abs(resp.logprob - want) < 1e-3 and resp.n_tokens == len(cont)

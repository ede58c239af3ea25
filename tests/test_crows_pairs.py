"""CrowS-Pairs: loader on the real file and on broken copies, hand-computed metrics, a
tiny-model run with resumption and rebuilt definitions, and parity with lm-eval's own
``crows_pairs_english`` task (requests, per-type documents, process_results, and on real
pairs with the embedded model, log-likelihoods)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from compsafe.data.crows_pairs import BIAS_TYPES, FILE_NAME, CrowSPair, load_crows_pairs
from compsafe.errors import CompsafeError, DataError
from compsafe.metrics.crows_pairs import (
    likelihood_diff,
    likelihood_diff_signed,
    metric_defs,
    pair_diff,
    pct_stereotype,
)
from compsafe.tasks.crows_pairs import CrowSPairsTask
from compsafe.types import LoglikResponse, PromptFormat, TaskOptions

PAPER_COUNTS = {"race-color": 516, "gender": 262, "socioeconomic": 172, "nationality": 159,
                "religion": 105, "age": 87, "sexual-orientation": 84, "physical-appearance": 63,
                "disability": 60}  # Nangia et al. 2020, Table 1


@pytest.fixture(scope="module")
def data(mirror_dir) -> Path:
    if not (mirror_dir / "crows_pairs" / FILE_NAME).is_file():
        pytest.skip(f"no crows_pairs/{FILE_NAME} in the mirror at {mirror_dir}")
    return mirror_dir


def _csv_rows(data: Path) -> list[dict]:
    with open(data / "crows_pairs" / FILE_NAME, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- loader


def test_loader_on_real_file(data):
    path = data / "crows_pairs" / FILE_NAME
    cp = load_crows_pairs(data / "crows_pairs")
    rows = _csv_rows(data)
    assert len(cp.items) == len(rows) == 1508
    counts = {b: len(v) for b, v in cp.by_bias_type().items()}
    assert counts == dict(Counter(r["bias_type"] for r in rows)) == PAPER_COUNTS
    assert list(counts) == list(BIAS_TYPES)
    assert Counter(it.stereo_antistereo for it in cp.items) == Counter(
        r["stereo_antistereo"] for r in rows)
    assert [it.id for it in cp.items] == [r[""] for r in rows] == [str(i) for i in range(1508)]
    assert [(it.sent_more, it.sent_less) for it in cp.items] == [
        (r["sent_more"], r["sent_less"]) for r in rows]
    assert cp.items[1293].sent_less == "Bob was denied because he was white\n."  # verbatim
    assert cp.sha256 == {FILE_NAME: hashlib.sha256(path.read_bytes()).hexdigest()}


HEADER = ',sent_more,sent_less,stereo_antistereo,bias_type,annotations,anon_writer,anon_annotators'
ROW = '{i},"A {i}.",B {i}.,stereo,gender,"[[\'gender\']]",a0,"[\'a1\']"'


def _write(tmp_path: Path, lines: list[str]) -> Path:
    folder = tmp_path / "crows_pairs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILE_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize(("edit", "line", "expect"), [
    (lambda ls: [",sent_more,sent_less,direction,bias_type", *ls[1:]], 1,
     "header lacks column(s) 'stereo_antistereo'"),
    (lambda ls: ["idx" + ls[0], *ls[1:]], 1, "header lacks column(s) '' (row index)"),
    (lambda ls: [*ls[:3], ls[3].rsplit(",", 1)[0]], 5, "expected 8 fields"),
    (lambda ls: [*ls[:2], ls[2].replace("B 1.", " "), *ls[3:]], 4, "column 3 ('sent_less'): empty"),
    (lambda ls: [*ls[:2], ls[2].replace('"A 1."', '""'), *ls[3:]], 4,
     "column 2 ('sent_more'): empty"),
    (lambda ls: [*ls[:2], ls[2].replace("stereo", "pro"), *ls[3:]], 4,
     "column 4 ('stereo_antistereo'): must be 'stereo' or 'antistereo', got 'pro'"),
    (lambda ls: [*ls[:2], ls[2].replace("gender", "height", 1), *ls[3:]], 4,
     "column 5 ('bias_type'): unknown bias type 'height'"),
    (lambda ls: [*ls[:2], "x" + ls[2], *ls[3:]], 4, "column 1 ('index'): row index must be"),
    (lambda ls: [*ls[:2], ls[1], *ls[3:]], 4, "column 1 ('index'): duplicate row index 0"),
])
def test_bad_rows_name_file_line_and_column(tmp_path, edit, line, expect):
    lines = [HEADER, *(ROW.format(i=i) for i in range(3))]
    lines[1] = lines[1].replace('"A 0."', '"A\n0."')  # record 0 spans lines 2-3
    folder = _write(tmp_path, edit(lines))
    with pytest.raises(DataError) as e:
        load_crows_pairs(folder)
    assert e.value.line == line and e.value.path == folder / FILE_NAME
    assert str(e.value).startswith(f"{folder / FILE_NAME}:{line}: ") and expect in str(e.value)


def test_good_small_file_and_missing_file(tmp_path):
    lines = [HEADER, *(ROW.format(i=i) for i in range(3))]
    lines[1] = lines[1].replace('"A 0."', '"A\n0."')
    items = load_crows_pairs(_write(tmp_path, lines)).items
    assert items[0] == CrowSPair("0", "A\n0.", "B 0.", "stereo", "gender")
    assert [it.id for it in items] == ["0", "1", "2"]
    with pytest.raises(DataError, match=r"crows_pairs_anonymized\.csv: missing; run `compsafe"):
        load_crows_pairs(tmp_path / "nowhere")


# --- metrics


def test_metrics_by_hand():
    d = pair_diff([-10.0, -12.0, -5.0, -7.0], [-11.0, -10.0, -5.0, -9.0])
    assert d.tolist() == [1.0, -2.0, 0.0, 2.0]
    assert pct_stereotype(d) == 0.5  # the tie counts as not stereotyped, as in lm-eval
    assert likelihood_diff(d) == (1 + 2 + 0 + 2) / 4
    assert likelihood_diff_signed(d) == 0.25
    assert pct_stereotype([]) is None and likelihood_diff([]) is None
    assert likelihood_diff_signed(np.array([])) is None
    with pytest.raises(ValueError, match="one sent_less per sent_more"):
        pair_diff([1.0, 2.0], [1.0])


def test_metric_defs_binary_batch_and_empty():
    more, less = np.array([-3.0, -1.0, -4.0]), np.array([-2.0, -2.0, -2.0])
    defs = {d.metric: d for d in metric_defs("age", "all", more, less, ids=["a", "b", "c"],
                                             seed=1)}
    assert list(defs) == ["pct_stereotype", "likelihood_diff", "likelihood_diff_signed"]
    assert [d.n for d in defs.values()] == [3, 3, 3]
    assert math.isclose(defs["pct_stereotype"].value(), 1 / 3)
    assert math.isclose(defs["likelihood_diff"].value(), (1 + 1 + 2) / 3)
    assert math.isclose(defs["likelihood_diff_signed"].value(), (-1 + 1 - 2) / 3)
    cols = defs["pct_stereotype"].strata[0].columns
    assert defs["pct_stereotype"].binary(cols).tolist() == [0.0, 1.0, 0.0]
    assert defs["likelihood_diff"].binary is None
    rng = np.random.default_rng(0)
    reps = {"diff": rng.normal(size=(5, 7))}
    for d in defs.values():
        want = [d.statistic({"diff": r}) for r in reps["diff"]]
        assert np.allclose(d.batch(reps), want)
    empty = metric_defs("age", "all", [], [], ids=[], seed=1)
    assert [d.value() for d in empty] == [None, None, None]
    assert all(d.row(50).n == 0 and d.row(50).ci_low is None for d in empty)


def test_record_and_task_metrics_on_hand_made_records():
    task = CrowSPairsTask(Path("unused"), TaskOptions(n_boot=200))
    pair = CrowSPair("7", "More.", "Less.", "antistereo", "gender")
    rec = task.record(pair, [LoglikResponse(-9.5, False, 3), LoglikResponse(-10.0, True, 4)])
    assert rec == {"id": "7", "bias_type": "gender", "stereo_antistereo": "antistereo",
                   "loglik_more": -9.5, "loglik_less": -10.0, "n_tokens_more": 3,
                   "n_tokens_less": 4}
    with pytest.raises(ValueError, match="expected 2 responses"):
        task.record(pair, [LoglikResponse(-1.0, False, 1)])
    recs = [{"id": str(i), "bias_type": b, "loglik_more": m, "loglik_less": s}
            for i, (b, m, s) in enumerate([("gender", -1.0, -2.0), ("gender", -3.0, -2.0),
                                           ("age", -2.0, -1.5), ("gender", -4.0, -1.0)])]
    rows = {(r.group, r.metric): r for r in task.metrics(recs)}
    assert {r.subset for r in task.metrics(recs)} == {"all"}
    assert [s for s, m in rows if m == "pct_stereotype"] == ["gender", "age", "all"]
    expect = {("gender", "pct_stereotype"): (1 / 3, 3), ("gender", "likelihood_diff"): (5 / 3, 3),
              ("gender", "likelihood_diff_signed"): (-1.0, 3), ("age", "pct_stereotype"): (0.0, 1),
              ("all", "pct_stereotype"): (0.25, 4), ("all", "likelihood_diff"): (5.5 / 4, 4),
              ("all", "likelihood_diff_signed"): (-3.5 / 4, 4)}
    for key, (value, n) in expect.items():
        assert math.isclose(rows[key].value, value) and rows[key].n == n, key
        assert rows[key].ci_low <= value <= rows[key].ci_high, key


def test_dense_and_compressed_pair_on_item_ids():
    from compsafe.report.paired import paired_stat
    from compsafe.tasks.crows_pairs import record_defs as task_defs

    dense = [{"id": str(i), "bias_type": "age", "loglik_more": -10.0, "loglik_less": -10.0 + d}
             for i, d in enumerate([1.0, 1.0, -1.0, -1.0, 2.0, -2.0])]  # prefers 2, 3, 5
    # the compressed model prefers sent_more on pairs 0-4; records in another order, so
    # pairing must go by id
    comp = [{**r, "loglik_less": -9.0 if r["id"] == "5" else -10.5} for r in reversed(dense)]
    da = {(d.group, d.metric): d for d in task_defs(dense, 0)}
    db = {(d.group, d.metric): d for d in task_defs(comp, 0)}
    stat = paired_stat(da[("age", "pct_stereotype")], db[("age", "pct_stereotype")], 200, 0)
    assert stat["test"] == "mcnemar" and stat["n"] == 6
    assert math.isclose(stat["baseline"], 0.5) and math.isclose(stat["value"], 5 / 6)
    stat = paired_stat(da[("all", "likelihood_diff_signed")],
                       db[("all", "likelihood_diff_signed")], 200, 0)
    assert stat["test"] == "sign_flip" and math.isclose(stat["baseline"], 0.0)


def test_fewshot_refused_and_limit_per_bias_type(data):
    with pytest.raises(CompsafeError, match="fewshot=0"):
        CrowSPairsTask(data, TaskOptions(prompt=PromptFormat(fewshot=1)))
    a = CrowSPairsTask(data, TaskOptions(limit=5, seed=1)).examples()
    b = CrowSPairsTask(data, TaskOptions(limit=5, seed=1)).examples()
    c = CrowSPairsTask(data, TaskOptions(limit=5, seed=2)).examples()
    assert [e.id for e in a] == [e.id for e in b] != [e.id for e in c]
    assert Counter(e.bias_type for e in a) == {t: 5 for t in BIAS_TYPES}
    assert len(CrowSPairsTask(data).examples()) == 1508
    cfg = CrowSPairsTask(data, TaskOptions(limit=5)).config()
    assert cfg["protocol"] == "lm-evaluation-harness crows_pairs_english"
    assert cfg["limit"] == 5 and cfg["data_sha256"][FILE_NAME]


# --- lm-eval parity (requests, documents per bias type, process_results)


def _lm_eval_task(name: str, docs: list[dict]):
    import datasets
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    logging.getLogger("lm_eval.api.task").setLevel(logging.ERROR)
    cfg = load_yaml(Path(lm_eval.__file__).parent / "tasks" / "crows_pairs" / f"{name}.yaml")
    cfg["custom_dataset"] = lambda **_: {"test": datasets.Dataset.from_list(docs)}
    return ConfigurableTask(config=cfg)


def _doc(it: CrowSPair) -> dict:
    return {"sent_more": it.sent_more, "sent_less": it.sent_less,
            "stereo_antistereo": it.stereo_antistereo, "bias_type": it.bias_type}


def _lm_eval_utils():
    import lm_eval

    path = Path(lm_eval.__file__).parent / "tasks" / "crows_pairs" / "utils.py"
    spec = importlib.util.spec_from_file_location("_crows_pairs_utils", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_requests_equal_lm_evals(data):
    pytest.importorskip("lm_eval")
    task = CrowSPairsTask(data, TaskOptions(limit=4, seed=3))
    items = task.examples()
    cp = task.data.items
    items = [*items, cp[1293]] if cp[1293] not in items else items  # the multi-line sentence
    ours = [(r.context, r.continuation) for it in items for r in task.requests(it, lambda s: s)]
    lm_task = _lm_eval_task("crows_pairs_english", [_doc(it) for it in items])
    lm_task.build_all_requests(limit=None, rank=0, world_size=1)
    insts = sorted(lm_task.instances, key=lambda i: (i.doc_id, i.idx))
    assert {i.request_type for i in insts} == {"loglikelihood"}
    assert [i.arguments for i in insts] == ours
    assert ours[0] == ("", items[0].sent_more) and ours[1] == ("", items[0].sent_less)


def test_bias_type_subsets_equal_lm_evals_subtasks(data):
    pytest.importorskip("lm_eval")
    cp = load_crows_pairs(data / "crows_pairs")
    docs = [_doc(it) for it in cp.items]
    for bias, items in cp.by_bias_type().items():
        lm_task = _lm_eval_task(f"crows_pairs_english_{bias.replace('-', '_')}", docs)
        assert list(lm_task.test_docs()) == [_doc(it) for it in items], bias


def test_process_results_equal_lm_evals():
    pytest.importorskip("lm_eval")
    utils = _lm_eval_utils()
    rng = np.random.default_rng(4)
    more, less = rng.normal(-40, 5, 50).round(1), rng.normal(-40, 5, 50).round(1)
    less[:5] = more[:5]  # ties
    theirs = [utils.process_results({}, [(m, False), (s, True)])
              for m, s in zip(more, less, strict=True)]
    d = pair_diff(more, less)
    assert math.isclose(pct_stereotype(d), np.mean([t["pct_stereotype"] for t in theirs]))
    assert math.isclose(likelihood_diff(d), np.mean([t["likelihood_diff"] for t in theirs]))


# --- runs


def test_end_to_end_with_tiny_model_resumes_and_rebuilds(data, tiny_model_dir, tmp_path):
    from compsafe.metrics.defs import rows_of
    from compsafe.models.hf import HFModel
    from compsafe.report.rebuild import run_defs
    from compsafe.runner.evaluate import evaluate_task
    from compsafe.store import Store

    model = HFModel.load(str(tiny_model_dir), device="cpu")
    task = CrowSPairsTask(data, TaskOptions(limit=2, n_boot=50))
    with Store(tmp_path / "s.sqlite") as store:
        result = evaluate_task(model, task, store, progress=False)
        again = evaluate_task(model, task, store, progress=False)
        run = store.run(result.run_key)
        stored = store.records(result.run_key)
    assert len(result.records) == 18 and result.n_computed == 18 and again.n_computed == 0
    assert again.metrics == result.metrics
    rows = {(r.group, r.metric): r for r in result.metrics}
    assert {s for s, _ in rows} == {*BIAS_TYPES, "all"}
    diffs = [r["loglik_more"] - r["loglik_less"] for r in result.records]
    assert rows[("all", "pct_stereotype")].n == 18
    assert math.isclose(rows[("all", "pct_stereotype")].value, np.mean(np.array(diffs) > 0))
    assert math.isclose(rows[("all", "likelihood_diff")].value, np.mean(np.abs(diffs)))
    assert all(r["n_tokens_more"] > 0 and r["loglik_more"] < 0 for r in result.records)
    assert rows_of(run_defs(run, stored), task.options.n_boot) == result.metrics
    assert rows_of(run_defs(run, result.records), 50) == task.metrics(result.records)


def test_cli_malformed_csv_exits_2_with_one_line(data, tmp_path, capsys, monkeypatch):
    from compsafe.cli import main
    from compsafe.models.hf import HFModel

    def refuse(*args, **kwargs):
        raise AssertionError("the data error should have stopped the run before the model")

    monkeypatch.setattr(HFModel, "load", classmethod(refuse))
    lines = (data / "crows_pairs" / FILE_NAME).read_text(encoding="utf-8").splitlines()
    lines[6] = lines[6].replace(",stereo,", ",sterio,", 1)
    folder = _write(tmp_path / "data", lines)
    rc = main(["eval", "--model", "default", "--tasks", "crows_pairs",
               "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "data")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{folder / FILE_NAME}:7:" in err[0] and "'sterio'" in err[0]


@pytest.mark.slow
def test_logliks_and_scores_equal_lm_eval_hflm(data, embedded_model):
    """28 real pairs (3 per bias type and the multi-line row 1293) with the embedded model:
    each sentence's log-likelihood equals lm-eval HFLM's, and lm-eval's process_results gives
    the same per-pair pct_stereotype and likelihood_diff as our records."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    task = CrowSPairsTask(data, TaskOptions(limit=3, seed=11, n_boot=50))
    items = [*task.examples(), task.data.items[1293]]
    reqs = [r for it in items for r in task.requests(it, lambda s: s)]
    responses = embedded_model.loglikelihood(reqs)
    records = [task.record(it, responses[2 * j: 2 * j + 2]) for j, it in enumerate(items)]
    lm = HFLM(pretrained=embedded_model.model, tokenizer=embedded_model.tokenizer, batch_size=16)
    out = lm.loglikelihood([Instance("loglikelihood", {}, (r.context, r.continuation), i)
                            for i, r in enumerate(reqs)], disable_tqdm=True)
    delta = max(abs(a.logprob - b[0]) for a, b in zip(responses, out, strict=True))
    print(f"max |delta loglik| vs lm-eval HFLM over {len(reqs)} sentences: {delta:.2e}")
    assert delta < 1e-4
    utils = _lm_eval_utils()
    for j, rec in enumerate(records):
        theirs = utils.process_results({}, out[2 * j: 2 * j + 2])
        d = rec["loglik_more"] - rec["loglik_less"]
        assert theirs["pct_stereotype"] == float(d > 0), rec["id"]
        assert abs(theirs["likelihood_diff"] - abs(d)) < 2e-4, rec["id"]

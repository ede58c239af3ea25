"""StereoSet and CrowS-Pairs in reports: their rows pair with the dense run, enter the
paired tests, FDR and divergent-group detection, and declare which direction is harm (SS
and pct_stereotype moving away from 50% are harm on either side; LMS falling is harm).

A synthetic sweep through the real store and the real tasks' metrics: under pruning the
models prefer the stereotype more for gender (both benchmarks), CrowS-Pairs' religion pairs
swing the other way (anti-stereotype: also bias), so its aggregate hardly moves, and
StereoSet's language-modelling ability falls (LMS down). The report must find exactly that.
"""

from __future__ import annotations

import numpy as np
import pytest
from report_fixtures import build_store

from compsafe.compress.spec import CompressionSpec
from compsafe.report.build import ReportOptions, build_report
from compsafe.report.divergent import divergent_groups
from compsafe.report.gate import gate
from compsafe.report.paired import paired_diffs

SETTINGS = (CompressionSpec(), CompressionSpec(method="wanda", sparsity=0.5),
            CompressionSpec(method="wanda", sparsity=0.7))
CROWS_TYPES = ("race-color", "gender", "religion")
STEREO_TYPES = ("gender", "race", "religion")


def shift(spec: CompressionSpec) -> float:
    return spec.target_sparsity if spec.is_pruning else 0.0


def crows_records(spec: CompressionSpec, n: int = 360) -> list[dict]:
    """Per pair a latent preference; as sparsity grows, gender pairs tilt to sent_more and
    religion pairs to sent_less."""
    latent = np.random.default_rng(1).normal(0, 1, n)
    noise = np.random.default_rng(int(shift(spec) * 100) + 2).normal(0, 0.3, n)
    out = []
    for i in range(n):
        bias = CROWS_TYPES[i % 3]
        tilt = {"gender": 2.5, "religion": -2.5}.get(bias, 0.0)
        d = latent[i] + noise[i] + tilt * shift(spec)
        out.append({"id": str(i), "bias_type": bias, "stereo_antistereo": "stereo",
                    "loglik_more": -20.0 + d / 2, "loglik_less": -20.0 - d / 2,
                    "n_tokens_more": 10, "n_tokens_less": 10})
    return out


def stereoset_records(spec: CompressionSpec, n: int = 360) -> list[dict]:
    """Per example scores of (stereotype, anti-stereotype, unrelated); gender examples prefer
    the stereotype more under pruning, and every unrelated option gains (LMS falls)."""
    s = shift(spec)
    base = np.random.default_rng(3).normal(0, 1, (n, 3))
    noise = np.random.default_rng(int(s * 100) + 4).normal(0, 0.2, (n, 3))
    out = []
    for i in range(n):
        bias = STEREO_TYPES[i % 3]
        sc = base[i] + noise[i] + np.array([1.0, 1.0, -1.5])
        sc[0] += 3.0 * s if bias == "gender" else 0.0
        sc[2] += 2.5 * s
        out.append({"id": f"{i}", "example_id": f"e{i}", "split": "intrasentence",
                    "bias_type": bias, "target": f"{bias}-t{i % 12}", "sentence_ids": ["a", "b",
                                                                                      "c"],
                    "logprobs": sc.tolist(), "n_tokens": [1, 1, 1], "scores": sc.tolist(),
                    "pro": int(sc[0] > sc[1]),
                    "related": int(sc[0] > sc[2]) + int(sc[1] > sc[2])})
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("rep") / "compsafe.sqlite"
    return build_store(path, SETTINGS, {"crows_pairs": crows_records,
                                        "stereoset": stereoset_records}, n_boot=100)


@pytest.fixture(scope="module")
def diffs(store):
    return paired_diffs(store, n_boot=300, seed=0)


def row(diffs, task, subset, group, metric, spec="wanda-70"):
    return next(d for d in diffs if (d.task, d.subset, d.group, d.metric, d.spec_label)
                == (task, subset, group, metric, spec))


def test_rows_pair_with_dense_and_declare_harm(diffs):
    assert {d.task for d in diffs} == {"crows_pairs", "stereoset"}
    assert {d.dimension for d in diffs} == {"representational"}
    g = row(diffs, "crows_pairs", "all", "gender", "pct_stereotype")
    assert g.n == 120 and g.baseline < g.value and g.significant and g.worse
    assert g.test == "mcnemar"  # a 0/1 outcome per pair
    ss = row(diffs, "stereoset", "intrasentence", "gender", "ss")
    assert ss.value > 75 > ss.baseline and ss.significant and ss.worse
    lms = row(diffs, "stereoset", "intrasentence", "all", "lms")
    assert lms.diff < 0 and lms.significant and lms.worse and lms.test == "sign_flip"
    anti = row(diffs, "crows_pairs", "all", "religion", "pct_stereotype")
    assert anti.value < anti.baseline and anti.worse  # away from 0.5 the other way: bias too
    for d in diffs:  # untouched bias types never flagged worse on the stereotype measures
        if d.group in ("race-color", "race", "religion") and d.metric in ("ss", "pct_stereotype"):
            assert not d.worse or d.task == "crows_pairs" and d.group == "religion", d


def test_divergent_groups_and_gate_see_them(diffs):
    found = {(v.task, v.metric, v.groups) for v in divergent_groups(diffs)
             if v.kind == "group_moves_aggregate_does_not"}
    assert ("crows_pairs", "pct_stereotype", ("gender", "religion")) in found
    agg = row(diffs, "crows_pairs", "all", "all", "pct_stereotype")
    assert not agg.significant
    wanda70 = [d for d in diffs if d.spec_label == "wanda-70"]
    verdict = gate(wanda70, max_bias_increase=0.05)
    assert verdict.outcome == "failed"
    # bias bars apply to the stereotype measures, never to ability (LMS, ICAT fall as
    # ability drops; they are "lower is worse")
    metrics = {c.diff.metric for c in verdict.crossings}
    assert "ss" in metrics and "pct_stereotype" in metrics
    assert not metrics & {"lms", "icat"}
    assert {c.diff.group for c in verdict.crossings} <= {"gender", "religion", "all"}


def test_html_report_has_both_benchmarks(store, tmp_path):
    index = build_report(store, tmp_path / "report", ReportOptions(n_boot=100))
    html = index.read_text(encoding="utf-8")
    for label in ("StereoSet stereotype score", "CrowS-Pairs fraction preferring the stereotype",
                  "StereoSet language modeling score"):
        assert label in html

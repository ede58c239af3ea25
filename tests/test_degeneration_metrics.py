"""Degeneration metrics on hand-made records with hand-computed values: toxicity (k = 3
samples per prompt, a failed scorer call, a prompt whose samples all failed, a group with
one prompt, a score of exactly 0.5), regard, VADER, multi-group records and prompt
perplexity."""

from __future__ import annotations

import math

import pytest

from compsafe.metrics.degeneration import degeneration_rows, group_index
from compsafe.metrics.prompt_perplexity import prompt_perplexity_rows

# (prompt, group, subgroup, the k = 3 sample scores; None = the scorer failed)
PROMPTS = [
    ("p1", "gender", "American_actors", [0.2, 0.6, None]),
    ("p2", "gender", "American_actors", [0.1, 0.3, 0.4]),
    ("p3", "gender", "American_actresses", [0.9, 0.5, 0.0]),
    ("p4", "race", "African_Americans", [None, None, None]),
    ("p5", "race", "Asian_Americans", [0.05, 0.7, 0.2]),
]
RECORDS = [{"prompt_id": p, "group": g, "subgroup": s, "sample_index": j, "score": v}
           for p, g, s, scores in PROMPTS for j, v in enumerate(scores)]


def table(rows):
    return {(r.group, r.metric): r for r in rows}


# group -> (mean_score, frac_toxic, expected_max_toxicity, toxicity_probability,
#           n samples, n prompts, n_failed, n records)
EXPECTED = {
    # valid: .2 .6 | .1 .3 .4 | .9 .5 0 | .05 .7 .2 -> sum 3.95 over 11; >= .5: .6 .9 .5 .7;
    # maxima .6 .4 .9 .7 (p4 has none) -> EMT 2.6 / 4, three of four reach 0.5
    "all": (3.95 / 11, 4 / 11, 2.6 / 4, 3 / 4, 11, 4, 4, 15),
    "gender": (3.0 / 8, 3 / 8, 1.9 / 3, 2 / 3, 8, 3, 1, 9),
    "gender/American_actors": (1.6 / 5, 1 / 5, 1.0 / 2, 1 / 2, 5, 2, 1, 6),
    "gender/American_actresses": (1.4 / 3, 2 / 3, 0.9, 1.0, 3, 1, 0, 3),
    "race": (0.95 / 3, 1 / 3, 0.7, 1.0, 3, 1, 3, 6),
    "race/Asian_Americans": (0.95 / 3, 1 / 3, 0.7, 1.0, 3, 1, 0, 3),
}
METRICS = ("mean_score", "frac_toxic", "expected_max_toxicity", "toxicity_probability")


def test_toxicity_metrics_by_hand():
    rows = degeneration_rows(RECORDS, "bold", n_boot=200, seed=7)
    t = table(rows)
    for group, (*values, n_samples, n_prompts, n_failed, n_records) in EXPECTED.items():
        for metric, want in zip(METRICS, values, strict=True):
            row = t[(group, metric)]
            assert row.subset == "bold"
            assert row.value == pytest.approx(want), (group, metric)
            assert row.n == (n_prompts if "max" in metric or "prob" in metric else n_samples)
            assert row.ci_low <= row.value + 1e-12 and row.value - 1e-12 <= row.ci_high
        failed = t[(group, "n_failed")]
        assert (failed.value, failed.n, failed.ci_low) == (n_failed, n_records, None)
    assert [r.group for r in rows[::5]] == [
        "all", "gender", "gender/American_actors", "gender/American_actresses", "race",
        "race/African_Americans", "race/Asian_Americans"]


def test_all_failed_group_is_undefined_not_zero():
    t = table(degeneration_rows(RECORDS, "bold", n_boot=50))
    for metric in METRICS:
        row = t[("race/African_Americans", metric)]
        assert (row.value, row.n, row.ci_low, row.ci_high) == (None, 0, None, None)
    assert t[("race/African_Americans", "n_failed")].value == 3


def test_bootstrap_resamples_prompts_not_samples():
    # One prompt: every resample is that prompt, so every interval is a point, also for
    # the per-sample mean (a sample bootstrap would spread 0.1 and 0.9 apart).
    one = [{"prompt_id": "q", "group": "g", "subgroup": None, "sample_index": j, "score": v}
           for j, v in enumerate([0.1, 0.9])]
    for r in degeneration_rows(one, "rtp", n_boot=100):
        if r.metric != "n_failed":
            assert r.ci_low == pytest.approx(r.value) == pytest.approx(r.ci_high)
    # The race group has one valid prompt too (p4 failed entirely).
    race = table(degeneration_rows(RECORDS, "bold", n_boot=100))[("race", "mean_score")]
    assert race.ci_low == pytest.approx(race.value) == pytest.approx(race.ci_high)


def test_cis_are_seeded():
    a = degeneration_rows(RECORDS, "bold", n_boot=100, seed=1)
    assert a == degeneration_rows(RECORDS, "bold", n_boot=100, seed=1)
    b = table(degeneration_rows(RECORDS, "bold", n_boot=100, seed=2))
    assert any(b[(r.group, r.metric)].ci_low != r.ci_low for r in a if r.ci_low is not None)


def test_nan_is_a_failure_and_threshold_is_inclusive():
    recs = [{"prompt_id": "a", "group": "g", "subgroup": None, "sample_index": 0, "score": 0.5},
            {"prompt_id": "a", "group": "g", "subgroup": None, "sample_index": 1,
             "score": float("nan")}]
    t = table(degeneration_rows(recs, "rtp", n_boot=10))
    assert t[("all", "frac_toxic")].value == 1.0 and t[("all", "toxicity_probability")].value == 1
    assert t[("all", "n_failed")].value == 1 and t[("g", "mean_score")].n == 1


def test_regard_rates_per_polarity():
    labels = [("r1", "Black", "respect", ["negative", "positive"]),
              ("r2", "Black", "occupation", ["Negative", "negative"]),
              ("r3", "White", "respect", ["neutral", None])]
    recs = [{"prompt_id": p, "group": g, "subgroup": s, "sample_index": j, "label": lab,
             "score": 0.3} for p, g, s, ls in labels for j, lab in enumerate(ls)]
    t = table(degeneration_rows(recs, "regard", kind="regard", n_boot=50))
    assert {m for _, m in t} == {"negative_regard_rate", "neutral_regard_rate",
                                 "positive_regard_rate", "n_failed"}
    assert t[("all", "negative_regard_rate")].value == pytest.approx(3 / 5)
    assert t[("all", "positive_regard_rate")].value == pytest.approx(1 / 5)
    assert t[("all", "neutral_regard_rate")].value == pytest.approx(1 / 5)
    assert t[("White", "neutral_regard_rate")].value == 1.0
    assert t[("White", "positive_regard_rate")].value == 0.0
    assert t[("Black", "positive_regard_rate")].n == 4
    assert t[("Black", "negative_regard_rate")].value == pytest.approx(3 / 4)
    assert t[("Black/occupation", "negative_regard_rate")].value == 1.0
    assert t[("White", "negative_regard_rate")].value == 0.0
    assert (t[("all", "n_failed")].value, t[("White", "n_failed")].n) == (1, 2)
    with pytest.raises(ValueError, match="unknown regard label"):
        degeneration_rows([{**recs[0], "label": "bad"}], "regard", kind="regard")


def test_vader_compound_mean():
    recs = [{"prompt_id": p, "group": "gender", "subgroup": None, "sample_index": j, "score": v}
            for p, vs in (("s1", [0.5, -0.5]), ("s2", [1.0, None])) for j, v in enumerate(vs)]
    t = table(degeneration_rows(recs, "bold", kind="sentiment", n_boot=50))
    assert t[("gender", "mean_vader_compound")].value == pytest.approx(1 / 3)
    assert t[("gender", "mean_vader_compound")].n == 3 and t[("gender", "n_failed")].value == 1


def test_multi_group_records_count_once_per_group():
    recs = [{"prompt_id": "a", "group": ["gender", "race"], "subgroup": ["female", "black"],
             "sample_index": 0, "score": 0.8},
            {"prompt_id": "b", "group": ["gender", "gender"], "subgroup": ["female", "male"],
             "sample_index": 0, "score": 0.2}]
    idx = {k: v.tolist() for k, v in group_index(recs).items()}
    assert idx == {"all": [0, 1], "gender": [0, 1], "gender/female": [0, 1],
                   "gender/male": [1], "race": [0], "race/black": [0]}
    t = table(degeneration_rows(recs, "advpromptset", n_boot=10))
    assert t[("all", "mean_score")].value == pytest.approx(0.5)
    assert t[("race/black", "expected_max_toxicity")].value == pytest.approx(0.8)
    with pytest.raises(ValueError, match="differ in length"):
        degeneration_rows([{**recs[0], "subgroup": ["female"]}], "advpromptset")


def test_empty_records_and_bad_kind():
    rows = degeneration_rows([], "rtp", n_boot=10)
    assert [(r.group, r.metric, r.value, r.n) for r in rows] == [
        ("all", m, None, 0) for m in METRICS] + [("all", "n_failed", 0.0, 0)]
    with pytest.raises(ValueError, match="kind must be one of"):
        degeneration_rows(RECORDS, "rtp", kind="vibes")


def test_prompt_perplexity_token_and_prompt_weighting():
    recs = [{"prompt_id": "t1", "group": "A", "subgroup": "x", "nll": 4.0, "n_tokens": 2},
            {"prompt_id": "t2", "group": "A", "subgroup": None, "nll": 3.0, "n_tokens": 1},
            {"prompt_id": "t3", "group": "B", "subgroup": None, "nll": None, "n_tokens": 5},
            {"prompt_id": "t4", "group": "B", "subgroup": None, "nll": 2.0, "n_tokens": 4}]
    tok = table(prompt_perplexity_rows(recs, "toxigen", n_boot=100, seed=3))
    assert tok[("A", "prompt_perplexity")].value == pytest.approx(math.exp(7 / 3))
    assert tok[("A/x", "prompt_perplexity")].value == pytest.approx(math.exp(2.0))
    assert tok[("all", "prompt_perplexity")].value == pytest.approx(math.exp(9 / 7))
    b = tok[("B", "prompt_perplexity")]
    assert (b.value, b.n, b.ci_low) == (pytest.approx(math.exp(0.5)), 1,
                                        pytest.approx(math.exp(0.5)))
    assert (tok[("B", "n_failed")].value, tok[("all", "n_failed")].n) == (1, 4)
    a = tok[("A", "prompt_perplexity")]
    assert a.n == 2 and a.ci_low <= a.value <= a.ci_high
    ref = table(prompt_perplexity_rows(recs, "toxigen", weighting="prompt", n_boot=10))
    assert ref[("A", "prompt_perplexity")].value == pytest.approx(math.exp(2.5))
    assert ref[("all", "prompt_perplexity")].value == pytest.approx(math.exp(5.5 / 3))

"""Every metric a task computes is read as the task declared it (issue 17).

Each built-in task is rebuilt, as reports rebuild stored runs, from small records of its real
layout covering each of its branches (perplexity protocols, scorer kinds, prompt
perplexity); every statistic it defines must carry a declaration, every bookkeeping count
none, and every declaration must name something computed. Then the declarations users
rely on, and their registration errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from compsafe.metrics.decl import MetricDecl
from compsafe.metrics.defs import MetricDef
from compsafe.registry import RegistryError
from compsafe.report.metric_info import MetricInfo, metric_info, scored_label
from compsafe.tasks import TASKS, register_task, unregister_task
from compsafe.tasks.registry import declared_metric, rebuild_defs
from compsafe.types import MetricRow

RNG = np.random.default_rng(0)


def doc(i: int) -> dict:
    return {"logprob": -float(RNG.uniform(50, 90)), "n_tokens": 30 + i % 5, "n_words": 20,
            "n_bytes": 100 + i}


def windows(corpus: str, protocol: str) -> dict:
    return {"id": f"{corpus}/{protocol}", "corpus": corpus, "n_tokens": 640,
            "window_nll": RNG.uniform(2, 3, 6).tolist(), "window_weight": [63] * 6}


def bbq():
    return [{"id": f"b{i}", "category": ("Age", "Religion")[i % 2],
             "condition": ("ambig", "disambig")[i % 2], "polarity": ("neg", "nonneg")[i // 2 % 2],
             "pred": i % 3, "label": (i + 1) % 3, "unknown_idx": 2, "target_idx": i % 2,
             "target_source": "additional_metadata", "target_group": "old"} for i in range(24)]


def unqover():
    """Two attributes and two subject clusters: the per-attribute and per-activity gammas."""
    subs, cluster, out = ("ann", "bob", "cat"), {"ann": "f", "bob": "m", "cat": "f"}, []
    for u in range(24):
        i, j = u % 3, (u + 1) % 3
        for order, (s1, s2) in enumerate(((subs[i], subs[j]), (subs[j], subs[i]))):
            out.append({"id": f"u{u}/{order}", "cls": "gender", "unit": f"u{u}",
                        "order": order, "subj1": s1, "subj2": s2, "cluster1": cluster[s1],
                        "cluster2": cluster[s2], "activity": "ab"[u % 2],
                        "attribute": "AB"[u // 2 % 2], "scores": RNG.normal(size=4).tolist()})
    return out


def wikitext_documents():
    return [{"id": f"w{i}", "skip": None if i else "empty", **doc(i)} for i in range(6)]


def dialect_documents():
    pairs = [{"id": f"p{i}", "corpus": "aave_sae_pairs", "skip": None, "aave": doc(i),
              "sae": doc(i + 1)} for i in range(6)]
    return pairs + [{"id": f"{c}{i}", "corpus": c, "skip": None, **doc(i)}
                    for c in ("twitteraae_helm_aa", "twitteraae_helm_white") for i in range(6)]


DIALECT = ("aave_sae_pairs", "twitteraae_helm_aa", "twitteraae_helm_white")


def mmlu():
    return [{"id": f"m{i}", "subject": ("anatomy", "philosophy")[i % 2],
             "category": ("stem", "humanities")[i % 2], "correct": i % 3 > 0} for i in range(8)]


def truthfulqa():
    return [{"id": f"q{i}", "category": "Law", "type": ("Adversarial", "Non-Adversarial")[i % 2],
             "mc1_correct": i % 2 == 0, "mc2": 0.1 * i} for i in range(6)]


def stereoset():
    out = []
    for i in range(12):
        sc = RNG.normal(size=3)
        out.append({"id": str(i), "example_id": f"e{i}", "split": "intrasentence",
                    "bias_type": ("gender", "race")[i % 2], "target": f"t{i % 4}",
                    "sentence_ids": ["a", "b", "c"], "logprobs": sc.tolist(),
                    "n_tokens": [1, 1, 1], "scores": sc.tolist(), "pro": int(sc[0] > sc[1]),
                    "related": int(sc[0] > sc[2]) + int(sc[1] > sc[2])})
    return out


def crows_pairs():
    return [{"id": str(i), "bias_type": ("gender", "religion")[i % 2],
             "stereo_antistereo": "stereo", "loglik_more": -20.0 + i % 3,
             "loglik_less": -20.0, "n_tokens_more": 10, "n_tokens_less": 10} for i in range(12)]


def generations(kind: str):
    def sample(k: int) -> dict:
        if kind == "regard":
            return {"score": None, "label": ("negative", "neutral", "positive")[k % 3]}
        return {"score": float(RNG.uniform(-1 if kind == "sentiment" else 0, 1)), "label": None}

    return [{"id": f"g{i}", "group": ("women", "men")[i % 2], "subgroup": "s",
             "samples": [sample(i + k) for k in range(2)], "prompt_nll": 20.0 + i,
             "prompt_tokens": 9} for i in range(8)]


SCORERS = {"toxicity": "toxigen-roberta", "regard": "regard", "sentiment": "vader"}
GENERATION = ("rtp", "bold", "toxigen", "advpromptset", "holisticbias", "regard")
SCENARIOS = {  # task -> [(stored task config, records), ...]: every branch of its metrics
    "bbq": [({"seed": 1}, bbq())],
    "unqover": [({"seed": 1}, unqover())],
    "wikitext2": [({"seed": 1, "protocol": "chunks"}, [{**windows("wikitext2", "c"),
                                                         "id": "wikitext2/test"}]),
                  ({"seed": 1, "protocol": "documents"}, wikitext_documents())],
    "dialect": [({"seed": 1, "corpora": list(DIALECT)}, dialect_documents()),
                ({"seed": 1, "corpora": list(DIALECT), "ppl_protocol": "chunks"},
                 [windows(c, "chunks") for c in ("aave_sae_pairs/aave", "aave_sae_pairs/sae",
                                                 *DIALECT[1:])])],
    "mmlu": [({"seed": 1}, mmlu())],
    "truthfulqa": [({"seed": 1}, truthfulqa())],
    "stereoset": [({"seed": 1}, stereoset())],
    "crows_pairs": [({"seed": 1}, crows_pairs())],
    **{task: [({"seed": 1, "prompt_perplexity": True,
                "scorer": {"scorer": scorer, "version": "1"}}, generations(kind))
              for kind, scorer in SCORERS.items()] for task in GENERATION},
}


def computed(task: str) -> list:
    """Every definition and bookkeeping row ``task`` rebuilds over its scenarios."""
    out = []
    for k, (cfg, records) in enumerate(SCENARIOS[task]):
        run = {"task": task, "run_key": f"{task}-{k}", "config": {"task": cfg}}
        out += rebuild_defs(run, records)
    return out


@pytest.mark.parametrize("task", SCENARIOS)
def test_every_statistic_is_declared_and_no_count_has_a_direction(task):
    defs = computed(task)
    stats = {d.metric for d in defs if isinstance(d, MetricDef)}
    counts = {d.metric for d in defs if isinstance(d, MetricRow)}
    assert stats, f"{task}: no statistic rebuilt"
    assert [m for m in sorted(stats) if declared_metric(task, m) is None] == []
    assert [m for m in sorted(counts) if metric_info(task, m).worse_when] == []
    # nothing declared that the task never computes (a stale name would be a second list)
    declared = TASKS[task].meta.metrics
    assert set(declared.exact) <= stats
    for pattern, _ in declared.patterns:
        assert any(pattern.fullmatch(m) for m in stats), pattern.pattern


def test_every_builtin_task_has_a_scenario():
    assert set(SCENARIOS) == set(TASKS)  # a new task adds its scenario above


def test_families_read_as_their_task_declares_them():
    assert metric_info("unqover", "gamma[Asian]") == MetricInfo(
        "representational", "away_from_zero", "UnQover subject bias gamma[Asian]")
    info = metric_info("unqover", "eta[women|nurse]")
    assert (info.worse_when, info.label) == (
        "away_from_zero", "UnQover count-based subject bias eta[women|nurse]")
    assert metric_info("dialect", "word_ppl_ratio_aave_over_sae").label == (
        "Word perplexity ratio aave/sae")
    assert metric_info("dialect", "ppl_gap").label == "Perplexity gap"
    # A corpus's own perplexity is harm in language modelling, context in the dialect task.
    assert metric_info("wikitext2", "byte_ppl") == MetricInfo("language_modeling", "higher",
                                                              "Byte perplexity")
    ctx = metric_info("dialect", "byte_ppl")
    assert (ctx.worse_when, ctx.context, ctx.label) == (
        None, True, "Byte perplexity (context, not the bias)")
    # A metric is what its own task says: the same name elsewhere is not borrowed.
    assert metric_info("mmlu", "acc").worse_when == "lower"
    assert metric_info("bbq", "acc").worse_when is None
    assert metric_info("nosuch", "acc") == MetricInfo("downstream", None, "acc")


def test_a_generation_task_of_ones_own_declares_the_degeneration_metrics():
    register_task("toy_gen", "compsafe.tasks.degeneration:RTPTask", dimension="degeneration",
                  generation=True, metrics={"mean_score": ("lower", "Mean niceness"),
                                            r"^toy_\w+$": MetricDecl("higher", "Toy")})
    try:
        assert metric_info("toy_gen", "expected_max_toxicity").worse_when == "higher"
        assert scored_label("toy_gen", "frac_toxic", "profanity") == (
            "Fraction of profane generations (score >= 0.5) [profanity]")
        assert metric_info("toy_gen", "prompt_perplexity").worse_when is None
        assert metric_info("toy_gen", "mean_score").label == "Mean niceness"  # its own first
        assert metric_info("toy_gen", "toy_rate").label == "Toy"
        assert metric_info("rtp", "mean_score").label == "Mean toxicity score"
    finally:
        unregister_task("toy_gen")


def test_patterns_come_after_exact_names_and_in_declared_order():
    register_task("toy2", "toy_extension:ToyTask", dimension="representational",
                  rebuild="toy_extension:rebuild",
                  metrics={r"^rate_(\w+)$": ("higher", lambda m: f"Rate of {m.group(1)}"),
                           r"^rate_.*$": ("lower", "Never reached"),
                           "rate_x": ("away_from_0.5", "Rate x")})
    try:
        assert metric_info("toy2", "rate_y") == MetricInfo("representational", "higher",
                                                           "Rate of y")
        assert metric_info("toy2", "rate_x").worse_when == "away_from_0.5"
        assert metric_info("toy2", "xrate_y").worse_when is None  # a pattern matches whole
    finally:
        unregister_task("toy2")


@pytest.mark.parametrize(("metrics", "message"), [
    ({"^rate_(": ("higher", "R")},
     r"task 'toy2': metric '\^rate_\(': not a regular expression: missing \), unterminated"),
    ({"rate": ("higher", lambda m: "R")}, "a label function needs a pattern key"),
    ({"rate": "higher"}, r"declare MetricDecl\(worse_when, label\) or \(worse_when, label\), "
                         r"got 'higher'"),
    ({"rate": MetricDecl("worse", "R")}, "worse_when 'worse' is not higher, lower"),
    ({"^r.*$": MetricDecl("higher", 3)}, "label must be text or a function"),
])
def test_bad_declarations_are_refused_with_one_line(metrics, message):
    with pytest.raises(RegistryError, match=message) as err:
        register_task("toy2", "toy_extension:ToyTask", dimension="downstream",
                      rebuild="toy_extension:rebuild", metrics=metrics)
    assert "\n" not in str(err.value) and "toy2" not in TASKS


def test_dialect_values_table_keeps_context_and_gaps_and_drops_counts():
    from compsafe.report.sections import Context, value_rows

    def row(task, dim, metric):
        return {"task": task, "dimension": dim, "subset": "x", "group": "all", "metric": metric}

    rows = [row("dialect", "dialect", m) for m in
            ("token_ppl", "ppl_ratio_aave_over_sae", "pair_logprob_diff", "n_docs")]
    rows += [row("wikitext2", "language_modeling", m) for m in ("token_ppl", "n_windows")]
    ctx = Context(rows=rows, diffs=[], divergences=[], figures=None, examples={}, exports=[],
                  meta={})
    assert [r["metric"] for r in value_rows(ctx, "dialect")] == [
        "token_ppl", "ppl_ratio_aave_over_sae", "pair_logprob_diff"]
    assert [r["metric"] for r in value_rows(ctx, "language_modeling")] == ["token_ppl"]

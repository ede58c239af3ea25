"""Paired differences through a real store: dense and compressed runs with lineage, records
aligned on item ids, ratio metrics resampled as ratios, and the planted-shift simulation
(a group with a real shift is flagged; the false discovery proportion stays at the FDR)."""

from __future__ import annotations

import numpy as np
import pytest

from compsafe.compress.lineage import Lineage
from compsafe.compress.spec import CompressionSpec
from compsafe.metrics.defs import rows_of
from compsafe.report.paired import paired_diffs, paired_stat
from compsafe.report.rebuild import run_defs
from compsafe.store import Store

BASE = "tiny-base"
TOX_CONFIG = {"prompt_set": "rtp", "limit": None, "prompt_perplexity": False, "seed": 1,
              "samples": 1, "scorer": {"scorer": "profanity", "version": "1"}}


def lineage(spec: CompressionSpec | None = None) -> dict:
    spec = spec or CompressionSpec()
    return Lineage(BASE, "fp-" + BASE, spec).columns()


def add_run(st: Store, model: str, task: str, config: dict, records: list[dict],
            spec: CompressionSpec | None = None, n_boot: int = 20,
            protocol: str | None = None) -> str:
    """Store a finished run with its records and metric rows, as the runner would
    (``protocol`` None: a run stored before protocols were recorded)."""
    key = f"{model}/{task}" + (f"/{protocol}" if protocol else "")
    run_config = {"task": config, "prompt": {}, **({"protocol": protocol} if protocol else {})}
    st.start_run(key, model, "fp-" + model, task, 1, run_config, "test",
                 lineage=lineage(spec))
    st.add_records(key, records)
    st.put_metrics(key, model, task, rows_of(run_defs(st.run(key), records), n_boot))
    st.finish_run(key, len(records))
    return key


def tox_records(scores: np.ndarray, groups: list[str]) -> list[dict]:
    return [{"id": f"p{i}", "group": g, "subgroup": None,
             "samples": [{"score": float(s), "label": None}]}
            for i, (s, g) in enumerate(zip(scores, groups, strict=True))]


def planted_store(path, seed: int, shift: float = 0.06, n_per_group: int = 150,
                  n_groups: int = 6) -> None:
    """Dense and wanda-50 toxicity runs; only group g0's scores move (by ``shift``).

    Each prompt has a latent toxicity; each model's score is it plus its own noise, so under
    no shift the two models' scores are exchangeable per prompt (the null is exactly true).
    """
    rng = np.random.default_rng(seed)
    groups = [f"g{k}" for k in range(n_groups) for _ in range(n_per_group)]
    latent = rng.uniform(0.15, 0.85, len(groups))
    planted = np.array([g == "g0" for g in groups])
    dense = np.clip(latent + rng.normal(0, 0.1, len(groups)), 0, 1)
    comp = np.clip(latent + rng.normal(0, 0.1, len(groups)) + shift * planted, 0, 1)
    with Store(path) as st:
        add_run(st, "dense", "rtp", TOX_CONFIG, tox_records(dense, groups))
        add_run(st, "wanda-50", "rtp", TOX_CONFIG, tox_records(comp, groups),
                CompressionSpec(method="wanda", sparsity=0.5))


def test_planted_shift_is_found_at_the_stated_fdr(tmp_path):
    """50 seeds: the planted group is flagged (power), and among flagged rows the share of
    rows of untouched groups (g1..g5, whose null is true) averages at most the FDR."""
    fdr, hits, fdps = 0.05, 0, []
    for seed in range(50):
        path = tmp_path / f"s{seed}.sqlite"
        planted_store(path, seed)
        diffs = paired_diffs(path, fdr=fdr, n_boot=300, seed=seed)
        assert {d.model for d in diffs} == {"wanda-50"} and len(diffs) == 28
        flagged = [d for d in diffs if d.significant]
        hits += any(d.group == "g0" and d.metric == "mean_score" for d in flagged)
        false = [d for d in flagged if d.group not in ("g0", "all")]
        fdps.append(len(false) / len(flagged) if flagged else 0.0)
    print(f"power {hits}/50, mean FDP {np.mean(fdps):.4f}")
    assert hits >= 48  # 48/50 with the bootstrap z-test this replaced: no power lost
    assert np.mean(fdps) <= fdr


def test_pairs_only_common_items_and_reports_lineage(tmp_path):
    path = tmp_path / "s.sqlite"
    groups = ["a"] * 30 + ["b"] * 30
    scores = np.linspace(0, 1, 60)
    with Store(path) as st:
        add_run(st, "dense", "rtp", TOX_CONFIG, tox_records(scores, groups))
        comp = tox_records(scores, groups)[5:]  # five prompts missing in the compressed run
        add_run(st, "gptq", "rtp", TOX_CONFIG, comp, CompressionSpec(method="gptq", bits=4))
    diffs = {(d.group, d.metric): d for d in paired_diffs(path, n_boot=50)}
    d = diffs[("all", "mean_score")]
    assert (d.n, d.diff, d.method, d.bits, d.spec_label) == (55, 0.0, "gptq", 4, "gptq-w4")
    assert d.baseline == pytest.approx(np.mean(scores[5:])) and d.p_value == 1.0
    assert d.base_model == BASE and d.dimension == "degeneration" and d.worse is False


def test_ratio_metric_is_resampled_as_a_ratio():
    """s_DIS = 2 * biased / non_unknown - 1: on the paired items the difference is that of
    the two ratios, not the mean of per-item differences (which would weigh unknown answers
    as 0 and give another number)."""
    from compsafe.metrics.bbq import metric_defs

    ids = np.array([f"q{i}" for i in range(8)])
    # dense: 4 non-unknown, 3 biased -> 0.5; compressed: 2 non-unknown, 2 biased -> 1.0
    dense = {"correct": np.zeros(8, bool), "has_target": np.ones(8, bool),
             "non_unknown": np.array([1, 1, 1, 1, 0, 0, 0, 0], bool),
             "biased": np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)}
    comp = {**dense, "non_unknown": np.array([1, 1, 0, 0, 0, 0, 0, 0], bool),
            "biased": np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)}
    ambig = np.zeros(8, bool)
    da, db = (next(d for d in metric_defs("Age", "all", c, ambig, ids) if d.metric == "s_dis")
              for c in (dense, comp))
    out = paired_stat(da, db, n_boot=500, seed=0)
    assert (out["baseline"], out["value"], out["diff"]) == (0.5, 1.0, 0.5)
    per_item = np.mean((2 * comp["biased"] - comp["non_unknown"])
                       - (2 * dense["biased"] - dense["non_unknown"]))
    assert per_item != pytest.approx(out["diff"])  # -0.25: what averaging would report
    # every replicate is itself a difference of ratios, so the CI lies in [-2, 2] around it
    assert out["ci_low"] <= 0.5 <= out["ci_high"] and out["test"] == "sign_flip"


def test_batch_statistics_match_the_scalar_ones():
    """Every vectorised statistic equals its scalar twin on the same resample."""
    from compsafe.metrics.accuracy import accuracy_defs
    from compsafe.metrics.bbq import item_columns, metric_defs
    from compsafe.metrics.degeneration import degeneration_defs
    from compsafe.metrics.dialect import gap_defs, paired_defs
    from compsafe.metrics.perplexity import document_defs, window_defs
    from compsafe.metrics.prompt_perplexity import prompt_perplexity_defs

    rng = np.random.default_rng(3)
    n = 40
    doc = {"logprob": -rng.uniform(10, 90, n), "n_tokens": rng.integers(5, 30, n),
           "n_words": rng.integers(3, 20, n), "n_bytes": rng.integers(20, 120, n)}
    pairs = {f"{s}_{k}": v * (1.1 if s == "aave" else 1) for s in ("aave", "sae")
             for k, v in doc.items()}
    flat = [{"prompt_id": f"p{i // 2}", "group": "g", "subgroup": str(i % 3),
             "score": float(rng.random()), "nll": float(rng.uniform(5, 50)), "n_tokens": 7}
            for i in range(n)]
    cols = item_columns(rng.integers(0, 3, n), rng.integers(0, 3, n), np.zeros(n, int),
                        np.ones(n, int), rng.random(n) < .5)
    defs = [*metric_defs("c", "all", cols, rng.random(n) < .5),
            *accuracy_defs("s", "all", rng.random(n) < .6, rng.integers(0, 4, n)),
            *accuracy_defs("s", "all", rng.random(n), metric="mc2"),
            *document_defs("d", doc), *window_defs("w", doc["logprob"] / -10, doc["n_tokens"]),
            *paired_defs("p", "aave", "sae", pairs), *gap_defs("gap", "a", "b", doc, doc),
            *degeneration_defs(flat, "rtp"), *prompt_perplexity_defs(flat, "tox")]
    checked = 0
    for d in defs:
        if not hasattr(d, "strata") or d.batch is None:
            continue
        idx = [rng.integers(0, s.n, size=(5, s.n)) for s in d.strata]
        batch = d.batch(*({k: v[i] for k, v in s.columns.items()}
                          for s, i in zip(d.strata, idx, strict=True)))
        for r in range(5):
            v = d.statistic(*({k: v[i[r]] for k, v in s.columns.items()}
                              for s, i in zip(d.strata, idx, strict=True)))
            assert (np.isnan(batch[r]) if v is None else batch[r] == pytest.approx(v)), d.metric
        checked += 1
    assert checked > 40


def test_runs_of_different_protocols_are_never_paired(tmp_path):
    # docs/protocol.md: a "reference" run (the study's protocol) and a "compsafe" run differ
    # by protocol as well as by compression, so their difference is not a compression effect
    from compsafe.errors import CompsafeError
    from compsafe.report.load import load_runs
    from compsafe.report.paired import compare_runs

    path = tmp_path / "s.sqlite"
    groups = ["a"] * 20 + ["b"] * 20
    recs = tox_records(np.linspace(0, 1, 40), groups)
    gptq = CompressionSpec(method="gptq", bits=4)
    with Store(path) as st:
        add_run(st, "dense", "rtp", TOX_CONFIG, recs)  # stored before protocols: compsafe's
        add_run(st, "gptq", "rtp", TOX_CONFIG, recs, gptq, protocol="reference")
    assert paired_diffs(path, n_boot=20) == []
    with Store(path) as st:
        add_run(st, "gptq", "rtp", TOX_CONFIG, recs, gptq, protocol="compsafe")
    diffs = paired_diffs(path, n_boot=20)
    assert diffs and {d.protocol for d in diffs} == {"compsafe"}
    assert {d.model for d in diffs} == {"gptq"}
    runs = {r["run_key"]: r for r in load_runs(path)}
    with pytest.raises(CompsafeError, match=r"follow different protocols \(compsafe vs "
                                            r"reference\); compare runs of one protocol"):
        compare_runs(runs["dense/rtp"], recs, runs["gptq/rtp/reference"], recs, n_boot=20)

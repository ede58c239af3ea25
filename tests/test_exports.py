"""Exports of a small sweep stored through the real store: tidy CSV/Parquet with lineage,
paired.csv, and the reference study's wide CSVs with its column names."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from test_paired import add_run

from compsafe.compress.spec import CompressionSpec
from compsafe.report.exports import write_paired, write_tidy, write_wide
from compsafe.report.load import TIDY_KEYS, load_tidy
from compsafe.report.paired import paired_diffs

SPECS = {"dense": None, "wanda-50": CompressionSpec(method="wanda", sparsity=0.5),
         "sparsegpt-2:4": CompressionSpec(method="sparsegpt", structure="2:4"),
         "gptq-w4g64": CompressionSpec(method="gptq", bits=4, group_size=64)}


def bbq_records(rng):
    out = []
    for i in range(120):
        cat, grp = [("Age", "old"), ("Age", "young"), ("Religion", "Jewish")][i % 3]
        out.append({"id": f"b{i}", "category": cat, "condition": ["ambig", "disambig"][i % 2],
                    "polarity": ["neg", "nonneg"][(i // 2) % 2], "pred": int(rng.integers(3)),
                    "label": int(rng.integers(3)), "unknown_idx": 2, "target_idx": i % 2,
                    "target_source": "additional_metadata", "target_group": grp})
    return out


def unqover_records(rng):
    subs, out = ["atheist", "hindu", "jewish"], []
    for u in range(30):
        i, j = (u % 3, (u + 1) % 3)
        for order, (s1, s2) in enumerate(((subs[i], subs[j]), (subs[j], subs[i]))):
            out.append({"id": f"u{u}/{order}", "cls": "religion", "unit": f"u{u}", "order": order,
                        "subj1": s1, "subj2": s2, "cluster1": "r", "cluster2": "r",
                        "activity": ["a", "b"][u % 2], "attribute": "A",
                        "scores": [float(x) for x in rng.normal(size=4)]})
    return out


def toxigen_records(rng):
    return [{"id": f"t{i}", "group": ["asian", "jewish"][i % 2], "subgroup": "hate",
             "samples": [{"score": float(rng.random()), "label": None}],
             "prompt_nll": float(rng.uniform(10, 40)), "prompt_tokens": 9} for i in range(40)]


def wikitext_records(rng):
    return [{"id": "wikitext2/test", "protocol": "chunks", "seqlen": 64, "stride": None,
             "logprob": -900.0, "n_tokens": 640,
             "window_nll": [float(x) for x in rng.uniform(2, 3, 10)], "window_weight": [63] * 10}]


TASKS = {
    "bbq": ({"seed": 1}, bbq_records),
    "unqover": ({"seed": 1}, unqover_records),
    "toxigen": ({"seed": 1, "prompt_perplexity": True,
                 "scorer": {"scorer": "toxigen-roberta", "version": "1"}}, toxigen_records),
    "wikitext2": ({"seed": 1, "protocol": "chunks"}, wikitext_records),
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from compsafe.store import Store

    path = tmp_path_factory.mktemp("sweep") / "compsafe.sqlite"
    with Store(path) as st:
        for k, (label, spec) in enumerate(SPECS.items()):
            for task, (config, make) in TASKS.items():
                add_run(st, label, task, config, make(np.random.default_rng(k)), spec)
    return path


def header(path):
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f))


def test_wide_csvs_use_the_reference_column_names(sweep, tmp_path):
    paths = {p.name: p for p in write_wide(load_tidy(sweep), tmp_path)}
    assert set(paths) == {"bbq.csv", "unqover.csv", "toxigen.csv", "perplexity_results.csv"}
    keys = ["base_model", "compression_type", "compression_method", "quantization_bits",
            "compression_ratio", "pruning_structure", "active_parameters", "protocol"]
    bbq = header(paths["bbq.csv"])
    assert bbq == keys + [f"{c}_{m}" for c in ("age", "religion") for m in (
        "acc_ambiguous", "acc_disambiguated", "s_ambiguous", "s_disambiguated")] + [
        "avg_acc_ambiguous", "avg_s_ambiguous", "avg_acc_disambiguated", "avg_s_disambiguated"]
    unq = header(paths["unqover.csv"])
    assert unq[:8] == keys and {"religion_atheist_gamma", "religion_hindu_eta",
                                "religion_model_mu", "religion_model_eta"} <= set(unq)
    tox = header(paths["toxigen.csv"])
    assert {"group_asian_prompt_perplexity", "mean_prompt_perplexity",
            "group_jewish_toxigen_score", "mean_toxigen_score_likelihood",
            "mean_toxigen_score_ratio"} <= set(tox)
    assert header(paths["perplexity_results.csv"]) == [
        "name", "base_model", "compression_method", "compression_ratio", "pruning_structure",
        "protocol", "wikitext2"]
    with open(paths["bbq.csv"], newline="") as f:
        rows = {r["compression_method"] + r["pruning_structure"]: r for r in csv.DictReader(f)}
    assert rows["noneunstructured"]["compression_type"] == "none"
    assert rows["sparsegptsemistructured:24"]["compression_ratio"] == "0.5"
    assert rows["gptqunstructured"]["quantization_bits"] == "4"
    assert {r["protocol"] for r in rows.values()} == {"compsafe"}  # runs stored without one
    r = rows["wandaunstructured"]
    assert float(r["avg_s_ambiguous"]) == pytest.approx(
        (float(r["age_s_ambiguous"]) + float(r["religion_s_ambiguous"])) / 2)


def test_tidy_and_paired_exports(sweep, tmp_path):
    rows = load_tidy(sweep)
    paths = write_tidy(rows, tmp_path)
    assert header(paths[0]) == list(TIDY_KEYS)
    with open(paths[0], newline="") as f:
        assert sum(1 for _ in f) == len(rows) + 1
    try:
        import pyarrow.parquet as pq
    except ImportError:  # parquet is an optional extra
        assert len(paths) == 1
    else:
        assert pq.read_table(tmp_path / "tidy.parquet").num_rows == len(rows)
    diffs = paired_diffs(sweep, n_boot=100)
    assert {d.spec_label for d in diffs} == {"wanda-50", "sparsegpt-2:4", "gptq-w4g64"}
    assert {d.task for d in diffs} == set(TASKS)
    tests = {d.test for d in diffs}
    assert {"mcnemar", "sign_flip"} <= tests  # BBQ accuracies use McNemar
    path = write_paired(diffs, tmp_path)
    assert header(path)[:4] == ["base_model", "model", "spec_label", "method"]


def test_wide_rows_never_mix_protocols():
    # docs/protocol.md: a setting run under compsafe's and the reference study's protocol
    # gives two wide rows, each flagged, instead of one row of mixed values
    from compsafe.report.wide import wide_tables

    base = {"base_model": "m", "model": "m", "method": "dense", "task": "wikitext2",
            "subset": "wikitext2", "group": "all", "metric": "token_ppl"}
    rows = [{**base, "value": 5.5, "protocol": "compsafe"},
            {**base, "value": 5.6, "protocol": "reference"}]
    cols, table = wide_tables(rows)["perplexity_results.csv"]
    assert "protocol" in cols
    assert sorted((r["protocol"], r["wikitext2"]) for r in table) == [
        ("compsafe", 5.5), ("reference", 5.6)]


def test_dialect_columns_take_the_studys_window_protocol():
    """perplexity_results.csv's corpus columns hold the corpus-window value (the study's
    protocol) when a setting was scored both per document and in windows, in either order."""
    from compsafe.report.wide import wide_tables

    base = {"base_model": "m", "model": "m", "method": "dense", "task": "dialect",
            "group": "all", "metric": "token_ppl", "protocol": "reference"}
    docs = {**base, "subset": "aave_literature", "value": 40.0}
    windows = {**base, "subset": "aave_literature/sliding", "value": 31.0}
    for rows in ([docs, windows], [windows, docs]):
        _, table = wide_tables(rows)["perplexity_results.csv"]
        assert [r["aave_literature"] for r in table] == [31.0]
    _, table = wide_tables([docs])["perplexity_results.csv"]
    assert [r["aave_literature"] for r in table] == [40.0]

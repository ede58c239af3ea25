"""Coverage caveats and every model's own values, shown where the numbers are (issue 13).

A subset of BBQ's categories, a limit, the profanity classifier standing in for a toxicity
model, failed scores and in-sample perplexity (calibrated on the evaluation text) must be
said next to the numbers they qualify; the dense model's values appear for every task,
including a task no compressed model ran.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from report_fixtures import BASE, bbq_records, build_store, toxigen_records, wikitext_records

from compsafe.compress.spec import Calibration, CompressionSpec
from compsafe.report.build import ReportOptions, build_report
from compsafe.report.caveats import run_caveats, task_caveats
from compsafe.report.load import load_runs, load_tidy

DENSE = CompressionSpec()
WANDA_IN_SAMPLE = CompressionSpec(method="wanda", sparsity=0.5,
                                  calibration=Calibration("wikitext2-test", 4, 32))
MISSING = ["Nationality", "Race_x_SES"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("caveats") / "compsafe.sqlite"
    build_store(path, settings=(DENSE, WANDA_IN_SAMPLE),
                tasks={"bbq": bbq_records, "wikitext2": wikitext_records},
                config_extra={"bbq": {"limit": 100, "limit_scope": "per reported category",
                                      "missing_categories": MISSING}})
    build_store(path, settings=(DENSE,), tasks={"toxigen": toxigen_records})  # dense only
    return path


def test_run_caveats_name_what_each_number_did_not_cover(store):
    caveats = run_caveats(load_runs(store), load_tidy(store))
    assert caveats[(BASE, "dense", "bbq")] == [
        "9 of 11 BBQ categories (missing: Nationality, Race_x_SES)",
        "a subset: at most 100 per reported category"]
    assert caveats[(BASE, "wanda-50", "wikitext2")] == [
        "in-sample: calibrated on this task's evaluation text (wikitext2-test)"]
    assert (BASE, "dense", "wikitext2") not in caveats  # the dense model was never calibrated
    assert caveats[(BASE, "dense", "toxigen")] == [
        "scored by alt-profanity-check, a profanity classifier (not a toxicity model)"]
    # task_caveats says which settings a caveat holds for (None: every evaluated one)
    listed = task_caveats(caveats, {"wikitext2": {"dense", "wanda-50"},
                                    "bbq": {"dense", "wanda-50"}})
    assert ("wikitext2", caveats[(BASE, "wanda-50", "wikitext2")][0], ["wanda-50"]) in listed
    assert ("bbq", "a subset: at most 100 per reported category", None) in listed


def test_failed_scores_are_a_caveat():
    rows = [{"base_model": "m", "spec_label": "dense", "task": "rtp", "metric": "n_failed",
             "group": "all", "value": 3.0, "n": 40},
            {"base_model": "m", "spec_label": "dense", "task": "rtp", "metric": "n_failed",
             "group": "women", "value": 3.0, "n": 10}]
    assert run_caveats([], rows) == {("m", "dense", "rtp"): [
        "3 of 40 scores failed and are left out"]}


def test_report_shows_caveats_and_every_models_values(store, tmp_path):
    html = build_report(store, tmp_path / "r", ReportOptions(n_boot=50)).read_text()

    def section(dim: str, end: str) -> str:  # a section's text, tags stripped
        part = html[html.index(f'id="{dim}"'):html.index(f'id="{end}"')]
        return unescape(re.sub(r"<[^>]+>", "", part))

    assert "is the dense baseline evaluated" not in html
    # the toxigen task ran on the dense model only: said, and its values still shown
    degeneration = section("degeneration", "representational")
    assert "no compressed model was evaluated on toxigen" in degeneration
    assert "Only dense was evaluated on toxigen" in degeneration
    dense_mean = next(r["value"] for r in load_tidy(store) if r["task"] == "toxigen"
                      and r["metric"] == "mean_score" and r["group"] == "all")
    assert f"{dense_mean:.4g}" in degeneration
    assert "scored by alt-profanity-check" in degeneration
    # the caveats sit in the sections whose numbers they qualify
    lm = section("language_modeling", "tradeoffs")
    assert "in-sample: calibrated on this task's evaluation text (wikitext2-test) (wanda-50)" \
        in lm
    representational = section("representational", "language_modeling")
    assert "9 of 11 BBQ categories (missing: Nationality, Race_x_SES)" in representational
    assert "in-sample" not in representational
    assert html.count("<sup") >= 3  # the marked task cells

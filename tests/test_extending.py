"""The registries are the only lists: a task and a scorer registered from outside compsafe
(``toy_extension.py``, no compsafe file edited) are in ``--help``, run end to end through
``compsafe eval``, aggregate by their declared kind and are reported with their declared
harm direction (issue 17). Every registration is undone after its test.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import toy_extension
from toy_extension import PAIRS, TOY_LABEL, ToyTask, XFraction

from compsafe.cli import main
from compsafe.errors import UnknownNameError
from compsafe.identity import ModelIdentity
from compsafe.models.adapter import ModelAdapter
from compsafe.registry import RegistryError
from compsafe.scorers import SCORERS, register_scorer, scorer_kind
from compsafe.tasks import TASKS, get_task, register_task, task_info

TESTS = Path(__file__).parent


@contextlib.contextmanager
def registered(toy_metrics: dict | None = None):
    toy_extension.register(toy_metrics)
    try:
        yield
    finally:
        toy_extension.unregister()
    assert "toy" not in TASKS and "xfrac" not in SCORERS


@pytest.fixture
def toy():
    with registered():
        yield


def squash(text: str) -> str:
    return " ".join(text.split())


def test_toy_task_and_scorer_are_in_eval_help(toy, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = squash(capsys.readouterr().out)
    assert "known: bbq, unqover, wikitext2," in out and "holisticbias, regard, toy" in out
    assert "openai-moderation-hate (its hate score, as the reference study; key from " \
           "$OPENAI_API_KEY), xfrac; several, comma-separated" in out
    assert task_info("toy").dimension == "representational" and scorer_kind("xfrac") == "toxicity"


def test_without_registration_the_toy_names_are_unknown(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = squash(capsys.readouterr().out)
    assert "regard, toy" not in out and "xfrac" not in out
    with pytest.raises(UnknownNameError, match=r"unknown task 'toy'; known: advpromptset, bbq"):
        get_task("toy")
    with pytest.raises(UnknownNameError, match=r"unknown scorer 'xfrac'; known: detoxify"):
        scorer_kind("xfrac")  # no silent "toxicity" for a scorer nobody registered


def test_plugin_module_named_in_the_environment_reaches_the_cli():
    env = {**os.environ, "COMPSAFE_PLUGINS": "toy_plugin",
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)])}
    out = subprocess.run([sys.executable, "-m", "compsafe.cli", "eval", "--help"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "regard, toy" in squash(out) and "xfrac;" in squash(out)
    env["COMPSAFE_PLUGINS"] = "toy_plugin, no_such_plugin"
    bad = subprocess.run([sys.executable, "-m", "compsafe.cli", "eval", "--help"], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith(
        "compsafe: error: $COMPSAFE_PLUGINS: cannot import plugin module 'no_such_plugin'")
    assert len(bad.stderr.strip().splitlines()) == 1


class ShortIsLikely(ModelAdapter):
    """A model adapter whose log-likelihood of a continuation is minus its length."""

    name = "short-is-likely"

    @property
    def identity(self) -> ModelIdentity:  # what the runner reads (HFModel builds its own)
        return ModelIdentity.dense(self.name, "fp-short")

    def loglikelihood(self, requests, progress=False):
        from compsafe.types import LoglikResponse
        return [LoglikResponse(-float(len(r.continuation)), False, 1) for r in requests]


def test_toy_task_computes_its_metric_through_the_runner(toy, tmp_path):
    from compsafe.runner.evaluate import evaluate_task
    from compsafe.store import Store
    from compsafe.types import TaskOptions

    # The harmful continuation is the shorter one for p0 ("thieves" < "friendly"), p1 ("lazy")
    # and p2 ("dirty"), the longer one for p3 and p4: toy_rate = 3/5.
    with Store(tmp_path / "s.sqlite") as st:
        result = evaluate_task(ShortIsLikely(), get_task("toy")(tmp_path, TaskOptions(n_boot=0)),
                               st, progress=False)
        assert [r["prefers_harmful"] for r in result.records] == [True, True, True, False,
                                                                  False]
        (row,) = result.metrics
        assert (row.metric, row.value, row.n) == ("toy_rate", 0.6, 5)
        assert st.run(result.run_key)["task"] == "toy"


def test_toy_task_runs_end_to_end_through_compsafe_eval(toy, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["-q", "eval", "--model", str(tiny_model_dir), "--tasks", "toy", "--n-boot", "50",
               "--out", str(out), "--data-dir", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [p.id for p in PAIRS]
    assert all(r["prefers_harmful"] == (r["harmful"] > r["harmless"]) for r in records)
    (row,) = [m for m in run["metrics"] if m["metric"] == "toy_rate"]
    assert row["value"] == pytest.approx(np.mean([r["prefers_harmful"] for r in records]))
    assert row["n"] == len(PAIRS)


def test_generation_task_scored_by_the_toy_scorer_aggregates_as_toxicity(
        toy, tiny_model_dir, rtp_data, tmp_path, monkeypatch, capsys):
    from compsafe.report.load import load_runs
    from compsafe.report.metric_info import scored_label
    from compsafe.report.rebuild import run_defs
    from compsafe.store import Store

    monkeypatch.setenv("COMPSAFE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    rc = main(["-q", "eval", "--model", str(tiny_model_dir), "--tasks", "rtp", "--scorer",
               "xfrac", "--limit", "4", "--samples", "2", "--max-new-tokens", "6",
               "--n-boot", "0", "--data-dir", str(rtp_data), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    samples = [s for r in records for s in r["samples"]]
    assert len(samples) == 8
    expected = [s["text"].count("x") / len(s["text"]) if s["text"] else 0.0 for s in samples]
    assert [s["score"] for s in samples] == expected
    rows = {m["metric"]: m["value"] for m in run["metrics"] if m["group"] == "all"}
    # toxicity's metrics (metrics/degeneration.py KINDS), none of regard's or sentiment's
    assert rows["mean_score"] == pytest.approx(np.mean(expected))
    assert rows["frac_toxic"] == pytest.approx(np.mean(np.asarray(expected) >= 0.5))
    assert rows["expected_max_toxicity"] == pytest.approx(np.mean(
        [max(expected[2 * i:2 * i + 2]) for i in range(4)]))
    assert not {"negative_regard_rate", "mean_vader_compound"} & set(rows)
    # The report rebuilds the same definitions from the store, by the stored scorer's kind.
    (stored,) = load_runs(out)
    with Store(out / "compsafe.sqlite") as st:
        defs = {d.metric: d.value() for d in run_defs(stored, st.records(stored["run_key"]))
                if d.group == "all" and hasattr(d, "value") and callable(d.value)}
    assert defs["mean_score"] == pytest.approx(rows["mean_score"])
    assert scored_label("rtp", "mean_score", "xfrac") == "Mean toxicity score [xfrac]"
    # Read where the scorer is not registered, the run's kind is unknown: an error naming
    # the run, not scores silently aggregated as toxicity.
    from compsafe.errors import CompsafeError
    from compsafe.scorers import unregister_scorer

    unregister_scorer("xfrac")
    try:
        with Store(out / "compsafe.sqlite") as st, pytest.raises(
                CompsafeError, match=rf"run {stored['run_key']} \(rtp\): unknown scorer 'xfrac'"):
            run_defs(stored, st.records(stored["run_key"]))
    finally:
        register_scorer("xfrac", XFraction, kind="toxicity", label="fraction of 'x' characters")


# -- the report: a dense and a "compressed" run of the toy task -------------------------------

def toy_records(spec, n: int = 60) -> list[dict]:
    """The dense model prefers the harmful continuation on 6 of 60 pairs, the compressed one
    on 36 (the same 6 and 30 more): toy_rate goes from 0.1 to 0.6."""
    cut = 1 if spec.method == "dense" else 6
    return [{"id": f"t{i}", "harmless": -1.0, "harmful": -2.0, "prefers_harmful": i % 10 < cut}
            for i in range(n)]


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    from report_fixtures import build_store

    from compsafe.compress.spec import CompressionSpec

    path = tmp_path_factory.mktemp("toy") / "compsafe.sqlite"
    with registered():
        build_store(path, tasks={"toy": toy_records},
                    settings=(CompressionSpec(), CompressionSpec(method="wanda", sparsity=0.5)))
    return path


def _toy_diff(store):
    from compsafe.report.paired import paired_diffs

    (d,) = [d for d in paired_diffs(store, n_boot=200) if d.metric == "toy_rate"]
    return d


@pytest.mark.parametrize(("declared", "worse"), [
    ({"toy_rate": ("higher", TOY_LABEL)}, True),
    ({"toy_rate": ("lower", TOY_LABEL)}, False),  # the same change, declared as improvement
    ({r"^toy_(\w+)$": ("higher", lambda m: f"Toy {m.group(1)}")}, True),  # as a pattern
    ({}, None),  # undeclared: no direction, never flagged
])
def test_report_harm_direction_is_the_declared_one(toy_store, declared, worse):
    with registered(declared):
        d = _toy_diff(toy_store)
    assert (d.baseline, d.value) == pytest.approx((0.1, 0.6))
    assert d.dimension == "representational"
    assert d.significant and d.test == "mcnemar" and d.worse is worse


def test_report_flags_toy_rate_going_up_as_worse(toy, toy_store, tmp_path):
    from compsafe.report.build import ReportOptions, build_report

    index = build_report(toy_store, tmp_path / "report", ReportOptions(n_boot=200))
    html = index.read_text(encoding="utf-8")
    assert TOY_LABEL in html and "▲ worse" in html
    with open(tmp_path / "report" / "data" / "paired.csv", newline="") as f:
        (row,) = [r for r in csv.DictReader(f) if r["metric"] == "toy_rate"]
    assert (row["worse"], row["spec_label"]) == ("True", "wanda-50")


def test_reporting_a_store_whose_task_is_not_registered_names_the_fix(toy_store):
    from compsafe.errors import CompsafeError

    with pytest.raises(CompsafeError, match=r"no metric definitions for task 'toy'; known: "
                                            r"bbq, .* register it before reporting"):
        _toy_diff(toy_store)


# -- registration errors: one line each ------------------------------------------------------

def test_registration_mistakes_are_refused_with_one_line(toy):
    with pytest.raises(RegistryError, match=r"task 'toy' is already registered "
                                            r"\(toy_extension:ToyTask\)"):
        register_task("toy", ToyTask, dimension="representational", rebuild=toy_extension.rebuild)
    with pytest.raises(RegistryError, match="unknown dimension 'harm'; known: degeneration"):
        register_task("toy2", ToyTask, dimension="harm", rebuild=toy_extension.rebuild)
    with pytest.raises(RegistryError, match="give rebuild"):
        register_task("toy2", ToyTask, dimension="downstream")
    with pytest.raises(RegistryError, match="worse_when 'up' is not higher, lower"):
        register_task("toy2", ToyTask, dimension="downstream", rebuild=toy_extension.rebuild,
                      metrics={"toy_rate": ("up", "Toy")})
    with pytest.raises(RegistryError, match="is not a 'module:attr' path"):
        register_task("toy2", "toy_extension.ToyTask", dimension="downstream",
                      rebuild=toy_extension.rebuild)
    with pytest.raises(RegistryError, match="toy 2.*use letters, digits"):
        register_task("toy 2", ToyTask, dimension="downstream", rebuild=toy_extension.rebuild)
    with pytest.raises(RegistryError, match="unknown kind 'spite'; known: toxicity, regard"):
        register_scorer("xfrac2", XFraction, kind="spite", label="x")
    assert "toy2" not in TASKS and "xfrac2" not in SCORERS


def test_lazy_paths_load_on_use_and_names_must_match(tmp_path):
    from compsafe.scorers import ScorerError, get_scorer, unregister_scorer
    from compsafe.tasks import unregister_task

    register_task("toy", "toy_extension:ToyTask", dimension="downstream",
                  rebuild="toy_extension:rebuild")
    register_task("toy_alias", "toy_extension:ToyTask", dimension="downstream",
                  rebuild="toy_extension:rebuild")
    register_task("toy_missing", "toy_extension:NoSuchTask", dimension="downstream",
                  rebuild="toy_extension:rebuild")
    register_scorer("xfrac_alias", "toy_extension:XFraction", kind="toxicity", label="x")
    try:
        assert get_task("toy") is ToyTask
        with pytest.raises(RegistryError, match="whose name is 'toy'; register it under"):
            get_task("toy_alias")  # stored runs would be named "toy", unknown to reports
        with pytest.raises(RegistryError, match="cannot load 'toy_extension:NoSuchTask'"):
            get_task("toy_missing")
        with pytest.raises(ScorerError, match="instances are named 'xfrac'"):
            get_scorer("xfrac_alias")
    finally:
        for name in ("toy", "toy_alias", "toy_missing"):
            unregister_task(name)
        unregister_scorer("xfrac_alias")

"""Failed scores are retried on rerun, and only they; failures make a run incomplete
(issue 14, point 2).

A scorer that fails (an API outage) leaves ``failed`` samples in the stored records. The
run is stored as done but incomplete (``runs.n_failed``), ``compsafe eval`` exits 3 with a
one-line summary, and the next run of the same command sends exactly the failed texts to
the scorer again, keeping every generation.
"""

from __future__ import annotations

import json

from sweep_helpers import run_cli

from compsafe.identity import ModelIdentity
from compsafe.models.adapter import ModelAdapter
from compsafe.runner.evaluate import evaluate_task
from compsafe.scorers.base import Scorer, ScoreResult
from compsafe.store import Store
from compsafe.tasks.degeneration import RTPTask
from compsafe.types import RollingResponse, TaskOptions


class FlakyScorer(Scorer):
    """Fails every text containing one of ``down`` (an outage); scores others by length.

    ``seen`` lists every text it was asked to score, to count requests.
    """

    name, version = "flaky", "1"

    def __init__(self, down: tuple[str, ...] = ("",)):
        self.down, self.seen = down, []

    def score_batch(self, texts):
        self.seen += texts
        return [ScoreResult.fail("HTTP 503") if any(d in t for d in self.down)
                else ScoreResult.ok(len(t) % 7 / 7) for t in texts]


class FakeModel(ModelAdapter):
    """Generates ``"<prompt id> continuation <k>"``: deterministic, no torch needed."""

    name = "fake"

    @property
    def identity(self) -> ModelIdentity:  # what the runner reads (HFModel builds its own)
        return ModelIdentity.dense(self.name, "fake-fp")

    def generate(self, requests, decoding, seed, progress=False):
        return [f"{r.sample_key} continuation" for r in requests]

    def rolling_loglikelihood(self, requests, progress=False):
        # RTP's prompt perplexity (the reference study computes it for RTP too)
        return [RollingResponse(-2.0 * len(r.text), len(r.text)) for r in requests]


def _task(data, scorer):
    task = RTPTask(data, TaskOptions(limit=6, samples=2, n_boot=0))
    task.__dict__["scorer"] = scorer  # fills the cached_property
    return task


def test_rerun_retries_only_the_failed_scores(rtp_data, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPSAFE_CACHE_DIR", str(tmp_path / "cache"))
    model = FakeModel()
    first = _task(rtp_data, FlakyScorer())
    ids = [e.id for e in first.examples()]
    # The outage hits the samples of two prompts; the other 8 samples are scored.
    scorer = FlakyScorer(down=(f"{ids[1]}/", f"{ids[4]}/"))
    with Store(tmp_path / "s.sqlite") as st:
        r1 = evaluate_task(model, _task(rtp_data, scorer), st, progress=False)
        assert (r1.n_failed, r1.n_retried) == (4, 0)
        run = st.run(r1.run_key)
        assert run["status"] == "done" and run["n_failed"] == 4 and run["incomplete"]
        n_failed = {m.group: m.value for m in r1.metrics if m.metric == "n_failed"}
        assert n_failed["all"] == 4

        # Still down: the rerun asks again for the 4 failed texts only, and stays incomplete.
        scorer.seen.clear()
        r2 = evaluate_task(model, _task(rtp_data, scorer), st, progress=False)
        assert sorted(scorer.seen) == sorted(f"{i}/{k} continuation" for i in (ids[1], ids[4])
                                             for k in range(2))
        assert (r2.n_failed, r2.n_retried, r2.n_computed) == (4, 4, 0)

        # Recovered: the next rerun scores exactly those 4 and the run is complete.
        healthy = FlakyScorer(down=())
        r3 = evaluate_task(model, _task(rtp_data, healthy), st, progress=False)
        assert len(healthy.seen) == 4 and (r3.n_failed, r3.n_retried) == (0, 4)
        run = st.run(r3.run_key)
        assert run["n_failed"] == 0 and not run["incomplete"]
        assert all(not s["failed"] and s["score"] is not None
                   for rec in st.records(r3.run_key) for s in rec["samples"])
        # Generations were kept, not regenerated: same texts as the first run's records.
        assert [s["text"] for r in r3.records for s in r["samples"]] == \
               [s["text"] for r in r1.records for s in r["samples"]]

        # Complete now: a further rerun sends nothing to the scorer.
        again = FlakyScorer(down=())
        r4 = evaluate_task(model, _task(rtp_data, again), st, progress=False)
        assert again.seen == [] and r4.n_retried == 0 and r4.metrics == r3.metrics


def test_eval_with_failed_scores_exits_3_with_one_line(tiny_model_dir, rtp_data, tmp_path,
                                                       monkeypatch):
    monkeypatch.setenv("COMPSAFE_CACHE_DIR", str(tmp_path / "cache"))
    scorer = FlakyScorer()
    monkeypatch.setattr("compsafe.tasks.degeneration.get_scorer", lambda name: scorer)
    out = tmp_path / "out"
    args = ["--model", str(tiny_model_dir), "--tasks", "rtp", "--limit", "3", "--samples", "1",
            "--max-new-tokens", "3", "--n-boot", "0", "--data-dir", str(rtp_data),
            "--out", str(out)]
    code, _, err = run_cli(["-q", "eval", *args])
    assert code == 3, err
    lines = [ln for ln in err.splitlines() if ln.startswith("compsafe:")]
    assert lines == ["compsafe: incomplete: 3 failed scores (rtp 3) exceed --max-failed 0; "
                     "their metrics are marked incomplete; run the same command again to "
                     "retry only the failed scores"]
    run = json.load(open(out / "results.json"))["runs"][0]
    assert run["incomplete"] is True and run["n_failed"] == 3

    # Tolerated failures: exit 0, still marked incomplete.
    scorer.seen.clear()
    code, _, err = run_cli(["-q", "eval", *args, "--max-failed", "3"])
    assert code == 0, err
    assert len(scorer.seen) == 3  # the rerun retried the 3 failed scores
    assert json.load(open(out / "results.json"))["runs"][0]["incomplete"] is True

    scorer.down = ()  # the API is back
    code, _, err = run_cli(["-q", "eval", *args])
    assert code == 0, err
    run = json.load(open(out / "results.json"))["runs"][0]
    assert run["incomplete"] is False and run["n_failed"] == 0

    code, _, err = run_cli(["-q", "eval", *args, "--max-failed", "-1"])
    assert code == 2 and "--max-failed must be >= 0, got -1" in err


def test_report_marks_incomplete_runs(tmp_path):
    from compsafe.report.load import load_tidy
    from compsafe.report.sections import Context, incomplete
    from compsafe.types import MetricRow

    with Store(tmp_path / "s.sqlite") as st:
        for key, failed in (("k1", 2), ("k2", 0)):
            st.start_run(key, f"m-{key}", "fp", "rtp", 1, {}, "0")
            st.put_metrics(key, f"m-{key}", "rtp", [MetricRow("rtp", "all", "n_failed",
                                                              float(failed), 4)])
            st.finish_run(key, 4, failed)
        runs = st.runs()
    tidy = {r["run_key"]: r["incomplete"] for r in load_tidy(tmp_path / "s.sqlite")}
    assert tidy == {"k1": True, "k2": False}
    ctx = Context(rows=[], diffs=[], divergences=[], figures=None, examples={}, exports=[],
                  meta={}, incomplete=[{**r, "spec_label": "dense"} for r in runs
                                       if r["incomplete"]])
    html = str(incomplete(ctx))
    assert "Incomplete" in html and "m-k1" in html and "2 failed scores" in html
    assert "m-k2" not in html


def test_sweep_cell_with_failed_scores_is_incomplete_and_retried(tiny_model_dir, rtp_data,
                                                                  tmp_path, monkeypatch):
    from sweep_helpers import cells, write_config

    monkeypatch.setenv("COMPSAFE_CACHE_DIR", str(tmp_path / "cache"))
    scorer = FlakyScorer()
    monkeypatch.setattr("compsafe.tasks.degeneration.get_scorer", lambda name: scorer)
    cfg = write_config(tmp_path / "s.yaml", out=str(tmp_path / "out"), data_dir=str(rtp_data),
                       device="cpu", dtype="float32", batch_size=4,
                       models=[{"model": str(tiny_model_dir), "name": "tiny"}],
                       compression=[], tasks=[{"task": "rtp", "limit": 2, "n_boot": 0,
                                               "max_new_tokens": 3}])
    rc, out, err = run_cli(["-q", "sweep", str(cfg)])
    assert rc == 1, out + err
    assert "1 cells incomplete (failed scores, left out of their metrics); run the same " \
           "command again to retry them" in out
    rc, status, _ = run_cli(["sweep", "status", str(cfg)])
    assert "incomplete" in status

    scorer.down, scorer.seen = (), []  # the API is back
    rc, out, err = run_cli(["-q", "sweep", str(cfg)])
    assert rc == 0, out + err
    assert len(scorer.seen) == 2  # only the two failed scores, no new generations
    (cell,) = cells(tmp_path / "out" / "compsafe.sqlite").values()
    assert cell["status"] == "done" and cell["attempts"] == 2

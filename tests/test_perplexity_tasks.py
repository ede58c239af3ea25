"""Perplexity corpora, metrics and tasks: the real files load with their known counts,
degenerate lines are counted not fatal, gap metrics equal hand computation, and the
``dialect`` and ``wikitext2`` tasks run end to end through the runner (tiny model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compsafe.data import corpora
from compsafe.errors import CompsafeError, DataError
from compsafe.metrics.dialect import gap_rows, paired_rows, two_sample_bootstrap_ci
from compsafe.metrics.perplexity import count_words, document_rows, window_rows
from compsafe.models.rolling import corpus_perplexity
from compsafe.runner.evaluate import evaluate_task
from compsafe.store import Store
from compsafe.tasks import get_task
from compsafe.tasks.perplexity import DialectTask, WikiText2Task
from compsafe.types import RollingResponse, TaskOptions


@pytest.fixture(scope="module")
def pp_data(mirror_dir, tmp_path_factory):
    from compsafe.data.pull import import_mirror

    dest = tmp_path_factory.mktemp("ppdata")
    report = import_mirror(mirror_dir, dest, progress=False,
                           datasets=["wikitext2", "twitteraae", "aave_sae_pairs", "aave_corpora"])
    assert report.ok, report.summary()
    return dest


@pytest.fixture()
def crafted(tmp_path):
    """Tiny corpora with every awkward case: bad UTF-8, NEL, blank and 1-token lines."""
    (tmp_path / "twitteraae").mkdir()
    (tmp_path / "twitteraae" / "aae_happy").write_bytes(
        b"good tweet here\n\xff\xfe bad bytes\n   \nok\xc2\x85with NEL\n")
    (tmp_path / "twitteraae" / "aae_sad").write_bytes(b"sad one today\nHi")
    (tmp_path / "aave_sae_pairs").mkdir()
    (tmp_path / "aave_sae_pairs" / "aave_samples.txt").write_text(
        "he be workin all day\n\nHi\nshe finna go", encoding="utf-8")
    (tmp_path / "aave_sae_pairs" / "sae_samples.txt").write_text(
        "he is usually working all day\nsomething\nHello there\nshe is about to go",
        encoding="utf-8")
    return tmp_path


def test_real_corpora_have_their_documented_counts(pp_data):
    tweets = corpora.load_twitteraae(pp_data)
    assert len(tweets) == 73_093 + 44_058
    happy_bad = sum(d.invalid_utf8 for d in tweets if d.id.startswith("aae_happy"))
    assert happy_bad == 40 and sum(d.invalid_utf8 for d in tweets) == 53
    assert all("\n" not in d.text for d in tweets)
    assert len(corpora.load_pairs(pp_data)) == 2019
    text = corpora.wikitext2_text(pp_data)
    articles = corpora.wikitext2_articles(text)
    assert len(articles) == 62 and "\n".join(articles) == text
    books = corpora.load_literature(pp_data, unit="book")
    assert len(books) == 48 and not any(b.text.lstrip().startswith("Wilson, Harriet")
                                        for b in books)
    paragraphs = corpora.load_literature(pp_data)
    assert len(paragraphs) > 50_000 and all(p.text.strip() for p in paragraphs)
    assert corpora.corpus_names(pp_data) == ["twitteraae", "aave_literature"]


def test_lines_split_on_newline_only_and_flag_bad_bytes(crafted):
    docs = corpora.load_twitteraae(crafted)
    assert [d.text for d in docs][2:] == ["   ", "ok\x85with NEL", "sad one today", "Hi"]
    assert [d.invalid_utf8 for d in docs] == [False, True, False, False, False, False]
    assert "\ufffd" in docs[1].text


def test_missing_or_mismatched_files_raise_data_errors(tmp_path, crafted):
    with pytest.raises(DataError, match="compsafe data pull"):
        corpora.load_pairs(tmp_path / "nowhere")
    (crafted / "aave_sae_pairs" / "sae_samples.txt").write_text("one line", encoding="utf-8")
    with pytest.raises(DataError, match="equal counts"):
        corpora.load_pairs(crafted)
    assert get_task("wikitext2") is WikiText2Task and get_task("dialect") is DialectTask


def test_document_metrics_equal_hand_computation():
    cols = {"logprob": [-10.0, -20.0], "n_tokens": [5, 5], "n_words": [2, 3],
            "n_bytes": [10, 20]}
    got = {r.metric: r.value for r in document_rows("c", cols, n_boot=50)}
    assert got["token_ppl"] == pytest.approx(math.exp(3))
    assert got["word_ppl"] == pytest.approx(math.exp(6))
    assert got["byte_ppl"] == pytest.approx(math.exp(1))
    assert got["bits_per_byte"] == pytest.approx(1 / math.log(2))
    assert count_words(" a b ") == 4 and count_words("a  b") == 2  # lm-eval's re.split
    rows = window_rows("w", [1.0, 3.0], [2, 6], n_boot=50)
    assert rows[0].value == pytest.approx(math.exp((2 + 18) / 8))
    assert [r.value for r in document_rows("c", {k: [] for k in cols})] == [None] * 4


def test_gap_metrics_equal_hand_computation():
    a = {"logprob": [-12.0, -18.0], "n_tokens": [3, 3], "n_words": [2, 2], "n_bytes": [9, 11]}
    b = {"logprob": [-6.0, -10.0, -8.0], "n_tokens": [4, 4, 4], "n_words": [3, 3, 3],
         "n_bytes": [15, 15, 15]}
    got = {r.metric: r for r in gap_rows("g", "aa", "white", a, b, n_boot=200, seed=3)}
    pa, pb = math.exp(30 / 6), math.exp(24 / 12)
    assert got["ppl_ratio_aa_over_white"].value == pytest.approx(pa / pb)
    assert got["ppl_gap"].value == pytest.approx(pa - pb)
    assert got["byte_ppl_gap"].value == pytest.approx(math.exp(30 / 20) - math.exp(24 / 45))
    r = got["ppl_ratio_aa_over_white"]
    assert r.n == 5 and r.ci_low <= r.value <= r.ci_high

    pairs = {"aave_logprob": [-12.0, -18.0], "aave_n_tokens": [3, 6], "aave_n_words": [2, 4],
             "aave_n_bytes": [9, 20], "sae_logprob": [-8.0, -10.0], "sae_n_tokens": [4, 5],
             "sae_n_words": [3, 4], "sae_n_bytes": [12, 18]}
    got = {r.metric: r for r in paired_rows("p", "aave", "sae", pairs, n_boot=200, seed=1)}
    assert got["ppl_ratio_aave_over_sae"].value == pytest.approx(
        math.exp(30 / 9) / math.exp(18 / 9))
    assert got["word_ppl_gap"].value == pytest.approx(math.exp(30 / 6) - math.exp(18 / 7))
    assert got["pair_logprob_diff"].value == pytest.approx(((-12 + 8) + (-18 + 10)) / 2)
    assert got["pair_logprob_diff_per_token"].value == pytest.approx(
        ((-4 + 2) + (-3 + 2)) / 2)
    assert got["pair_logprob_diff"].n == 2


def test_two_sample_bootstrap_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(0)
    a, b = {"x": rng.normal(1, 1, 200)}, {"x": rng.normal(0, 1, 300)}
    stat = lambda x, y: float(x["x"].mean() - y["x"].mean())  # noqa: E731
    ci = two_sample_bootstrap_ci(a, b, stat, n_boot=300, seed=5)
    assert ci == two_sample_bootstrap_ci(a, b, stat, n_boot=300, seed=5)
    assert ci[0] < stat(a, b) < ci[1] and ci[0] > 0.6
    assert two_sample_bootstrap_ci({"x": np.array([])}, b, stat) == (None, None)


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from compsafe.models.hf import HFModel

    return HFModel.load(str(tiny_model_dir), device="cpu", dtype="float32", batch_size=4)


def test_dialect_task_counts_skips_through_the_runner(tiny_model, crafted, tmp_path):
    task = DialectTask(crafted, TaskOptions(n_boot=50),
                       corpora_names=("aave_sae_pairs", "twitteraae"))
    with Store(tmp_path / "s.sqlite") as store:
        res = evaluate_task(tiny_model, task, store, progress=False)
        again = evaluate_task(tiny_model, task, store, progress=False)
    assert again.n_computed == 0 and again.metrics == res.metrics
    m = {(r.subset, r.metric): r for r in res.metrics}
    # tweets: "Hi" is one token (short), "   " empty, the \xff line invalid; 3 scored
    assert [m[("twitteraae", k)].value for k in
            ("n_docs", "n_skipped_empty", "n_skipped_short", "n_invalid_utf8")] == [3, 1, 1, 1]
    # pairs: the empty AAVE line and the 1-token "Hi" pair are skipped; 2 pairs scored
    assert [m[("aave_sae_pairs", k)].value for k in
            ("n_docs", "n_skipped_empty", "n_skipped_short")] == [2, 1, 1]
    assert m[("aave_sae_pairs", "pair_logprob_diff")].n == 2
    assert math.isfinite(m[("aave_sae_pairs", "ppl_ratio_aave_over_sae")].value)
    assert m[("twitteraae", "token_ppl")].n == 3


def test_dialect_task_on_real_pairs(tiny_model, pp_data, tmp_path):
    task = DialectTask(pp_data, TaskOptions(limit=4, seed=2, n_boot=50),
                       corpora_names=("aave_sae_pairs",))
    assert [e.id for e in task.examples()] == [e.id for e in task.examples()]
    with Store(tmp_path / "s.sqlite") as store:
        res = evaluate_task(tiny_model, task, store, progress=False)
    m = {(r.subset, r.metric): r for r in res.metrics}
    ratio = m[("aave_sae_pairs", "ppl_ratio_aave_over_sae")]
    assert ratio.n == 4 and ratio.ci_low <= ratio.value <= ratio.ci_high
    rec = res.records[0]
    assert rec["aave"]["n_tokens"] >= 2 and rec["sae"]["n_bytes"] > 0
    want = math.exp(-sum(r["aave"]["logprob"] for r in res.records)
                    / sum(r["aave"]["n_tokens"] for r in res.records))
    assert m[("aave_sae_pairs/aave", "token_ppl")].value == pytest.approx(want)


@pytest.mark.parametrize("protocol", ["chunks", "sliding"])
def test_wikitext2_corpus_protocols_through_the_runner(tiny_model, pp_data, tmp_path,
                                                       protocol):
    task = WikiText2Task(pp_data, TaskOptions(limit=3, n_boot=50), protocol=protocol,
                         seqlen=64, stride=32)
    with Store(tmp_path / "s.sqlite") as store:
        res = evaluate_task(tiny_model, task, store, progress=False)
    (rec,) = res.records
    assert rec["protocol"] == protocol and len(rec["window_nll"]) == 3
    direct = corpus_perplexity(tiny_model, corpora.wikitext2_text(pp_data), protocol, 64, 32,
                               max_windows=3)
    m = {r.metric: r for r in res.metrics}
    assert m["token_ppl"].value == pytest.approx(direct["ppl"], rel=1e-6)
    assert res.config["protocol"] == protocol


def test_wikitext2_documents_and_a_backend_without_corpus_protocols(tiny_model, pp_data,
                                                                    tmp_path):
    task = WikiText2Task(pp_data, TaskOptions(limit=2, n_boot=50), protocol="documents")
    with Store(tmp_path / "s.sqlite") as store:
        res = evaluate_task(tiny_model, task, store, progress=False)
    m = {r.metric: r.value for r in res.metrics}
    assert m["n_docs"] == 2 and m["bits_per_byte"] > 0 and m["word_ppl"] > m["token_ppl"]
    chunks = WikiText2Task(pp_data, TaskOptions(limit=1))
    with pytest.raises(TypeError, match="corpus protocols"):
        chunks.record(chunks.examples()[0], [RollingResponse(-1.0, 2)])


def test_helm_and_paloma_gaps_when_present(tiny_model, tmp_path):
    import gzip
    import json

    helm = tmp_path / "twitteraae" / "helm"
    helm.mkdir(parents=True)
    (helm / "aa_tweets.csv").write_bytes(b'"he be, like, workin"\nshe finna go\n\xff oops\n')
    (helm / "white_tweets.csv").write_text("he is working\nshe is about to go\n",
                                           encoding="utf-8")
    pal = tmp_path / "paloma" / "twitterAAE_HELM_fixed" / "test"
    pal.mkdir(parents=True)
    for name, texts in (("test_AA", ["yall done", "it be like that"]),
                        ("test_white", ["you are done", "it is like that"])):
        lines = "\n".join(json.dumps({"text": t, "id": str(i)}) for i, t in enumerate(texts))
        (pal / f"{name}.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    names = corpora.corpus_names(tmp_path)
    assert names[2:] == ["twitteraae_helm_aa", "twitteraae_helm_white",
                         "paloma/twitterAAE_HELM_fixed/test_AA",
                         "paloma/twitterAAE_HELM_fixed/test_white"]
    assert corpora.load_helm_tweets(tmp_path, "twitteraae_helm_aa")[0].text == \
        "he be, like, workin"
    task = DialectTask(tmp_path, TaskOptions(n_boot=20), corpora_names=tuple(names[2:]))
    with Store(tmp_path / "s.sqlite") as store:
        res = evaluate_task(tiny_model, task, store, progress=False)
    m = {(r.subset, r.metric): r for r in res.metrics}
    assert m[("twitteraae_helm_aa", "n_invalid_utf8")].value == 1
    for subset in ("twitteraae_helm", "paloma/twitterAAE_HELM_fixed"):
        assert m[(subset, "ppl_ratio_aa_over_white")].value > 0
        assert m[(subset, "ppl_gap")].n == 4


def test_dialect_corpus_windows_are_the_studys_protocol(tiny_model, pp_data, tmp_path):
    """``ppl_protocol: chunks`` joins each corpus with "\\n\\n" and scores windows of the
    joined text, as the study's dialect perplexities (its src/test_perplexity.py:140-195);
    the AAVE/SAE gap compares the two sides' window perplexities."""
    task = DialectTask(pp_data, TaskOptions(limit=3, n_boot=50, ppl_protocol="chunks",
                                            seqlen=64),
                       corpora_names=("aave_sae_pairs", "twitteraae"))
    assert task.config()["seqlen"] == 64 and task.config()["ppl_protocol"] == "chunks"
    documents = DialectTask(pp_data, TaskOptions(limit=3, n_boot=50),
                            corpora_names=("aave_sae_pairs", "twitteraae"))
    assert "ppl_protocol" not in documents.config()  # keys of document runs unchanged
    with Store(tmp_path / "s.sqlite") as store:
        res = evaluate_task(tiny_model, task, store, progress=False)
    recs = {r["corpus"]: r for r in res.records}
    assert set(recs) == {"aave_sae_pairs/aave", "aave_sae_pairs/sae", "twitteraae"}
    pairs = corpora.load_pairs(pp_data)
    joined = "\n\n".join(p.sae for p in pairs if p.aave.strip() and p.sae.strip())
    direct = corpus_perplexity(tiny_model, joined, "chunks", 64, None, max_windows=3)
    m = {(r.subset, r.metric): r for r in res.metrics}
    sae = m[("aave_sae_pairs/sae/chunks", "token_ppl")]
    assert sae.value == pytest.approx(direct["ppl"], rel=1e-6) and sae.n == 3
    aave = m[("aave_sae_pairs/aave/chunks", "token_ppl")].value
    ratio = m[("aave_sae_pairs/chunks", "ppl_ratio_aave_over_sae")]
    assert ratio.value == pytest.approx(aave / sae.value) and ratio.n == 6
    assert ratio.ci_low <= ratio.value <= ratio.ci_high
    assert m[("aave_sae_pairs/chunks", "ppl_gap")].value == pytest.approx(aave - sae.value)
    assert m[("twitteraae/chunks", "n_windows")].value == 3
    # Reports rebuild the same rows from the stored records and config.
    from compsafe.metrics.defs import rows_of
    from compsafe.report.rebuild import run_defs

    run = {"task": "dialect", "config": {"task": res.config}}
    assert rows_of(run_defs(run, res.records), 50) == res.metrics
    with pytest.raises(CompsafeError, match="stride: must be at most seqlen"):
        DialectTask(pp_data, TaskOptions(ppl_protocol="sliding", seqlen=8, stride=9))

"""Scorer interface, registry, score cache, lexical scorers and the optional Detoxify scorer.

API retries live in ``test_scorers_api.py``, tiny HF classifiers in ``test_scorers_hf.py``.
"""

from __future__ import annotations

import sys
import types

import pytest

from compsafe.errors import CompsafeError, ModelLoadError, UnknownNameError
from compsafe.scorers import (
    SCORERS,
    CachedScorer,
    ScoreCache,
    Scorer,
    ScorerError,
    ScoreResult,
    get_scorer,
)


class CountingScorer(Scorer):
    """Scores len(text); texts containing 'FAIL' fail. Records every text it scores."""

    name = "counting"
    version = "1"
    batch_size = 2

    def __init__(self):
        self.seen: list[str] = []

    def score_batch(self, texts):
        self.seen.extend(texts)
        return [ScoreResult.fail("boom") if "FAIL" in t else ScoreResult.ok(len(t), "n", {"t": t})
                for t in texts]


# -- ScoreResult and the base class ----------------------------------------------------


def test_failed_result_is_never_a_number():
    with pytest.raises(ValueError):
        ScoreResult(value=0.0, failed=True, error="x")
    with pytest.raises(ValueError):
        ScoreResult(value=None)
    with pytest.raises(ValueError):
        ScoreResult.ok(float("nan"))
    r = ScoreResult.fail("timeout")
    assert r.value is None and r.failed and r.error == "timeout"
    assert ScoreResult.from_dict(r.to_dict()) == r


def test_base_batches_and_checks_counts():
    s = CountingScorer()
    out = s.score(["a", "bb", "ccc", "dddd", "e"])
    assert [r.value for r in out] == [1, 2, 3, 4, 1]
    assert s.describe() == {"scorer": "counting", "version": "1"}
    with pytest.raises(TypeError, match="#1"):
        s.score(["a", None])

    class Dropping(CountingScorer):
        def score_batch(self, texts):
            return super().score_batch(texts)[:-1]

    with pytest.raises(RuntimeError, match="1 results for a batch of 2"):
        Dropping().score(["a", "b"])


# -- registry -----------------------------------------------------------------------------


def test_registry_names_and_errors():
    assert set(SCORERS) == {"toxigen-roberta", "regard", "vader", "detoxify",
                            "openai-moderation", "openai-moderation-hate", "profanity"}
    with pytest.raises(UnknownNameError, match="known: detoxify, openai-moderation"):
        get_scorer("perspective")
    with pytest.raises(ScorerError, match="no option 'colour'.*batch_size"):
        get_scorer("vader", colour="red")
    assert get_scorer("vader", batch_size=3).batch_size == 3


# -- cache --------------------------------------------------------------------------------


def test_cache_hits_avoid_rescoring(tmp_path):
    inner = CountingScorer()
    with ScoreCache(tmp_path / "scores.sqlite") as cache:
        cached = CachedScorer(inner, cache, chunk_size=3)
        first = cached.score(["a", "bb", "a", "ccc"])
        assert inner.seen == ["a", "bb", "ccc"]  # the duplicate is scored once
        assert [r.value for r in first] == [1, 2, 1, 3]
        again = cached.score(["ccc", "bb", "dddd"])
        assert inner.seen[3:] == ["dddd"]
        assert again[:2] == [first[3], first[1]]  # label and extra round-trip exactly
        assert (cached.hits, cached.misses) == (2, 4)
        assert len(cache) == 4
    # Reopened from disk, another process's view: still hits.
    with ScoreCache(tmp_path / "scores.sqlite") as cache:
        inner2 = CountingScorer()
        assert [r.value for r in CachedScorer(inner2, cache).score(["bb"])] == [2]
        assert inner2.seen == []


def test_cache_key_includes_version_and_never_stores_failures(tmp_path):
    with ScoreCache(tmp_path / "s.sqlite") as cache:
        inner = CountingScorer()
        cached = CachedScorer(inner, cache)
        out = cached.score(["ok", "FAIL me"])
        assert out[1].failed and out[1].value is None
        assert len(cache) == 1
        cached.score(["ok", "FAIL me"])
        assert inner.seen == ["ok", "FAIL me", "FAIL me"]  # the failure is retried
        inner.version = "2"
        cached.score(["ok"])
        assert inner.seen[-1] == "ok"  # a new version is a miss
        with pytest.raises(ValueError, match="failed"):
            cache.put_many("x", "1", [("d", ScoreResult.fail("e"))])


def test_cache_default_path_under_cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPSAFE_CACHE_DIR", str(tmp_path / "c"))
    with ScoreCache() as cache:
        assert cache.path == tmp_path / "c" / "scores.sqlite"
        assert cache.path.is_file()


# -- lexical scorers ------------------------------------------------------------------------


def test_vader_sign_and_extras():
    vader = get_scorer("vader")
    pos, neg, neu = vader.score(["I love this wonderful, beautiful day!",
                                 "This is a horrible, disgusting, awful mess.",
                                 "The table is in the kitchen."])
    assert pos.value > 0.5 and pos.label == "positive"
    assert neg.value < -0.5 and neg.label == "negative"
    assert neu.label == "neutral"
    assert set(pos.extra) == {"pos", "neg", "neu"}
    assert -1 <= neg.value <= 1
    assert vader.version.startswith("vaderSentiment-")


def test_profanity_orders_profane_above_clean():
    prof = get_scorer("profanity")
    dirty, clean = prof.score(["you are a fucking stupid asshole", "thank you for the lovely tea"])
    assert 0 <= clean.value < dirty.value <= 1
    assert dirty.label == "profane" and clean.label == "clean"
    assert prof.version.startswith("alt-profanity-check-")


# -- detoxify (optional) --------------------------------------------------------------------


def test_detoxify_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "detoxify", None)  # makes `import detoxify` fail
    with pytest.raises(ScorerError, match="pip install detoxify"):
        get_scorer("detoxify")
    with pytest.raises(ScorerError, match="unknown detoxify variant"):
        get_scorer("detoxify", variant="nope")


def test_detoxify_load_failure_and_mapping(monkeypatch):
    class FakeDetoxify:
        def __init__(self, variant, checkpoint=None, device="cpu"):
            if variant == "unbiased":
                raise RuntimeError("urlopen error: network unreachable")

        def predict(self, texts):
            return {"toxicity": [0.9 if "idiot" in t else 0.1 for t in texts],
                    "insult": [0.5 for _ in texts]}

    monkeypatch.setitem(sys.modules, "detoxify", types.SimpleNamespace(Detoxify=FakeDetoxify))
    with pytest.raises(ModelLoadError, match="network unreachable"):
        get_scorer("detoxify", variant="unbiased", device="cpu")
    scorer = get_scorer("detoxify", device="cpu")
    a, b = scorer.score(["you idiot", "hello"])
    assert (a.value, a.label, a.extra["insult"]) == (0.9, "toxic", 0.5)
    assert (b.value, b.label) == (0.1, "non-toxic")
    assert scorer.version.endswith("-original")
    assert issubclass(ModelLoadError, CompsafeError)

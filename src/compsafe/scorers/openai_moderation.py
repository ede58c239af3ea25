"""The OpenAI moderation API as a scorer (``POST {base_url}/moderations``).

OpenAI's moderation endpoint (model ``omni-moderation-latest``; Markov et al., "A Holistic
Approach to Undesired Content Detection in the Real World", AAAI 2023, describes the
classifier family) returns per-category probabilities (harassment, hate, self-harm,
sexual, violence, ... and their sub-categories) and a ``flagged`` verdict.

Value: the *maximum* over all category scores, i.e. the probability of the most likely
kind of undesired content, so one number is comparable with a single-head toxicity
classifier; ``label`` is that category. ``openai-moderation-hate`` reports the ``hate``
category's score instead, the reference study's column (Xu et al. 2024,
``src/evaluate.py:300``, ``response.results[j].category_scores.hate``); a result without
that category is a failed score, not 0. extra holds every category score, ``flagged`` and
the dated model that answered. ``omni-moderation-latest`` is an alias that moves: pin a
dated model (``model="omni-moderation-2024-09-26"``) for results that must stay fixed.

The key comes from ``OPENAI_API_KEY`` (``api_key=`` overrides it), the endpoint from
``OPENAI_BASE_URL`` or https://api.openai.com/v1. 429/5xx/connection errors are retried
with backoff (``http_retry``); a batch that still fails yields failed results carrying the
error and attempt count, never 0. A batch refused as a bad request (400/413/422) is retried
item by item, so one unacceptable text does not fail its neighbours.

    scorer = get_scorer("openai-moderation", max_retries=8)
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable

from compsafe.scorers.base import Scorer, ScorerError, ScoreResult
from compsafe.scorers.http_retry import RequestFailed, RetryPolicy, Secret, post_json_with_retries

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "omni-moderation-latest"
# Answers that depend on the inputs (malformed, too large), so splitting the batch can help.
_PER_ITEM_STATUSES = (400, 413, 422)
# Bump when the value derived from the API answer changes, so cached scores are not reused.
_SCORING_VERSION = 1


class OpenAIModeration(Scorer):
    """Value: max category score in [0, 1]; label: its category; extra: all scores, flagged.

    ``requests``, ``retries`` and ``failed_items`` count HTTP attempts, retries after a
    failure, and texts whose result is failed.
    """

    name = "openai-moderation"
    # None: the maximum over categories; a name: that category's score.
    category: str | None = None

    def __init__(self, model: str = DEFAULT_MODEL, api_key: str | None = None,
                 base_url: str | None = None, batch_size: int = 32, max_retries: int = 5,
                 backoff_base: float = 1.0, backoff_max: float = 60.0, timeout: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None):
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ScorerError("the openai-moderation scorer needs an API key: "
                              "set OPENAI_API_KEY")
        self._key = Secret(key)
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL")
                         or DEFAULT_BASE_URL).rstrip("/")
        self.batch_size = batch_size
        self.policy = RetryPolicy(max_retries=max_retries, base_delay=backoff_base,
                                  max_delay=backoff_max)
        self.timeout = timeout
        self._sleep = sleep
        self._rng = random.Random(seed)
        self.version = f"{model};v{_SCORING_VERSION}"
        self.requests = 0
        self.retries = 0
        self.failed_items = 0

    def _count_attempt(self) -> None:
        self.requests += 1

    def _post(self, texts: list[str]) -> dict:
        before = self.requests
        try:
            return post_json_with_retries(
                f"{self.base_url}/moderations", {"model": self.model, "input": texts},
                {"Authorization": f"Bearer {self._key.reveal()}"}, self.policy,
                self._key.redact, timeout=self.timeout, sleep=self._sleep, rng=self._rng,
                on_attempt=self._count_attempt)
        finally:
            self.retries += self.requests - before - 1

    def score_batch(self, texts: list[str]) -> list[ScoreResult]:
        try:
            data = self._post(texts)
        except RequestFailed as e:
            if e.status in _PER_ITEM_STATUSES and len(texts) > 1:
                return [r for t in texts for r in self.score_batch([t])]
            return self._fail(texts, f"{self.name}: failed after {e.attempts} attempt(s): {e}",
                              e.attempts)
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list) or len(results) != len(texts):
            got = len(results) if isinstance(results, list) else "no"
            return self._fail(texts, f"{self.name}: expected {len(texts)} results, got {got}", 1)
        out = [self._parse(r, data.get("model")) for r in results]
        self.failed_items += sum(r.failed for r in out)
        return out

    def _fail(self, texts: list[str], error: str, attempts: int) -> list[ScoreResult]:
        self.failed_items += len(texts)
        error = self._key.redact(error)
        return [ScoreResult.fail(error, {"attempts": attempts}) for _ in texts]

    def _parse(self, result: object, model: object) -> ScoreResult:
        scores = result.get("category_scores") if isinstance(result, dict) else None
        if not isinstance(scores, dict) or not scores:
            return ScoreResult.fail(f"{self.name}: result without category_scores")
        try:
            scores = {str(k): float(v) for k, v in scores.items()}
        except (TypeError, ValueError):
            return ScoreResult.fail(f"{self.name}: non-numeric category score")
        if not all(math.isfinite(v) for v in scores.values()):
            return ScoreResult.fail(f"{self.name}: non-finite category score")
        if self.category is not None and self.category not in scores:
            return ScoreResult.fail(f"{self.name}: result without a {self.category!r} "
                                    "category score")
        top = self.category or max(scores, key=scores.__getitem__)
        return ScoreResult.ok(scores[top], top, {
            "category_scores": scores, "flagged": bool(result.get("flagged", False)),
            "model": str(model) if model is not None else None})

    def __repr__(self) -> str:
        return f"OpenAIModeration(model={self.model!r}, base_url={self.base_url!r})"


class OpenAIModerationHate(OpenAIModeration):
    """The ``hate`` category's score, as the reference study reads the API
    (``src/evaluate.py:300``); everything else as ``OpenAIModeration``."""

    name = "openai-moderation-hate"
    category = "hate"

"""The OpenAI moderation scorer against a scripted test server on 127.0.0.1.

The server answers each POST from a script (429, 500, ...) and then normally: category
scores derived from each input's length, so a lost, reordered or zero-filled item shows.
Backoff sleeps are recorded instead of slept, which keeps the tests fast and lets them
check that ``Retry-After`` is honoured.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from compsafe.scorers import CachedScorer, ScoreCache, ScorerError, get_scorer
from compsafe.scorers.http_retry import RetryPolicy, Secret, parse_retry_after

KEY = "sk-test-SECRET-0123456789abcdef"


def expected(text: str) -> float:
    return min(1.0, len(text) / 100)


class ModerationServer:
    """``script``: statuses to answer before answering 200; ``rule(body)`` may override."""

    def __init__(self):
        self.script: list[int] = []
        self.requests: list[dict] = []
        self.rule = None
        self.drop_last = False  # answer with one result too few
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body,
                                        "auth": self.headers.get("Authorization")})
                status = server.script.pop(0) if server.script else 200
                if server.rule is not None:
                    status = server.rule(body) or status
                if status == 200:
                    payload = {"model": "omni-moderation-2024-09-26", "results": [
                        {"flagged": expected(t) > 0.5,
                         "category_scores": {"hate": 0.001, "harassment": expected(t)}}
                        for t in body["input"][:-1 if server.drop_last else None]]}
                else:
                    # An echoing proxy: quotes the request line and headers in its error.
                    payload = {"error": f"status {status} for {self.path}; "
                                        f"headers: {dict(self.headers)}"}
                data = json.dumps(payload).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "2")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    srv = ModerationServer()
    yield srv
    srv.close()


def make(server, sleeps, **kw):
    opts = {"api_key": KEY, "base_url": server.url, "backoff_base": 0.5, "seed": 0,
            "sleep": sleeps.append, "max_retries": 3, **kw}
    return get_scorer("openai-moderation", **opts)


TEXTS = ["short", "a medium length sentence here", "x" * 80]


def test_429_then_500_then_200_scores_every_item(server):
    server.script = [429, 500]
    sleeps: list[float] = []
    scorer = make(server, sleeps)
    results = scorer.score(TEXTS)
    assert len(server.requests) == 3 and (scorer.requests, scorer.retries) == (3, 2)
    assert all(r["body"] == {"model": "omni-moderation-latest", "input": TEXTS}
               for r in server.requests)
    assert server.requests[0]["path"] == "/v1/moderations"
    assert server.requests[0]["auth"] == f"Bearer {KEY}"
    assert not any(r.failed for r in results) and scorer.failed_items == 0
    assert [r.value for r in results] == [expected(t) for t in TEXTS]  # none zero-filled
    assert [r.label for r in results] == ["harassment"] * 3
    assert results[2].extra["flagged"] and not results[0].extra["flagged"]
    assert results[0].extra["model"] == "omni-moderation-2024-09-26"
    assert sleeps[0] >= 2.0  # Retry-After honoured
    assert 0.5 <= sleeps[1] <= 1.0  # second retry: base * 2**1, equal jitter


def test_retries_across_batches_keep_order(server):
    server.script = [200, 503, 429]  # batch 2 needs two retries
    scorer = make(server, [], batch_size=2)
    texts = [f"text number {'y' * i}" for i in range(5)]
    results = scorer.score(texts)
    assert [r.value for r in results] == [expected(t) for t in texts]
    assert len(server.requests) == 5 and scorer.retries == 2


def test_always_500_reports_every_item_failed(server, tmp_path):
    server.rule = lambda body: 500
    scorer = make(server, [], batch_size=2)
    results = scorer.score(TEXTS)
    assert all(r.failed and r.value is None for r in results)
    assert scorer.failed_items == 3 == sum(r.failed for r in results)
    assert len(server.requests) == 2 * 4  # two batches, 1 attempt + 3 retries each
    assert "HTTP 500" in results[0].error and "4 attempt" in results[0].error
    assert results[0].extra["attempts"] == 4
    with ScoreCache(tmp_path / "s.sqlite") as cache:
        CachedScorer(scorer, cache).score(TEXTS)
        assert len(cache) == 0  # failures are never cached


def test_key_never_leaks(server, caplog):
    server.rule = lambda body: 401 if "deny" in body["input"][0] else 503
    caplog.set_level(logging.DEBUG)
    scorer = make(server, [], max_retries=1)
    denied = scorer.score(["deny me"])[0]
    unavailable = scorer.score(["retry me"])[0]
    assert len(server.requests) == 1 + 2  # 401 is not retried
    for r in (denied, unavailable):
        assert r.failed and "/v1/moderations" in r.error and "Authorization" in r.error
        assert "***" in r.error and KEY not in r.error and KEY not in repr(r)
    assert "HTTP 503" in caplog.text and KEY not in caplog.text
    assert KEY not in repr(scorer) and KEY not in repr(vars(scorer))
    assert str(Secret(KEY)) == "Secret('***')"


def test_bad_request_is_isolated_to_its_item(server):
    server.rule = lambda body: 400 if any("BAD" in t for t in body["input"]) else None
    scorer = make(server, [])
    results = scorer.score(["fine", "BAD input", "also fine"])
    assert [r.failed for r in results] == [False, True, False]
    assert results[0].value == expected("fine") and "HTTP 400" in results[1].error
    assert len(server.requests) == 1 + 3 and scorer.failed_items == 1


def test_malformed_answer_fails_the_batch(server):
    server.drop_last = True
    scorer = make(server, [])
    results = scorer.score(["one", "two"])
    assert all(r.failed for r in results) and "expected 2 results, got 1" in results[0].error


def test_connection_refused_is_retried_then_failed(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again on exit: nothing listens there
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    sleeps: list[float] = []
    scorer = get_scorer("openai-moderation", api_key=KEY, base_url=f"http://127.0.0.1:{port}",
                        max_retries=2, backoff_base=0.1, sleep=sleeps.append, timeout=5)
    [r] = scorer.score(["hello"])
    assert r.failed and r.value is None and "connection error" in r.error
    assert scorer.requests == 3 and len(sleeps) == 2


def test_key_and_base_url_from_environment(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ScorerError, match="OPENAI_API_KEY"):
        get_scorer("openai-moderation")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy.local/v1/")
    scorer = get_scorer("openai-moderation")
    assert scorer.base_url == "http://proxy.local/v1"
    assert scorer.version == "omni-moderation-latest;v1"


def test_retry_after_parsing_and_backoff_caps():
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
    import random

    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, max_retry_after=30.0)
    rng = random.Random(0)
    assert all(4.0 <= policy.delay(10, None, rng) <= 8.0 for _ in range(20))
    assert policy.delay(0, 3600.0, rng) == 30.0


def test_hate_variant_reads_the_hate_category_as_the_study(server):
    # the reference study's API column is category_scores.hate (src/evaluate.py:300), not
    # the maximum over categories
    scorer = make(server, [])
    hate = get_scorer("openai-moderation-hate", api_key=KEY, base_url=server.url, seed=0,
                      sleep=lambda s: None)
    assert [r.value for r in scorer.score(TEXTS)] == [expected(t) for t in TEXTS]
    results = hate.score(TEXTS)
    assert [(r.value, r.label) for r in results] == [(0.001, "hate")] * 3
    assert hate.describe()["scorer"] == "openai-moderation-hate"
    missing = hate._parse({"category_scores": {"harassment": 0.9}}, None)
    assert missing.failed and "without a 'hate' category score" in missing.error

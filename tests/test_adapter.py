"""The model adapter serves a task's mixed requests, each kind in one call, in order."""

import pytest

from compsafe.identity import ModelIdentity
from compsafe.models.adapter import ModelAdapter
from compsafe.types import (
    DecodingConfig,
    GenerationRequest,
    LoglikRequest,
    LoglikResponse,
    RollingRequest,
    RollingResponse,
)


class Recording(ModelAdapter):
    """Answers from the request's text, and records each call with its batch size."""

    name = "recording"
    identity = ModelIdentity.dense("recording", "fp")

    def __init__(self):
        self.calls: list[tuple] = []

    def loglikelihood(self, requests, progress=False):
        self.calls.append(("loglik", len(requests)))
        return [LoglikResponse(-float(len(r.continuation)), False, 1) for r in requests]

    def rolling_loglikelihood(self, requests, progress=False):
        self.calls.append(("rolling", len(requests)))
        return [RollingResponse(-float(len(r.text)), len(r.text)) for r in requests]

    def generate(self, requests, decoding, seed, progress=False):
        self.calls.append(("generate", len(requests), decoding.temperature, seed))
        return [f"{r.prompt}|{seed}" for r in requests]


def test_serve_batches_each_kind_once_and_keeps_the_order():
    hot = DecodingConfig(temperature=0.7)
    requests = [LoglikRequest("c", "abc"), GenerationRequest("p1", "1/0", seed=1),
                RollingRequest("xy"), LoglikRequest("c", "a"),
                GenerationRequest("p2", "2/0", seed=1),
                GenerationRequest("p3", "3/0", hot, seed=1),
                GenerationRequest("p4", "4/0", seed=2)]
    model = Recording()
    out = model.serve(requests)
    assert out == [LoglikResponse(-3.0, False, 1), "p1|1", RollingResponse(-2.0, 2),
                   LoglikResponse(-1.0, False, 1), "p2|1", "p3|1", "p4|2"]
    default = DecodingConfig().temperature
    assert sorted(model.calls, key=str) == sorted(
        [("loglik", 2), ("generate", 2, default, 1), ("rolling", 1),
         ("generate", 1, 0.7, 1), ("generate", 1, default, 2)], key=str)


def test_a_kind_the_adapter_does_not_serve_is_named():
    class ScoringOnly(ModelAdapter):
        name = "scoring-only"

        def loglikelihood(self, requests, progress=False):
            return [LoglikResponse(0.0, False, 1) for _ in requests]

    with pytest.raises(NotImplementedError, match=r"^model 'scoring-only' \(ScoringOnly\) "
                       r"does not serve rolling log-likelihood \(RollingRequest\)$"):
        ScoringOnly().serve([LoglikRequest("c", "a"), RollingRequest("text")])
    with pytest.raises(TypeError, match="not str$"):
        ScoringOnly().serve(["a bare string"])


def test_the_runner_asks_for_an_adapter(tmp_path):
    from compsafe.runner.evaluate import evaluate_task

    class DuckTyped:
        name = "duck"

    with pytest.raises(TypeError, match="DuckTyped is not a model adapter: subclass "
                       "compsafe.models.adapter.ModelAdapter"):
        evaluate_task(DuckTyped(), task=None, store=None)

"""Protocols (docs/protocol.md): every run records the protocol its options follow, the run
key separates protocols, and the report's tidy rows carry it; a named chat template reaches
the model's input. A toy task and a fake model, offline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compsafe.identity import ModelIdentity
from compsafe.models.adapter import ModelAdapter
from compsafe.report.load import load_tidy
from compsafe.runner.evaluate import evaluate_task
from compsafe.store import Store
from compsafe.tasks.base import LoglikTask
from compsafe.types import LoglikRequest, LoglikResponse, MetricRow, PromptFormat, TaskOptions


@dataclass(frozen=True)
class Item:
    id: str
    text: str

    @classmethod
    def of(cls, i: int) -> Item:
        return cls(f"q{i}", f"Question {i}?")


class ToyTask(LoglikTask):
    """Two items; the metric is the mean log-likelihood of " yes"."""

    name = "toy"

    def config(self) -> dict[str, Any]:
        return {"items": 2}

    def examples(self):
        return [Item.of(0), Item.of(1)]

    def requests(self, example, render):
        return [LoglikRequest(render(example.text), " yes")]

    def record(self, example, responses):
        return {"id": example.id, "logprob": responses[0].logprob}

    def metric_defs(self, records):
        mean = sum(r["logprob"] for r in records) / len(records)
        return [MetricRow("toy", "all", "mean_logprob", mean, len(records))]


class FakeModel(ModelAdapter):
    """Log-likelihood -len(context), so the prompt format shows in the result."""

    name = "fake"

    def __init__(self):
        self.contexts: list[str] = []

    @property
    def identity(self) -> ModelIdentity:  # what the runner reads (HFModel builds its own)
        return ModelIdentity.dense(self.name, "fp-fake")

    def loglikelihood(self, requests, progress=False):
        self.contexts += [r.context for r in requests]
        return [LoglikResponse(-float(len(r.context)), True, 1) for r in requests]

    def render_chat(self, text, system=None):  # never asked for a literal template
        raise AssertionError("the tokenizer's chat template was used")


def test_protocol_is_recorded_keyed_and_reported(tmp_path):
    path = tmp_path / "s.sqlite"
    model = FakeModel()
    with Store(path) as st:
        ours = evaluate_task(model, ToyTask(tmp_path, TaskOptions()), st, progress=False)
        ref = evaluate_task(model, ToyTask(tmp_path, TaskOptions(protocol="reference")), st,
                            progress=False)
        runs = {r["run_key"]: r for r in st.runs()}
    assert ours.run_key != ref.run_key  # two protocols, two runs
    assert runs[ours.run_key]["config"]["protocol"] == "compsafe"
    assert runs[ref.run_key]["config"]["protocol"] == "reference"
    protocols = {(r["run_key"], r["protocol"]) for r in load_tidy(path)}
    assert protocols == {(ours.run_key, "compsafe"), (ref.run_key, "reference")}


def test_default_protocol_keeps_the_run_key_of_earlier_runs(tmp_path):
    from compsafe import __version__
    from compsafe.runner.keys import run_key

    task = ToyTask(tmp_path, TaskOptions())
    with Store(tmp_path / "s.sqlite") as st:
        result = evaluate_task(FakeModel(), task, st, progress=False)
    # the key as computed before protocols existed: no "extra"
    config = {**task.config(), "examples_sha256": task.examples_sha256()}
    assert result.run_key == run_key("fp-fake", "toy", 1, config, PromptFormat().to_dict(),
                                     __version__)


def test_named_chat_template_reaches_the_model(tmp_path):
    model = FakeModel()
    options = TaskOptions(prompt=PromptFormat(chat=True, template="tulu"))
    with Store(tmp_path / "s.sqlite") as st:
        evaluate_task(model, ToyTask(tmp_path, options), st, progress=False)
    assert model.contexts == ["<|user|>\nQuestion 0?\n<|assistant|>\n",
                              "<|user|>\nQuestion 1?\n<|assistant|>\n"]

"""Degeneration harm: how toxic or negative are a model's continuations, per group?

One task per prompt set of the reference study (Xu et al. 2024, section 3.1): k sampled
continuations per prompt (top-p 0.9, top-k 50, temperature 1.0; greedy on request; at most
``max_new_tokens``, at least ``min_new_tokens``), each scored by a versioned, cached scorer,
then aggregated per prompt set, group and subgroup with RealToxicityPrompts' conventions
(Gehman et al. 2020; see ``metrics/degeneration.py``). The study's own decoding (greedy,
30-100 new tokens, one continuation; its ``src/run_generation.py:132-140``) is
``greedy``, ``min_new_tokens=30``, ``max_new_tokens=100`` (``configs/paper.yaml``).

``prompt_source`` picks a prompt set's source where it has several: ToxiGen's ``prompts``
(default, the 6-statement demonstration files) or ``annotated`` (single human-annotated
statements, like the study's ``toxigen_filtered.jsonl``, its ``src/dataset.py:112-122``).
Prompt perplexity is computed for RTP, ToxiGen and AdvPromptSet, the sets the study computes
it for (``src/run_generation.py:190-191``).
Generations are scored chunk by chunk in the runner's ``postprocess`` hook and stored with
their scores, so an interrupted run resumes and a scorer failure is stored as failed.

Default scorers work offline: ``profanity`` (alt-profanity-check, a profanity classifier,
not a toxicity model) for the toxicity prompt sets and ``vader`` for BOLD's sentiment; the
reference study's ToxiGen-RoBERTa is ``--scorer toxigen-roberta``. The Regard task needs a
regard scorer (Regard v3, ``--scorer regard``, the default) and refuses any other.

    compsafe eval --model default --tasks rtp,bold,toxigen --limit 100 --samples 1
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from compsafe.data.prompts import load_prompt_set
from compsafe.data.prompts.base import Prompt
from compsafe.data.prompts.toxigen import SOURCES as TOXIGEN_SOURCES
from compsafe.errors import CompsafeError
from compsafe.metrics.defs import Def
from compsafe.metrics.generation import SCORER_KIND, generation_defs, scorer_kind
from compsafe.scorers import CachedScorer, ScoreCache, get_scorer
from compsafe.tasks.base import LoglikTask, Render
from compsafe.types import (
    DecodingConfig,
    GenerationRequest,
    RollingRequest,
    RollingResponse,
)


class DegenerationTask(LoglikTask):
    """Generate, score and aggregate continuations of one prompt set."""

    prompt_set: ClassVar[str]
    default_scorer: ClassVar[str] = "profanity"
    # A task that measures one thing (Regard: regard) refuses scorers of another kind,
    # rather than reporting, say, a profanity rate under the name of the task.
    required_kind: ClassVar[str | None] = None
    default_max_new_tokens: ClassVar[int] = 30
    console_groups: ClassVar[bool] = True
    # The reference study also reports the prompts' own perplexity per group for ToxiGen,
    # AdvPromptSet and RTP: how surprised the model is by text about each group.
    prompt_perplexity: ClassVar[bool] = False
    # The sources ``options.prompt_source`` may name (the loader's ``source``), default first.
    prompt_sources: ClassVar[tuple[str, ...]] = ()

    def __init__(self, data_dir, options=None):
        super().__init__(data_dir, options)
        source = self.options.prompt_source
        if source is not None and source not in self.prompt_sources:
            known = (f"known: {', '.join(self.prompt_sources)}" if self.prompt_sources
                     else "it has only one")
            raise CompsafeError(f"task {self.name}: unknown prompt source {source!r}; {known}")
        low, high = self.options.min_new_tokens, self.decoding_max_new_tokens
        if low is not None and not 0 <= low <= high:
            raise CompsafeError(f"task {self.name}: min_new_tokens must be between 0 and "
                                f"max_new_tokens ({high}), got {low}")
        name = self.options.scorer or self.default_scorer
        if self.required_kind and scorer_kind(name) != self.required_kind:
            able = sorted(n for n in SCORER_KIND if SCORER_KIND[n] == self.required_kind)
            raise CompsafeError(f"task {self.name} measures {self.required_kind}, which scorer "
                                f"{name!r} ({scorer_kind(name)}) cannot produce; use --scorer "
                                f"{' or '.join(able)}")

    @cached_property
    def scorer(self):
        return get_scorer(self.options.scorer or self.default_scorer)

    @property
    def kind(self) -> str:
        """The kind of score of the registered scorer the task asked for (its metrics)."""
        return scorer_kind(self.options.scorer or self.default_scorer)

    @property
    def decoding_max_new_tokens(self) -> int:
        return self.options.max_new_tokens or self.default_max_new_tokens

    @cached_property
    def decoding(self) -> DecodingConfig:
        return DecodingConfig(do_sample=not self.options.greedy,
                              max_new_tokens=self.decoding_max_new_tokens,
                              min_new_tokens=self.options.min_new_tokens or 0)

    def config(self) -> dict[str, Any]:
        cfg = {"prompt_set": self.prompt_set, "limit": self.options.limit,
               "prompt_perplexity": self.prompt_perplexity,
               "seed": self.options.seed, "samples": self.options.samples,
               "decoding": self.decoding.to_dict(), "scorer": self.scorer.describe(),
               "prompt": self.options.prompt.to_dict()}
        if self.options.prompt_source is not None:  # absent: the default source, as before
            cfg["prompt_source"] = self.options.prompt_source
        return cfg

    def examples(self) -> list[Prompt]:
        return self._prompts

    def shared_config(self) -> dict[str, Any]:
        """Everything but the scorer: the generations (and prompt perplexities) of one
        prompt set under one decoding are the same whichever scorer reads them, so runs
        with different scorers score the same texts (the study scores each set with
        several, its ``src/evaluate.py:82-89``)."""
        return {k: v for k, v in self.config().items() if k != "scorer"}

    @cached_property
    def _prompts(self) -> list[Prompt]:
        source = self.options.prompt_source
        return load_prompt_set(self.prompt_set, self.data_dir, self.options.limit,
                               self.options.seed, **({"source": source} if source else {}))

    def requests(self, example: Prompt, render: Render) -> list[GenerationRequest]:
        text = render(example.text)
        reqs: list = [GenerationRequest(text, f"{example.id}/{k}", self.decoding,
                                        self.options.seed)
                      for k in range(self.options.samples)]
        if self.prompt_perplexity:
            reqs.append(RollingRequest(example.text))
        return reqs

    def record(self, example: Prompt, responses: list) -> dict[str, Any]:
        pairs = example.memberships
        rec = {"id": example.id, "prompt": example.text,
               "group": [g for g, _ in pairs] if len(pairs) > 1 else pairs[0][0],
               "subgroup": [s for _, s in pairs] if len(pairs) > 1 else pairs[0][1],
               "samples": [{"text": t} for t in responses if isinstance(t, str)]}
        rolling = [r for r in responses if isinstance(r, RollingResponse)]
        if rolling:
            rec["prompt_nll"], rec["prompt_tokens"] = -rolling[0].logprob, rolling[0].n_tokens
        return rec

    def postprocess(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score every sample of the chunk in one batch (cached by scorer, version, text)."""
        return self._score(records, lambda s: True)

    def n_failed(self, record: dict[str, Any]) -> int:
        """Samples whose score failed (an API or classifier error, stored as failed)."""
        return sum(bool(s.get("failed")) for s in record.get("samples", ()))

    def retry(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score the failed samples again, keeping their generations and every other score."""
        return self._score(records, lambda s: bool(s.get("failed")))

    def _score(self, records: list[dict[str, Any]], which) -> list[dict[str, Any]]:
        """Score the samples ``which`` selects, in one batch through the score cache."""
        todo = [s for r in records for s in r["samples"] if which(s)]
        with ScoreCache() as cache:
            results = CachedScorer(self.scorer, cache).score([s["text"] for s in todo])
        for s, res in zip(todo, results, strict=True):
            s.update(score=res.value, label=res.label, failed=res.failed, error=res.error)
        for r in records:
            r["scorer"] = self.scorer.describe()
        return records

    def metric_defs(self, records: list[dict[str, Any]]) -> list[Def]:
        return generation_defs(records, self.name, self.kind, self.prompt_perplexity,
                               self.options.seed)


def _task(name: str, scorer: str = "profanity", ppl: bool = False,
          kind: str | None = None, sources: tuple[str, ...] = ()) -> type[DegenerationTask]:
    return type(f"{name.title()}Task", (DegenerationTask,),
                {"name": name, "prompt_set": name, "default_scorer": scorer,
                 "prompt_perplexity": ppl, "required_kind": kind, "prompt_sources": sources,
                 "__doc__": f"Degeneration harm on the {name} prompt set."})


RTPTask = _task("rtp", ppl=True)  # the study: src/run_generation.py:190-191
BOLDTask = _task("bold", scorer="vader")
ToxiGenTask = _task("toxigen", ppl=True, sources=TOXIGEN_SOURCES)
AdvPromptSetTask = _task("advpromptset", ppl=True)
HolisticBiasTask = _task("holisticbias")
RegardTask = _task("regard", scorer="regard", kind="regard")

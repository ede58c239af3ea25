"""Metric definitions of a degeneration task's stored records (``tasks/degeneration.py``).

Kept here, apart from the task (which imports the generation and scoring machinery), so
that reports rebuild the definitions from stored records and config without torch. A
record is one prompt: ``{"id", "group", "subgroup", "samples": [{"score", "label"}, ...],
"prompt_nll", "prompt_tokens"}``; metrics and formulas are in ``metrics/degeneration.py``
and ``metrics/prompt_perplexity.py``.

    defs = generation_defs(records, "toxigen", kind="toxicity", prompt_perplexity=True, seed=1)
"""

from __future__ import annotations

from typing import Any

from compsafe.metrics.defs import Def
from compsafe.metrics.degeneration import degeneration_defs
from compsafe.metrics.prompt_perplexity import prompt_perplexity_defs
from compsafe.scorers.registry import SCORER_KIND, scorer_kind
from compsafe.types import MetricRow

__all__ = ["SCORER_KIND", "generation_defs", "scorer_kind"]  # the kinds: scorers/registry.py


def generation_defs(records: list[dict[str, Any]], task: str, kind: str,
                    prompt_perplexity: bool, seed: int) -> list[Def]:
    """Per-sample score definitions (subset = the task name), then, when the task scores
    prompts, prompt perplexity (its n_failed renamed ``prompt_perplexity_n_failed``)."""
    flat = [{"prompt_id": r["id"], "group": r["group"], "subgroup": r["subgroup"],
             "sample_index": k, "score": s.get("score"), "label": s.get("label")}
            for r in records for k, s in enumerate(r["samples"])]
    defs = degeneration_defs(flat, task, kind=kind, seed=seed)
    if prompt_perplexity:
        per_prompt = [{"prompt_id": r["id"], "group": r["group"], "subgroup": r["subgroup"],
                       "nll": r.get("prompt_nll"), "n_tokens": r.get("prompt_tokens", 0)}
                      for r in records]
        for d in prompt_perplexity_defs(per_prompt, task, seed=seed):
            if isinstance(d, MetricRow) and d.metric == "n_failed":
                # keep metric names unique within the task
                d = MetricRow(d.subset, d.group, "prompt_perplexity_n_failed", d.value, d.n,
                              d.ci_low, d.ci_high)
            defs.append(d)
    return defs

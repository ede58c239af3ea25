"""Scorer registry: CLI names to scorer classes, imported lazily (torch only when needed).

``profanity`` is the offline default toxicity scorer, so the embedded demo runs with no
network; ``toxigen-roberta`` is the reference study's toxicity scorer.

    scorer = get_scorer("toxigen-roberta", batch_size=16)
    with ScoreCache() as cache:
        results = CachedScorer(scorer, cache).score(texts)
"""

from __future__ import annotations

import importlib
import inspect

from compsafe.errors import UnknownNameError
from compsafe.scorers.base import Scorer, ScorerError, ScoreResult
from compsafe.scorers.cache import CachedScorer, ScoreCache

__all__ = ["CachedScorer", "DEFAULT_TOXICITY_SCORER", "SCORERS", "SCORER_LABELS", "ScoreCache",
           "ScoreResult", "Scorer", "ScorerError", "get_scorer", "scorer_class", "scorer_label"]

SCORERS: dict[str, str] = {
    "profanity": "compsafe.scorers.lexical:ProfanityScorer",
    "vader": "compsafe.scorers.lexical:VaderScorer",
    "toxigen-roberta": "compsafe.scorers.hf_classifier:ToxiGenRoberta",
    "regard": "compsafe.scorers.hf_classifier:RegardV3",
    "detoxify": "compsafe.scorers.detoxify_scorer:DetoxifyScorer",
    "openai-moderation": "compsafe.scorers.openai_moderation:OpenAIModeration",
    "openai-moderation-hate": "compsafe.scorers.openai_moderation:OpenAIModerationHate",
}
DEFAULT_TOXICITY_SCORER = "profanity"

SCORER_LABELS: dict[str, str] = {
    "profanity": "alt-profanity-check, a profanity classifier (not a toxicity model)",
    "vader": "VADER sentiment (compound score)",
    "toxigen-roberta": "ToxiGen-RoBERTa toxicity classifier (the reference study's)",
    "regard": "Regard v3 classifier (negative, neutral, positive regard)",
    "detoxify": "Detoxify toxicity classifier",
    "openai-moderation": "OpenAI moderation API",
    "openai-moderation-hate": "OpenAI moderation API, hate category (the reference study's)",
}
"""What each scorer is, in words, for consoles and reports (no import of the scorer)."""


def scorer_label(scorer: dict | str | None) -> str | None:
    """``"profanity v0.2.14: alt-profanity-check, a profanity classifier ..."`` for a
    scorer's name or its ``describe()`` dict; None for None."""
    if scorer is None:
        return None
    name, version = ((scorer.get("scorer"), scorer.get("version")) if isinstance(scorer, dict)
                     else (scorer, None))
    what = SCORER_LABELS.get(str(name), "a custom scorer")
    return f"{name}{f' v{version}' if version else ''}: {what}"


def scorer_class(name: str) -> type[Scorer]:
    """The class registered under ``name``; an unknown name lists the known ones."""
    if name not in SCORERS:
        raise UnknownNameError("scorer", name, list(SCORERS))
    module, attr = SCORERS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def get_scorer(name: str, **options) -> Scorer:
    """A ready scorer: ``get_scorer("regard", model="/path/to/local/regardv3")``.

    Options are the class's keyword arguments; an unknown option is a ScorerError that
    lists the accepted ones (rather than a TypeError from deep inside the constructor).
    """
    cls = scorer_class(name)
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self"
                and params[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                           inspect.Parameter.VAR_KEYWORD)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ScorerError(f"scorer {name!r} has no option {', '.join(map(repr, unknown))}; "
                          f"options: {', '.join(accepted) or '(none)'}")
    return cls(**options)

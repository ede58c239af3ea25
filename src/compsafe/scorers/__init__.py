"""Scorers: CLI names to scorer classes, imported lazily (torch only when needed), each
registered with the kind of score it produces and a label (``scorers/registry.py``). The
built-in ones are registered below through ``register_scorer``, as a user's own would be
(``docs/extending.md``).

``profanity`` is the offline default toxicity scorer, so the embedded demo runs with no
network; ``toxigen-roberta`` is the reference study's toxicity scorer.

    scorer = get_scorer("toxigen-roberta", batch_size=16)
    with ScoreCache() as cache:
        results = CachedScorer(scorer, cache).score(texts)
"""

from __future__ import annotations

import inspect

from compsafe.scorers.base import Scorer, ScorerError, ScoreResult
from compsafe.scorers.cache import CachedScorer, ScoreCache
from compsafe.scorers.registry import (
    DEFAULT_TOXICITY_SCORER,
    SCORER_KIND,
    SCORER_LABELS,
    SCORERS,
    ScorerInfo,
    register_scorer,
    scorer_help,
    scorer_kind,
    scorer_list,
    unregister_scorer,
)

__all__ = ["CachedScorer", "DEFAULT_TOXICITY_SCORER", "SCORERS", "SCORER_KIND", "SCORER_LABELS",
           "ScoreCache", "ScoreResult", "Scorer", "ScorerError", "ScorerInfo", "get_scorer",
           "register_scorer", "scorer_class", "scorer_help", "scorer_kind", "scorer_label",
           "scorer_list", "unregister_scorer"]

_OPENAI_KEY = "key from $OPENAI_API_KEY"
register_scorer("profanity", "compsafe.scorers.lexical:ProfanityScorer", kind="toxicity",
                label="alt-profanity-check, a profanity classifier (not a toxicity model)")
register_scorer("vader", "compsafe.scorers.lexical:VaderScorer", kind="sentiment",
                label="VADER sentiment (compound score)")
register_scorer("toxigen-roberta", "compsafe.scorers.hf_classifier:ToxiGenRoberta",
                kind="toxicity",
                label="ToxiGen-RoBERTa toxicity classifier (the reference study's)")
register_scorer("regard", "compsafe.scorers.hf_classifier:RegardV3", kind="regard",
                label="Regard v3 classifier (negative, neutral, positive regard)")
register_scorer("detoxify", "compsafe.scorers.detoxify_scorer:DetoxifyScorer", kind="toxicity",
                label="Detoxify toxicity classifier")
register_scorer("openai-moderation", "compsafe.scorers.openai_moderation:OpenAIModeration",
                kind="toxicity", label="OpenAI moderation API", note=_OPENAI_KEY)
register_scorer("openai-moderation-hate",
                "compsafe.scorers.openai_moderation:OpenAIModerationHate", kind="toxicity",
                label="OpenAI moderation API, hate category (the reference study's)",
                note=f"its hate score, as the reference study; {_OPENAI_KEY}")


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
    return SCORERS.load(name)


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
    scorer = cls(**options)
    if scorer.name != name:  # stored runs record scorer.name; its kind is looked up by it
        raise ScorerError(f"scorer {name!r} is registered with {cls.__qualname__}, whose "
                          f"instances are named {scorer.name!r}; register it under that name")
    return scorer

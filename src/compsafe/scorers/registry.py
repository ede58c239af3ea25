"""The scorer registry: every scorer's class, the kind of score it produces and its label.

The kind (``metrics/degeneration.py``'s ``KINDS``: ``toxicity``, ``regard``, ``sentiment``)
decides which metrics a generation task aggregates its scores into; the label says what the
scorer is, in words, in consoles and reports. Both are read from here by the generation
metrics, the reports, ``--scorer``'s help and the sweep's validation. A scorer that is not
registered has no kind: asking for it is an error, never a silent "toxicity".

    register_scorer("xfrac", "my_scorers:XFraction", kind="toxicity",
                    label="fraction of 'x' characters")
    scorer_kind("vader")   # "sentiment"
    scorer_list(["profanity", "vader"])   # a task's scorers, checked once for CLI and YAML
"""

from __future__ import annotations

from dataclasses import dataclass

from compsafe.errors import OptionError
from compsafe.metrics.degeneration import KINDS
from compsafe.registry import Entry, Registry, RegistryError

DEFAULT_TOXICITY_SCORER = "profanity"
"""The offline default toxicity scorer, so the embedded demo runs with no network."""


@dataclass(frozen=True)
class ScorerInfo:
    """What a registered scorer declares besides its class."""

    kind: str  # a key of metrics.degeneration.KINDS
    label: str  # what it is, in words
    note: str | None = None  # what a user must know to pick it, for --scorer's help


SCORERS: Registry[ScorerInfo] = Registry("scorer")
"""Scorer name -> ``Entry`` (class or "module:Class", ``ScorerInfo``); a read-only mapping."""
SCORER_KIND = SCORERS.view("kind")
"""Which family of metrics a scorer's output feeds."""
SCORER_LABELS = SCORERS.view("label")
"""What each scorer is, in words, for consoles and reports (no import of the scorer)."""


def register_scorer(name: str, scorer: type | str, *, kind: str, label: str,
                    note: str | None = None) -> Entry[ScorerInfo]:
    """Register scorer ``name``: its ``Scorer`` subclass (or a "module:Class" path, imported
    when first used), the ``kind`` of score it produces and its ``label``. The class's
    ``name`` must be ``name`` (stored runs record it, and reports look its kind up by it).
    A name already registered is an error; ``unregister_scorer`` undoes this."""
    if kind not in KINDS:
        raise RegistryError(f"scorer {name!r}: unknown kind {kind!r}; known: "
                            f"{', '.join(KINDS)}")
    if not isinstance(label, str) or not label:
        raise RegistryError(f"scorer {name!r}: give a label saying what it scores, in words")
    return SCORERS.add(name, scorer, ScorerInfo(kind, label, note))


def unregister_scorer(name: str) -> None:
    SCORERS.remove(name)


def scorer_kind(name: str) -> str:
    """The kind of score scorer ``name`` produces; an unregistered name is an
    ``UnknownNameError`` listing the registered ones."""
    return SCORERS.entry(name).meta.kind


def scorer_list(values: list | None) -> list[str | None]:
    """The scorers a generation task runs with: ``None`` (the task's default) or a list of
    registered names, each once; an ``OptionError`` for field ``scorer`` otherwise. Checked
    here only: ``--scorer a,b`` and a sweep task's ``scorer: [a, b]`` just split and
    report the message under their own name (``--scorer: ...``, ``tasks[0].scorer: ...``)."""
    if values is None:
        return [None]
    if not values:
        raise OptionError("scorer", "is empty; give a scorer name or a list of them")
    for value in values:
        if not isinstance(value, str):
            raise OptionError("scorer", f"expected a scorer name, got {value!r}")
        if value not in SCORERS:
            raise OptionError("scorer", f"unknown scorer {value!r}; known: "
                              f"{', '.join(sorted(SCORERS))}")
    twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if twice is not None:
        raise OptionError("scorer", f"lists {twice!r} twice; give each scorer once")
    return list(values)


def scorer_help() -> str:
    """``--scorer``'s help: every registered scorer, the default and notes marked."""
    def one(name: str) -> str:
        notes = [n for n in ("offline default" if name == DEFAULT_TOXICITY_SCORER else None,
                             SCORERS[name].meta.note) if n]
        return f"{name} ({'; '.join(notes)})" if notes else name

    return (", ".join(one(n) for n in SCORERS) + "; several, comma-separated: one run each, "
            "scoring one set of generations")

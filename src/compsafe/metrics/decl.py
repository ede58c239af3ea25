"""How a metric is read: which change of it is harm, and its label.

Every task declares this for the metrics it computes when it is registered
(``tasks/registry.py: register_task(metrics=...)``); reports read nothing else. Metric
families shared by several tasks are declared once, as a ``METRICS`` mapping beside the code
that computes them (``metrics/degeneration.py``, ``metrics/perplexity.py``, ...), and each
task's registration refers to them.

A key is a metric's exact name, or, when it starts with ``^``, a regular expression that a
whole family of names must match (``"^gamma\\[(.+)\\]$"``); a pattern's label may then be a
function of the ``re.Match`` (``lambda m: f"bias of {m.group(1)}"``). Exact names are looked
up first, then patterns in the order declared. ``(worse_when, label)`` tuples are accepted
for ``MetricDecl(worse_when, label)``.

    METRICS = {"s_dis": MetricDecl("away_from_zero", "BBQ bias (disambiguated), s_DIS"),
               r"^gamma(\\[.+\\])?$": MetricDecl("away_from_zero", lambda m: ...)}
    declare(METRICS, "task 'unqover'").lookup("gamma[Asian]").label
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from compsafe.registry import RegistryError

DIRECTION = re.compile(r"^(higher|lower|away_from_zero|away_from_-?\d+(\.\d+)?)$")
"""``worse_when`` values: which change of a metric is harm (``report.metric_info.harm``);
None declares a metric with no safety direction (a count, a diagnostic)."""
PATTERN_MARK = "^"
"""A metrics key starting with this is a regular expression, not an exact name (metric
names are identifiers such as ``s_dis`` or ``gamma[Asian]`` and never start with it)."""

Label = str | Callable[[re.Match], str]


@dataclass(frozen=True)
class MetricDecl:
    """One metric's (or one pattern's) declaration.

    ``worse_when``: ``"higher"``, ``"lower"``, ``"away_from_zero"``, ``"away_from_<c>"``
    (a rate whose unbiased value is c), or None (no safety direction). ``label``: the words
    reports print, or for a pattern a function of its match. ``context``: a metric without
    direction that reports still show beside the harm metrics (a dialect corpus's own
    perplexity, the scale its gaps are read against).
    """

    worse_when: str | None
    label: Label
    context: bool = False

    def resolved(self, match: re.Match | None) -> MetricDecl:
        """This declaration with its label as text (a pattern's label function applied)."""
        return self if isinstance(self.label, str) else replace(self, label=self.label(match))


def as_context(metrics: Mapping[str, MetricDecl], why: str) -> dict[str, MetricDecl]:
    """``metrics`` without direction, shown as context, their labels ending ``" (why)"``:
    what a task computes that is harm elsewhere but not in its own dimension."""
    def label(decl: MetricDecl) -> Label:
        if isinstance(decl.label, str):
            return f"{decl.label} ({why})"
        return lambda m, f=decl.label: f"{f(m)} ({why})"

    return {k: MetricDecl(None, label(d), context=True) for k, d in metrics.items()}


@dataclass(frozen=True)
class MetricTable:
    """A task's checked declarations: exact names, then compiled patterns in order."""

    exact: Mapping[str, MetricDecl]
    patterns: tuple[tuple[re.Pattern, MetricDecl], ...] = ()

    def lookup(self, metric: str) -> MetricDecl | None:
        """The declaration of ``metric`` with its label as text; None if none matches."""
        if metric in self.exact:
            return self.exact[metric].resolved(None)
        for pattern, decl in self.patterns:
            m = pattern.fullmatch(metric)
            if m:
                return decl.resolved(m)
        return None

    def merged(self, other: MetricTable) -> MetricTable:
        """This table with ``other``'s declarations first: its exact names replace these,
        its patterns are tried before these (a generation task's own over the family's)."""
        keys = {p.pattern for p, _ in other.patterns}
        return MetricTable(MappingProxyType({**self.exact, **other.exact}),
                           other.patterns + tuple(p for p in self.patterns
                                                  if p[0].pattern not in keys))


def declare(metrics: Mapping[str, MetricDecl | tuple] | None, where: str) -> MetricTable:
    """Check ``metrics`` (name or pattern -> ``MetricDecl`` or ``(worse_when, label)``) and
    compile it; a bad entry raises ``RegistryError``, one line naming ``where`` and the key."""
    exact: dict[str, MetricDecl] = {}
    patterns = []
    for key, value in (metrics or {}).items():
        what = f"{where}: metric {key!r}"
        decl = _decl(value, what)
        if not isinstance(key, str) or not key:
            raise RegistryError(f"{what}: a metric name or a pattern must be a non-empty string")
        if not key.startswith(PATTERN_MARK):
            if not isinstance(decl.label, str):
                raise RegistryError(f"{what}: a label function needs a pattern key, a regular "
                                    f"expression starting with {PATTERN_MARK!r}")
            exact[key] = decl
            continue
        try:
            patterns.append((re.compile(key), decl))
        except re.error as e:
            raise RegistryError(f"{what}: not a regular expression: {e}") from None
    return MetricTable(MappingProxyType(exact), tuple(patterns))


def _decl(value, what: str) -> MetricDecl:
    if isinstance(value, tuple) and len(value) == 2:
        value = MetricDecl(*value)
    if not isinstance(value, MetricDecl):
        raise RegistryError(f"{what}: declare MetricDecl(worse_when, label) or "
                            f"(worse_when, label), got {value!r}")
    if not (isinstance(value.label, str) or callable(value.label)):
        raise RegistryError(f"{what}: label must be text or a function of the pattern's "
                            f"match, got {value.label!r}")
    if value.worse_when is not None and not DIRECTION.match(str(value.worse_when)):
        raise RegistryError(f"{what}: worse_when {value.worse_when!r} is not higher, lower, "
                            f"away_from_zero, away_from_<number> or None")
    return value

"""A registry of named things of one kind (tasks, scorers), each with its metadata.

Every list of tasks or scorers the rest of compsafe needs (CLI help, report builders,
dimensions, scorer kinds) is derived from one registry per kind, so adding a thing is one
registration and nothing is listed twice. An entry's implementation is either the object
itself or a lazy ``"module:attr"`` path, imported on first use: ``compsafe --help`` and
``report/`` stay free of torch however heavy the registered classes are.

    SCORERS = Registry("scorer")
    SCORERS.add("vader", "compsafe.scorers.lexical:VaderScorer", ScorerInfo("sentiment", ...))
    SCORERS.load("vader")            # the class, imported now
    SCORERS.view("kind")["vader"]    # "sentiment", a live read-only mapping
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from compsafe.errors import CompsafeError, UnknownNameError

M = TypeVar("M")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""Registrable names: they are typed in comma-separated CLI lists and YAML, and name
folders, so no spaces, commas or slashes."""
PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class RegistryError(CompsafeError):
    """A registration that cannot be accepted: a taken or malformed name, bad metadata."""


def resolve(target: Any, what: str) -> Any:
    """``target`` itself, or the attribute a ``"module:attr"`` path names, imported now;
    ``what`` names the entry in the error when the path does not resolve."""
    if not isinstance(target, str):
        return target
    module, attr = target.split(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise RegistryError(f"{what}: cannot load {target!r}: {e}") from e
    return obj


def check_target(target: Any, what: str) -> None:
    """A lazy path must look like ``"package.module:attr"``; anything else is the object."""
    if isinstance(target, str) and not PATH.match(target):
        raise RegistryError(f"{what}: {target!r} is not a 'module:attr' path")


@dataclass(frozen=True)
class Entry(Generic[M]):
    """One registered name: its implementation (object or lazy path) and metadata."""

    name: str
    target: Any
    meta: M


class Registry(Mapping[str, Entry[M]]):
    """Names -> entries of one ``kind``, in registration order.

    A read-only ``Mapping`` for the rest of the code (``name in TASKS``, ``sorted(TASKS)``);
    changed only through ``add`` and ``remove``. ``entry``/``load`` raise
    ``UnknownNameError`` listing the known names; ``[]`` raises ``KeyError`` like any mapping.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[M]] = {}

    def add(self, name: str, target: Any, meta: M) -> Entry[M]:
        """Register ``name``; a name already taken is an error (remove it first)."""
        if not isinstance(name, str) or not NAME.match(name):
            raise RegistryError(f"{self.kind} name {name!r}: use letters, digits, '_', '-' "
                                f"or '.', starting with a letter or digit")
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered "
                                f"({_describe(self._entries[name].target)})")
        check_target(target, f"{self.kind} {name!r}")
        entry = Entry(name, target, meta)
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> Entry[M]:
        """Unregister ``name`` (tests undo their registrations with it)."""
        entry = self.entry(name)
        del self._entries[name]
        return entry

    def entry(self, name: str) -> Entry[M]:
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, list(self._entries))
        return self._entries[name]

    def load(self, name: str) -> Any:
        """The implementation registered under ``name``, imported if given as a path."""
        return resolve(self.entry(name).target, f"{self.kind} {name!r}")

    def names(self, where: Callable[[M], bool] | None = None) -> tuple[str, ...]:
        """Registered names in order; with ``where``, those whose metadata it accepts."""
        return tuple(n for n, e in self._entries.items() if where is None or where(e.meta))

    def view(self, field: str, load: bool = False) -> Mapping[str, Any]:
        """A live read-only mapping name -> ``getattr(meta, field)``; ``load``: that value
        resolved as an implementation (a ``"module:attr"`` path imported)."""
        return _FieldView(self, field, load)

    def select(self, where: Callable[[M], bool]) -> Set[str]:
        """A live read-only set of the names whose metadata ``where`` accepts, in order."""
        return _Selection(self, where)

    def __getitem__(self, name: str) -> Entry[M]:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


class _FieldView(Mapping[str, Any]):
    def __init__(self, registry: Registry, field: str, load: bool):
        self._registry, self._field, self._load = registry, field, load

    def __getitem__(self, name: str) -> Any:
        value = getattr(self._registry[name].meta, self._field)
        return resolve(value, f"{self._registry.kind} {name!r}") if self._load else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry)

    def __len__(self) -> int:
        return len(self._registry)

    def __repr__(self) -> str:
        return repr(dict(self))


class _Selection(Set[str]):
    def __init__(self, registry: Registry, where: Callable[[Any], bool]):
        self._registry, self._where = registry, where

    def __contains__(self, name: object) -> bool:
        return name in self._registry.names(self._where)

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names(self._where))

    def __len__(self) -> int:
        return len(self._registry.names(self._where))

    def __repr__(self) -> str:
        return repr(self._registry.names(self._where))


def _describe(target: Any) -> str:
    if isinstance(target, str):
        return target
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', target)}"

"""Typed reads from parsed YAML that name the key path on error (``tasks[1].limit: ...``).

Used by ``config.py``; every error is a ``CompsafeError`` whose message starts with the key
path, and ``config.py`` prefixes the file name.

    f = Fields(raw, "tasks[1]", known=("task", "limit"))
    limit = f.int("limit", None, minimum=1)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from compsafe.errors import CompsafeError, OptionError

MISSING = object()


def expect(value, kind, where: str, what: str):
    """``value`` if it is a ``kind`` (bools are not numbers here), else a one-line error."""
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _tuple(kind))
    if not ok:
        raise CompsafeError(f"{where}: expected {what}, got {value!r}")
    return value


def _tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def one_or_many(value, where: str, kind, what: str, allow_none: bool = False) -> list:
    """A scalar or a list of them, as a list (``None`` -> ``[]``); items type-checked with
    their index in the path."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    path = (lambda i: f"{where}[{i}]") if isinstance(value, list) else (lambda i: where)
    for i, item in enumerate(items):
        if item is None and allow_none:
            continue
        expect(item, kind, path(i), what + (" or null" if allow_none else ""))
    return items


@contextmanager
def options_at(prefix: str, paths: dict[str, str] | None = None) -> Iterator[None]:
    """Report a dataclass's refusal (``OptionError``: ``TaskOptions``, ``CompressionSpec``)
    under the YAML path of the refused field: ``paths[field]`` (a list item, say), else
    ``prefix.field``. Its message is the one the CLI prints under the flag's name."""
    try:
        yield
    except OptionError as e:
        where = (paths or {}).get(e.field) or (f"{prefix}.{e.field}" if prefix else e.field)
        raise CompsafeError(f"{where}: {e.message}") from None


class Fields:
    """The keys of one YAML mapping, read with type checks; unknown keys are rejected."""

    def __init__(self, data: dict, prefix: str, known: tuple[str, ...]):
        self.data, self.prefix = data, prefix
        for key in data:
            if key not in known:
                where = prefix or "top level"
                raise CompsafeError(f"{where}: unknown key {key!r}; known: {', '.join(known)}")

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def present(self) -> list[str]:
        return list(self.data)

    def get(self, key: str, default=MISSING):
        if key in self.data:
            return self.data[key]
        if default is MISSING:
            where = self.prefix or "top level"
            raise CompsafeError(f"{where}: missing {key!r}")
        return default

    def _typed(self, key, default, kind, what, minimum=None):
        value = self.get(key, default)
        if value is None and default is None:  # null where null means "the default"
            return None
        expect(value, kind, self.path(key), what)
        if minimum is not None and value < minimum:
            raise CompsafeError(f"{self.path(key)}: must be at least {minimum}, got {value!r}")
        return value

    def str(self, key: str, default=MISSING) -> str:
        value = self.get(key, default)
        if value is None and default is None:
            return None
        return expect(value, str, self.path(key), "a string")

    def int(self, key: str, default=MISSING, minimum: int | None = None) -> int:
        return self._typed(key, default, int, "an integer", minimum)

    def number(self, key: str, default=MISSING, minimum: float | None = None) -> float:
        return self._typed(key, default, (int, float), "a number", minimum)

    def bool(self, key: str, default=MISSING) -> bool:
        return expect(self.get(key, default), bool, self.path(key), "true or false")

    def require_list(self, key: str, allow_empty: bool = False) -> list:
        value = self.get(key, [] if allow_empty else MISSING)
        if value is None and allow_empty:
            return []
        expect(value, list, self.path(key), "a list")
        if not value and not allow_empty:
            raise CompsafeError(f"{self.path(key)}: is empty; give at least one entry")
        return value

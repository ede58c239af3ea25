"""User-facing errors: the CLI prints these as one line, without a traceback.

Anything that is the user's to fix (a path, a name, a malformed data file) raises a
subclass of :class:`CompsafeError` whose message names the offending thing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


class CompsafeError(Exception):
    """An error caused by input the user controls; its message is the whole story."""


class DataError(CompsafeError):
    """A missing or malformed data file. The message names the file and, when known, the line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = Path(path)
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class ModelLoadError(CompsafeError):
    """A model that cannot be found or loaded; the message names what was tried."""


class OptionError(CompsafeError):
    """An option value its dataclass refuses (``TaskOptions``, ``CompressionSpec``, a scorer
    list). ``field`` names the option and ``message`` says what is wrong with its value, so
    the CLI (``--limit: ...``) and a sweep config (``tasks[0].limit: ...``) report the same
    message under their own name for it: options are validated once, where they are defined,
    never by each front end."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@contextmanager
def as_flags(renamed: Mapping[str, str] | None = None) -> Iterator[None]:
    """Report an ``OptionError`` raised inside under the command-line flag of its field:
    ``renamed[field]``, else ``--`` + the field with dashes (``min_new_tokens`` ->
    ``--min-new-tokens: ...``). The CLI's counterpart of ``sweep.validate.options_at``:
    the same message, under the flag's name instead of the YAML path."""
    try:
        yield
    except OptionError as e:
        flag = (renamed or {}).get(e.field) or "--" + e.field.replace("_", "-")
        raise CompsafeError(f"{flag}: {e.message}") from None


def check_int(field: str, value, minimum: int | None, optional: bool = True) -> None:
    """``value`` must be an integer (not a bool) of at least ``minimum`` (None: any; a None
    value is allowed when ``optional``); else an ``OptionError`` for ``field``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(field, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise OptionError(field, f"must be {what}, got {value}")


class UnknownNameError(CompsafeError):
    """An unknown task, dataset or method name; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]):
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")

"""User-facing errors: the CLI prints these as one line, without a traceback.

Anything that is the user's to fix (a path, a name, a malformed data file) raises a
subclass of :class:`CompsafeError` whose message names the offending thing.
"""

from __future__ import annotations

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


class UnknownNameError(CompsafeError):
    """An unknown task, dataset or method name; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]):
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")

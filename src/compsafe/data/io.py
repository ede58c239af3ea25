"""Readers for dataset files that name the file and line of anything malformed.

    rows = list(read_jsonl(path))          # DataError("Age.jsonl:17: invalid JSON ...")
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compsafe.errors import DataError


def require_file(path: Path, hint: str = "") -> Path:
    """Return ``path`` if it is a file, else raise a DataError saying what to do."""
    if not path.is_file():
        raise DataError(path, "missing" + (f"; {hint}" if hint else ""))
    return path


# A \uXXXX escape of a UTF-16 surrogate: legal JSON, but alone it decodes to a string
# that is not text (it cannot be encoded, tokenized or stored as UTF-8).
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def lone_surrogate(text: str) -> int | None:
    """The 1-based column of the first ``\\uD800``-style escape in JSON ``text`` that is not
    half of a surrogate pair, or None."""
    pending = None  # column of a high surrogate waiting for its low half
    last_end = -1
    for m in _SURROGATE.finditer(text):
        slashes = len(text[:m.start()]) - len(text[:m.start()].rstrip("\\"))
        if slashes % 2:
            continue  # "\\\\ud800": an escaped backslash, then plain text
        high = m.group()[2].lower() == "d" and m.group()[3].lower() in "89ab"
        if pending is not None and not high and m.start() == last_end:
            pending = None  # the low half completes the pair
        elif pending is not None:
            return pending
        elif high:
            pending = m.start() + 1
        else:
            return m.start() + 1
        last_end = m.end()
    return pending


def is_text(obj: Any) -> bool:
    """Whether every string in a decoded JSON value encodes as UTF-8 (no lone surrogate)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode_line(raw: bytes, path: Path, lineno: int) -> str:
    """``raw`` as UTF-8, or a DataError naming the line and the character column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        column = len(raw[:e.start].decode("utf-8", "replace")) + 1
        raise DataError(path, f"not valid UTF-8 (byte 0x{raw[e.start]:02x}, {e.reason}) at "
                              f"column {column}", lineno) from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; errors name file, line and
    column (invalid UTF-8, invalid JSON, a lone surrogate escape)."""
    require_file(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            text = decode_line(raw, path, lineno)
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                msg = f"invalid JSON ({e.msg}) at column {e.colno}"
                raise DataError(path, msg, lineno) from None
            if "\\u" in text and not is_text(obj):
                column = lone_surrogate(text) or 1
                raise DataError(path, f"lone surrogate escape {text[column - 1:column + 5]} at "
                                      f"column {column}: not text", lineno)
            if not isinstance(obj, dict):
                raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", lineno)
            yield lineno, obj


def read_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` without the newline; errors name file and line."""
    require_file(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(path, f"not valid UTF-8 ({e.reason})", lineno) from None

"""Schema checks for files that have no pinned hash, run before such a file is accepted.

A catalogued file without a published SHA-256 (``sources._UNPINNED``: the full
RealToxicityPrompts set, HELM's TwitterAAE test sets) is trusted on first use: the first
copy seen defines it. Without a check, any file placed under that name (a wrong download, a
mirror's symlink to something unrelated) would be pinned and listed as verified. So the
first copy must parse as the dataset it claims to be, through the loader that will read it.

    check_unpinned("realtoxicityprompts/prompts.jsonl", tmp_copy, shown_as=mirror_file)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from compsafe.errors import DataError


def _rtp_full(path: Path) -> int:
    from compsafe.data.prompts.rtp import read_file

    return len(read_file(path, None))


def _tweets_csv(path: Path) -> int:
    """HELM's tweets: UTF-8 text, one tweet in the first column of every row, no NULs."""
    raw = path.read_bytes()
    if b"\0" in raw:
        raise DataError(path, "contains NUL bytes; expected a CSV of tweets")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, f"not valid UTF-8 at byte {e.start}; expected a CSV of tweets"
                        ) from None
    rows = 0
    for line, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not row or not row[0].strip():
            raise DataError(path, "empty first column; expected one tweet per row", line)
        rows += 1
    return rows


CHECKS: dict[str, Callable[[Path], int]] = {
    "realtoxicityprompts/prompts.jsonl": _rtp_full,
    "twitteraae/helm/aa_tweets.csv": _tweets_csv,
    "twitteraae/helm/white_tweets.csv": _tweets_csv,
}
"""Catalogue path -> check returning the item count (raising DataError on a bad file)."""


def check_unpinned(rel: str, path: Path, shown_as: str | Path) -> None:
    """Raise ``DataError`` naming ``shown_as`` unless ``path`` (a copy of the file that will
    become ``rel``) parses as that dataset with at least one item."""
    check = CHECKS.get(rel)
    if check is None:
        raise DataError(shown_as, "has no pinned hash and no schema check; refusing to trust "
                                  "it on first use")
    try:
        n = check(path)
    except DataError as e:  # named by the copy's temp path: name the file the user gave
        raise DataError(shown_as, f"not a valid {rel}: {e.message}", e.line) from None
    if n == 0:
        raise DataError(shown_as, f"not a valid {rel}: no items")

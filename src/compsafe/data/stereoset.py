"""Loader for StereoSet (Nadeem, Bethke and Reddy, 2021, ACL), the public ``dev.json``.

The file (``moinnadeem/StereoSet``, ``data/dev.json``) is one JSON object::

    {"version": "1.0-dev", "data": {"intersentence": [...], "intrasentence": [...]}}

and each example is ``{id, target, bias_type, context, sentences}``, where ``sentences``
holds exactly one ``stereotype``, one ``anti-stereotype`` and one ``unrelated`` sentence
(``{id, sentence, gold_label, labels}``). Intrasentence contexts contain ``BLANK``, the
slot the three sentences fill; intersentence sentences follow the context. The checks are
those of the authors' ``code/dataloader.py`` (gold labels, a ``BLANK`` in every
intrasentence context) plus the shape our scoring relies on; the per-annotator ``labels``
are not used and not required. Anything malformed raises ``DataError`` naming the file,
the line of the offending example (found by its id in the raw text) or else its JSON path,
and the key.

    data = load_stereoset(data_dir() / "stereoset")   # data.items["intrasentence"][0].target
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compsafe.data.io import require_file
from compsafe.errors import DataError

SPLITS = ("intersentence", "intrasentence")
BIAS_TYPES = ("gender", "profession", "race", "religion")
LABELS = ("stereotype", "anti-stereotype", "unrelated")  # the order of an item's sentences
FILE = "dev.json"
_EXAMPLE_KEYS = ("id", "target", "bias_type", "context", "sentences")
_SENTENCE_KEYS = ("id", "sentence", "gold_label")


@dataclass(frozen=True)
class StereoSetSentence:
    """One option: its id in the file, its text and its gold label."""

    id: str
    text: str
    gold_label: str


@dataclass(frozen=True)
class StereoSetItem:
    """One example; ``sentences`` are (stereotype, anti-stereotype, unrelated), in that order."""

    id: str  # "<split>/<example id>", unique in the task
    example_id: str
    split: str
    bias_type: str
    target: str
    context: str
    sentences: tuple[StereoSetSentence, StereoSetSentence, StereoSetSentence]


@dataclass(frozen=True)
class StereoSetData:
    """Items per split in file order, the file's version and its content hash."""

    items: dict[str, list[StereoSetItem]]
    version: str
    sha256: str


class _Errors:
    """Builds DataErrors for one file; the line of an example or sentence is found by its id
    in the raw text, only when an error is raised (a search per item would cost minutes)."""

    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text

    def line(self, ident: Any) -> int | None:
        if not isinstance(ident, str) or not ident:
            return None
        pos = self.text.find(json.dumps(ident))
        return None if pos < 0 else self.text.count("\n", 0, pos) + 1

    def __call__(self, where: str, msg: str, ident: Any = None) -> DataError:
        return DataError(self.path, f"{where}: {msg}", self.line(ident))

    def require_str(self, obj: dict, key: str, where: str, ident: Any) -> str:
        if key not in obj:
            raise self(where, f"missing key {key!r}", ident)
        value = obj[key]
        if not isinstance(value, str) or not value.strip():
            raise self(where, f"key {key!r} must be a non-empty string, got {value!r}", ident)
        return value


def parse_example(obj: Any, split: str, index: int, err: _Errors) -> StereoSetItem:
    """Validate one example of ``data[split][index]``; errors name file, line and key."""
    where = f"data.{split}[{index}]"
    if not isinstance(obj, dict):
        raise err(where, f"expected an object, got {type(obj).__name__}")
    ident = obj.get("id")
    missing = [k for k in _EXAMPLE_KEYS if k not in obj]
    if missing:
        raise err(where, f"missing key(s) {', '.join(map(repr, missing))}", ident)
    ex_id, target, context = (err.require_str(obj, k, where, ident)
                              for k in ("id", "target", "context"))
    bias_type = obj["bias_type"]
    if bias_type not in BIAS_TYPES:
        raise err(where, f"key 'bias_type' must be one of {', '.join(BIAS_TYPES)}, "
                         f"got {bias_type!r}", ident)
    if split == "intrasentence" and "BLANK" not in context:
        raise err(where, "key 'context' of an intrasentence example has no BLANK", ident)
    sentences = obj["sentences"]
    if not isinstance(sentences, list) or len(sentences) != 3:
        got = len(sentences) if isinstance(sentences, list) else type(sentences).__name__
        raise err(where, f"key 'sentences' must be a list of 3, got {got}", ident)
    by_label: dict[str, StereoSetSentence] = {}
    for j, s in enumerate(sentences):
        at = f"{where}.sentences[{j}]"
        if not isinstance(s, dict):
            raise err(at, f"expected an object, got {type(s).__name__}", ident)
        s_ident = s.get("id") if isinstance(s.get("id"), str) and s.get("id") else ident
        for key in _SENTENCE_KEYS:
            err.require_str(s, key, at, s_ident)
        gold = s["gold_label"]
        if gold not in LABELS:
            raise err(at, f"key 'gold_label' must be one of {', '.join(LABELS)}, got {gold!r}",
                      s_ident)
        if gold in by_label:
            raise err(at, f"key 'gold_label': a second {gold!r} sentence; expected one each "
                          f"of {', '.join(LABELS)}", s_ident)
        by_label[gold] = StereoSetSentence(s["id"], s["sentence"], gold)
    return StereoSetItem(
        id=f"{split}/{ex_id}", example_id=ex_id, split=split, bias_type=bias_type,
        target=target, context=context, sentences=tuple(by_label[g] for g in LABELS),
    )


def parse_stereoset(text: str, path: Path) -> tuple[str, dict[str, list[StereoSetItem]]]:
    """The version and items per split of a ``dev.json`` text (``path`` names it in errors)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON ({e.msg} at column {e.colno})", e.lineno) from None
    if not isinstance(doc, dict):
        raise DataError(path, f"expected a JSON object at the top, got {type(doc).__name__}", 1)
    for key in ("version", "data"):
        if key not in doc:
            raise DataError(path, f"missing top-level key {key!r}", 1)
    data = doc["data"]
    if not isinstance(data, dict):
        raise DataError(path, f"key 'data' must be an object, got {type(data).__name__}")
    err, items, seen = _Errors(path, text), {}, {}
    for split in SPLITS:
        rows = data.get(split)
        if not isinstance(rows, list):
            msg = f"missing key 'data.{split}'" if rows is None else \
                f"key 'data.{split}' must be a list, got {type(rows).__name__}"
            raise DataError(path, msg)
        items[split] = []
        for i, obj in enumerate(rows):
            item = parse_example(obj, split, i, err)
            if item.example_id in seen:
                raise err(f"data.{split}[{i}]", f"key 'id': duplicate example id "
                          f"{item.example_id!r} (first at {seen[item.example_id]})")
            seen[item.example_id] = f"data.{split}[{i}]"
            items[split].append(item)
    return str(doc["version"]), items


def load_stereoset(root: Path) -> StereoSetData:
    """Load ``<root>/dev.json`` (the ``stereoset`` dataset folder), validated and hashed."""
    path = require_file(Path(root) / FILE, "run `compsafe data pull --dataset stereoset`")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, f"not valid UTF-8 ({e.reason})") from None
    version, items = parse_stereoset(text, path)
    return StereoSetData(items, version, hashlib.sha256(raw).hexdigest())

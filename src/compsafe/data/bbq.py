"""Loader for BBQ, the Bias Benchmark for QA (Parrish et al., 2022, Findings of ACL).

Reads ``<root>/<Category>.jsonl`` for the 11 official categories that are present, finds the
"unknown" option from ``answer_info`` tags (never the surface text, which has ten
paraphrases), and attaches each item's bias target and label type: the official
``target_loc``/``label_type`` from ``additional_metadata.csv`` when that file exists, else
the stereotyped-group fallback (``compsafe.data.bbq_targets`` says how each is read).

    data = load_bbq(data_dir() / "bbq")    # data.items["Age"][0].target_idx -> 0

``target_idx`` is always the answer about the *stereotyped group* (Parrish et al.'s "bias
target"), whatever the question polarity; the biased answer is that one on a ``neg``
question and the other non-unknown answer on a ``nonneg`` question (the official
``target_loc`` is the biased answer itself). ``subset`` is the category, or
"<category> (names)" for items whose groups are given by proper names, as the BBQ authors
report them (``BBQ_calculate_bias_score.R``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from compsafe.data.bbq_targets import (
    GENDER_WORDS,
    fallback_label_type,
    norm_qindex,
    read_metadata,
    read_templates,
    stereotyped_answer,
)
from compsafe.data.io import read_jsonl
from compsafe.errors import DataError

CATEGORIES = (
    "Age", "Disability_status", "Gender_identity", "Nationality", "Physical_appearance",
    "Race_ethnicity", "Race_x_SES", "Race_x_gender", "Religion", "SES", "Sexual_orientation",
)
# The official analysis scripts' list (BBQ_calculate_bias_score.R), matched on answer_info tags.
UNKNOWN_TAGS = frozenset({
    "unknown", "cannot be determined", "can't be determined", "not answerable", "not known",
    "not enough info", "not enough information", "cannot answer", "can't answer", "undetermined",
})
METADATA_PATHS = ("supplemental/additional_metadata.csv", "additional_metadata.csv")
TEMPLATES = "templates"
NAMES_SUFFIX = " (names)"
TARGET_LOC_READING = "biased answer (polarity applied by the metadata script; not flipped)"
_POLARITIES = ("neg", "nonneg")
_CONDITIONS = ("ambig", "disambig")


@dataclass(frozen=True)
class BBQItem:
    """One BBQ question. ``target_idx`` is the stereotyped-group answer (None: no target)."""

    id: str
    category: str
    example_id: int
    question_index: str
    polarity: str
    condition: str
    context: str
    question: str
    answers: tuple[str, str, str]
    answer_info: tuple[tuple[str, str], ...]
    label: int
    unknown_idx: int
    groups: tuple[str, ...]
    target_idx: int | None = None
    target_source: str = "stereotyped_groups"
    label_type: str | None = None

    @property
    def target_group(self) -> str | None:
        """The target answer's group tag (e.g. "old", "F"), the key for per-group scores."""
        if self.target_idx is None:
            return None
        tag = self.answer_info[self.target_idx][1]
        return GENDER_WORDS.get(tag, tag)  # "woman" and "F" are one group

    @property
    def subset(self) -> str:
        """The reported category: "<category> (names)" for proper-name items."""
        return subset_name(self.category, self.label_type)


def subset_name(category: str, label_type: str | None) -> str:
    """The BBQ authors' reporting category of an item (names split from labels)."""
    return category + NAMES_SUFFIX if label_type == "name" else category


@dataclass(frozen=True)
class BBQData:
    """All items per category, in file order, plus how targets were found."""

    items: dict[str, list[BBQItem]]
    target_source: str  # "additional_metadata" | "stereotyped_groups"
    sha256: dict[str, str]
    var2_source: str | None = None  # fallback only: "templates" when they gave var2


def _require(cond: bool, path: Path, line: int, msg: str) -> None:
    if not cond:
        raise DataError(path, msg, line)


def parse_row(obj: dict, path: Path, line: int, category: str) -> BBQItem:
    """Validate one JSONL object; anything malformed raises DataError naming file and line."""
    keys = ("example_id", "question_index", "question_polarity", "context_condition", "category",
            "answer_info", "additional_metadata", "context", "question", "ans0", "ans1", "ans2",
            "label")
    missing = [k for k in keys if k not in obj]
    _require(not missing, path, line, f"missing key(s) {', '.join(missing)}")
    ex_id, label = obj["example_id"], obj["label"]
    _require(isinstance(ex_id, int) and not isinstance(ex_id, bool), path, line,
             f"example_id must be an integer, got {ex_id!r}")
    _require(label in (0, 1, 2) and not isinstance(label, bool), path, line,
             f"label must be 0, 1 or 2, got {label!r}")
    _require(obj["category"] == category, path, line,
             f"category {obj['category']!r} does not match file {category!r}")
    _require(obj["question_polarity"] in _POLARITIES, path, line,
             f"question_polarity must be neg/nonneg, got {obj['question_polarity']!r}")
    _require(obj["context_condition"] in _CONDITIONS, path, line,
             f"context_condition must be ambig/disambig, got {obj['context_condition']!r}")
    answers = tuple(obj[f"ans{k}"] for k in range(3))
    _require(all(isinstance(a, str) for a in answers), path, line, "ans0..ans2 must be strings")
    info = obj["answer_info"]
    _require(isinstance(info, dict), path, line, "answer_info must be an object")
    pairs = []
    for k in range(3):
        pair = info.get(f"ans{k}")
        ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)
        _require(ok, path, line, f"answer_info.ans{k} must be a [text, tag] pair, got {pair!r}")
        pairs.append((pair[0], pair[1]))
    unknown = [k for k, (_, tag) in enumerate(pairs) if tag.strip().lower() in UNKNOWN_TAGS]
    _require(len(unknown) == 1, path, line,
             f"expected exactly one unknown answer in answer_info, found {len(unknown)}")
    groups = (obj["additional_metadata"] or {}).get("stereotyped_groups")
    _require(isinstance(groups, list) and all(isinstance(g, str) for g in groups), path, line,
             "additional_metadata.stereotyped_groups must be a list of strings")
    return BBQItem(
        id=f"{category}/{ex_id}", category=category, example_id=ex_id,
        question_index=norm_qindex(obj["question_index"]), polarity=obj["question_polarity"],
        condition=obj["context_condition"], context=str(obj["context"]),
        question=str(obj["question"]), answers=answers, answer_info=tuple(pairs), label=label,
        unknown_idx=unknown[0], groups=tuple(groups),
    )


def read_category(path: Path, category: str) -> list[BBQItem]:
    """All items of one category file, in file order; duplicate ids are an error."""
    items, seen = [], set()
    for line, obj in read_jsonl(path):
        item = parse_row(obj, path, line, category)
        _require(item.example_id not in seen, path, line, f"duplicate example_id {item.example_id}")
        seen.add(item.example_id)
        items.append(item)
    return items


def other_answer(item: BBQItem, idx: int) -> int:
    """The non-unknown answer that is not ``idx``."""
    return next(k for k in range(3) if k not in (idx, item.unknown_idx))


def with_fallback_targets(items: list[BBQItem], templates: dict) -> list[BBQItem]:
    """Items with the stereotyped-group heuristic's targets and the names split."""
    out = []
    for it in items:
        info = templates.get((it.category, it.question_index))
        target = stereotyped_answer(it.category, it.groups, info.var2 if info else None,
                                    it.answer_info, it.answers, it.unknown_idx)
        out.append(replace(it, target_idx=target, target_source="stereotyped_groups",
                           label_type=fallback_label_type(it.category, it.question_index,
                                                          templates)))
    return out


def with_official_targets(items: list[BBQItem], meta: dict) -> list[BBQItem]:
    """Items with targets from ``target_loc`` (the biased answer): the stereotyped group's
    answer is ``target_loc`` on neg questions and the other group's on nonneg ones. Items
    absent from the file, with NA, or pointing at the unknown answer get no target."""
    out = []
    for it in items:
        loc, label_type = meta.get((it.category, it.question_index, it.example_id), (None, None))
        if loc == it.unknown_idx:
            loc = None  # cannot be a group answer
        target = None if loc is None else loc if it.polarity == "neg" else other_answer(it, loc)
        out.append(replace(it, target_idx=target, target_source="additional_metadata",
                           label_type=label_type))
    return out


def load_bbq(root: Path) -> BBQData:
    """Load every official category present under ``root`` (the ``bbq`` dataset folder).

    Parsing all 58,492 questions takes seconds, and a sweep builds one task per cell: the
    last loads are kept while none of the files they read has changed (size, mtime).
    Callers must not modify the returned data.
    """
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    return _load_cached(root, tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                                    for p in files))


@lru_cache(maxsize=2)
def _load_cached(root: Path, signature: tuple) -> BBQData:
    present = [c for c in CATEGORIES if (root / f"{c}.jsonl").is_file()]
    if not present:
        raise DataError(root, "no BBQ category files (<Category>.jsonl) found; "
                              "run `compsafe data pull` to download them")
    items = {c: read_category(root / f"{c}.jsonl", c) for c in present}
    sha = {c: _sha256(root / f"{c}.jsonl") for c in present}
    meta_path = next((root / p for p in METADATA_PATHS if (root / p).is_file()), None)
    if meta_path is not None:
        meta = read_metadata(meta_path)
        sha["additional_metadata.csv"] = _sha256(meta_path)
        items = {c: with_official_targets(items[c], meta) for c in present}
        return BBQData(items, "additional_metadata", sha)
    templates = read_templates(root / TEMPLATES)
    for c in sorted({c for c, _ in templates}):
        sha[f"templates/{c}"] = _sha256(root / TEMPLATES / f"new_templates - {c}.csv")
    items = {c: with_fallback_targets(items[c], templates) for c in present}
    return BBQData(items, "stereotyped_groups", sha, "templates" if templates else None)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

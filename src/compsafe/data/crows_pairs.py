"""Loader for CrowS-Pairs (Nangia, Vania, Bhalerao & Bowman, 2020, EMNLP), from the original
``data/crows_pairs_anonymized.csv`` of nyu-mll/crows-pairs.

Each of the 1,508 rows is a minimal pair: ``sent_more`` is the more stereotyping sentence and
``sent_less`` the less stereotyping one, about a historically disadvantaged group and a
contrasting group. ``stereo_antistereo`` says whether ``sent_more`` expresses a stereotype
("stereo") or ``sent_less`` violates one ("antistereo"); in both cases the model is called
biased on the pair when it prefers ``sent_more``. ``bias_type`` is one of 9 categories.

Header: ``"", sent_more, sent_less, stereo_antistereo, bias_type, annotations, anon_writer,
anon_annotators`` (the first column is the row index, the item id here). Records may span
lines (row 1293's ``sent_less`` ends "white\\n."); an error names the file, the line the
record starts on, and the column. Sentences are kept verbatim, as lm-evaluation-harness
passes them to the model.

    data = load_crows_pairs(data_dir() / "crows_pairs")   # data.items[0].bias_type -> "race-color"
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from compsafe.errors import DataError

FILE_NAME = "crows_pairs_anonymized.csv"
# The paper's order (Nangia et al. 2020, Table 1: most to least frequent).
BIAS_TYPES = ("race-color", "gender", "socioeconomic", "nationality", "religion", "age",
              "sexual-orientation", "physical-appearance", "disability")
DIRECTIONS = ("stereo", "antistereo")
INDEX_COLUMN = ""
REQUIRED_COLUMNS = (INDEX_COLUMN, "sent_more", "sent_less", "stereo_antistereo", "bias_type")


@dataclass(frozen=True)
class CrowSPair:
    """One minimal pair; ``id`` is the CSV row index as a string."""

    id: str
    sent_more: str
    sent_less: str
    stereo_antistereo: str
    bias_type: str


@dataclass(frozen=True)
class CrowSPairsData:
    """The pairs in file order and the SHA-256 of the file read."""

    items: list[CrowSPair]
    sha256: dict[str, str]

    def by_bias_type(self) -> dict[str, list[CrowSPair]]:
        """Pairs per bias type (``BIAS_TYPES`` order, types absent from the file left out)."""
        out: dict[str, list[CrowSPair]] = {b: [] for b in BIAS_TYPES}
        for it in self.items:
            out[it.bias_type].append(it)
        return {b: v for b, v in out.items() if v}


def _column_error(path: Path, line: int, header: list[str], name: str, msg: str) -> DataError:
    col = header.index(name) + 1
    return DataError(path, f"column {col} ({name or 'index'!r}): {msg}", line)


def _parse(row: list[str], header: list[str], path: Path, line: int) -> CrowSPair:
    if len(row) != len(header):
        raise DataError(path, f"expected {len(header)} fields (as in the header), got {len(row)}",
                        line)
    rec = dict(zip(header, row, strict=True))
    for name in REQUIRED_COLUMNS:
        if not rec[name].strip():
            raise _column_error(path, line, header, name, "empty")
    index = rec[INDEX_COLUMN].strip()
    if not index.isdigit():
        raise _column_error(path, line, header, INDEX_COLUMN,
                            f"row index must be a non-negative integer, got {index!r}")
    direction = rec["stereo_antistereo"]
    if direction not in DIRECTIONS:
        raise _column_error(path, line, header, "stereo_antistereo",
                            f"must be 'stereo' or 'antistereo', got {direction!r}")
    bias = rec["bias_type"]
    if bias not in BIAS_TYPES:
        raise _column_error(path, line, header, "bias_type",
                            f"unknown bias type {bias!r}; known: {', '.join(BIAS_TYPES)}")
    return CrowSPair(id=str(int(index)), sent_more=rec["sent_more"], sent_less=rec["sent_less"],
                     stereo_antistereo=direction, bias_type=bias)


def read_pairs(path: Path) -> list[CrowSPair]:
    """Every record of the CSV in file order; a malformed one raises DataError."""
    items: list[CrowSPair] = []
    seen: set[str] = set()
    start = 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # tolerate an Excel BOM
            reader = csv.reader(f)
            header = next(reader, None)
            missing = [repr(c) if c else "'' (row index)"
                       for c in REQUIRED_COLUMNS if c not in (header or [])]
            if missing:
                raise DataError(path, f"header lacks column(s) {', '.join(missing)}; "
                                      f"got {header!r}", 1)
            start = reader.line_num + 1
            for row in reader:
                if row:  # csv yields [] for a blank line
                    item = _parse(row, header, path, start)
                    if item.id in seen:
                        raise _column_error(path, start, header, INDEX_COLUMN,
                                            f"duplicate row index {item.id}")
                    seen.add(item.id)
                    items.append(item)
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise DataError(path, f"not valid UTF-8 ({e.reason})") from None
    except csv.Error as e:
        raise DataError(path, f"malformed CSV ({e})", start) from None
    if not items:
        raise DataError(path, "no pairs")
    return items


def load_crows_pairs(root: Path) -> CrowSPairsData:
    """Load ``<root>/crows_pairs_anonymized.csv`` (``root`` is the ``crows_pairs`` folder)."""
    path = Path(root) / FILE_NAME
    if not path.is_file():
        raise DataError(path, "missing; run `compsafe data pull` to download CrowS-Pairs")
    items = read_pairs(path)
    return CrowSPairsData(items, {FILE_NAME: hashlib.sha256(path.read_bytes()).hexdigest()})

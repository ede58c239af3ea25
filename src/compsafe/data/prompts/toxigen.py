"""ToxiGen prompts (Hartvigsen et al., 2022, ACL): implicit hate and neutral statements.

``source="prompts"`` (default) reads the 31 demonstration files
``<data_dir>/toxigen/prompts/{hate,neutral}_<group>_1k.txt`` (microsoft/TOXIGEN; 1,000 lines
each, no ``neutral_trans``). Each line is six "- statement" demonstrations joined by the
LITERAL two characters ``\\n`` and ending in ``\\n-``, so a model writes the next statement;
those two characters become real newlines here. ``group`` is the target group from the file
name (``asian``, ``mental_disability``, ...), ``subgroup`` is ``hate`` or ``neutral``.

``source="annotated"`` reads ``<data_dir>/toxigen/toxiGen.json`` (microsoft/SafeNLP), the
6,514 human-annotated statements from which ROBBIE builds its ToxiGen v2 / "safetyscore"
prompts (``robbie/datasets/safetyscore.py``); the reference study's ``toxigen_filtered.jsonl``
(text, target_group) is not public and most likely comes from the same annotated set.
``group`` is the target group (13 names such as ``mental dis``), ``subgroup`` the label; a
statement aimed at several groups counts in each (``meta["memberships"]``), and its
``group``/``subgroup`` strings join them with ``|`` as ROBBIE's ``target_group`` does. The
text is kept verbatim (some start with a space). ``label`` filters to ``hate``/``neutral``.

    prompts = load_toxigen(data_dir(), limit=1000)                 # 31 strata
"""

from __future__ import annotations

import re
from pathlib import Path

from compsafe.data.io import read_text_lines
from compsafe.data.prompts.base import Prompt, pull_hint, read_json, subsample
from compsafe.errors import DataError

DATASET = "toxigen"
LABELS = ("hate", "neutral")
SOURCES = ("prompts", "annotated")
"""``source`` values, the default first."""
_FILE = re.compile(r"^(hate|neutral)_(.+)_1k\.txt$")


def read_prompt_file(path: Path) -> list[Prompt]:
    """One ``{hate,neutral}_<group>_1k.txt`` file; an empty line is an error naming it."""
    m = _FILE.match(path.name)
    if m is None:
        raise DataError(path, "expected a name like hate_<group>_1k.txt")
    label, group = m.groups()
    out = []
    for line, raw in read_text_lines(path):
        if not raw.strip():
            raise DataError(path, "empty prompt line", line)
        out.append(Prompt(id=f"toxigen/{label}_{group}/{line}", text=raw.replace("\\n", "\n"),
                          dataset="toxigen", group=group, subgroup=label,
                          meta={"label": label, "source": path.name}))
    return out


def read_annotated(path: Path) -> list[Prompt]:
    """``toxiGen.json``: a JSON array; a malformed item names its index and id."""
    data = read_json(path, DATASET)
    if not isinstance(data, list):
        raise DataError(path, "expected a JSON array of statements")
    out = []
    for i, item in enumerate(data):
        where = f"item {i}" + (f" (id {item.get('id')!r})" if isinstance(item, dict) else "")
        if not isinstance(item, dict):
            raise DataError(path, f"{where}: expected an object")
        text, label, groups = item.get("text"), item.get("label"), item.get("target_groups")
        if not isinstance(text, str) or label not in LABELS:
            raise DataError(path, f"{where}: needs a string text and label hate/neutral")
        if not (isinstance(groups, list) and groups and all(isinstance(g, str) for g in groups)):
            raise DataError(path, f"{where}: target_groups must be a non-empty list of strings")
        out.append(Prompt(
            id=f"toxigen/annotated/{item.get('id', i)}", text=text, dataset="toxigen",
            group="|".join(groups), subgroup=label,
            meta={"label": label, "toxicity_score": item.get("toxicity_score"),
                  "memberships": [(g, label) for g in groups], "source": path.name},
        ))
    return out


def load_toxigen(data_dir: Path, limit: int | None = None, seed: int = 0,
                 source: str = "prompts", label: str | None = None) -> list[Prompt]:
    """ToxiGen prompts by target group; ``limit`` is a total, stratified by group and label."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if label is not None and label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    root = Path(data_dir) / DATASET
    if source == "annotated":
        prompts = read_annotated(root / "toxiGen.json")
    else:
        files = sorted((root / "prompts").glob("*_1k.txt"))
        if not files:
            raise DataError(root / "prompts", f"no *_1k.txt prompt files; {pull_hint(DATASET)}")
        prompts = [p for f in files for p in read_prompt_file(f)]
    if label is not None:
        prompts = [p for p in prompts if p.subgroup == label]
    # Strata are (group, label): hate and neutral prompts of a group are balanced separately.
    return subsample(prompts, limit, seed, "toxigen", key=lambda p: f"{p.group}/{p.subgroup}")

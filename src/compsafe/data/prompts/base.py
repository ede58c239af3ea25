"""The prompt type shared by the generation prompt sets, and their stratified subsampling.

A :class:`Prompt` is one text a model continues (RealToxicityPrompts, BOLD, ToxiGen,
AdvPromptSet, HolisticBias, Regard) with the protected ``group`` and ``subgroup`` its
results are reported under. Prompts that name several groups at once (AdvPromptSet,
ToxiGen's annotated set) keep every ``(group, subgroup)`` pair in ``meta["memberships"]``;
:attr:`Prompt.memberships` returns them, so per-group metrics can count a prompt in each.

``limit`` is a TOTAL, as in the reference study (Xu et al. 2024, ``src/run_generation.py``:
``random.seed(args.seed); random.shuffle(dataset); dataset[:args.n_samples]``), but drawn
stratified by group so that small groups are not lost: every group gets one prompt, the rest
of the budget is split in proportion to group size (largest remainders), and each group's
prompts are drawn with a generator seeded by ``stable_seed(seed, dataset, group)``. The
result keeps file order, and does not depend on Python's hash salt or on other groups' data.

    keep = subsample(prompts, limit=100, seed=0, name="bold")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from compsafe.data.io import decode_line, is_text, lone_surrogate
from compsafe.errors import DataError
from compsafe.metrics.stats import stable_seed

T = TypeVar("T")
LIMIT_SCOPE = "total, stratified by group (proportional, at least one per group)"


@dataclass(frozen=True)
class Prompt:
    """One generation prompt. ``id`` is unique within its prompt set and stable across runs."""

    id: str
    text: str
    dataset: str
    group: str
    subgroup: str | None
    meta: dict = field(default_factory=dict, hash=False)

    @property
    def memberships(self) -> tuple[tuple[str, str | None], ...]:
        """Every ``(group, subgroup)`` the prompt belongs to (usually just its own)."""
        pairs = self.meta.get("memberships")
        return tuple(tuple(p) for p in pairs) if pairs else ((self.group, self.subgroup),)


def pull_hint(dataset: str) -> str:
    """The fix for a missing file that `compsafe data pull` can fetch."""
    return (f"run `compsafe data pull --dataset {dataset}` (or `compsafe data pull --from "
            f"<mirror>`) to fetch it")


def require(path: Path, dataset: str) -> Path:
    """``path`` if it is a file, else a DataError saying how to fetch it."""
    if not path.is_file():
        raise DataError(path, f"missing; {pull_hint(dataset)}")
    return path


def read_json(path: Path, dataset: str) -> Any:
    """A whole-file JSON document; a syntax error names the file and line."""
    require(path, dataset)
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    text = "\n".join(decode_line(b, path, k) for k, b in enumerate(lines, start=1))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON ({e.msg}) at column {e.colno}", e.lineno) from None
    if "\\u" in text and not is_text(data):
        for k, line in enumerate(text.split("\n"), start=1):
            if (column := lone_surrogate(line)) is not None:
                raise DataError(path, f"lone surrogate escape {line[column - 1:column + 5]} at "
                                      f"column {column}: not text", k)
    return data


def _allocate(sizes: list[int], limit: int, rng: np.random.Generator) -> list[int]:
    """Per-group quotas summing to ``limit``: one each, then proportional (largest remainder)."""
    n_groups = len(sizes)
    if limit < n_groups:  # not even one per group: a seeded choice of groups gets one each
        quotas = [0] * n_groups
        for g in rng.choice(n_groups, size=limit, replace=False):
            quotas[int(g)] = 1
        return quotas
    spare = np.array(sizes, dtype=float) - 1
    left = limit - n_groups
    exact = left * spare / spare.sum() if spare.sum() else np.zeros(n_groups)
    quotas = np.floor(exact).astype(int)
    # Ties in the remainder go to the earlier group (stable sort), so quotas are reproducible.
    for g in np.argsort(-(exact - quotas), kind="stable")[: left - int(quotas.sum())]:
        quotas[g] += 1
    return [int(q) + 1 for q in quotas]


def subsample(
    items: Sequence[T],
    limit: int | None,
    seed: int,
    name: str,
    key: Callable[[T], str] = lambda p: p.group,  # type: ignore[attr-defined]
) -> list[T]:
    """``limit`` items in total, stratified by ``key`` (see the module docstring); file order."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    by_group: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_group.setdefault(key(item), []).append(i)
    groups = list(by_group)
    quotas = _allocate([len(by_group[g]) for g in groups], limit,
                       np.random.default_rng(stable_seed(seed, name, "groups")))
    keep: list[int] = []
    for g, quota in zip(groups, quotas, strict=True):
        idx = by_group[g]
        rng = np.random.default_rng(stable_seed(seed, name, "limit", g))
        keep += [idx[int(i)] for i in rng.choice(len(idx), size=quota, replace=False)]
    return [items[i] for i in sorted(keep)]

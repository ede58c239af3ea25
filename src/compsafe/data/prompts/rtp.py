"""RealToxicityPrompts (Gehman et al., 2020, Findings of EMNLP): sentence prefixes from the web.

Two sources under ``<data_dir>/realtoxicityprompts/``:

* ``prompts.jsonl``: the full 99,442 prompts (HF ``allenai/real-toxicity-prompts``, the file
  ROBBIE's ``robbie/datasets/realtoxicityprompts.py`` downloads). Perspective scores may be
  null. ``group`` is the prompt's toxicity band as in Gehman et al.'s tables: ``toxic``
  (score >= 0.5), ``nontoxic`` (< 0.5) or ``unscored`` (null).
* ``toxic.jsonl`` / ``nontoxic.jsonl``: DecodingTrust's samples of RTP (1,196 challenging
  toxic + 1,200 non-toxic prompts); ``group`` is the file's name.

``source="auto"`` takes the two subsets (pinned by hash) when present, else the full set
(optional, trusted on first use): an optional file never shadows the pinned ones;
``source="full"`` asks for the full set. ``challenging=True``
keeps only the "challenging" prompts (those that made every GPT-2-era model toxic). The
prompt text is used verbatim (``prompt.text``), as in the reference study's
``src/dataset.py``; ``meta`` carries ``challenging``, the prompt's Perspective scores and the
source span (``filename``, ``begin``, ``end``). ``subgroup`` is None.

    prompts = load_rtp(data_dir(), limit=1000, challenging=True)
"""

from __future__ import annotations

from pathlib import Path

from compsafe.data.io import read_jsonl
from compsafe.data.prompts.base import Prompt, pull_hint, require, subsample
from compsafe.errors import DataError

DATASET = "realtoxicityprompts"
SOURCES = ("auto", "full", "subsets")
SUBSET_FILES = ("toxic", "nontoxic")


def _band(score: float | None) -> str:
    if score is None:
        return "unscored"
    return "toxic" if score >= 0.5 else "nontoxic"


def _score(value, path: Path, line: int, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(path, f"prompt.{key} must be a number or null, got {value!r}", line)
    return float(value)


def read_file(path: Path, group: str | None) -> list[Prompt]:
    """Prompts of one RTP JSONL file; ``group=None`` bands each prompt by its toxicity."""
    out = []
    for line, obj in read_jsonl(path):
        prompt = obj.get("prompt")
        if not isinstance(prompt, dict) or not isinstance(prompt.get("text"), str):
            raise DataError(path, "expected a \"prompt\" object with a string \"text\"", line)
        challenging = obj.get("challenging", False)
        if not isinstance(challenging, bool):
            raise DataError(path, f"challenging must be true/false, got {challenging!r}", line)
        scores = {k: _score(v, path, line, k) for k, v in prompt.items() if k != "text"}
        out.append(Prompt(
            id=f"rtp/{path.stem}/{line}", text=prompt["text"], dataset="rtp",
            group=group or _band(scores.get("toxicity")), subgroup=None,
            meta={"challenging": challenging, "prompt_scores": scores, "source": path.name,
                  **{k: obj.get(k) for k in ("filename", "begin", "end")}},
        ))
    return out


def load_rtp(data_dir: Path, limit: int | None = None, seed: int = 0, source: str = "auto",
             challenging: bool = False) -> list[Prompt]:
    """RealToxicityPrompts prompts; ``limit`` is a total, stratified by group."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    root = Path(data_dir) / DATASET
    full = root / "prompts.jsonl"
    subsets = all((root / f"{n}.jsonl").is_file() for n in SUBSET_FILES)
    if source == "full" or (source == "auto" and not subsets and full.is_file()):
        if not full.is_file():
            raise DataError(full, "missing; run `compsafe data pull --dataset "
                                  f"{DATASET}` to download the full set (67 MB)")
        prompts = read_file(full, None)
    else:
        missing = [root / f"{n}.jsonl" for n in SUBSET_FILES if not (root / f"{n}.jsonl").is_file()]
        if missing:
            raise DataError(missing[0], f"missing; {pull_hint(DATASET)}")
        prompts = [p for n in SUBSET_FILES for p in read_file(require(root / f"{n}.jsonl",
                                                                      DATASET), n)]
    if challenging:
        prompts = [p for p in prompts if p.meta["challenging"]]
    return subsample(prompts, limit, seed, "rtp")

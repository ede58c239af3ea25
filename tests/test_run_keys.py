"""Run keys cover the exact examples a task evaluates (issue 14, point 1).

For every registered task, a copy of its real mirror data gets a one-character edit in one
evaluated example; the task then loads different examples and must get a different run
key, so the store never serves results computed on the old data. The edit is made inside
a place where the first example's text occurs in the files, and the test checks that the
loaded examples did change before it compares keys.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from compsafe.runner.evaluate import task_key
from compsafe.tasks import TASKS, get_task
from compsafe.tasks.digest import examples_sha256, plain
from compsafe.types import TaskOptions

# Mirror folders each task reads (advpromptset is not in the mirror: built by hand below).
FOLDERS = {
    "bbq": ["bbq"], "unqover": ["unqover"], "wikitext2": ["wikitext2"],
    "dialect": ["aave_sae_pairs", "aave_corpora", "twitteraae"], "mmlu": ["mmlu"],
    "truthfulqa": ["truthfulqa"], "stereoset": ["stereoset"], "crows_pairs": ["crows_pairs"],
    "rtp": ["realtoxicityprompts"], "bold": ["bold"], "toxigen": ["toxigen"],
    "holisticbias": ["holistic_bias"], "regard": ["regard"], "advpromptset": [],
}


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _advpromptset(root: Path) -> None:
    (root / "advpromptset").mkdir()
    rows = [{"id": 100 + i, "row_id": i, "comment_text": text, "toxicity": i % 2,
             "jigsaw_dat": 2, "test_set": 0, "identity_grp": "annotated", "female": 1}
            for i, text in enumerate(["she answered quickly", "nobody expected tomorrow",
                                      "the meeting continued"])]
    (root / "advpromptset" / "advpromptset_final_10k.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))


def _data(name: str, mirror: Path, dest: Path) -> Path:
    for folder in FOLDERS[name]:
        if not (mirror / folder).is_dir():
            pytest.skip(f"mirror has no {folder}/")
        shutil.copytree(mirror / folder, dest / folder)
    if name == "advpromptset":
        _advpromptset(dest)
    return dest


class _RegardScorer:
    """Stands in for the Regard classifier (a hub download): the key needs its description."""

    name = "regard"

    def describe(self) -> dict:
        return {"name": "regard", "version": "test"}


def _task(name: str, root: Path):
    task = get_task(name)(root, TaskOptions(limit=None if name == "regard" else 3, n_boot=0))
    if name == "regard":
        task.__dict__["scorer"] = _RegardScorer()  # fills the cached_property
    return task


def _encodings(text: str) -> list[bytes]:
    """How a loaded string may appear in its file: raw, JSON-escaped, CSV-quoted, ``\\n``."""
    forms = [text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1],
             text.replace("\n", "\\n"), text.replace('"', '""')]
    return [f.encode() for f in dict.fromkeys(forms)]


def _candidates(task, root: Path) -> list[tuple[Path, int]]:
    """Offsets of one letter inside each place a string of the first example occurs.

    Longest strings first (the item's own text; composed prompts such as HolisticBias's
    fall through to their parts, e.g. the noun), at most 20 places per string.
    """
    blobs = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    example = plain(task.examples()[0])
    example.pop("id", None)  # ids are built from keys and file names, not item content
    strings = _strings(example)
    # Long documents (WikiText-2's one example is the test set) are matched by a window.
    strings += [s[len(s) // 2:len(s) // 2 + 40] for s in strings if len(s) > 400]
    found = []
    for text in sorted(set(strings), key=len, reverse=True):
        letters = [i for i, c in enumerate(text) if c.isascii() and c.isalpha()]
        if len(text) < 4 or not letters:
            continue
        for form in _encodings(text):
            for path, blob in blobs.items():
                for k, m in enumerate(re.finditer(re.escape(form), blob)):
                    if k == 20:
                        break
                    # the letter nearest the middle, found again in the encoded form
                    mid = form.decode().find(text[letters[len(letters) // 2]:][:8])
                    if mid >= 0:
                        found.append((path, m.start() + len(form.decode()[:mid].encode())))
    return list(dict.fromkeys(found))


def _edit(path: Path, at: int) -> tuple[bytes, str]:
    """Change the one letter at byte ``at``; returns the old bytes and a description."""
    blob = path.read_bytes()
    old = blob[at:at + 1]
    new = b"q" if old.lower() != b"q" else b"z"
    path.write_bytes(blob[:at] + new + blob[at + 1:])
    return blob, f"{path.name}@{at}: {old!r} -> {new!r}"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_one_character_in_one_example_changes_the_run_key(name, mirror_dir, tmp_path):
    root = _data(name, mirror_dir, tmp_path)
    before = _task(name, root)
    key_before, _ = task_key(before, "fingerprint")
    old_examples = [plain(e) for e in before.examples()]
    # Try the likeliest sources of the first example until the loaded examples change:
    # each try is a single-character edit, undone when it missed the evaluated items.
    for path, at in _candidates(before, root)[:40]:
        blob, edit = _edit(path, at)
        after = _task(name, root)
        if [plain(e) for e in after.examples()] != old_examples:
            break
        path.write_bytes(blob)
    else:
        raise AssertionError(f"{name}: no single-letter edit reached a loaded example")
    key_after, config = task_key(after, "fingerprint")
    assert key_after != key_before, f"{name}: same run key after {edit}"
    assert config["examples_sha256"] == after.examples_sha256()


def test_same_examples_same_key_wherever_the_data_lives(mirror_dir, tmp_path):
    """The key hashes content, not paths: a copy of the data in another folder reuses it."""
    a = _task("rtp", _data("rtp", mirror_dir, tmp_path / "a"))
    b = _task("rtp", _data("rtp", mirror_dir, tmp_path / "b"))
    assert task_key(a, "fp") == task_key(b, "fp")
    assert task_key(a, "fp")[0] != task_key(a, "other-fp")[0]


def test_examples_sha256_is_order_and_boundary_sensitive():
    from compsafe.data.prompts.base import Prompt

    p = [Prompt("a", "ab", "d", "g", None), Prompt("b", "c", "d", "g", None)]
    q = [Prompt("a", "a", "d", "g", None), Prompt("b", "bc", "d", "g", None)]
    assert examples_sha256(p) != examples_sha256(q)
    assert examples_sha256(p) != examples_sha256(p[::-1])
    assert examples_sha256(p) == examples_sha256(list(p))
    with pytest.raises(TypeError, match="cannot encode set"):
        examples_sha256([{"x": {1}}])


def test_share_key_ignores_only_the_scorer(mirror_dir):
    """Generation runs that differ only in their scorer share one set of generations; any
    other difference (model weights, decoding, prompt count) is another set."""
    from dataclasses import replace

    from compsafe.runner.evaluate import share_key

    base = TaskOptions(limit=3, samples=1, max_new_tokens=5, scorer="profanity")
    rtp = get_task("rtp")

    def key(options, fingerprint="fp-dense"):
        return share_key(rtp(mirror_dir, options), fingerprint)

    assert key(base) == key(replace(base, scorer="vader"))
    assert task_key(rtp(mirror_dir, base), "fp")[0] != task_key(
        rtp(mirror_dir, replace(base, scorer="vader")), "fp")[0]  # still two runs
    assert key(base) != key(base, fingerprint="fp-wanda-50")
    assert key(base) != key(replace(base, max_new_tokens=6))
    assert key(base) != key(replace(base, greedy=True))
    assert key(base) != key(replace(base, limit=4))
    assert share_key(get_task("bbq")(mirror_dir, TaskOptions(limit=2)), "fp") is None

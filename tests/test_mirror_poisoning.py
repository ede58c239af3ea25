"""The mirror import cannot be poisoned (issue 14, point 5): symlinks leaving the mirror are
refused, an unpinned file must parse as its dataset before it is trusted on first use, and
an optional file never shadows the pinned ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compsafe.data.prompts.rtp import load_rtp
from compsafe.data.pull import UNPINNED, VERIFIED, import_mirror, status
from compsafe.errors import DataError

RTP = "realtoxicityprompts"
FULL = f"{RTP}/prompts.jsonl"


@pytest.fixture
def mirror(mirror_dir, tmp_path) -> Path:
    """A mirror holding RTP's two pinned subsets."""
    root = tmp_path / "mirror"
    shutil.copytree(mirror_dir / RTP, root / RTP)
    return root


def test_symlink_leaving_the_mirror_is_refused(mirror, tmp_path):
    unrelated = tmp_path / "elsewhere.jsonl"
    unrelated.write_text(json.dumps({"prompt": {"text": "planted"}}) + "\n")
    (mirror / FULL).symlink_to(unrelated)
    dest = tmp_path / "cache"
    with pytest.raises(DataError, match=r"prompts\.jsonl: is a symlink to .*elsewhere\.jsonl, "
                                        r"outside the mirror"):
        import_mirror(mirror, dest, datasets=[RTP], progress=False)
    assert not (dest / FULL).exists()
    states = {r.source.path: r.state for r in status(dest, [RTP])}
    assert states[FULL] != VERIFIED


def test_symlink_inside_the_mirror_is_followed(mirror, tmp_path):
    real = mirror / "store" / "toxic.jsonl"
    real.parent.mkdir()
    (mirror / RTP / "toxic.jsonl").rename(real)
    (mirror / RTP / "toxic.jsonl").symlink_to(real)
    report = import_mirror(mirror, tmp_path / "cache", datasets=[RTP], progress=False)
    assert f"{RTP}/toxic.jsonl" in report.imported


def test_unpinned_file_must_parse_before_it_is_trusted(mirror, tmp_path):
    (mirror / FULL).write_text("id,text\n1,not rtp at all\n")  # an unrelated file
    dest = tmp_path / "cache"
    with pytest.raises(DataError, match=r"prompts\.jsonl:1: not a valid realtoxicityprompts/"
                                        r"prompts\.jsonl: invalid JSON"):
        import_mirror(mirror, dest, datasets=[RTP], progress=False)
    assert not (dest / FULL).exists() and not list(dest.rglob("*.part"))

    (mirror / FULL).write_text(json.dumps({"prompt": {"text": "a real prompt"}}) + "\n")
    report = import_mirror(mirror, dest, datasets=[RTP], progress=False)
    assert FULL in report.imported
    assert {r.source.path: r.state for r in status(dest, [RTP])}[FULL] == VERIFIED


def test_bad_unpinned_file_already_in_the_cache_is_not_pinned(mirror, tmp_path):
    dest = tmp_path / "cache"
    (dest / RTP).mkdir(parents=True)
    (dest / FULL).write_text("garbage\n")  # placed by hand, never checked
    (mirror / FULL).write_text(json.dumps({"prompt": {"text": "a real prompt"}}) + "\n")
    report = import_mirror(mirror, dest, datasets=[RTP], progress=False)
    assert FULL in report.imported  # replaced by the mirror's valid copy, not pinned as is
    assert "a real prompt" in (dest / FULL).read_text()


def test_optional_full_set_never_shadows_the_pinned_subsets(mirror, tmp_path):
    dest = tmp_path / "cache"
    import_mirror(mirror, dest, datasets=[RTP], progress=False)
    subsets = load_rtp(dest)
    (dest / FULL).write_text(json.dumps({"prompt": {"text": "planted"}}) + "\n")
    assert {r.source.path: r.state for r in status(dest, [RTP])}[FULL] == UNPINNED
    assert load_rtp(dest) == subsets  # auto: the pinned subsets still
    assert [p.text for p in load_rtp(dest, source="full")] == ["planted"]  # only on request

"""The data registry: catalogue vs. the offline mirror, mirror import, download, status.

Downloads are exercised against a local ``http.server`` on 127.0.0.1 serving a copy of the
mirror, with the catalogue's URLs pointed at it; nothing here touches the network.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import shutil
import threading
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from compsafe.data import pull, sources
from compsafe.data.pull import (
    MISSING,
    UNPINNED,
    VERIFIED,
    WRONG_HASH,
    download,
    format_status_table,
    import_mirror,
    status,
)
from compsafe.errors import DataError, UnknownNameError

MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_mirror = pytest.mark.skipif(not (MIRROR / "SHA256SUMS").is_file(),
                                  reason="offline mirror shared/data not present")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mirror_sums() -> dict[str, str]:
    rows = (line.rstrip("\n").split("  ", 1) for line in open(MIRROR / "SHA256SUMS"))
    return {p.removeprefix("./"): h for h, p in rows}


def copy_mirror(dest: Path, dataset: str) -> Path:
    shutil.copytree(MIRROR / dataset, dest / dataset)
    return dest


# --- the catalogue ----------------------------------------------------------------------


@needs_mirror
def test_catalogue_agrees_with_mirror_sums():
    cat = {s.path: s for s in sources.all_sources()}
    sums = mirror_sums()
    for path, digest in sums.items():
        assert path in cat, f"{path} is in the mirror but not in the catalogue"
        assert cat[path].sha256 == digest, path
        assert cat[path].size == (MIRROR / path).stat().st_size, path
    extra = set(cat) - set(sums)  # files the mirror lacks: trust-on-first-use downloads only
    assert all(cat[p].sha256 is None and cat[p].optional and cat[p].url for p in extra)


def test_catalogue_shape():
    all_ = sources.all_sources()
    assert len({s.path for s in all_}) == len(all_)
    assert set(sources.datasets()) >= {"bbq", "unqover", "bold", "toxigen", "holistic_bias",
                                       "regard", "realtoxicityprompts", "crows_pairs",
                                       "aave_sae_pairs", "aave_corpora", "twitteraae",
                                       "wikitext2", "mmlu", "truthfulqa"}
    for s in all_:
        assert s.path.split("/", 1)[0] == s.dataset
        if s.sha256 is not None and s.url is not None:  # pinned files: pinned commit too
            commit = s.url.split("/")[5]
            assert s.url.startswith("https://raw.githubusercontent.com/") and len(commit) == 40
    bbq = {s.path: s for s in sources.sources_for("bbq")}
    assert len([p for p in bbq if p.count("/") == 1]) == 11  # all 11 categories
    assert bbq["bbq/SES.jsonl"].url.endswith(
        "/nyu-mll/BBQ/bea11bd97d79217245b5871acd247b9d6eb24598/data/SES.jsonl")
    assert bbq["bbq/templates/new_templates - Age.csv"].url.endswith("new_templates%20-%20Age.csv")
    assert bbq["bbq/supplemental/additional_metadata.csv"].sha256.startswith("f36708416b0e")
    assert not [s for s in bbq.values() if s.sha256 is None]  # every BBQ file pinned
    (stereoset,) = sources.sources_for("stereoset")
    assert stereoset.url.endswith(
        "/moinnadeem/StereoSet/ead7d086a64a192a1eca88e0dd2fd163de375218/data/dev.json")
    assert stereoset.sha256.startswith("73a0f31b7116") and not stereoset.optional
    derived = [s for s in sources.all_sources() if s.url is None]
    assert [s.path for s in derived] == ["regard/prompts.jsonl"]


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(UnknownNameError, match="bbq.*unqover"):
        sources.sources_for("bqq")
    with pytest.raises(UnknownNameError):
        import_mirror(MIRROR, "/nonexistent", datasets=["bqq"], progress=False)


# --- importing a mirror -----------------------------------------------------------------


@needs_mirror
def test_optional_files_absent_from_the_mirror_are_not_reported_missing(tmp_path):
    """RTP's full set and HELM's TwitterAAE tweets are optional and not mirrored: a complete
    import says so apart, instead of "3 missing"."""
    report = import_mirror(MIRROR, tmp_path / "cache",
                           datasets=["realtoxicityprompts", "twitteraae"], progress=False)
    assert not report.missing and len(report.optional_missing) == 3
    assert report.summary().endswith("0 missing, 0 failed (3 optional files not in the source)")


@needs_mirror
def test_import_real_mirror(tmp_path):
    dest = tmp_path / "cache"
    wanted = ["bbq", "unqover", "stereoset"]
    report = import_mirror(MIRROR, dest, datasets=wanted, progress=False)
    in_mirror = {p for p in mirror_sums() if p.split("/", 1)[0] in wanted}
    assert set(report.imported) == in_mirror and not report.missing and not report.failed
    assert len(in_mirror) == 11 + 1 + 14 + 34 + 1  # categories, metadata, templates, word lists
    for rel in ("bbq/Age.jsonl", "bbq/Race_x_gender.jsonl", "bbq/templates/new_templates - SES.csv",
                "bbq/supplemental/additional_metadata.csv", "stereoset/dev.json",
                "unqover/word_lists/slots/religion_noact"):
        assert sha(dest / rel) == mirror_sums()[rel]
    assert not list(dest.rglob("*.part"))
    assert (dest / "bbq/Age.jsonl").stat().st_mode & 0o777 == 0o666 & ~pull._UMASK
    rows = {r.source.path: r.state for r in status(dest, wanted)}
    assert set(rows) == in_mirror and set(rows.values()) == {VERIFIED}
    again = import_mirror(MIRROR, dest, datasets=wanted, progress=False)
    assert len(again.skipped) == len(in_mirror) and not again.imported
    assert again.summary().startswith(f"0 imported, {len(in_mirror)} already present, 0 missing")


@needs_mirror
def test_corrupt_mirror_file_is_named_and_earlier_files_stay(tmp_path):
    mirror = copy_mirror(tmp_path / "mirror", "unqover")
    bad = "unqover/word_lists/nouns/subjects/female"
    raw = bytearray((mirror / bad).read_bytes())
    raw[10] ^= 0x01
    (mirror / bad).write_bytes(bytes(raw))
    dest = tmp_path / "cache"
    with pytest.raises(DataError) as exc:
        import_mirror(mirror, dest, datasets=["unqover"], progress=False)
    msg = str(exc.value)
    assert bad in msg and mirror_sums()[bad] in msg and hashlib.sha256(raw).hexdigest() in msg
    order = [s.path for s in sources.sources_for("unqover")]
    before, after = order[: order.index(bad)], order[order.index(bad):]
    assert before and all(sha(dest / p) == mirror_sums()[p] for p in before)
    assert not any((dest / p).exists() for p in after)
    assert not list(dest.rglob("*.part"))


# --- downloading ------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    fail_once: set[str] = set()
    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = unquote(self.path.lstrip("/"))
        self.hits[path] = self.hits.get(path, 0) + 1
        if path in self.fail_once:
            self.fail_once.discard(path)
            self.send_error(500, "flaky")
            return
        super().do_GET()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over ``tmp_path/served`` (a mirror copy); yields (root, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(type("H", (_Handler,), {"fail_once": set(), "hits": {}}),
                                directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", handler.func
    httpd.shutdown()
    httpd.server_close()


def point_catalogue_at(monkeypatch, base: str, keep: set[str] | None = None):
    """Rewrite every downloadable URL to ``base/<path>``."""
    moved = tuple(dataclasses.replace(s, url=f"{base}/{quote(s.path)}" if s.url else None)
                  for s in sources.all_sources() if keep is None or s.dataset in keep)
    monkeypatch.setattr(sources, "all_sources", lambda: moved)


@needs_mirror
def test_download_from_local_server(tmp_path, server, monkeypatch):
    root, base, handler = server
    copy_mirror(root, "unqover")
    copy_mirror(root, "regard")
    point_catalogue_at(monkeypatch, base, {"unqover", "regard"})
    dest = tmp_path / "cache"
    report = download(dest, datasets=["unqover", "regard"], progress=False, backoff=0.01)
    assert not report.failed and len(report.imported) == 34 + 5
    assert report.missing == ["regard/prompts.jsonl"]  # DERIVED: import only
    assert all(r.state == VERIFIED for r in status(dest, ["unqover"]))
    assert len(download(dest, datasets=["unqover"], progress=False).skipped) == 34


@needs_mirror
def test_download_404_is_reported_and_others_land(tmp_path, server, monkeypatch):
    root, base, handler = server
    copy_mirror(root, "unqover")
    gone = "unqover/word_lists/slots/gender_noact"
    (root / gone).unlink()
    point_catalogue_at(monkeypatch, base)
    dest = tmp_path / "cache"
    report = download(dest, datasets=["unqover"], progress=False, retries=2, backoff=0.01)
    assert [f.path for f in report.failed] == [gone]
    assert report.failed[0].url == f"{base}/{gone}" and "404" in report.failed[0].reason
    assert handler.hits[gone] == 1  # a 404 is not retried
    assert len(report.imported) == 33 and not (dest / gone).exists()
    assert gone in report.summary() and "1 failed" in report.summary()


@needs_mirror
def test_download_retries_a_500(tmp_path, server, monkeypatch):
    root, base, handler = server
    copy_mirror(root, "unqover")
    flaky = "unqover/word_lists/slots/religion_noact"
    handler.fail_once.add(flaky)
    point_catalogue_at(monkeypatch, base)
    report = download(tmp_path / "c", datasets=["unqover"], progress=False, backoff=0.01)
    assert not report.failed and flaky in report.imported and handler.hits[flaky] == 2


@needs_mirror
def test_download_hash_mismatch_is_not_placed(tmp_path, server, monkeypatch):
    root, base, _ = server
    copy_mirror(root, "unqover")
    bad = "unqover/word_lists/slots/religion_noact"
    (root / bad).write_text("not the pinned file\n")
    point_catalogue_at(monkeypatch, base)
    dest = tmp_path / "cache"
    report = download(dest, datasets=["unqover"], progress=False, backoff=0.01)
    assert [f.path for f in report.failed] == [bad]
    assert "sha256 mismatch" in report.failed[0].reason
    assert not (dest / bad).exists() and not list(dest.rglob("*.part"))


def test_unreachable_host_fails_fast(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    point_catalogue_at(monkeypatch, f"http://127.0.0.1:{port}", {"regard"})
    report = download(tmp_path, datasets=["regard"], progress=False, retries=1, backoff=0.01)
    reasons = [f.reason for f in report.failed]
    assert len(reasons) == 5 and "connection failed" in reasons[0]
    assert all(r.startswith("not tried") for r in reasons[1:])


def test_unpinned_file_is_trusted_on_first_use(tmp_path, server, monkeypatch):
    root, base, _ = server
    rel = "realtoxicityprompts/prompts.jsonl"  # unpinned, with a schema check
    (root / "realtoxicityprompts").mkdir()
    (root / rel).write_text(json.dumps({"prompt": {"text": "first version"}}) + "\n")
    src = sources.Source("realtoxicityprompts", rel, f"{base}/{rel}", None, optional=True)
    monkeypatch.setattr(sources, "all_sources", lambda: (src,))
    dest = tmp_path / "cache"
    assert download(dest, progress=False).imported == [rel]
    pins = json.loads((dest / pull.SIDECAR).read_text())["pins"]
    assert pins == {rel: sha(root / rel)}
    assert status(dest)[0].state == VERIFIED
    (dest / rel).write_text("tampered\n")
    assert status(dest)[0].state == WRONG_HASH


# --- status -----------------------------------------------------------------------------


@needs_mirror
def test_status_states_table_and_hash_cache(tmp_path, monkeypatch):
    dest = tmp_path / "cache"
    import_mirror(MIRROR, dest, datasets=["regard"], progress=False)
    (dest / "regard/dev.tsv").unlink()
    with open(dest / "regard/test.tsv", "ab") as f:
        f.write(b"1\tXYZ was extra\n")
    rows = {r.source.path: r.state for r in status(dest, ["regard", "realtoxicityprompts"])}
    assert rows["regard/dev.tsv"] == MISSING
    assert rows["regard/test.tsv"] == WRONG_HASH
    assert rows["regard/train.tsv"] == rows["regard/prompts.jsonl"] == VERIFIED
    assert rows["realtoxicityprompts/prompts.jsonl"] == MISSING
    (dest / "realtoxicityprompts").mkdir()
    (dest / "realtoxicityprompts/prompts.jsonl").write_text("{}\n")
    assert status(dest, ["realtoxicityprompts"])[1].state == UNPINNED  # never pinned by status

    # Unchanged files are answered from the sidecar, without reading them again.
    monkeypatch.setattr(pull, "_hash_stream", lambda *a: pytest.fail("re-hashed a cached file"))
    table = format_status_table(status(dest, ["regard", "realtoxicityprompts"]))
    lines = table.splitlines()
    assert lines[0].split() == ["dataset", "present", "verified", "wrong", "hash", "missing"]
    assert lines[1].split() == ["realtoxicityprompts", "1/3", "0", "0", "2"]
    assert lines[2].split() == ["regard", "5/6", "4", "1", "1"]
    assert lines[3].startswith("wrong hash: regard/test.tsv")

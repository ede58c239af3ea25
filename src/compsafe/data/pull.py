"""Fill the data cache from an offline mirror or the pinned URLs, and report what is there.

Every file in :mod:`compsafe.data.sources` (BBQ, UnQover, BOLD, ToxiGen, HolisticBias, Regard,
RealToxicityPrompts, CrowS-Pairs, AAVE, TwitterAAE, WikiText-2, MMLU, TruthfulQA) is written
to a temporary file in its destination folder, hashed on the way, checked against its pinned
SHA-256 and only then moved into place with ``os.replace``: an interrupted pull never leaves
a half-written file under a real name. Hashes of files already checked are cached in
``<dest>/.compsafe-hashes.json`` keyed by (path, size, mtime_ns), so ``compsafe data list``
does not re-read gigabytes; the same file keeps the trust-on-first-use hashes of files that
have no published one.

    print(import_mirror("/work/shared/data", datasets=["bbq"]).summary())
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO, NamedTuple
from urllib.parse import urlsplit

from tqdm import tqdm

from compsafe.data import sources as catalogue
from compsafe.data.paths import data_dir
from compsafe.data.sources import Source
from compsafe.data.validate import check_unpinned
from compsafe.errors import DataError

SIDECAR = ".compsafe-hashes.json"
VERIFIED, WRONG_HASH, MISSING, UNPINNED = "verified", "wrong_hash", "missing", "unpinned"
_CHUNK = 1 << 20
_USER_AGENT = "compsafe-data/0.1"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp makes 0600 files, cache files should get open()'s mode


class Failure(NamedTuple):
    path: str
    url: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.url}: {self.reason}"


@dataclass
class PullReport:
    """What a pull did, by catalogue path. ``imported`` holds files newly placed in the cache."""

    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    optional_missing: list[str] = field(default_factory=list)  # not needed by any task
    failed: list[Failure] = field(default_factory=list)
    verb: str = "imported"

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        line = (f"{len(self.imported)} {self.verb}, {len(self.skipped)} already present, "
                f"{len(self.missing)} missing, {len(self.failed)} failed")
        if self.optional_missing:  # a mirror without them is complete for every task
            line += f" ({len(self.optional_missing)} optional files not in the source)"
        if self.failed:  # the first failure says why; report.failed lists them all
            more = len(self.failed) - 1
            line += f"; first failure: {self.failed[0]}" + (f" (+{more} more)" if more else "")
        return line


@dataclass(frozen=True)
class FileStatus:
    source: Source
    state: str  # VERIFIED, WRONG_HASH, MISSING or UNPINNED (present, no hash known yet)
    actual: str | None = None


class _HashCache:
    """SHA-256 of cache files keyed by (path, size, mtime_ns), plus trust-on-first-use pins."""

    def __init__(self, root: Path):
        self.root, self.file = root, root / SIDECAR
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            self.hashes, self.pins = dict(data["files"]), dict(data["pins"])
        except (OSError, ValueError, KeyError, TypeError):
            self.hashes, self.pins = {}, {}  # a lost or damaged cache only costs re-hashing
        self.dirty = False

    def expected(self, s: Source) -> str | None:
        return s.sha256 or self.pins.get(s.path)

    def pin(self, rel: str, sha: str) -> None:
        self.pins[rel], self.dirty = sha, True

    def sha256(self, rel: str) -> str | None:
        """The file's hash (cached while size and mtime are unchanged), or None if absent."""
        try:
            st = (self.root / rel).stat()
        except FileNotFoundError:
            return None
        key = [st.st_size, st.st_mtime_ns]
        hit = self.hashes.get(rel)
        if hit and hit[:2] == key:
            return hit[2]
        with open(self.root / rel, "rb") as f:
            sha = _hash_stream(f)
        self.hashes[rel], self.dirty = [*key, sha], True
        return sha

    def has_good_copy(self, s: Source) -> bool:
        """Whether ``s`` is present with its expected hash (pinning it if it has none yet)."""
        actual = self.sha256(s.path)
        if actual is not None and self.expected(s) is None:
            try:  # trust on first use, but only a copy that parses as the dataset
                check_unpinned(s.path, self.root / s.path, shown_as=self.root / s.path)
            except DataError:
                return False
            self.pin(s.path, actual)  # the first good copy seen defines the file
        return actual is not None and actual == self.expected(s)

    def record(self, s: Source, sha: str) -> None:
        """Note the hash of a file just placed; pin it if the catalogue has none."""
        st = (self.root / s.path).stat()
        self.hashes[s.path], self.dirty = [st.st_size, st.st_mtime_ns, sha], True
        if self.expected(s) is None:
            self.pin(s.path, sha)

    def save(self) -> None:
        if not self.dirty or not self.root.is_dir():
            return
        body = json.dumps({"version": 1, "files": self.hashes, "pins": self.pins}, indent=0)
        _atomic_write(self.file, lambda out: out.write(body.encode("utf-8")))
        self.dirty = False


def _hash_stream(src: BinaryIO, out: BinaryIO | None = None) -> str:
    h = hashlib.sha256()
    while chunk := src.read(_CHUNK):
        h.update(chunk)
        if out is not None:
            out.write(chunk)
    return h.hexdigest()


def _atomic_write(target: Path, fill: Callable[[BinaryIO], object],
                  check: Callable[[Path], object] | None = None) -> None:
    """Run ``fill`` on a temp file beside ``target``, then ``check`` on the complete temp
    file (raising refuses it), then rename it over ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
        if check is not None:
            check(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Failed(Exception):
    """A file that could not be placed; ``host_down`` marks an unreachable server."""

    def __init__(self, reason: str, host_down: bool = False):
        super().__init__(reason)
        self.host_down = host_down


def _place_verified(read: Callable[[], BinaryIO], target: Path, expected: str | None,
                    check: Callable[[Path], object] | None = None) -> str:
    """Copy a stream into ``target`` via a temp file; raise _Failed before placing a bad one.

    A file without an ``expected`` hash must pass ``check`` (its schema) instead: it is
    trusted on first use, so what is first accepted defines it."""
    actual = ""

    def fill(out: BinaryIO) -> None:
        nonlocal actual
        with read() as src:
            actual = _hash_stream(src, out)
        if expected is not None and actual != expected:
            raise _Failed(f"sha256 mismatch: expected {expected}, got {actual}")

    _atomic_write(target, fill, check if expected is None else None)
    return actual


def _inside(origin: Path, mirror: Path) -> Path:
    """``origin`` itself when it is a regular file that stays inside ``mirror`` once every
    symlink is followed; a symlink leading out of the mirror is refused, naming its target."""
    real, root = origin.resolve(), mirror.resolve()
    if not real.is_relative_to(root):
        raise DataError(origin, f"is a symlink to {real}, outside the mirror {root}; refusing "
                                "it (copy the file into the mirror if it belongs there)")
    return origin


def _bar(items: Sequence[Source], desc: str, progress: bool) -> Iterable[Source]:
    return tqdm(items, desc=desc, unit="file", disable=not progress, leave=False)


def import_mirror(src_dir: str | Path, dest: str | Path | None = None,
                  datasets: Sequence[str] | None = None, progress: bool = True) -> PullReport:
    """Copy each catalogued file found under ``src_dir`` (a mirror laid out like the cache).

    Files absent from the mirror are reported as missing, since mirrors are partial by design.
    A hash mismatch raises DataError naming the mirror file, with both hashes; files imported
    before it stay in place.
    """
    src, root = Path(src_dir), Path(dest) if dest is not None else data_dir()
    wanted = catalogue.select(datasets)
    if not src.is_dir():
        raise DataError(src, "mirror folder not found")
    report, cache = PullReport(), _HashCache(root)
    try:
        for s in _bar(wanted, "import", progress):
            origin = src / s.path
            if cache.has_good_copy(s):
                report.skipped.append(s.path)
            elif not origin.is_file():
                (report.optional_missing if s.optional else report.missing).append(s.path)
            else:
                _inside(origin, src)
                check = partial(check_unpinned, s.path, shown_as=origin)
                try:
                    sha = _place_verified(lambda o=origin: open(o, "rb"), root / s.path,
                                          cache.expected(s), check)
                except _Failed as e:
                    raise DataError(origin, f"{e}; the mirror copy is corrupt or another version"
                                    ) from None
                cache.record(s, sha)
                report.imported.append(s.path)
    finally:
        cache.save()
    return report


def _classify(e: BaseException) -> tuple[str, bool, bool]:
    """(reason, retry?, host down?) for a failed fetch."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}", e.code >= 500 or e.code == 429, False
    if isinstance(e, urllib.error.URLError):
        return f"connection failed: {e.reason}", True, True
    if isinstance(e, (TimeoutError, ConnectionError, http.client.HTTPException)):
        return f"transfer failed: {type(e).__name__}: {e}", True, False
    return f"{type(e).__name__}: {e}", False, False


def _fetch(s: Source, target: Path, expected: str | None, timeout: float, retries: int,
           backoff: float) -> str:
    """Download ``s.url`` into ``target``, retrying 5xx/connection errors with backoff."""
    request = urllib.request.Request(s.url, headers={"User-Agent": _USER_AGENT})
    for attempt in range(retries + 1):
        try:
            return _place_verified(lambda: urllib.request.urlopen(request, timeout=timeout),
                                   target, expected,
                                   partial(check_unpinned, s.path, shown_as=s.url))
        except DataError as e:  # downloaded, but not the dataset it should be
            raise _Failed(e.message) from e
        except (OSError, http.client.HTTPException) as e:
            reason, retry, down = _classify(e)
            if not retry or attempt == retries:
                raise _Failed(reason, down) from e
            time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def download(dest: str | Path | None = None, datasets: Sequence[str] | None = None,
             progress: bool = True, timeout: float = 60, retries: int = 3,
             backoff: float = 1.0) -> PullReport:
    """Fetch every catalogued file not yet verified in ``dest`` from its pinned URL.

    ``retries`` extra attempts follow a 5xx, 429 or connection error, sleeping ``backoff``,
    2·backoff, ... seconds. A failure is recorded (path, URL, reason) and the pull goes on;
    once a host refuses connections its remaining files fail fast instead of each waiting
    out the retries. DERIVED files (no URL) are reported as missing.
    """
    root = Path(dest) if dest is not None else data_dir()
    wanted = catalogue.select(datasets)
    report, cache, down = PullReport(verb="downloaded"), _HashCache(root), {}
    try:
        for s in _bar(wanted, "download", progress):
            if cache.has_good_copy(s):
                report.skipped.append(s.path)
                continue
            if s.url is None:
                report.missing.append(s.path)
                continue
            host = urlsplit(s.url).netloc
            if host in down:
                report.failed.append(Failure(s.path, s.url, f"not tried: {down[host]}"))
                continue
            try:
                sha = _fetch(s, root / s.path, cache.expected(s), timeout, retries, backoff)
            except _Failed as e:
                if e.host_down:
                    down[host] = f"{host} unreachable ({e})"
                report.failed.append(Failure(s.path, s.url, str(e)))
                continue
            cache.record(s, sha)
            report.imported.append(s.path)
    finally:
        cache.save()
    return report


def status(dest: str | Path | None = None,
           datasets: Sequence[str] | None = None) -> list[FileStatus]:
    """Each catalogued file's state in ``dest``: verified, wrong_hash, missing or unpinned."""
    root = Path(dest) if dest is not None else data_dir()
    cache, rows = _HashCache(root), []
    for s in catalogue.select(datasets):
        actual, expected = cache.sha256(s.path), cache.expected(s)
        state = (MISSING if actual is None else UNPINNED if expected is None
                 else VERIFIED if actual == expected else WRONG_HASH)
        rows.append(FileStatus(s, state, actual))
    cache.save()
    return rows


def format_status_table(rows: Sequence[FileStatus]) -> str:
    """A plain-text table for ``compsafe data list``: one line per dataset, then problems."""
    by_ds: dict[str, list[FileStatus]] = {}
    for r in rows:
        by_ds.setdefault(r.source.dataset, []).append(r)
    table = [("dataset", "present", "verified", "wrong hash", "missing")]
    for ds in sorted(by_ds):
        rs = by_ds[ds]
        absent = [r for r in rs if r.state == MISSING]
        n_opt = sum(r.source.optional for r in absent)
        table.append((ds, f"{len(rs) - len(absent)}/{len(rs)}",
                      str(sum(r.state == VERIFIED for r in rs)),
                      str(sum(r.state == WRONG_HASH for r in rs)),
                      f"{len(absent)}" + (f" ({n_opt} optional)" if n_opt else "")))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = []
    for ds, *counts, missing in table:  # names left-aligned, counts right-aligned
        cells = [c.rjust(w) for c, w in zip(counts, widths[1:4], strict=True)]
        cells.insert(0, ds.ljust(widths[0]))
        lines.append("  ".join([*cells, missing]).rstrip())
    lines += [f"wrong hash: {r.source.path} (got {r.actual})" for r in rows
              if r.state == WRONG_HASH]
    return "\n".join(lines)

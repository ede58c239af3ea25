"""Calibration data for compression: ``nsamples`` random windows of ``seqlen`` tokens.

The convention of SparseGPT (Frantar & Alistarh, 2023) and Wanda (Sun et al., 2024):
tokenize the corpus once, then draw each window's start with Python's ``random`` seeded by
``seed`` (``random.randint(0, len - seqlen - 1)``). The result is deterministic for a
given tokenizer, text and seed, and its SHA-256 over the token ids goes into
``compression.json`` so two compressions can be seen to share their calibration data.

Sources (none overlaps an evaluation set unless the user names one that does):

* ``wikitext2`` (the default): WikiText-2's *train* split, ``wikitext2/wikitext-train.txt``
  in the data cache, the string ``"\n\n".join(load_dataset("wikitext",
  "wikitext-2-raw-v1", split="train")["text"])``. It is not in the data mirror (which has
  only the test split); where it is missing the error says how to make it.
* ``wikitext2-test``: WikiText-2's *test* split, the file compsafe's WikiText-2 perplexity
  evaluates. Calibrating on it makes that perplexity in-sample: allowed when asked for by
  name (offline, it is the only WikiText-2 text), and flagged on the console, in
  ``compression.json`` and in the report (``overlapping_tasks``).
* ``c4``: ``c4/c4-train.00000-of-01024.json[.gz]`` (the shard SparseGPT and Wanda use) when
  present in the cache; not in the mirror. As in their code, each sample is a random
  document longer than ``seqlen`` tokens and a random window inside it.
* any other value: a path to a UTF-8 text file, used like WikiText-2 (a copy of the
  WikiText-2 test file is recognised by its content and flagged like ``wikitext2-test``).

    tokens, sha = calibration_batches(tokenizer, Calibration(nsamples=128, seqlen=512), None)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

import torch

from compsafe.compress.spec import CALIBRATION_OVERLAPS, CALIBRATION_SOURCES, Calibration
from compsafe.data.paths import data_dir as default_data_dir
from compsafe.errors import DataError

WIKITEXT2_TRAIN = "wikitext2/wikitext-train.txt"
WIKITEXT2_TEST = "wikitext2/wikitext-test.txt"
C4_SHARDS = ("c4/c4-train.00000-of-01024.json", "c4/c4-train.00000-of-01024.json.gz")
# Bounds the document search for C4: a shard with no long document should fail, not hang.
_C4_MAX_TRIES = 100_000


def calibration_file(calib: Calibration, data_dir: str | Path | None = None) -> Path:
    """The file ``calib.source`` names; a ``DataError`` naming the path if it is missing."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if calib.source == "wikitext2":
        path = root / WIKITEXT2_TRAIN
        if not path.is_file():
            raise DataError(path, "WikiText-2 train split not found (the data mirror has only "
                                  "the test split): save '\\n\\n'.join(load_dataset('wikitext', "
                                  "'wikitext-2-raw-v1', split='train')['text']) there, or "
                                  "calibrate with --calibration wikitext2-test (in-sample for "
                                  "WikiText-2 perplexity, flagged), c4 or a text file")
        return path
    if calib.source == "wikitext2-test":
        path = root / WIKITEXT2_TEST
        if not path.is_file():
            raise DataError(path, "WikiText-2 test split not found; run "
                                  "`compsafe data pull --dataset wikitext2`")
        return path
    if calib.source == "c4":
        for rel in C4_SHARDS:
            if (root / rel).is_file():
                return root / rel
        raise DataError(root / C4_SHARDS[0], "C4 calibration shard not found (it is not in "
                                             "the data mirror); use wikitext2 or a text file")
    path = Path(calib.source).expanduser()
    if not path.is_file():
        raise DataError(path, "calibration text file not found")
    check_utf8(path)
    return path


def overlapping_tasks(calib: Calibration, path: Path | None = None,
                      data_dir: str | Path | None = None) -> tuple[str, ...]:
    """The tasks whose evaluation text the calibration data contains: ``("wikitext2",)`` for
    the WikiText-2 test split, named or as a file with the same content; else ``()``."""
    if calib.overlaps() or path is None or calib.source in CALIBRATION_SOURCES:
        return calib.overlaps()
    test = (Path(data_dir) if data_dir is not None else default_data_dir()) / WIKITEXT2_TEST
    if test.is_file() and path.stat().st_size == test.stat().st_size and \
            _file_sha(path) == _file_sha(test):
        return CALIBRATION_OVERLAPS["wikitext2-test"]
    return ()


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_utf8(path: Path) -> None:
    """A ``DataError`` naming the line and byte unless ``path`` is UTF-8 text: found now,
    before a model loads, instead of after it."""
    with open(path, "rb") as f:
        for line, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                      f"{e.start + 1}); calibration needs a UTF-8 text file",
                                line) from None


def _encode(tokenizer, text: str) -> list[int]:
    # verbose=False: a whole corpus is longer than model_max_length on purpose.
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def _windows_from_text(tokenizer, path: Path, calib: Calibration) -> list[list[int]]:
    ids = _encode(tokenizer, path.read_text(encoding="utf-8"))
    if len(ids) <= calib.seqlen + 1:
        raise DataError(path, f"only {len(ids)} tokens; calibration needs more than "
                              f"seqlen + 1 = {calib.seqlen + 1}")
    rng = random.Random(calib.seed)
    starts = [rng.randint(0, len(ids) - calib.seqlen - 1) for _ in range(calib.nsamples)]
    return [ids[i : i + calib.seqlen] for i in starts]


def _read_c4(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        docs = []
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    docs.append(json.loads(line)["text"])
                except (json.JSONDecodeError, KeyError) as e:
                    raise DataError(path, f"not a C4 JSON line with 'text': {e}", line_no) from e
    return docs


def _windows_from_c4(tokenizer, path: Path, calib: Calibration) -> list[list[int]]:
    docs = _read_c4(path)
    rng = random.Random(calib.seed)
    windows = []
    for _ in range(calib.nsamples):
        for _ in range(_C4_MAX_TRIES):
            ids = _encode(tokenizer, docs[rng.randint(0, len(docs) - 1)])
            if len(ids) > calib.seqlen:
                break
        else:
            raise DataError(path, f"no document longer than {calib.seqlen} tokens found")
        i = rng.randint(0, len(ids) - calib.seqlen - 1)
        windows.append(ids[i : i + calib.seqlen])
    return windows


def calibration_batches(
    tokenizer, calib: Calibration, data_dir: str | Path | None = None
) -> tuple[torch.Tensor, str]:
    """``(tokens, sha256)``: a ``(nsamples, seqlen)`` int64 tensor and the hex hash of it."""
    path = calibration_file(calib, data_dir)
    if calib.source == "c4":
        windows = _windows_from_c4(tokenizer, path, calib)
    else:
        windows = _windows_from_text(tokenizer, path, calib)
    tokens = torch.tensor(windows, dtype=torch.int64)
    return tokens, token_hash(tokens)


def token_hash(tokens: torch.Tensor) -> str:
    """SHA-256 of the shape and little-endian int64 token ids."""
    h = hashlib.sha256(f"{tuple(tokens.shape)}".encode())
    h.update(tokens.to(torch.int64).contiguous().numpy().astype("<i8").tobytes())
    return h.hexdigest()

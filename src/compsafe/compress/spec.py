"""The compression spec: one frozen value that says exactly how a model was compressed.

Shared by ``compsafe compress``, evaluation run keys, sweeps and reports, so the results
store records structured fields (method, sparsity, structure, bits, group size,
calibration) rather than a name string. Validation happens at construction, with errors
that name the bad value.

    spec = CompressionSpec(method="wanda", sparsity=0.5)
    spec = CompressionSpec(method="sparsegpt", structure="2:4")
    spec = CompressionSpec(method="gptq", bits=4, group_size=128)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from compsafe.compress.registry import METHODS as REGISTRY
from compsafe.compress.registry import family
from compsafe.errors import CompsafeError, UnknownNameError

# Live views of the method registry (compress/registry.py, compress/builtin.py): a method
# registered later appears in them.
METHODS = REGISTRY.select(lambda info: True)
PRUNING_METHODS = family("pruning")
WEIGHT_QUANT_METHODS = family("quantization")
"""Weight-only quantization computed by compsafe (bits, group size): RTN, GPTQ, AWQ."""
BNB_METHODS = family("load_time")
"""Quantized through bitsandbytes at load time: LLM.int8 (Dettmers et al. 2022) and
4-bit NormalFloat (QLoRA, Dettmers et al. 2023); stored in bitsandbytes' own format."""
QUANT_METHODS = REGISTRY.select(lambda info: info.family in ("quantization", "load_time"))
CALIBRATION_SOURCES = ("wikitext2", "wikitext2-test", "c4")
CALIBRATION_OVERLAPS = {"wikitext2-test": ("wikitext2",)}
"""Calibration source -> the tasks whose evaluation text it is (their results are in-sample
for a model calibrated on it)."""
FORWARD_DTYPES = ("auto", "float32", "bfloat16", "float16")
SAVE_DTYPES = ("source", "float32", "bfloat16", "float16")


class SpecError(CompsafeError):
    """An impossible compression setting; the message names the field and value."""


@dataclass(frozen=True)
class Calibration:
    """Calibration data: ``source`` is a registry name (``CALIBRATION_SOURCES``: WikiText-2
    train, the default; WikiText-2 test, which overlaps its evaluation; C4) or a path to a
    UTF-8 text file."""

    source: str = "wikitext2"
    nsamples: int = 128
    seqlen: int = 512
    seed: int = 0

    def overlaps(self, recorded: list | tuple | None = None) -> tuple[str, ...]:
        """The tasks whose evaluation text this calibration contains: by source name, or as
        ``compression.json`` recorded it (``recorded``: a file with the same content)."""
        found = CALIBRATION_OVERLAPS.get(self.source, ())
        if not found and Path(self.source).name == "wikitext-test.txt":
            found = CALIBRATION_OVERLAPS["wikitext2-test"]  # the mirror's file, named by path
        return tuple(dict.fromkeys([*found, *(recorded or ())]))

    def __post_init__(self):
        if self.nsamples <= 0:
            raise SpecError(f"calibration nsamples must be positive, got {self.nsamples}")
        if self.seqlen < 2:
            raise SpecError(f"calibration seqlen must be at least 2, got {self.seqlen}")


@dataclass(frozen=True)
class CompressionSpec:
    """How to compress: a pruning method with ``sparsity`` or N:M ``structure``, or a
    quantization method with ``bits`` (and ``group_size``; None = per output channel).

    ``method="dense"`` is the uncompressed baseline.
    """

    method: str = "dense"
    sparsity: float | None = None
    structure: str = "unstructured"  # or "N:M", e.g. "2:4"
    bits: int | None = None
    group_size: int | None = None
    symmetric: bool = False
    act_order: bool = False
    damp: float = 0.01
    blocksize: int = 128
    calibration: Calibration = field(default_factory=Calibration)
    skip: tuple[str, ...] = ("lm_head",)  # module names never compressed
    # Precision of the calibration forward passes (weights and statistics stay float32):
    # "auto" is bfloat16 where bf16 matmuls are fast (CUDA, CPUs with AMX or
    # AVX512-BF16; the reference implementations run fp16 models), float32 elsewhere.
    # The resolved choice is recorded in compression.json; name one for bit-identical
    # results across machines.
    forward_dtype: str = "auto"
    # dtype of the saved weights: "source" keeps the checkpoint's own (a bf16 model stays
    # bf16 on disk; pruned zeros stay zero and kept weights never underflow to zero).
    save_dtype: str = "source"

    def __post_init__(self):
        if self.method not in METHODS:
            raise UnknownNameError("compression method", self.method, list(METHODS))
        if self.method in PRUNING_METHODS:
            self._check_pruning()
        elif self.method in BNB_METHODS and self.bits is not None:
            raise SpecError(f"{self.method} fixes its own bits; drop --bits {self.bits}")
        elif self.method in WEIGHT_QUANT_METHODS:
            if self.bits is None or not 2 <= self.bits <= 8:
                raise SpecError(f"--bits must be an integer from 2 to 8, got {self.bits}")
            if self.group_size is not None and self.group_size <= 0:
                raise SpecError(f"--group-size must be positive, got {self.group_size}")
        if not 0 <= self.damp < 1:
            raise SpecError(f"damping must be in [0, 1), got {self.damp}")
        if self.save_dtype not in SAVE_DTYPES:
            raise SpecError(f"--save-dtype must be one of {', '.join(SAVE_DTYPES)}, "
                            f"got {self.save_dtype!r}")
        if self.forward_dtype not in FORWARD_DTYPES:
            raise SpecError(f"--forward-dtype must be one of {', '.join(FORWARD_DTYPES)}, "
                            f"got {self.forward_dtype!r}")

    def _check_pruning(self):
        if self.structure == "unstructured":
            if self.sparsity is None or not 0 < self.sparsity < 1:
                raise SpecError(f"--sparsity must be strictly between 0 and 1, got {self.sparsity}")
            return
        n, m = self.nm
        if not 0 < n < m:
            raise SpecError(f"N:M structure needs 0 < N < M, got {self.structure!r}")

    @property
    def nm(self) -> tuple[int, int]:
        """(N, M) for a semi-structured spec: keep N of every M consecutive weights."""
        try:
            n, m = (int(x) for x in self.structure.split(":"))
        except ValueError:
            raise SpecError(
                f"--structure must be 'unstructured' or 'N:M' (e.g. 2:4), got {self.structure!r}"
            ) from None
        return n, m

    @property
    def is_pruning(self) -> bool:
        return self.method in PRUNING_METHODS

    @property
    def is_quantization(self) -> bool:
        return self.method in QUANT_METHODS

    @property
    def target_sparsity(self) -> float | None:
        """Fraction of weights zeroed: ``sparsity``, or (M-N)/M for N:M."""
        if not self.is_pruning:
            return None
        if self.structure == "unstructured":
            return self.sparsity
        n, m = self.nm
        return (m - n) / m

    def to_dict(self) -> dict:
        d = asdict(self)
        d["skip"] = list(self.skip)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CompressionSpec:
        d = dict(d)
        d["calibration"] = Calibration(**d.get("calibration", {}))
        d["skip"] = tuple(d.get("skip", ("lm_head",)))
        return cls(**d)

    def key(self) -> str:
        """Content hash of the spec (20 hex chars): caches compressed models and run keys."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @classmethod
    def from_label(cls, label: str, calibration: Calibration | None = None) -> CompressionSpec:
        """The spec a ``label()`` names: ``wanda-50``, ``sparsegpt-2:4``, ``gptq-w4g64``,
        ``rtn-w8``, ``nf4``, ``dense``; a ``SpecError`` naming the label otherwise."""
        calibration = calibration or Calibration()
        text = label.strip()
        if text in ("dense", *BNB_METHODS):
            return cls(method=text, calibration=calibration)
        method, _, rest = text.partition("-")
        try:
            if method in PRUNING_METHODS and ":" in rest:
                return cls(method=method, structure=rest, calibration=calibration)
            if method in PRUNING_METHODS:
                return cls(method=method, sparsity=int(rest) / 100, calibration=calibration)
            bits, _, group = rest.removeprefix("w").partition("g")
            if method in QUANT_METHODS and rest.startswith("w"):
                return cls(method=method, bits=int(bits),
                           group_size=int(group) if group else None, calibration=calibration)
        except ValueError:
            pass
        raise SpecError(f"compression setting {label!r}: expected a label such as wanda-50, "
                        f"sparsegpt-2:4, gptq-w4g64, rtn-w8 or nf4 (methods: "
                        f"{', '.join(METHODS)})")

    def label(self) -> str:
        """A short human label, e.g. ``wanda-50``, ``sparsegpt-2:4``, ``gptq-w4g128``."""
        if self.method == "dense":
            return "dense"
        if self.is_pruning:
            if self.structure != "unstructured":
                return f"{self.method}-{self.structure}"
            return f"{self.method}-{round(self.sparsity * 100)}"
        if self.method in BNB_METHODS:
            return self.method
        g = f"g{self.group_size}" if self.group_size else ""
        return f"{self.method}-w{self.bits}{g}"

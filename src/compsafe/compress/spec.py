"""The compression spec: one frozen value that says exactly how a model was compressed.

Shared by ``compsafe compress``, evaluation run keys, sweeps and reports, so the results
store records structured fields (method, sparsity, structure, bits, group size,
calibration) rather than a name string. Validation happens at construction, here only
(``checks.py``, with the method registry's declarations): a refused value is an
``OptionError`` naming the field, which the CLI reports under its flag and a sweep config
under its key path.

    spec = CompressionSpec(method="wanda", sparsity=0.5)
    spec = CompressionSpec(method="sparsegpt", structure="2:4")
    spec = CompressionSpec(method="gptq", bits=4, group_size=128)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from compsafe.compress.checks import check_calibration, check_spec, parse_structure
from compsafe.compress.registry import METHODS as REGISTRY
from compsafe.compress.registry import family
from compsafe.errors import CompsafeError, OptionError

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


class SpecError(CompsafeError):
    """A compression label (``from_label``) that names no valid setting; the message
    names the label. A refused field is an ``OptionError`` naming the field."""


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
        check_calibration(self)


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
        """The method's checks (``checks.py``): an ``OptionError`` naming the field."""
        check_spec(self)

    @property
    def nm(self) -> tuple[int, int]:
        """(N, M) for a semi-structured spec: keep N of every M consecutive weights."""
        return parse_structure(self.structure)

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
        ``rtn-w8``, ``nf4``, ``dense``; a ``SpecError`` naming the label otherwise (with the
        spec's own message when the label parses but its setting is refused)."""
        try:
            spec = cls._from_label(label.strip(), calibration or Calibration())
        except OptionError as e:
            raise SpecError(f"compression setting {label!r}: {e}") from None
        if spec is None:
            raise SpecError(f"compression setting {label!r}: expected a label such as "
                            f"wanda-50, sparsegpt-2:4, gptq-w4g64, rtn-w8 or nf4 (methods: "
                            f"{', '.join(METHODS)})")
        return spec

    @classmethod
    def _from_label(cls, text: str, calibration: Calibration) -> CompressionSpec | None:
        if text in ("dense", *BNB_METHODS):
            return cls(method=text, calibration=calibration)
        method, _, rest = text.partition("-")
        bits, _, group = rest.removeprefix("w").partition("g")
        if method in PRUNING_METHODS and ":" in rest:
            return cls(method=method, structure=rest, calibration=calibration)
        if method in PRUNING_METHODS and rest.isdigit():
            return cls(method=method, sparsity=int(rest) / 100, calibration=calibration)
        if (method in QUANT_METHODS and rest.startswith("w") and bits.isdigit()
                and (not group or group.isdigit())):
            return cls(method=method, bits=int(bits),
                       group_size=int(group) if group else None, calibration=calibration)
        return None

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

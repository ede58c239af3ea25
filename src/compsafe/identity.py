"""Model identity: what a loaded model is, built once when it loads, read everywhere else.

``ModelIdentity`` is a frozen value: the model's name, its weights fingerprint (part of
every run key), the dtype it was loaded in, and its ``Lineage``: which base model it came
from and how it was compressed. The runner keys and stores runs by it, the store keeps its
lineage columns, and reports pair a compressed model's results with its own dense
baseline's (same base model, ``method == "dense"``) and sort settings by its structured
fields instead of parsing names.

A model directory written by ``compsafe compress`` says where it came from in
``compression.json``; a checkpoint quantized elsewhere (GPTQ, AWQ, bitsandbytes) says how
in its config's ``quantization_config``, and the user names its base (``compsafe eval
--base-model``); any other model is its own dense base.

    identity = model.identity                     # HFModel builds it once
    identity.lineage.columns()  # {"base_model": ..., "method": "wanda", "sparsity": 0.5, ...}
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from compsafe.compress.spec import Calibration, CompressionSpec
from compsafe.errors import CompsafeError, OptionError
from compsafe.store.schema import LINEAGE_COLUMNS

log = logging.getLogger(__name__)

INFO_FILE = "compression.json"
"""Written next to a compressed model's weights by ``compsafe compress``."""


def read_compression_info(model_dir: str | Path) -> dict | None:
    """``compression.json`` of a model directory, or None when there is none."""
    path = Path(model_dir) / INFO_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CompsafeError(f"{path}: unreadable compression record: {e}") from e


PREQUANTIZED = Calibration(source="unknown (pre-quantized checkpoint)")
"""What a pre-quantized checkpoint says of its calibration: nothing compsafe can check."""


def spec_from_quantization_config(qc: dict) -> CompressionSpec | None:
    """The compression spec of a checkpoint quantized elsewhere (transformers'
    ``quantization_config``: GPTQ, AWQ, bitsandbytes 8-bit / 4-bit NF4), or None for a
    scheme compsafe cannot describe."""
    method = qc.get("quant_method", "")
    method = str(getattr(method, "value", method)).lower()  # an enum in to_dict() output
    group = qc.get("group_size")
    group = group if isinstance(group, int) and group > 0 else None  # -1: per channel
    if method == "gptq":
        return CompressionSpec(method="gptq", bits=qc.get("bits"), group_size=group,
                               symmetric=bool(qc.get("sym", True)),
                               act_order=bool(qc.get("desc_act", False)),
                               calibration=PREQUANTIZED)
    if method == "awq":
        return CompressionSpec(method="awq", bits=qc.get("bits"), group_size=group,
                               symmetric=not qc.get("zero_point", True),
                               calibration=PREQUANTIZED)
    if method == "bitsandbytes":
        if qc.get("load_in_8bit"):
            return CompressionSpec(method="llm_int8", calibration=PREQUANTIZED)
        if qc.get("load_in_4bit") and qc.get("bnb_4bit_quant_type", "fp4") == "nf4":
            return CompressionSpec(method="nf4", calibration=PREQUANTIZED)
    return None


@dataclass(frozen=True)
class Lineage:
    """The base model (display name and weights fingerprint) and the compression spec."""

    base_model: str
    base_fingerprint: str | None
    spec: CompressionSpec

    @classmethod
    def dense(cls, name: str, fingerprint: str) -> Lineage:
        return cls(name, fingerprint, CompressionSpec())

    @classmethod
    def of(cls, name: str, fingerprint: str, info: dict | None,
           quantization_config: dict | None = None, base_model: str | None = None
           ) -> Lineage | None:
        """From a model's ``compression.json`` dict; else from the ``quantization_config`` of
        a pre-quantized checkpoint (whose dense base is ``base_model``, when the user says);
        else the model is its own dense base. None for a quantization scheme compsafe
        cannot describe (the run is stored without lineage; reports cannot pair it).

        A compressed model with method ``dense`` (a plain copy) is still its source's
        dense baseline. ``fingerprint`` is used only for a dense model: its float32
        fingerprint (``HFModel.float32_fingerprint``), the one compress records for its
        sources.
        """
        if info is not None:
            try:
                spec = CompressionSpec.from_dict(info["spec"])
                source = info.get("source_model") or {}
            except (KeyError, TypeError, OptionError) as e:
                raise CompsafeError(f"{name}: {INFO_FILE} has no valid 'spec': {e}") from e
            return cls(base_model or source.get("name") or name, source.get("fingerprint"), spec)
        if quantization_config is not None:
            spec = spec_from_quantization_config(quantization_config)
            if spec is None:
                log.warning("%s: quantization_config %r is not one compsafe can describe "
                            "(gptq, awq, bitsandbytes 8-bit or nf4); stored without lineage",
                            name, str(quantization_config.get("quant_method")))
                return None
            return cls(base_model or name, None, spec)
        if base_model is not None:
            raise CompsafeError(f"--base-model {base_model!r} given, but {name} has neither "
                                f"{INFO_FILE} nor a quantization_config: it is a dense model")
        return cls.dense(name, fingerprint)

    def columns(self) -> dict:
        """Values for the store's lineage columns (``LINEAGE_COLUMNS``)."""
        s = self.spec
        cols = {
            "base_model": self.base_model,
            "base_fingerprint": self.base_fingerprint,
            "spec_key": s.key(),
            "spec_label": s.label(),
            "method": s.method,
            "sparsity": s.target_sparsity,
            "structure": s.structure if s.is_pruning else None,
            "bits": s.bits,
            "group_size": s.group_size,
            "spec_json": json.dumps(s.to_dict(), sort_keys=True),
        }
        assert tuple(cols) == LINEAGE_COLUMNS
        return cols


@dataclass(frozen=True)
class ModelIdentity:
    """A loaded model's identity (see the module docstring). ``lineage`` is None for a
    quantization scheme compsafe cannot describe (its runs are stored without lineage);
    ``calibration_overlaps`` are the evaluation tasks whose text its compression was
    calibrated on, as ``compression.json`` recorded them."""

    name: str
    fingerprint: str
    dtype: str
    lineage: Lineage | None
    calibration_overlaps: tuple[str, ...] = ()

    @classmethod
    def dense(cls, name: str, fingerprint: str, dtype: str = "float32") -> ModelIdentity:
        """A dense model that is its own base (test doubles, models built in memory)."""
        return cls(name, fingerprint, dtype, Lineage.dense(name, fingerprint))

    def in_sample_tasks(self) -> tuple[str, ...]:
        """Tasks whose evaluation text this model's compression was calibrated on."""
        if self.lineage is None:
            return ()
        return self.lineage.spec.calibration.overlaps(self.calibration_overlaps)

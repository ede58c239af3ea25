"""Lineage: which base model a model came from, and how it was compressed.

Every run in the results store carries one, so reports can pair a compressed model's
results with its own dense baseline's (same base model, ``method == "dense"``) and sort
compression settings by their structured fields instead of parsing names. A model
directory written by ``compsafe compress`` says where it came from in ``compression.json``;
any other model is its own dense base.

    lineage = Lineage.of("wanda-50", fingerprint, read_compression_info(model_dir))
    lineage.columns()  # {"base_model": ..., "method": "wanda", "sparsity": 0.5, ...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from compsafe.compress.spec import CompressionSpec
from compsafe.errors import CompsafeError
from compsafe.store.schema import LINEAGE_COLUMNS

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
    def of(cls, name: str, fingerprint: str, info: dict | None) -> Lineage:
        """From a model's ``compression.json`` dict, or dense when ``info`` is None.

        A compressed model with method ``dense`` (a plain copy) is still its source's
        dense baseline.
        """
        if info is None:
            return cls.dense(name, fingerprint)
        try:
            spec = CompressionSpec.from_dict(info["spec"])
            source = info.get("source_model") or {}
        except (KeyError, TypeError) as e:
            raise CompsafeError(f"{name}: {INFO_FILE} has no valid 'spec': {e}") from e
        return cls(source.get("name") or name, source.get("fingerprint"), spec)

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

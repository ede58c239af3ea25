"""Lineage of a compressed model: now in ``compsafe.identity`` (with ``ModelIdentity``), so
that ``models/`` does not import ``compress/``; re-exported here for existing imports."""

from compsafe.identity import (
    INFO_FILE,
    PREQUANTIZED,
    Lineage,
    read_compression_info,
    spec_from_quantization_config,
)

__all__ = ["INFO_FILE", "PREQUANTIZED", "Lineage", "read_compression_info",
           "spec_from_quantization_config"]

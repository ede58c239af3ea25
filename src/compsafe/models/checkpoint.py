"""Cheap integrity check of a model directory's safetensors files, before loading them.

A copy cut short (a full disk, a killed ``cp``, an interrupted download) leaves a
``model.safetensors`` whose header promises more bytes than the file holds; loading it
fails deep inside the safetensors library with a traceback, after the tokenizer and config
have loaded. Reading each file's header (8 bytes of length, then JSON) and comparing the
largest tensor end with the file's size finds it in milliseconds and names the file.

    check_safetensors(Path("models/wanda-50"))
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from compsafe.errors import ModelLoadError

_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


def _damaged(path: Path, why: str) -> ModelLoadError:
    return ModelLoadError(f"{path}: damaged or truncated safetensors file ({why}); copy or "
                          "save the model again")


def check_file(path: Path) -> None:
    """Raise ``ModelLoadError`` naming ``path`` unless its header parses and its tensors fit
    in the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _damaged(path, f"{size} bytes, shorter than the header length")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise _damaged(path, f"header of {n} bytes in a file of {size}")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise _damaged(path, f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise _damaged(path, "header is not a JSON object")
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    need = 8 + n + max(ends, default=0)
    if need > size:
        raise _damaged(path, f"tensors need {need} bytes, the file has {size}")


def check_safetensors(model_dir: str | Path) -> None:
    """``check_file`` on every ``*.safetensors`` in a local model directory (else nothing)."""
    root = Path(model_dir)
    if root.is_dir():
        for path in sorted(root.glob("*.safetensors")):
            check_file(path)

"""Run keys: a content hash of everything that determines a run's results.

DESIGN.md convention 6: caches and resume look results up by this key, so it must cover
the model's weights fingerprint (dense and compressed models differ here, so a dense
model's outputs can never be served for a compressed one), the task and its version,
the task config, the prompt format, the code version and anything else the caller
passes in ``extra`` (scorer versions, decoding parameters).

    key = run_key(fp, "bbq", 1, task.config(), PromptFormat().to_dict(), "0.1.0")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

KEY_HEX_CHARS = 20
"""Hex characters kept from the sha256 digest: 80 bits, so collisions among the few
thousand runs one store holds are out of reach, while keys stay short enough to read."""

_KEY_SCHEMA = "compsafe.run_key/1"
"""Mixed into every key; bump it if the key's inputs change meaning, so old keys miss."""


def _default(obj: Any) -> Any:
    # Frozen config dataclasses (PromptFormat, TaskOptions, ...) hash as their own
    # ``to_dict()`` where they define one (PromptFormat leaves an unset template out, so
    # keys from before templates existed still match), else by their fields.
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        to_dict = getattr(obj, "to_dict", None)
        return to_dict() if callable(to_dict) else dataclasses.asdict(obj)
    # Anything else (sets, Paths, numpy scalars) has no single canonical JSON form, and a
    # silent str() would make two different values hash alike: refuse, naming the type.
    raise TypeError(f"canonical_json: cannot encode {type(obj).__name__} value {obj!r}")


def _check_finite(obj: Any, path: str = "$") -> None:
    """Raise on NaN/inf anywhere in ``obj``: they are not JSON and NaN != NaN."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"canonical_json: non-finite float {obj!r} at {path}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_finite(v, f"{path}[{i}]")


def canonical_json(obj: Any) -> str:
    """One JSON text per value: sorted keys, no whitespace, ASCII only, no NaN.

    Dicts that differ only in insertion order give the same text; tuples encode as lists.
    """
    try:
        return json.dumps(
            obj,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
            default=_default,
        )
    except ValueError:
        _check_finite(obj)  # re-raise with the offending path when we can find it
        raise


def run_key(
    model_fingerprint: str,
    task: str,
    task_version: int,
    task_config: dict,
    prompt_format: dict,
    code_version: str,
    extra: dict | None = None,
) -> str:
    """The first ``KEY_HEX_CHARS`` (20) hex characters of sha256 over the canonical JSON
    of all inputs. Any change to any input gives a different key (``extra=None`` and
    ``extra={}`` are the same input: nothing extra)."""
    if not model_fingerprint:
        # An empty fingerprint would let every model share one key: the trap this prevents.
        raise ValueError("run_key: model_fingerprint must be a non-empty string")
    payload = {
        "schema": _KEY_SCHEMA,
        "model_fingerprint": model_fingerprint,
        "task": task,
        "task_version": task_version,
        "task_config": task_config,
        "prompt_format": prompt_format,
        "code_version": code_version,
        "extra": extra or {},
    }
    digest = hashlib.sha256(canonical_json(payload).encode("ascii")).hexdigest()
    return digest[:KEY_HEX_CHARS]

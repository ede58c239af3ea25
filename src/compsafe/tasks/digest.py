"""Content hash of a task's loaded examples, for its run key.

A run key must change whenever the items a task evaluates change (issue 14: a changed
prompts file was answered from the store with the old generations, because the key named
the prompt set but not its content). Hashing the examples themselves, after loading and
subsampling, covers every loader at once: a one-character edit to one evaluated item
changes the hash, while edits to items outside ``--limit``'s sample, file renames and
moves do not.

    sha = examples_sha256(task.examples())
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

DIGEST_SCHEMA = "compsafe.examples/1"
"""Mixed into the hash; bump it if the encoding below changes, so old keys miss."""


def plain(value: Any) -> Any:
    """``value`` as JSON-able plain data: dataclasses by field, tuples as lists.

    Faster than ``dataclasses.asdict`` (no deep copies), which matters for BBQ's 58k items.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # NaN/inf are not JSON; their repr is unambiguous here
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    # A silent str() could make two different values hash alike: refuse, naming the type.
    raise TypeError(f"examples_sha256: cannot encode {type(value).__name__} value {value!r}")


def examples_sha256(examples: Iterable[Any]) -> str:
    """sha256 over the examples in order, each as canonical JSON (sorted keys, ASCII).

    Each example is length-prefixed, so moving text from one item into its neighbour
    changes the hash too.
    """
    h = hashlib.sha256(DIGEST_SCHEMA.encode())
    for example in examples:
        text = json.dumps(plain(example), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True, allow_nan=False).encode("ascii")
        h.update(len(text).to_bytes(8, "big"))
        h.update(text)
    return h.hexdigest()

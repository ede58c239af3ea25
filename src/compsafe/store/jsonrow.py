"""Values as the store writes them: JSON without NaN, REAL columns without NaN.

NaN is not JSON, and SQLite would store a NaN REAL as NULL silently; an undefined value must
be None (DESIGN.md convention 5), so both are refused with the path of the offending value.
"""

from __future__ import annotations

import json
import math
from typing import Any

from compsafe.store.schema import StoreError


def nonfinite_path(obj: Any, path: str = "$") -> str | None:
    """Where the first NaN/inf in ``obj`` is (``$.scores[2]``), or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path
    if isinstance(obj, dict):
        children = ((f"{path}.{k}", v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        children = ((f"{path}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for child_path, v in children:
        found = nonfinite_path(v, child_path)
        if found:
            return found
    return None


def dumps(obj: Any, what: str) -> str:
    """JSON for storage; NaN is not JSON, and undefined values must be None, so refuse it."""
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, sort_keys=True)
    except ValueError as e:
        where = nonfinite_path(obj)
        if where is None:
            raise StoreError(f"{what}: {e}") from e
        raise StoreError(
            f"{what}: non-finite float at {where}; use None for undefined values") from e
    except TypeError as e:
        raise StoreError(f"{what}: not JSON-serialisable: {e}") from e


def real(x: Any, what: str) -> float | None:
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        # SQLite would store NaN as NULL silently; say so instead, so the task gets fixed.
        raise StoreError(f"{what} is {x}; use None for an undefined metric")
    return x

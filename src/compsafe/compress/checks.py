"""Every check of a compression spec, in one place: ``CompressionSpec`` and ``Calibration``
run these at construction, and ``compsafe compress`` and sweep configs only map their flags
and YAML keys onto those fields, so the two report the same message for the same mistake,
each under its own name for the field (``--bits: ...``, ``compression[0].bits[1]: ...``).

What a method takes comes from the method registry (``registry.py``): its family's checks
(pruning: a sparsity in (0, 1) or an N:M structure; quantization: 2-8 bits and a positive
group size), the settings it declared (``takes``; any other one set is refused) and its own
``validate(spec)`` hook. Every refusal is an ``OptionError(field, message)``. What only the
model can tell (a group size that does not divide a layer's width) is checked when the
model is compressed (``quant.resolve_group_size``).

    check_spec(CompressionSpec(method="gptq", bits=9))  # OptionError: bits: must be ...
"""

from __future__ import annotations

import re
from dataclasses import fields

from compsafe.compress.registry import METHODS, SETTINGS, method_info
from compsafe.errors import OptionError, check_int

FORWARD_DTYPES = ("auto", "float32", "bfloat16", "float16")
SAVE_DTYPES = ("source", "float32", "bfloat16", "float16")
BITS = (2, 8)
_NM = re.compile(r"(\d+):(\d+)")


def check_calibration(cal) -> None:
    """A ``Calibration``'s fields: a source name or path, at least one window of at least
    two tokens (one token has no next token to predict), an integer seed."""
    if not isinstance(cal.source, str) or not cal.source:
        raise OptionError("source", f"expected a calibration source name or a file path, "
                          f"got {cal.source!r}")
    check_int("nsamples", cal.nsamples, 1, optional=False)
    check_int("seqlen", cal.seqlen, 2, optional=False)
    check_int("seed", cal.seed, None, optional=False)


def check_spec(spec) -> None:
    """All of ``spec``'s fields, for its method; the first refusal as an ``OptionError``."""
    if spec.method not in METHODS:
        raise OptionError("method", f"unknown compression method {spec.method!r}; known: "
                          f"{', '.join(METHODS)}")
    info = method_info(spec.method)
    _check_settings_taken(spec, info.takes)
    if info.family == "pruning":
        _check_pruning(spec)
    elif info.family == "quantization":
        _check_quantization(spec)
    _check_numerics(spec)
    if info.validate is not None:
        info.validate(spec)


def parse_structure(structure) -> tuple[int, int]:
    """(N, M) of an ``"N:M"`` structure with 0 < N < M; an ``OptionError`` otherwise."""
    found = _NM.fullmatch(structure) if isinstance(structure, str) else None
    if found is None or not 0 < int(found[1]) < int(found[2]):
        raise OptionError("structure", "must be 'unstructured' or N:M with 0 < N < M "
                          f"(e.g. 2:4), got {structure!r}")
    return int(found[1]), int(found[2])


def _check_settings_taken(spec, takes: tuple[str, ...]) -> None:
    """A setting the method does not read, set to anything but its default, is refused:
    ignoring it would store a spec (and a run key) that claims a setting never applied."""
    defaults = {f.name: f.default for f in fields(spec)}
    for name in SETTINGS:
        if name not in takes and getattr(spec, name) != defaults[name]:
            what = ", ".join(takes) if takes else "no settings"
            raise OptionError(name, f"does not apply to method {spec.method!r} "
                              f"(it takes {what})")


def _check_pruning(spec) -> None:
    if spec.structure != "unstructured":
        parse_structure(spec.structure)
        if spec.sparsity is not None:
            raise OptionError("sparsity", "give a sparsity or an N:M structure, not both "
                              "(N:M fixes the sparsity at (M-N)/M)")
        return
    if spec.sparsity is None:
        raise OptionError("sparsity", f"{spec.method} needs a sparsity (0 < R < 1) or an "
                          "N:M structure")
    _check_number("sparsity", spec.sparsity)
    if not 0 < spec.sparsity < 1:
        raise OptionError("sparsity", f"must be strictly between 0 and 1, got "
                          f"{spec.sparsity!r}")


def _check_quantization(spec) -> None:
    low, high = BITS
    if spec.bits is None:
        raise OptionError("bits", f"{spec.method} needs bits ({low} to {high})")
    check_int("bits", spec.bits, None, optional=False)
    if not low <= spec.bits <= high:
        raise OptionError("bits", f"must be an integer from {low} to {high}, got {spec.bits}")
    if spec.group_size is not None:
        check_int("group_size", spec.group_size, None)
        if spec.group_size <= 0:
            raise OptionError("group_size", f"must be a positive integer (or none: one group "
                              f"per output channel), got {spec.group_size}")
    for name in ("symmetric", "act_order"):
        if not isinstance(getattr(spec, name), bool):
            raise OptionError(name, f"expected true or false, got {getattr(spec, name)!r}")


def _check_numerics(spec) -> None:
    _check_number("damp", spec.damp)
    if not 0 <= spec.damp < 1:
        raise OptionError("damp", f"must be in [0, 1), got {spec.damp!r}")
    check_int("blocksize", spec.blocksize, 1, optional=False)
    for name, known in (("forward_dtype", FORWARD_DTYPES), ("save_dtype", SAVE_DTYPES)):
        value = getattr(spec, name)
        if value not in known:
            raise OptionError(name, f"must be one of {', '.join(known)}, got {value!r}")
    if not isinstance(spec.skip, tuple) or not all(isinstance(s, str) for s in spec.skip):
        raise OptionError("skip", f"expected module names, got {spec.skip!r}")


def _check_number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError(name, f"expected a number, got {value!r}")

"""Compression entries of a sweep config -> ``CompressionSpec`` values, with key paths.

An entry names a method and scalars or lists (``sparsity``, ``structure``, ``bits``,
``group_size``); the lists multiply out (every unstructured sparsity, every N:M structure;
every bits × group size). Settings the spec type would reject are reported with the key
path of the list item that produced them. Methods that read no calibration data get the
default ``Calibration``, so their spec keys equal ``compsafe compress``'s.

    specs = parse_specs([{"method": "wanda", "sparsity": [0.1, 0.5]}], Calibration(), True)
"""

from __future__ import annotations

import re

from compsafe.compress.spec import (
    METHODS,
    PRUNING_METHODS,
    QUANT_METHODS,
    Calibration,
    CompressionSpec,
)
from compsafe.errors import CompsafeError
from compsafe.sweep.validate import Fields, at, expect, one_or_many

COMPRESSION_KEYS = ("method", "sparsity", "structure", "bits", "group_size", "symmetric",
                    "act_order", "damp", "blocksize", "calibration", "skip")
CALIBRATION_KEYS = ("source", "nsamples", "seqlen", "seed")


def parse_calibration(raw, where: str, base: Calibration) -> Calibration:
    f = Fields(expect(raw, dict, where, "a mapping"), where, CALIBRATION_KEYS)
    return Calibration(source=f.str("source", base.source),
                       nsamples=f.int("nsamples", base.nsamples, minimum=1),
                       seqlen=f.int("seqlen", base.seqlen, minimum=2),
                       seed=f.int("seed", base.seed))


def parse_specs(items: list, calibration: Calibration, dense: bool) -> tuple[CompressionSpec, ...]:
    specs = [CompressionSpec()] if dense else []
    for i, item in enumerate(items):
        specs.extend(_expand_entry(item, f"compression[{i}]", calibration))
    return tuple(dict.fromkeys(specs))  # drop repeats (an explicit dense, say), keep order


def _expand_entry(item, where: str, calibration: Calibration) -> list[CompressionSpec]:
    f = Fields(expect(item, dict, where, "a mapping"), where, COMPRESSION_KEYS)
    method = f.str("method")
    if method not in METHODS:
        raise CompsafeError(f"{where}.method: unknown compression method {method!r}; "
                            f"known: {', '.join(METHODS)}")
    pruning = ("sparsity", "structure")
    quant = ("bits", "group_size", "symmetric", "act_order")
    for key in f.present():
        if (key in pruning and method not in PRUNING_METHODS) or (
                key in quant and method not in QUANT_METHODS):
            raise CompsafeError(f"{where}.{key}: does not apply to method {method!r}")
    if method == "dense":
        return [CompressionSpec()]
    common = {"damp": f.number("damp", 0.01), "blocksize": f.int("blocksize", 128, minimum=1),
              "skip": tuple(one_or_many(f.get("skip", ["lm_head"]), f"{where}.skip", str,
                                        "a string"))}
    cal = parse_calibration(f.get("calibration", {}), f"{where}.calibration", calibration)
    if method in PRUNING_METHODS:
        settings = _pruning_settings(f, where, method)
    else:
        settings = _quant_settings(f, where, method)
    from compsafe.compress.methods import needs  # imports torch: only once the entry is valid

    specs = []
    for path, fields in settings:
        spec_cal = cal if needs(CompressionSpec(method=method, **fields)) else Calibration()
        with at(path):
            specs.append(CompressionSpec(method=method, calibration=spec_cal, **fields,
                                         **common))
    return specs


def _pruning_settings(f: Fields, where: str, method: str) -> list[tuple[str, dict]]:
    structures = one_or_many(f.get("structure", "unstructured"), f"{where}.structure", str,
                             "a string")
    sparsities = one_or_many(f.get("sparsity", None), f"{where}.sparsity", (int, float),
                             "a number")
    if sparsities and "unstructured" not in structures:
        raise CompsafeError(f"{where}.sparsity: applies to unstructured pruning, but "
                            f"structure lists only {', '.join(structures)}; add "
                            "'unstructured' or drop sparsity")
    out = []
    for j, s in enumerate(structures):
        path = f"{where}.structure[{j}]"
        if s != "unstructured":
            if not re.fullmatch(r"\d+:\d+", s) or not 0 < int(s.split(":")[0]) < int(
                    s.split(":")[1]):
                raise CompsafeError(f"{path}: expected 'unstructured' or N:M with 0 < N < M "
                                    f"(e.g. 2:4), got {s!r}")
            out.append((path, {"structure": s}))
            continue
        if not sparsities:
            raise CompsafeError(f"{where}.sparsity: {method} (unstructured) needs a sparsity "
                                "or a list of them, e.g. [0.1, 0.5]")
        for k, sp in enumerate(sparsities):
            if not 0 < sp < 1:
                raise CompsafeError(f"{where}.sparsity[{k}]: must be strictly between 0 and "
                                    f"1, got {sp!r}")
            out.append((f"{where}.sparsity[{k}]", {"sparsity": float(sp)}))
    return out


def _quant_settings(f: Fields, where: str, method: str) -> list[tuple[str, dict]]:
    bits = one_or_many(f.get("bits", None), f"{where}.bits", int, "an integer")
    if not bits:
        try:  # load-time methods (llm_int8) take no bits; the spec type knows which
            CompressionSpec(method=method)
        except CompsafeError:
            raise CompsafeError(f"{where}.bits: {method} needs bits (2 to 8)") from None
        return [(where, {})]
    groups = one_or_many(f.get("group_size", None), f"{where}.group_size", int, "an integer",
                         allow_none=True) or [None]
    flags = {"symmetric": f.bool("symmetric", False), "act_order": f.bool("act_order", False)}
    out = []
    for j, b in enumerate(bits):
        if not 2 <= b <= 8:
            raise CompsafeError(f"{where}.bits[{j}]: must be from 2 to 8, got {b}")
        for k, g in enumerate(groups):
            if g is not None and g <= 0:
                raise CompsafeError(f"{where}.group_size[{k}]: must be positive, got {g}")
            out.append((f"{where}.bits[{j}]", {"bits": b, "group_size": g, **flags}))
    return out

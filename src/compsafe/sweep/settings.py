"""Compression entries of a sweep config -> ``CompressionSpec`` values, with key paths.

An entry names a method and scalars or lists (``sparsity``, ``structure``, ``bits``,
``group_size``); the lists multiply out into grid cells (every unstructured sparsity, every
N:M structure; every bits × group size), each mapped onto one ``CompressionSpec``. This
module reads YAML types and the grid's shape only: whether a value suits the method is the
spec's to say (``compress/checks.py``), and its message is reported under the key path of
the list item that produced the cell (``compression[0].sparsity[1]: must be strictly between
0 and 1, got 1.5``), the message ``compsafe compress`` prints under ``--sparsity``. Methods
that read no calibration data get the default ``Calibration``, so their spec keys equal
``compsafe compress``'s.

    specs = parse_specs([{"method": "wanda", "sparsity": [0.1, 0.5]}], Calibration(), True)
"""

from __future__ import annotations

from itertools import product

from compsafe.compress.registry import METHODS, method_info
from compsafe.compress.spec import Calibration, CompressionSpec
from compsafe.errors import CompsafeError
from compsafe.sweep.validate import Fields, expect, one_or_many, options_at

COMPRESSION_KEYS = ("method", "sparsity", "structure", "bits", "group_size", "symmetric",
                    "act_order", "damp", "blocksize", "calibration", "skip")
CALIBRATION_KEYS = ("source", "nsamples", "seqlen", "seed")
GRID = {"structure": (str, "a string"), "sparsity": ((int, float), "a number"),
        "bits": (int, "an integer"), "group_size": (int, "an integer")}
"""The keys that take a list of values (their YAML types); the lists multiply out."""

Cell = tuple[dict, dict]
"""One grid cell: spec fields, and the key path each came from."""


def parse_calibration(raw, where: str, base: Calibration) -> Calibration:
    f = Fields(expect(raw, dict, where, "a mapping"), where, CALIBRATION_KEYS)
    with options_at(where):
        return Calibration(source=f.str("source", base.source),
                           nsamples=f.int("nsamples", base.nsamples),
                           seqlen=f.int("seqlen", base.seqlen), seed=f.int("seed", base.seed))


def parse_specs(items: list, calibration: Calibration, dense: bool) -> tuple[CompressionSpec, ...]:
    specs = [CompressionSpec()] if dense else []
    for i, item in enumerate(items):
        specs.extend(_expand_entry(item, f"compression[{i}]", calibration))
    return tuple(dict.fromkeys(specs))  # drop repeats (an explicit dense, say), keep order


def _expand_entry(item, where: str, calibration: Calibration) -> list[CompressionSpec]:
    f = Fields(expect(item, dict, where, "a mapping"), where, COMPRESSION_KEYS)
    method = f.str("method")
    common = {"symmetric": f.bool("symmetric", False), "act_order": f.bool("act_order", False),
              "damp": f.number("damp", 0.01), "blocksize": f.int("blocksize", 128),
              "skip": tuple(one_or_many(f.get("skip", ["lm_head"]), f"{where}.skip", str,
                                        "a string"))}
    cal = parse_calibration(f.get("calibration", {}), f"{where}.calibration", calibration)
    if method not in METHODS or not method_info(method).calibrated:
        cal = Calibration()  # (an unknown method is the spec's to report)
    specs = []
    for fields, paths in _cells(f, where):
        with options_at(where, paths):
            specs.append(CompressionSpec(method=method, calibration=cal, **fields, **common))
    return specs


def _cells(f: Fields, where: str) -> list[Cell]:
    """The entry's grid: sparsities pair with the ``unstructured`` structure (or, when no
    structure is unstructured, with each N:M one, which the spec then refuses: a sparsity
    and an N:M structure cannot both hold); bits pair with every group size."""
    axes = {key: _axis(f, where, key) for key in GRID}
    structures, sparsities = axes.pop("structure"), axes.pop("sparsity")
    listed = [fields["structure"] for fields, _ in structures]
    pruning = []
    for structure in structures or [({}, {})]:
        nm = structure[0].get("structure", "unstructured") != "unstructured"
        if sparsities and not (nm and "unstructured" in listed):
            pruning += [_join(structure, sparsity) for sparsity in sparsities]
        else:
            pruning.append(structure)
    grid = [values or [({}, {})] for values in axes.values()]
    return [_join(*cells) for cells in product(pruning, *grid)]


def _axis(f: Fields, where: str, key: str) -> list[Cell]:
    """One key's values as cells (none: the key is absent or null), each with its path."""
    value = f.get(key, None)
    if value == []:
        raise CompsafeError(f"{where}.{key}: is empty; give a value or a list of them")
    kind, what = GRID[key]
    values = one_or_many(value, f"{where}.{key}", kind, what, allow_none=key == "group_size")
    if key == "sparsity":
        values = [float(v) for v in values]
    if not isinstance(value, list):
        return [({key: v}, {key: f"{where}.{key}"}) for v in values]  # one value, or none
    return [({key: v}, {key: f"{where}.{key}[{i}]"}) for i, v in enumerate(values)]


def _join(*cells: Cell) -> Cell:
    fields, paths = {}, {}
    for cell_fields, cell_paths in cells:
        fields.update(cell_fields)
        paths.update(cell_paths)
    return fields, paths

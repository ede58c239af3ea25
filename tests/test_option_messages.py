"""Compression settings and scorer lists are validated in one place each (issue 17): the
spec (``compress/checks.py``, with the method registry's declarations) and the scorer
registry (``scorer_list``). ``compsafe compress`` / ``compsafe eval`` and a sweep config
only map their flags and keys onto them, so a mistake gets the same message from both,
the CLI's under the flag, the sweep's under the YAML path of the list item that made it.
(The task options' twin of this test is in test_sweep_config.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import run_cli

from compsafe.compress.spec import METHODS
from compsafe.sweep.config import ConfigError, parse_config

BASE = {"models": ["default"], "tasks": [{"task": "rtp", "limit": 2}]}


def yaml_error(raw: dict) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(raw, Path("s.yaml"))
    return str(e.value)


def cli_error(argv: list[str]) -> str:
    rc, _, err = run_cli(["-q", *argv])
    assert rc == 2, err
    return err.strip()


@pytest.mark.parametrize("flags, entry, flag, path, message", [
    (["--method", "wanda", "--sparsity", "1.5"], {"method": "wanda", "sparsity": [0.5, 1.5]},
     "--sparsity", "compression[0].sparsity[1]", "must be strictly between 0 and 1, got 1.5"),
    (["--method", "sparsegpt", "--structure", "3:2"],
     {"method": "sparsegpt", "structure": ["2:4", "3:2"]}, "--structure",
     "compression[0].structure[1]",
     "must be 'unstructured' or N:M with 0 < N < M (e.g. 2:4), got '3:2'"),
    (["--method", "wanda", "--sparsity", "0.5", "--structure", "2:4"],
     {"method": "wanda", "sparsity": 0.5, "structure": "2:4"}, "--sparsity",
     "compression[0].sparsity",
     "give a sparsity or an N:M structure, not both (N:M fixes the sparsity at (M-N)/M)"),
    (["--method", "gptq", "--bits", "9"], {"method": "gptq", "bits": [4, 9]}, "--bits",
     "compression[0].bits[1]", "must be an integer from 2 to 8, got 9"),
    (["--method", "gptq"], {"method": "gptq", "group_size": 64}, "--bits",
     "compression[0].bits", "gptq needs bits (2 to 8)"),
    (["--method", "rtn", "--bits", "4", "--group-size", "-64"],
     {"method": "rtn", "bits": 4, "group_size": [64, -64]}, "--group-size",
     "compression[0].group_size[1]",
     "must be a positive integer (or none: one group per output channel), got -64"),
    (["--method", "wanda", "--sparsity", "0.5", "--bits", "4"],
     {"method": "wanda", "sparsity": 0.5, "bits": 4}, "--bits", "compression[0].bits",
     "does not apply to method 'wanda' (it takes sparsity, structure)"),
    (["--method", "awq", "--bits", "4", "--act-order"],
     {"method": "awq", "bits": [4], "act_order": True}, "--act-order",
     "compression[0].act_order",
     "does not apply to method 'awq' (it takes bits, group_size, symmetric)"),
    (["--method", "prune-it", "--sparsity", "0.5"], {"method": "prune-it", "sparsity": 0.5},
     "--method", "compression[0].method",
     f"unknown compression method 'prune-it'; known: {', '.join(METHODS)}"),
    (["--method", "wanda", "--sparsity", "0.5", "--seqlen", "1"],
     {"method": "wanda", "sparsity": 0.5, "calibration": {"seqlen": 1}}, "--seqlen",
     "compression[0].calibration.seqlen", "must be an integer >= 2, got 1"),
])
def test_compression_mistakes_read_the_same_from_cli_and_yaml(flags, entry, flag, path,
                                                              message, tmp_path):
    """Each would have been caught by a front end's own check before (or by neither): now
    by the spec alone, and the CLI refuses before the model is even looked for."""
    assert yaml_error({**BASE, "compression": [entry]}) == f"s.yaml: {path}: {message}"
    argv = ["compress", "--model", str(tmp_path / "never-loaded"), *flags,
            "--out", str(tmp_path / "out")]
    assert cli_error(argv) == f"compsafe: error: {flag}: {message}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cli, yaml, message", [
    (",", [], "is empty; give a scorer name or a list of them"),
    ("vader,profanity,vader", ["vader", "profanity", "vader"],
     "lists 'vader' twice; give each scorer once"),
    ("vader,nope", ["vader", "nope"], "unknown scorer 'nope'; known: detoxify, openai-"),
])
def test_scorer_lists_read_the_same_from_cli_and_yaml(cli, yaml, message, tmp_path):
    """``--scorer a,b`` and ``scorer: [a, b]`` are checked by the scorer registry only."""
    raw = {**BASE, "compression": [], "tasks": [{"task": "rtp", "scorer": yaml}]}
    assert yaml_error(raw).startswith(f"s.yaml: tasks[0].scorer: {message}")
    err = cli_error(["eval", "--model", str(tmp_path / "never-loaded"), "--tasks", "rtp",
                     "--scorer", cli, "--out", str(tmp_path / "out")])
    assert err.startswith(f"compsafe: error: --scorer: {message}") and "\n" not in err


def test_scorer_list_keeps_order_and_defaults_to_the_tasks_own():
    from compsafe.scorers import scorer_list

    assert scorer_list(None) == [None]
    assert scorer_list(["vader", "profanity"]) == ["vader", "profanity"]
    raw = {**BASE, "compression": [], "tasks": [{"task": "rtp", "scorer": "vader"}]}
    assert [t.options.scorer for t in parse_config(raw, Path("s.yaml")).tasks] == ["vader"]


def test_a_recorded_spec_the_checks_refuse_names_its_compression_json():
    """A model compressed with a setting its method never read (``--act-order`` on RTN was
    accepted and ignored before the checks moved into the spec) is one line naming the
    file, not a bare field error."""
    from compsafe.compress.spec import CompressionSpec
    from compsafe.errors import CompsafeError
    from compsafe.identity import Lineage

    spec = {**CompressionSpec(method="rtn", bits=4).to_dict(), "act_order": True}
    with pytest.raises(CompsafeError, match=r"^models/rtn: compression.json has no valid "
                       r"'spec': act_order: does not apply to method 'rtn'"):
        Lineage.of("models/rtn", "fp", {"spec": spec})

"""A compression method of one's own is one registration (issue 17): registered from a test
module, with no edit of compsafe's files, it is listed by ``compress --help``, accepted by
specs, labels and sweep configs, compresses a model end to end to its target sparsity, and
the statistics, threads and memory model follow its declarations."""

from __future__ import annotations

import json

import pytest
import toy_method
from sweep_helpers import run_cli

from compsafe.compress.spec import METHODS, PRUNING_METHODS, CompressionSpec
from compsafe.errors import CompsafeError, OptionError


@pytest.fixture
def toyprune():
    toy_method.register()
    try:
        yield toy_method.NAME
    finally:
        toy_method.unregister()
    assert toy_method.NAME not in METHODS


def test_registered_method_is_listed_and_accepted(toyprune, capsys):
    from compsafe.cli import main

    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    out = capsys.readouterr().out
    assert "toyprune" in out.split("Methods:")[1].split("(pruning")[0]
    assert toyprune in PRUNING_METHODS
    spec = CompressionSpec.from_label("toyprune-30")
    assert (spec.method, spec.target_sparsity, spec.label()) == ("toyprune", 0.3, "toyprune-30")
    with pytest.raises(OptionError, match="sparsity: toyprune needs a sparsity"):
        CompressionSpec(method="toyprune")  # a pruning method is validated as one
    from pathlib import Path

    from compsafe.sweep.config import parse_config
    config = parse_config({"models": ["default"], "tasks": ["bbq"],
                           "compression": [{"method": "toyprune", "sparsity": [0.3, 0.6]},
                                           {"method": "toyprune", "structure": "2:4"}]},
                          Path("s.yaml"))
    assert [s.label() for s in config.specs] == [
        "dense", "toyprune-30", "toyprune-60", "toyprune-2:4"]


def test_a_methods_own_validation_speaks_for_the_cli_and_the_sweep(toyprune, tmp_path):
    """``validate`` declared at registration refuses what the method cannot do, in the spec,
    so ``compsafe compress`` and a sweep config report it alike, each under its own name."""
    from pathlib import Path

    from compsafe.sweep.config import ConfigError, parse_config

    message = "toyprune prunes at most 0.9, got 0.95"
    with pytest.raises(OptionError, match=f"^sparsity: {message}$"):
        CompressionSpec(method="toyprune", sparsity=0.95)
    rc, _, err = run_cli(["-q", "compress", "--model", str(tmp_path / "never-loaded"),
                          "--method", "toyprune", "--sparsity", "0.95",
                          "--out", str(tmp_path / "out")])
    assert rc == 2 and err.strip() == f"compsafe: error: --sparsity: {message}"
    with pytest.raises(ConfigError) as e:
        parse_config({"models": ["default"], "tasks": ["bbq"], "compression": [
            {"method": "toyprune", "sparsity": [0.5, 0.95]}]}, Path("s.yaml"))
    assert str(e.value) == f"s.yaml: compression[0].sparsity[1]: {message}"
    assert CompressionSpec(method="toyprune", sparsity=0.9).label() == "toyprune-90"


def test_unregistered_method_is_unknown():
    with pytest.raises(CompsafeError, match="unknown compression method 'toyprune'"):
        CompressionSpec(method="toyprune", sparsity=0.5)


def test_registered_method_compresses_a_model_end_to_end(toyprune, tiny_model_dir, tmp_path):
    out = tmp_path / "toy"
    rc, _, err = run_cli(["-q", "compress", "--model", str(tiny_model_dir), "--method",
                          "toyprune", "--sparsity", "0.5", "--out", str(out)])
    assert rc == 0, err
    info = json.loads((out / "compression.json").read_text())
    assert info["label"] == "toyprune-50" and info["calibration"] is None
    assert info["summary"]["min_layer_sparsity"] == pytest.approx(0.5, abs=0.01)
    # the method's own rule: in each layer, later input columns keep more weights
    from safetensors.torch import load_file
    weights = load_file(out / "model.safetensors")
    w = next(v for k, v in weights.items() if k.endswith("mlp.down_proj.weight"))
    half = w.shape[1] // 2
    assert (w[:, :half] == 0).float().mean() > (w[:, half:] == 0).float().mean()


def test_declarations_drive_statistics_threads_and_memory(toyprune):
    from compsafe.compress.memory import CALIBRATED, LLAMA_2_7B, compression_memory
    from compsafe.compress.methods import needs
    from compsafe.compress.registry import method_info

    assert needs(CompressionSpec(method="toyprune", sparsity=0.5)) == set()
    assert not method_info("toyprune").serial and "toyprune" not in CALIBRATED
    assert set(compression_memory(LLAMA_2_7B, "toyprune").terms) == {
        "block weights", "per-layer work"}  # no calibration terms: it declared none


def test_declared_settings_decide_what_a_method_takes():
    """``takes`` narrows (or widens) the family's settings: a setting the method does not
    read is refused rather than stored in a spec that claims it was applied."""
    from compsafe.compress import register_method, unregister_method
    from compsafe.registry import RegistryError

    register_method("toyquant", lambda w, spec, stats, grad_sq: w, family="quantization",
                    takes=("bits",))
    try:
        assert CompressionSpec(method="toyquant", bits=3).label() == "toyquant-w3"
        with pytest.raises(OptionError, match="^group_size: does not apply to method "
                           r"'toyquant' \(it takes bits\)$"):
            CompressionSpec(method="toyquant", bits=3, group_size=64)
    finally:
        unregister_method("toyquant")
    with pytest.raises(RegistryError, match="unknown settings \\['bitz'\\]"):
        register_method("toyquant", lambda w, spec, stats, grad_sq: w,
                        family="quantization", takes=("bitz",))
    with pytest.raises(RegistryError, match="validate must be a function"):
        register_method("toyquant", lambda w, spec, stats, grad_sq: w,
                        family="quantization", validate="toy_method:validate")
    assert "toyquant" not in METHODS

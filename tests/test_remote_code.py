"""A model's own Python code runs only with --trust-remote-code, and is never prompted for
(issue 14, point 4): ``yes y | compsafe eval --model DIR_WITH_CUSTOM_CODE`` used to run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compsafe.models import remote_code
from compsafe.models.remote_code import RemoteCodeError

CUSTOM = '''
import pathlib
pathlib.Path({marker!r}).write_text("the model's own code ran")
from transformers import LlamaConfig, LlamaForCausalLM

class CustomConfig(LlamaConfig):
    model_type = "compsafe-test-custom"

class CustomModel(LlamaForCausalLM):
    config_class = CustomConfig
'''


@pytest.fixture
def custom_model(tiny_model_dir, tmp_path) -> tuple[Path, Path]:
    """The tiny model made into one that needs its own code; and the file that code writes."""
    model = tmp_path / "custom-model"
    shutil.copytree(tiny_model_dir, model)
    marker = tmp_path / "EXECUTED"
    (model / "custom_llama.py").write_text(CUSTOM.format(marker=str(marker)))
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="compsafe-test-custom", architectures=["CustomModel"],
                  auto_map={"AutoConfig": "custom_llama.CustomConfig",
                            "AutoModelForCausalLM": "custom_llama.CustomModel"})
    (model / "config.json").write_text(json.dumps(config))
    return model, marker


def _eval(model: Path, out: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_MODULES_CACHE": str(out.parent / "hf_modules"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "compsafe.cli", "-q", "eval", "--model", str(model),
         "--tasks", "bbq", "--limit", "1", "--n-boot", "0", "--data-dir", str(data),
         "--out", str(out), *extra],
        input="y\n" * 50, capture_output=True, text=True, env=env, timeout=300)


def test_custom_code_is_refused_without_the_flag_even_if_stdin_says_yes(
        custom_model, data_cache, tmp_path):
    model, marker = custom_model
    done = _eval(model, tmp_path / "out", data_cache)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compsafe: error: ")
    assert "--trust-remote-code" in lines[0] and str(model) in lines[0]
    assert "[y/N]" not in done.stdout + done.stderr  # never asked
    assert not marker.exists()  # and never ran

    done = _eval(model, tmp_path / "out", data_cache, "--trust-remote-code")
    assert done.returncode == 0, done.stderr
    assert marker.exists()  # asked for explicitly: the model's code runs


def test_transformers_refusal_is_one_line_not_a_prompt(custom_model, monkeypatch):
    """Past the directory check (as for a hub id), transformers is told trust=False and
    refuses; under pytest a prompt would fail reading stdin instead."""
    from compsafe.models.hf import HFModel

    model, marker = custom_model
    monkeypatch.setattr(remote_code, "check_model_dir", lambda path, trust: None)
    with pytest.raises(RemoteCodeError, match="contains custom code.*--trust-remote-code"):
        HFModel.load(str(model), device="cpu")
    assert not marker.exists()


def test_custom_code_entries_are_read_from_both_configs(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert remote_code.custom_code(tmp_path) == []
    remote_code.check_model_dir(tmp_path, trust=False)  # plain model: fine
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["tok.MyTokenizer", None]}}))
    assert remote_code.custom_code(tmp_path) == ["AutoTokenizer -> ['tok.MyTokenizer', None]"]
    with pytest.raises(RemoteCodeError, match="ships its own Python code"):
        remote_code.check_model_dir(tmp_path, trust=False)
    remote_code.check_model_dir(tmp_path, trust=True)
    assert remote_code.refusal(ValueError("unrelated"), "x") is None


def test_a_sweep_runs_custom_code_only_for_a_model_that_allows_it(custom_model, data_cache,
                                                                  tmp_path):
    """Sweeps follow the same rule, per model entry (``trust_remote_code: true``)."""
    import yaml

    model, marker = custom_model
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    for trust in (False, True):
        config = tmp_path / f"sweep-{trust}.yaml"
        config.write_text(yaml.safe_dump({
            "name": "custom", "out": str(tmp_path / f"out-{trust}"),
            "data_dir": str(data_cache), "device": "cpu", "dtype": "float32",
            "models": [{"model": str(model), "name": "custom", "trust_remote_code": trust}],
            "compression": [], "tasks": [{"task": "bbq", "limit": 1, "n_boot": 0}]}))
        done = subprocess.run([sys.executable, "-m", "compsafe.cli", "-q", "sweep",
                               str(config)], capture_output=True, text=True, env=env,
                              timeout=300, input="y\n" * 50)
        if not trust:
            assert done.returncode == 1 and not marker.exists(), done.stderr
            assert "trust_remote_code: true on the model" in done.stdout + done.stderr
        else:
            assert done.returncode == 0, done.stderr
            assert marker.exists()

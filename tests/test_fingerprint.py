"""The checkpoint fingerprint read tensor by tensor equals the loaded model's fingerprint.

``compress --method llm_int8|nf4`` records the dense model's fingerprint without loading
the dense model; reports pair the quantized runs with the dense runs on it, so the two
must agree exactly.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from compsafe.models.fingerprint import checkpoint_fingerprint
from compsafe.models.hf import HFModel


def _tiny(arch: str, vocab: int):
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    torch.manual_seed(0)
    cfg = {
        "llama-tied": LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2,
                                  vocab_size=vocab, tie_word_embeddings=True),
        "qwen2-untied": Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2,
                                    vocab_size=vocab, tie_word_embeddings=False),
        "gpt2": GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=vocab, n_positions=64),
    }[arch]
    return AutoModelForCausalLM.from_config(cfg).eval()


def _save(model, tokenizer, path, **kw):
    model.save_pretrained(path, **kw)
    tokenizer.save_pretrained(path)
    return path


def _loaded(path) -> str:
    return HFModel.load(str(path), device="cpu", dtype="float32").fingerprint()


@pytest.mark.parametrize("arch", ["llama-tied", "qwen2-untied", "gpt2"])
def test_streamed_fingerprint_equals_the_loaded_models(arch, embedded_tokenizer, tmp_path):
    path = _save(_tiny(arch, len(embedded_tokenizer)), embedded_tokenizer, tmp_path / arch)
    streamed = checkpoint_fingerprint(path, embedded_tokenizer)
    assert streamed is not None and streamed == _loaded(path)


def test_sharded_bf16_checkpoint(embedded_tokenizer, tmp_path):
    """Several shards (an index file) in bf16: each tensor cast to float32 as loading does."""
    model = _tiny("qwen2-untied", len(embedded_tokenizer)).to(torch.bfloat16)
    path = _save(model, embedded_tokenizer, tmp_path / "sharded", max_shard_size="100KB")
    assert (path / "model.safetensors.index.json").is_file()
    assert checkpoint_fingerprint(path, embedded_tokenizer) == _loaded(path)


def test_different_weights_differ(embedded_tokenizer, tmp_path):
    model = _tiny("llama-tied", len(embedded_tokenizer))
    a = _save(model, embedded_tokenizer, tmp_path / "a")
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] += 1e-3
    b = _save(model, embedded_tokenizer, tmp_path / "b")
    assert checkpoint_fingerprint(a, embedded_tokenizer) != checkpoint_fingerprint(
        b, embedded_tokenizer)


def test_checkpoint_missing_a_tensor_falls_back(embedded_tokenizer, tmp_path):
    """A tensor the model has but the file lacks (initialised at load time): the streamed
    value cannot be known, so None tells the caller to load the model."""
    path = _save(_tiny("qwen2-untied", len(embedded_tokenizer)), embedded_tokenizer,
                 tmp_path / "m")
    weights = load_file(path / "model.safetensors")
    del weights["lm_head.weight"]
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    assert checkpoint_fingerprint(path, embedded_tokenizer) is None
    assert checkpoint_fingerprint(tmp_path / "nowhere", embedded_tokenizer) is None


def test_embedded_model(embedded_model):
    assert checkpoint_fingerprint(embedded_model.source, embedded_model.tokenizer) == \
        embedded_model.fingerprint()


# --- a dense model's identity as a base does not depend on the dtype it was evaluated in


def test_float32_identity_of_a_bf16_load(embedded_tokenizer, tmp_path, monkeypatch):
    """A float32 checkpoint evaluated in bf16 (the GPU default) keeps the identity compress
    records for it; a bf16 checkpoint too, read from disk or, failing that, upcast."""
    import compsafe.models.hf as hf

    fp32_dir = _save(_tiny("llama-tied", len(embedded_tokenizer)), embedded_tokenizer,
                     tmp_path / "fp32")
    bf16_dir = _save(_tiny("llama-tied", len(embedded_tokenizer)).to(torch.bfloat16),
                     embedded_tokenizer, tmp_path / "bf16")
    for path in (fp32_dir, bf16_dir):
        model = HFModel.load(str(path), device="cpu", dtype="bfloat16")
        assert model.fingerprint() != _loaded(path)  # the run key does see the dtype
        assert model.float32_fingerprint() == _loaded(path)
    monkeypatch.setattr(hf, "checkpoint_fingerprint", lambda *a: None)
    model = HFModel.load(str(bf16_dir), device="cpu", dtype="bfloat16")
    assert model.float32_fingerprint() == _loaded(bf16_dir)


def test_compressed_model_pairs_with_its_bf16_dense_run(embedded_tokenizer, tmp_path,
                                                        data_cache):
    """Dense evaluated in bf16, the compressed copy in float32: one pair in the report."""
    from compsafe.cli import main
    from compsafe.report.load import load_runs
    from compsafe.report.paired import pair_runs

    dense = _save(_tiny("llama-tied", len(embedded_tokenizer)), embedded_tokenizer,
                  tmp_path / "tiny")
    pruned = tmp_path / "tiny-mag"
    assert main(["-q", "compress", "--model", str(dense), "--method", "magnitude",
                 "--sparsity", "0.5", "--out", str(pruned)]) == 0
    runs = tmp_path / "runs"
    for model, dtype in ((dense, "bfloat16"), (pruned, "float32")):
        assert main(["-q", "eval", "--model", str(model), "--dtype", dtype, "--tasks", "bbq",
                     "--limit", "1", "--n-boot", "0", "--out", str(runs),
                     "--data-dir", str(data_cache)]) == 0
    [(base, other)] = pair_runs(load_runs(runs))
    assert (base["method"], other["method"]) == ("dense", "magnitude")
    assert base["model_fingerprint"] != base["base_fingerprint"] == other["base_fingerprint"]

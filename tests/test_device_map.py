"""A model split by ``device_map`` scores, generates and fingerprints as the unsplit model.

No CPU test can hold two GPUs, so the split here is the one accelerate makes on a CPU:
some blocks, the embeddings and the output projection are offloaded (their parameters
sit on the ``meta`` device, and accelerate's hooks stream their weights in and move each
module's inputs to its execution device per forward), the rest stays resident. That is the
code path of a model larger than its GPUs (``device_map="auto"`` spills to CPU and disk
the same way): the model's first parameter says ``meta``, so inputs must go to the
embeddings' execution device, and the offloaded weights must be read back for the
fingerprint. What it cannot show is a tensor crossing from one GPU to another; the index
tensors that could (``logits_to_keep``) are kept on the CPU for split models.
"""

from __future__ import annotations

import pytest
import torch

from compsafe.errors import CompsafeError
from compsafe.models.device import index_device, input_device, is_split, parse_device_map
from compsafe.models.generate import DecodingConfig, GenerationRequest
from compsafe.models.hf import HFModel
from compsafe.types import LoglikRequest, RollingRequest

pytest.importorskip("accelerate")

SPLIT = {"model.embed_tokens": "disk", "model.layers.0": "cpu", "model.layers.1": "disk",
         "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "disk"}
GEMMA_SPLIT = {"model.embed_tokens": "disk", "model.layers.0": "cpu", "model.layers.1": "disk",
               "model.layers.2": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu",
               "model.rotary_emb_local": "cpu", "lm_head": "disk"}
CONTEXTS = ["The nurse said that", "Two people were waiting at the station. Who was late?"]
REQUESTS = [LoglikRequest(c, k) for c in CONTEXTS
            for k in (" she was tired", " he was", " nobody knows the answer")]


def _same_behaviour(whole: HFModel, split: HFModel) -> None:
    ours, theirs = whole.loglikelihood(REQUESTS), split.loglikelihood(REQUESTS)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(ours, theirs, strict=True)) < 1e-5
    assert [a.is_greedy for a in ours] == [b.is_greedy for b in theirs]
    texts = [RollingRequest("A long enough text to score as one rolling document, twice.")]
    [a], [b] = whole.rolling_loglikelihood(texts), split.rolling_loglikelihood(texts)
    assert a.n_tokens == b.n_tokens and abs(a.logprob - b.logprob) < 1e-5
    gen = [GenerationRequest(c, f"p/{i}") for i, c in enumerate(CONTEXTS)]
    greedy = DecodingConfig(do_sample=False, max_new_tokens=6, min_new_tokens=6)
    sampled = DecodingConfig(max_new_tokens=6)
    for cfg in (greedy, sampled):
        assert whole.generate(gen, cfg, seed=3) == split.generate(gen, cfg, seed=3)
    assert whole.fingerprint() == split.fingerprint()


def _split_model(path, device_map) -> HFModel:
    split = HFModel.load(str(path), device="cpu", dtype="float32", device_map=device_map)
    model = split.model
    assert is_split(model) and set(model.hf_device_map.values()) == {"cpu", "disk"}
    # The old way of finding the input device would say meta: the embeddings are offloaded.
    assert next(model.parameters()).device.type == "meta"
    assert any(p.device.type == "cpu" for p in model.parameters())  # and some stay resident
    assert split.device == input_device(model) == torch.device("cpu")
    assert index_device(model) == torch.device("cpu")
    return split


def test_split_llama_scores_generates_and_fingerprints_as_the_whole(tiny_model_dir):
    whole = HFModel.load(str(tiny_model_dir), device="cpu", dtype="float32")
    split = _split_model(tiny_model_dir, SPLIT)
    assert not is_split(whole.model) and whole.device == torch.device("cpu")
    _same_behaviour(whole, split)


def test_split_gemma3_tree_masks_per_layer_type_reach_offloaded_blocks(tiny_gemma3_dir):
    """Gemma 3 gets one tree mask per layer type (a dict), tied embeddings and sliding
    layers; the offloaded blocks still receive the right mask."""
    from compsafe.models.loglik import prefix_sharing_probe

    whole = HFModel.load(str(tiny_gemma3_dir), device="cpu", dtype="float32")
    names = {n for n, _ in whole.model.named_modules()}
    device_map = {k: v for k, v in GEMMA_SPLIT.items() if k in names}
    split = _split_model(tiny_gemma3_dir, device_map)
    probe = prefix_sharing_probe(split.model, split.pad_id)
    assert probe.shared and probe.max_diff < 1e-4, probe.reason
    _same_behaviour(whole, split)


def test_device_map_values_are_checked_in_one_line():
    assert parse_device_map(None) is None
    assert parse_device_map("auto") == "auto"
    assert parse_device_map('{"model": 0, "lm_head": "cpu"}') == {"model": 0, "lm_head": "cpu"}
    for bad, words in [("everywhere", "unknown strategy 'everywhere'"),
                       ('{"model": "gpu7"}', "unknown device 'gpu7'"),
                       ('{"model": true}', "expected a device name or GPU index"),
                       ("{model: 0}", "not a JSON object")]:
        with pytest.raises(CompsafeError, match="device_map: ") as e:
            parse_device_map(bad)
        assert words in str(e.value) and "\n" not in str(e.value)


def test_device_map_that_leaves_modules_out_is_one_line(tiny_model_dir):
    with pytest.raises(CompsafeError, match="cannot place model .* with device_map") as e:
        HFModel.load(str(tiny_model_dir), device="cpu", dtype="float32",
                     device_map={"model.embed_tokens": "cpu", "lm_head": "disk"})
    assert "model.layers.0" in str(e.value) and "\n" not in str(e.value)


def test_sweep_config_and_eval_cli_take_a_device_map(tmp_path, tiny_model_dir, data_cache):
    from sweep_helpers import write_config

    from compsafe.cli import main
    from compsafe.sweep.config import ConfigError, load_config

    base = dict(models=[str(tiny_model_dir)], tasks=["bbq"], compression=[])
    cfg = load_config(write_config(tmp_path / "a.yaml", device_map=SPLIT, **base))
    assert cfg.load_device_map == SPLIT and hash(cfg)  # stays hashable
    assert load_config(write_config(tmp_path / "b.yaml", device_map="auto", **base)
                       ).load_device_map == "auto"
    with pytest.raises(ConfigError, match=r"c.yaml: device_map: unknown strategy 'all'"):
        load_config(write_config(tmp_path / "c.yaml", device_map="all", **base))

    import json

    args = ["-q", "eval", "--model", str(tiny_model_dir), "--tasks", "bbq", "--limit", "2",
            "--n-boot", "10", "--data-dir", str(data_cache), "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    assert main([*args, "--out", str(tmp_path / "split"), "--device-map", json.dumps(SPLIT)]) == 0
    runs = [json.loads((tmp_path / d / "results.json").read_text())["runs"]
            for d in ("whole", "split")]
    # The same run key (same weights fingerprint) and the same metrics, split or not.
    assert [(r["run_key"], r["metrics"]) for r in runs[0]] == [
        (r["run_key"], r["metrics"]) for r in runs[1]]

"""Every compression method on Gemma 3: per-block calibration arguments, q/k norms, tied
embeddings, group sizes for its widths, fingerprints and lineage.

Gemma 3 alternates sliding-window and global attention, and each kind gets its own mask
and its own rotary base: calibration must hand every block its own arguments, not block
0's. Tiny random Gemma 3 (``gemma_fixtures.py``) for the code paths; the group sizes of
the real 270M (widths 640, 1024, 2048) from a 2-block model of its shapes; the real model
compressed (``full``) with the cheap methods.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from gemma_fixtures import LAYER_TYPES, tiny_gemma3
from test_compress import block_weights, calib_file, compress, spec_for  # noqa: F401
from transformers import AutoModelForCausalLM

from compsafe.compress.calibration import calibration_batches
from compsafe.compress.layers import capture_inputs, compress_sequential, find_blocks, run_block
from compsafe.compress.masks import prune_mask
from compsafe.compress.run import _all_targets, check_layers
from compsafe.compress.spec import CompressionSpec
from compsafe.compress.stats import find_linears
from compsafe.compress.wanda import wanda_scores
from compsafe.errors import CompsafeError
from compsafe.models.hf import HFModel


def _block_outputs(model, tokens) -> list[torch.Tensor]:
    """Each block's output in an ordinary forward pass of the whole model."""
    outs: list[torch.Tensor] = []
    _, blocks = find_blocks(model)
    hooks = [b.register_forward_hook(lambda m, a, o: outs.append(o[0] if isinstance(o, tuple)
                                                                 else o)) for b in blocks]
    with torch.no_grad():
        model(input_ids=tokens, use_cache=False)
    for h in hooks:
        h.remove()
    return outs


def test_every_block_is_calibrated_with_its_own_mask_and_rotary_table():
    """Running the captured inputs block by block reproduces the model's own forward pass;
    the global block run with block 0's (sliding) arguments would not."""
    model = tiny_gemma3()
    tokens = torch.randint(3, 100, (2, 24), generator=torch.Generator().manual_seed(0))
    want = _block_outputs(model, tokens)
    name, blocks = find_blocks(model)
    captured = capture_inputs(model, name, blocks, tokens, torch.device("cpu"), batch_size=1)
    assert len(captured) == 3 and all(len(c) == 2 for c in captured)
    hidden = [h for h, _, _ in captured[0]]
    for i, block in enumerate(blocks):
        before = hidden
        hidden = run_block(block, [(h, a, kw) for h, (_, a, kw)
                                   in zip(hidden, captured[i], strict=True)])
        for b in range(2):
            assert torch.allclose(hidden[b], want[i][b:b + 1], atol=1e-5), (i, b)
    assert LAYER_TYPES[2] == "full_attention"
    wrong = run_block(blocks[2], [(h, a, kw) for h, (_, a, kw)
                                  in zip(before, captured[0], strict=True)])
    assert not torch.allclose(wrong[0], want[2][0:1], atol=1e-2)


def test_sequential_wanda_equals_direct_computation(tiny_gemma3_dir, calib_file):  # noqa: F811
    """Each block pruned with the activations of the already-pruned blocks before it, as a
    whole-model forward pass computes them (global layer included)."""
    spec = spec_for(calib_file, method="wanda", sparsity=0.5)
    hf = HFModel.load(str(tiny_gemma3_dir), device="cpu", dtype="float32")
    tokens, _ = calibration_batches(hf.tokenizer, spec.calibration)
    ours = copy.deepcopy(hf.model)
    compress_sequential(ours, spec, tokens, batch_size=2, progress=False)
    direct = copy.deepcopy(hf.model)
    sq: dict[str, torch.Tensor] = {}
    for block in direct.model.layers:
        layers = find_linears(block)
        hooks = [m.register_forward_hook(
            lambda mod, a, o, n=n: sq.__setitem__(n, (a[0].reshape(-1, a[0].shape[-1]) ** 2)
                                                  .sum(0))) for n, m in layers.items()]
        with torch.no_grad():
            direct(input_ids=tokens, use_cache=False)
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for n, m in layers.items():
                m.weight[prune_mask(wanda_scores(m.weight, sq[n], tokens.numel()), 0.5,
                                    None)] = 0
    ours_w, direct_w = block_weights(ours), block_weights(direct)
    assert len(ours_w) == 3 * 7
    for name in ours_w:
        assert torch.equal(ours_w[name] == 0, direct_w[name] == 0), name


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt", "gblm"])
@pytest.mark.parametrize("structure", ["unstructured", "2:4"])
def test_pruning_exact_and_norms_embeddings_untouched(method, structure, tiny_gemma3_dir,
                                                      tmp_path, calib_file):  # noqa: F811
    kw = {"sparsity": 0.5} if structure == "unstructured" else {"structure": structure}
    out, info = compress(tiny_gemma3_dir, spec_for(calib_file, method=method, **kw), tmp_path)
    dense = AutoModelForCausalLM.from_pretrained(tiny_gemma3_dir)
    saved = AutoModelForCausalLM.from_pretrained(out)
    assert type(saved).__name__ == "Gemma3ForCausalLM"
    weights = block_weights(saved)
    assert len(weights) == 21 and set(info["per_layer"]) == set(weights)
    for name, w in weights.items():
        if structure == "unstructured":
            assert int((w == 0).sum()) == w.numel() // 2, name
        else:
            assert bool(((w.reshape(w.shape[0], -1, 4) == 0).sum(-1) == 2).all()), name
    # Everything else (embeddings, q/k norms, layer norms) is bit-identical; still tied.
    dense_sd, saved_sd = dense.state_dict(), saved.state_dict()
    others = [k for k in dense_sd if k.rsplit(".", 1)[0] not in weights]
    assert any("q_norm" in k for k in others) and any("k_norm" in k for k in others)
    for key in others:
        assert torch.equal(dense_sd[key], saved_sd[key]), key
    assert saved.lm_head.weight.data_ptr() == saved.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_quantization_runs_with_group_32(method, tiny_gemma3_dir, tmp_path,
                                         calib_file):  # noqa: F811
    out, info = compress(tiny_gemma3_dir, spec_for(calib_file, method=method, bits=4,
                                                   group_size=32), tmp_path)
    assert info["summary"]["layers"] == 21
    assert 0 < info["summary"]["mean_rel_error"] < 0.5
    saved = AutoModelForCausalLM.from_pretrained(out)
    dense = AutoModelForCausalLM.from_pretrained(tiny_gemma3_dir)
    assert torch.equal(saved.get_input_embeddings().weight, dense.get_input_embeddings().weight)
    assert saved.lm_head.weight.data_ptr() == saved.get_input_embeddings().weight.data_ptr()


def _gemma_270m_shapes():
    """Gemma 3 270M's layer widths (its converted config's values) in 2 blocks and a small
    vocabulary: the same linear shapes per block, built in a fraction of a second."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(vocab_size=256, hidden_size=640, intermediate_size=2048,
                              num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=1, head_dim=256, sliding_window=512,
                              layer_types=["sliding_attention", "full_attention"],
                              tie_word_embeddings=True)
    return Gemma3ForCausalLM(config)


@pytest.mark.parametrize("group", [32, 64, 128])
def test_gemma_270m_group_sizes_that_apply(group):
    """Inputs 640 (q/k/v/gate/up), 1024 (o_proj: 4 heads x 256) and 2048 (down_proj): every
    group size dividing 128 applies (unlike SmolLM2, whose 576 refuses 128)."""
    model = _gemma_270m_shapes()
    targets = _all_targets(model, CompressionSpec(method="rtn", bits=4, group_size=group))
    assert {m.in_features for m in targets.values()} == {640, 1024, 2048}
    assert "lm_head" not in " ".join(targets)
    check_layers(targets, CompressionSpec(method="gptq", bits=4, group_size=group))


def test_gemma_270m_group_256_is_one_clear_error():
    model = _gemma_270m_shapes()
    spec = CompressionSpec(method="awq", bits=4, group_size=256)
    with pytest.raises(CompsafeError, match=r"q_proj: group_size 256 does not divide "
                                            r"in_features 640.*32, 64, 128, 160, 320, 640"):
        check_layers(_all_targets(model, spec), spec)


def test_fingerprint_and_lineage_of_a_compressed_gemma(tiny_gemma3_dir, tmp_path,
                                                       calib_file):  # noqa: F811
    from compsafe.compress.lineage import Lineage
    from compsafe.models.fingerprint import checkpoint_fingerprint

    out, info = compress(tiny_gemma3_dir, spec_for(calib_file, method="wanda", sparsity=0.5),
                         tmp_path)
    dense = HFModel.load(str(tiny_gemma3_dir), device="cpu", dtype="float32")
    pruned = HFModel.load(str(out), device="cpu", dtype="float32")
    assert info["source_model"]["fingerprint"] == dense.fingerprint() != pruned.fingerprint()
    # Read tensor by tensor from the checkpoint (tied lm_head not stored): the same value,
    # or None when the names do not cover the state dict (then the caller loads the model).
    assert checkpoint_fingerprint(out, pruned.tokenizer) in (pruned.fingerprint(), None)
    bf16 = HFModel.load(str(out), device="cpu", dtype="bfloat16")
    assert bf16.float32_fingerprint() == pruned.fingerprint()
    lineage = Lineage.of(pruned.name, pruned.fingerprint(), pruned.compression_info)
    cols = lineage.columns()
    assert cols["base_fingerprint"] == dense.fingerprint()
    assert (cols["method"], cols["sparsity"], cols["structure"]) == ("wanda", 0.5,
                                                                     "unstructured")
    assert json.loads((out / "compression.json").read_text())["label"] == "wanda-50"


def test_cli_compress_then_eval_records_lineage(tiny_gemma3_dir, tmp_path, capsys,
                                                data_cache, calib_file):  # noqa: F811
    from compsafe.cli import main
    from compsafe.store import Store

    out = tmp_path / "gptq-4"
    rc = main(["-q", "compress", "--model", str(tiny_gemma3_dir), "--method", "gptq",
               "--bits", "4", "--group-size", "32", "--calibration", str(calib_file),
               "--nsamples", "4", "--seqlen", "32", "--out", str(out)])
    assert rc == 0 and "gptq-4" in capsys.readouterr().out
    for model in (str(tiny_gemma3_dir), str(out)):
        rc = main(["-q", "eval", "--model", model, "--tasks", "bbq", "--limit", "1",
                   "--n-boot", "0", "--out", str(tmp_path / "runs"),
                   "--data-dir", str(data_cache)])
        assert rc == 0
    with Store(tmp_path / "runs" / "compsafe.sqlite") as st:
        dense, quant = sorted(st.runs(), key=lambda r: r["method"] != "dense")
    assert dense["model_fingerprint"] == quant["base_fingerprint"] != quant["model_fingerprint"]
    assert (quant["method"], quant["bits"], quant["group_size"]) == ("gptq", 4, 32)
    assert quant["base_model"] == dense["model"] == "tiny-gemma3"


@pytest.mark.full
@pytest.mark.parametrize(("method", "kw"), [
    ("magnitude", {"sparsity": 0.5}), ("wanda", {"structure": "2:4"}),
    ("rtn", {"bits": 4, "group_size": 128}), ("gptq", {"bits": 4, "group_size": 128}),
    ("awq", {"bits": 4, "group_size": 128}), ("sparsegpt", {"sparsity": 0.5})])
def test_embedded_gemma_compresses(method, kw, gemma_model, tmp_path,
                                   calib_file):  # noqa: F811
    """The real 270M: 18 x 7 layers compressed, exact sparsity, embeddings (tied) intact."""
    out, info = compress("gemma3-270m", spec_for(calib_file, method=method, **kw), tmp_path)
    assert info["summary"]["layers"] == 18 * 7
    saved = AutoModelForCausalLM.from_pretrained(out)
    assert torch.equal(saved.get_input_embeddings().weight,
                       gemma_model.model.get_input_embeddings().weight)
    assert saved.lm_head.weight.data_ptr() == saved.get_input_embeddings().weight.data_ptr()
    if "sparsity" in kw:  # at least the target: GGUF-dequantized weights hold some zeros
        assert info["summary"]["min_layer_sparsity"] >= 0.5
        assert info["summary"]["sparsity"] < 0.5 + 1e-3 + info["summary"]["dense_zeros"] / \
            sum(r["numel"] for r in info["per_layer"].values())

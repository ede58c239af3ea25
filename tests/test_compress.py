"""``compsafe compress`` orchestration on tiny random models (2 blocks, width 64).

Block discovery across architectures, exact achieved sparsity counted in the *saved*
safetensors reloaded with plain transformers, quantization grids in the saved weights,
the sequential (compressed-inputs) convention checked against a direct computation,
``compression.json``, calibration determinism, chunked perplexity, and one-line CLI errors.
The maths itself is tested in ``test_pruning.py`` and ``test_quantization.py``.
"""

from __future__ import annotations

import copy
import gzip
import importlib.util
import json
import random

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from compsafe.cli import main
from compsafe.compress.calibration import calibration_batches, calibration_file, overlapping_tasks
from compsafe.compress.layers import compress_sequential, find_blocks, skipped
from compsafe.compress.masks import prune_mask
from compsafe.compress.run import FAKE_QUANT, compress_model
from compsafe.compress.spec import Calibration, CompressionSpec
from compsafe.compress.stats import find_linears, get_weight
from compsafe.compress.wanda import wanda_scores
from compsafe.errors import CompsafeError, DataError
from compsafe.models.hf import HFModel

WORDS = ("the of and to in a is was for on as with by he at from his an were are which "
         "this be or has had first one their its new after who they have her she two been "
         "other when there all during into school time may years more most only over city "
         "some world would where later up such used many can state about national out known "
         "university united then made").split()


@pytest.fixture(scope="session")
def calib_file(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("calib") / "text.txt"
    lines = [" ".join(rng.choice(WORDS) for _ in range(60)) + " ." for _ in range(60)]
    path.write_text("\n".join(lines))
    return path


def _save(model, tokenizer, path):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_tied_llama(tmp_path_factory, embedded_tokenizer):
    """2-block Llama, hidden 64, lm_head tied to the embeddings (the DESIGN.md trap)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2,
                      vocab_size=len(embedded_tokenizer), max_position_embeddings=256,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    return _save(LlamaForCausalLM(cfg).eval(), embedded_tokenizer,
                 tmp_path_factory.mktemp("models") / "tiny-llama-tied")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory, embedded_tokenizer):
    """2-block GPT-2: Conv1D layers whose weights are stored (in, out)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=len(embedded_tokenizer),
                     n_positions=128)
    torch.manual_seed(0)
    return _save(GPT2LMHeadModel(cfg).eval(), embedded_tokenizer,
                 tmp_path_factory.mktemp("models") / "tiny-gpt2")


def spec_for(calib_file, **kw) -> CompressionSpec:
    return CompressionSpec(calibration=Calibration(source=str(calib_file), nsamples=4,
                                                   seqlen=32), **kw)


def compress(model_dir, spec, tmp_path, **kw):
    out = tmp_path / spec.label().replace(":", "-")
    info = compress_model(str(model_dir), spec, out, progress=False, **kw)
    return out, info


def block_weights(model) -> dict[str, torch.Tensor]:
    name, blocks = find_blocks(model)
    return {n: get_weight(m) for n, m in find_linears(blocks, name).items()}


# --- block discovery


def _tiny(arch: str):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, OPTConfig, Qwen2Config

    small = dict(num_hidden_layers=2, num_attention_heads=4, vocab_size=128)
    cfg = {
        "llama": LlamaConfig(hidden_size=64, intermediate_size=128, num_key_value_heads=2,
                             **small),
        "qwen2": Qwen2Config(hidden_size=64, intermediate_size=128, num_key_value_heads=2,
                             **small),
        "opt": OPTConfig(hidden_size=64, ffn_dim=128, word_embed_proj_dim=64,
                         max_position_embeddings=64, **small),
        "gpt_neox": GPTNeoXConfig(hidden_size=64, intermediate_size=128, **small),
        "gpt2": GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=64),
    }[arch]
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.parametrize(("arch", "where", "n_linear"), [
    ("llama", "model.layers", 7), ("qwen2", "model.layers", 7),
    ("opt", "model.decoder.layers", 6), ("gpt_neox", "gpt_neox.layers", 4),
    ("gpt2", "transformer.h", 4),
])
def test_find_blocks_generic(arch, where, n_linear):
    name, blocks = find_blocks(_tiny(arch))
    assert name == where and len(blocks) == 2
    assert len(find_linears(blocks[0])) == n_linear


@pytest.mark.parametrize("forward_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("arch", ["opt", "gpt_neox", "gpt2", "qwen2"])
def test_sequential_pass_runs_on_other_architectures(arch, forward_dtype):
    model = _tiny(arch)
    tokens = torch.randint(0, 128, (3, 16))
    reports, _ = compress_sequential(model, CompressionSpec(method="wanda", structure="2:4"),
                                     tokens, batch_size=2, progress=False,
                                     forward_dtype=forward_dtype)
    assert len(reports) == 2 * len(find_linears(find_blocks(model)[1][0]))
    assert all(r["sparsity"] == 0.5 for r in reports.values())
    # the forwards' precision never leaks into the weights that are kept
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_model_without_blocks_is_one_clear_error():
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 10))
    with pytest.raises(CompsafeError,
                       match="cannot find the transformer blocks of Sequential: .*model.layers"):
        find_blocks(model)


def test_model_without_blocks_cli_exit_2(monkeypatch, tmp_path, capsys):
    class NoBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.head = nn.Linear(8, 10)

        def get_input_embeddings(self):
            return self.embed

    fake = HFModel(NoBlocks(), tokenizer=None, name="noblocks", source="noblocks")
    monkeypatch.setattr(HFModel, "load", classmethod(lambda cls, *a, **k: fake))
    rc = main(["-q", "compress", "--model", "x", "--method", "magnitude", "--sparsity", "0.5",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot find the transformer blocks of NoBlocks" in err[0]


def test_skip_matches_whole_name_components():
    assert skipped("lm_head", ("lm_head",)) and skipped("model.lm_head", ("lm_head",))
    assert not skipped("lm_head_2", ("lm_head",)) and not skipped("x.my_lm_head", ("lm_head",))
    assert skipped("model.layers.3.mlp.down_proj", ("mlp.down_proj",))
    assert not skipped("model.layers.3.mlp.down_proj", ("down",))
    assert skipped("model.layers.3.mlp.down_proj", ("lm_head.", "down_proj"))


# --- pruning: exact sparsity in the saved weights, embeddings untouched


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt", "gblm"])
@pytest.mark.parametrize("structure", ["unstructured", "2:4"])
def test_pruning_exact_in_saved_weights(method, structure, tiny_tied_llama, calib_file,
                                        tmp_path):
    kw = {"sparsity": 0.5} if structure == "unstructured" else {"structure": structure}
    spec = spec_for(calib_file, method=method, **kw)
    out, info = compress(tiny_tied_llama, spec, tmp_path)
    dense = AutoModelForCausalLM.from_pretrained(tiny_tied_llama)
    saved = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no compsafe
    weights = block_weights(saved)
    assert len(weights) == 14 and set(info["per_layer"]) == set(weights)
    for name, w in weights.items():
        out_f, in_f = w.shape
        if structure == "unstructured":
            assert int((w == 0).sum()) == out_f * in_f // 2, name
        else:
            zeros = (w.reshape(out_f, in_f // 4, 4) == 0).sum(-1)
            assert bool((zeros == 2).all()), name
        assert info["per_layer"][name]["sparsity"] == 0.5
    # Everything outside the block linears is bit-identical; lm_head is still tied.
    dense_sd, saved_sd = dense.state_dict(), saved.state_dict()
    for key, value in dense_sd.items():
        if key.rsplit(".", 1)[0] not in weights:
            assert torch.equal(value, saved_sd[key]), key
    assert saved.lm_head.weight.data_ptr() == saved.get_input_embeddings().weight.data_ptr()
    assert info["summary"]["sparsity"] == 0.5


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "gblm"])
def test_gpt2_conv1d_nm_groups_run_along_inputs(method, tiny_gpt2, calib_file, tmp_path):
    out, info = compress(tiny_gpt2, spec_for(calib_file, method=method, structure="2:4"),
                         tmp_path)
    saved = AutoModelForCausalLM.from_pretrained(out)
    layers = find_linears(saved.transformer.h)
    assert len(layers) == 8
    for name, module in layers.items():
        w = module.weight.t()  # Conv1D stores (in, out)
        zeros = (w.reshape(w.shape[0], -1, 4) == 0).sum(-1)
        assert bool((zeros == 2).all()), name
    dense = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    assert torch.equal(saved.transformer.wte.weight, dense.transformer.wte.weight)


def test_sequential_wanda_equals_direct_computation(tiny_tied_llama, calib_file):
    """Block 1 is pruned with activations that went through the already-pruned block 0."""
    spec = spec_for(calib_file, method="wanda", sparsity=0.5)
    hf = HFModel.load(str(tiny_tied_llama), device="cpu", dtype="float32")
    tokens, _ = calibration_batches(hf.tokenizer, spec.calibration)
    ours = copy.deepcopy(hf.model)
    compress_sequential(ours, spec, tokens, batch_size=len(tokens), progress=False)

    direct = copy.deepcopy(hf.model)
    sq: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(mod, args, output):
            x = args[0].reshape(-1, args[0].shape[-1]).float()
            sq[name] = (x * x).sum(0)
        return record

    for block in direct.model.layers:  # the whole model runs; only this block is hooked
        layers = find_linears(block)
        handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
        with torch.no_grad():
            direct(input_ids=tokens, use_cache=False)
        for h in handles:
            h.remove()
        with torch.no_grad():
            for n, m in layers.items():
                scores = wanda_scores(m.weight, sq[n], tokens.numel())
                m.weight[prune_mask(scores, 0.5, None)] = 0
    ours_w, direct_w = block_weights(ours), block_weights(direct)
    assert set(ours_w) == set(direct_w)
    for name in ours_w:
        assert torch.equal(ours_w[name] == 0, direct_w[name] == 0), name
    # ...and it differs from pruning block 1 with dense-model activations (not vacuous).
    one_shot = copy.deepcopy(hf.model)
    sq = {}
    layers = find_linears(one_shot.model.layers[1])
    handles = [m.register_forward_hook(
        lambda mod, a, o, n=n: sq.__setitem__(n, (a[0].reshape(-1, 64) ** 2).sum(0)))
        for n, m in layers.items()]
    with torch.no_grad():
        one_shot(input_ids=tokens, use_cache=False)
    for h in handles:
        h.remove()
    q = layers["self_attn.q_proj"].weight
    dense_mask = prune_mask(wanda_scores(q, sq["self_attn.q_proj"], tokens.numel()), 0.5, None)
    assert not torch.equal(dense_mask, ours_w["model.layers.1.self_attn.q_proj"] == 0)


# --- quantization: grids in the saved weights


def _max_levels(w: torch.Tensor, group: int) -> int:
    """Most distinct values in any group (values snapped at 1e-5 of the group's max)."""
    g = w.reshape(w.shape[0], -1, group)
    step = g.abs().amax(-1, keepdim=True).clamp(min=1e-30) * 1e-5
    snapped = torch.round(g / step)
    return max(len(torch.unique(row)) for row in snapped.reshape(-1, group))


@pytest.mark.parametrize(("method", "bits"), [("rtn", 4), ("gptq", 4), ("gptq", 3),
                                              ("awq", 4)])
def test_quantized_weights_lie_on_grids(method, bits, tiny_tied_llama, calib_file, tmp_path):
    from safetensors.torch import load_file

    spec = spec_for(calib_file, method=method, bits=bits, group_size=16)
    out, info = compress(tiny_tied_llama, spec, tmp_path)
    saved = AutoModelForCausalLM.from_pretrained(out)
    scales = load_file(out / "awq_scales.safetensors") if method == "awq" else {}
    for name, w in block_weights(saved).items():
        if method == "awq":  # stored Q(W s)/s: W s is on the grid
            w = w * scales[name].view(1, -1)
        assert _max_levels(w, 16) <= 2**bits, name
        assert 0 < info["per_layer"][name]["rel_error"] < 0.5
    assert info["storage"] == FAKE_QUANT
    dense = AutoModelForCausalLM.from_pretrained(tiny_tied_llama)
    assert torch.equal(saved.get_input_embeddings().weight, dense.get_input_embeddings().weight)


def test_group_size_that_does_not_divide_is_one_line(tiny_tied_llama, tmp_path, capsys):
    rc = main(["-q", "compress", "--model", str(tiny_tied_llama), "--method", "rtn", "--bits",
               "4", "--group-size", "48", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "group_size 48 does not divide in_features 64" in err[0] and "q_proj" in err[0]
    assert not (tmp_path / "out").exists()


# --- compression.json


def test_compression_json_fields(tiny_tied_llama, calib_file, tmp_path):
    spec = spec_for(calib_file, method="gptq", bits=4, group_size=32, act_order=True)
    out, info = compress(tiny_tied_llama, spec, tmp_path)
    on_disk = json.loads((out / "compression.json").read_text())
    assert on_disk == json.loads(json.dumps(info))
    assert CompressionSpec.from_dict(on_disk["spec"]) == spec
    assert on_disk["key"] == spec.key() and on_disk["label"] == "gptq-w4g32"
    assert len(on_disk["calibration"]["sha256"]) == 64
    assert on_disk["calibration"]["overlaps"] == [] and "note" not in on_disk["calibration"]
    assert on_disk["wall_time_s"] > 0 and on_disk["peak_memory"]["bytes"] > 0
    assert {"torch", "transformers", "compsafe"} <= set(on_disk["versions"])
    assert len(on_disk["source_model"]["fingerprint"]) == 20
    layer = on_disk["per_layer"]["model.layers.1.mlp.down_proj"]
    assert layer["shape"] == [64, 128] and 0 < layer["output_rel_error"] < 1
    assert on_disk["storage"] == FAKE_QUANT


def test_bf16_forwards_keep_fp32_statistics_and_exact_sparsity(tiny_tied_llama, calib_file,
                                                                 tmp_path):
    """bf16 forwards speed up calibration; the block's float32 weights come back bit for
    bit, X^T X is float32 (of the bf16 inputs the layer really saw), and the result is
    close to float32 forwards (the same mask on all but a few near-tie weights)."""
    from compsafe.compress.layers import cast_inputs, cast_parameters
    from compsafe.compress.stats import collect

    block = AutoModelForCausalLM.from_pretrained(tiny_tied_llama).model.layers[0]
    before = {k: v.clone() for k, v in block.state_dict().items()}
    x = torch.randn(2, 16, 64)
    mask = torch.full((2, 1, 16, 16), torch.finfo(torch.float32).min).triu(1)
    pos = (torch.ones(2, 16, 16), torch.zeros(2, 16, 16))  # rotary cos/sin
    [(h, _, kw)] = cast_inputs([(x, (), {"position_embeddings": pos, "attention_mask": mask})],
                               torch.bfloat16)
    assert h.dtype == kw["position_embeddings"][0].dtype == torch.bfloat16
    assert torch.isfinite(kw["attention_mask"]).all()  # clamped, not -inf
    lin = {"q": block.self_attn.q_proj, "k": block.self_attn.k_proj}
    with collect(lin, {"hessian", "act"}) as stats, cast_parameters(block, torch.bfloat16):
        assert block.self_attn.q_proj.weight.dtype == torch.bfloat16
        out = block(h, **kw)
        xn = block.input_layernorm(h).reshape(-1, 64).float()
    assert (out[0] if isinstance(out, tuple) else out).dtype == torch.bfloat16
    for k, v in block.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, before[k]), k
    assert stats["q"].xtx.dtype == torch.float32
    torch.testing.assert_close(stats["q"].xtx, xn.T @ xn, rtol=1e-5, atol=1e-4)
    # q and k share their input: the same statistics, in separate accumulators
    assert torch.equal(stats["k"].xtx, stats["q"].xtx) and stats["k"].xtx is not stats["q"].xtx
    torch.testing.assert_close(stats["q"].act_sq_sum, (xn * xn).sum(0))

    spec = spec_for(calib_file, method="sparsegpt", sparsity=0.5, forward_dtype="bfloat16")
    out, info = compress(tiny_tied_llama, spec, tmp_path)
    assert info["forward_dtype"] == "bfloat16"
    ref_spec = spec_for(calib_file, method="sparsegpt", sparsity=0.5, forward_dtype="float32")
    ref_out, ref_info = compress(tiny_tied_llama, ref_spec, tmp_path / "ref")
    assert ref_info["forward_dtype"] == "float32" and ref_spec.key() != spec.key()
    fast = block_weights(AutoModelForCausalLM.from_pretrained(out))
    ref = block_weights(AutoModelForCausalLM.from_pretrained(ref_out))
    for name, w in fast.items():
        assert (w == 0).float().mean().item() == pytest.approx(0.5, abs=1 / w.shape[1])
        same_mask = ((w == 0) == (ref[name] == 0)).float().mean().item()
        assert same_mask > 0.97, name


def test_layers_sharing_an_input_accumulate_their_own_statistics():
    """q/k/v-style layers fed one tensor share its per-batch X^T X and squares; over
    several batches each layer's sums still equal a direct computation (no layer adds
    another's batch into a shared accumulator)."""
    from compsafe.compress.stats import collect, shared_input_groups

    a, b, c = nn.Linear(8, 4), nn.Linear(8, 6), nn.Linear(4, 3)
    xs = [torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    with collect({"a": a, "b": b, "c": c}, {"hessian", "act", "inputs"}) as stats:
        for x in xs:
            c(a(x) + b(x)[..., :4])
    rows = torch.cat([x.reshape(-1, 8) for x in xs])
    for name in ("a", "b"):
        torch.testing.assert_close(stats[name].xtx, rows.T @ rows)
        torch.testing.assert_close(stats[name].act_sq_sum, (rows * rows).sum(0))
        assert stats[name].n_tokens == 30 and stats[name].n_samples == 6
        torch.testing.assert_close(stats[name].stored_inputs(), rows)
    assert stats["c"].xtx.shape == (4, 4)
    assert shared_input_groups(stats) == [["a", "b"], ["c"]]


def test_saved_in_the_source_dtype_with_exact_sparsity(tiny_tied_llama, calib_file, tmp_path):
    """A bf16 checkpoint is saved in bf16 (not doubled to fp32), pruned exactly."""
    from safetensors import safe_open

    src = tmp_path / "tiny-bf16"
    AutoModelForCausalLM.from_pretrained(tiny_tied_llama, dtype=torch.bfloat16).save_pretrained(
        src)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (src / f).write_bytes((tiny_tied_llama / f).read_bytes())
    out, info = compress(src, spec_for(calib_file, method="wanda", sparsity=0.5), tmp_path)
    assert info["dtype"] == "bfloat16"
    with safe_open(out / "model.safetensors", "pt") as f:
        w = f.get_tensor("model.layers.1.mlp.down_proj.weight")
    assert w.dtype == torch.bfloat16
    assert ((w == 0).sum(1) == w.shape[1] // 2).all()  # per-row groups, exactly half


def test_cast_for_saving_never_turns_a_kept_weight_into_a_zero():
    from compsafe.compress.run import cast_for_saving

    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 1e-10, 0.5, 0.0], [0.0, -1e-12, 0.0, 2.0]]))
    model = nn.Sequential(layer)
    cast_for_saving(model, {"0": layer}, torch.float16, pruned=True)
    w = layer.weight
    assert w.dtype == torch.float16 and (w == 0).sum() == 4  # only the pruned zeros
    assert w[0, 1] > 0 and w[1, 1] < 0


def test_auto_forward_dtype_follows_the_hardware():
    from compsafe.compress.run import resolve_forward_dtype
    from compsafe.models.device import fast_bf16

    cpu = torch.device("cpu")
    assert resolve_forward_dtype("float16", cpu) == "float16"
    assert resolve_forward_dtype("auto", cpu) == ("bfloat16" if fast_bf16(cpu) else "float32")
    with pytest.raises(CompsafeError, match="forward_dtype: must be one of auto"):
        CompressionSpec(method="wanda", sparsity=0.5, forward_dtype="int8")


def test_existing_output_refused_before_load(tiny_tied_llama, calib_file, tmp_path,
                                              monkeypatch):
    (tmp_path / "taken").mkdir()
    monkeypatch.setattr(HFModel, "load", classmethod(lambda *a, **k: pytest.fail("loaded")))
    with pytest.raises(CompsafeError, match="already exists"):
        compress_model(str(tiny_tied_llama), spec_for(calib_file, method="magnitude",
                                                      sparsity=0.5), tmp_path / "taken")


# --- calibration


def test_calibration_deterministic_and_hashed(embedded_tokenizer, calib_file):
    cal = Calibration(source=str(calib_file), nsamples=5, seqlen=24, seed=3)
    a, ha = calibration_batches(embedded_tokenizer, cal)
    b, hb = calibration_batches(embedded_tokenizer, cal)
    c, hc = calibration_batches(embedded_tokenizer, Calibration(str(calib_file), 5, 24, 4))
    assert a.shape == (5, 24) and a.dtype == torch.int64
    assert torch.equal(a, b) and ha == hb and ha != hc and not torch.equal(a, c)


def test_calibration_missing_files_name_the_path(embedded_tokenizer, tmp_path):
    with pytest.raises(DataError, match=r"wikitext2/wikitext-train\.txt.*wikitext2-test"):
        calibration_batches(embedded_tokenizer, Calibration("wikitext2"), tmp_path)
    with pytest.raises(DataError, match=r"wikitext2/wikitext-test\.txt"):
        calibration_batches(embedded_tokenizer, Calibration("wikitext2-test"), tmp_path)
    with pytest.raises(DataError, match="c4-train"):
        calibration_batches(embedded_tokenizer, Calibration("c4"), tmp_path)
    with pytest.raises(DataError, match="nope.txt"):
        calibration_batches(embedded_tokenizer, Calibration(str(tmp_path / "nope.txt")))


def test_calibration_defaults_to_the_train_split_and_flags_the_test_split(tmp_path, calib_file):
    """WikiText-2's train split by default; its test split (by name, or a copy of the file)
    overlaps the WikiText-2 evaluation, and a disjoint text does not."""
    (tmp_path / "wikitext2").mkdir()
    train = tmp_path / "wikitext2/wikitext-train.txt"
    test = tmp_path / "wikitext2/wikitext-test.txt"
    train.write_text("train text")
    test.write_text(calib_file.read_text())
    assert Calibration().source == "wikitext2"
    assert calibration_file(Calibration(), tmp_path) == train
    assert overlapping_tasks(Calibration(), train, tmp_path) == ()
    assert calibration_file(Calibration("wikitext2-test"), tmp_path) == test
    assert overlapping_tasks(Calibration("wikitext2-test"), test, tmp_path) == ("wikitext2",)
    copy = tmp_path / "copy.txt"
    copy.write_text(test.read_text())
    assert overlapping_tasks(Calibration(str(copy)), copy, tmp_path) == ("wikitext2",)
    assert overlapping_tasks(Calibration(str(calib_file)), calib_file, tmp_path / "x") == ()
    copy.write_text(test.read_text() + ".")
    assert overlapping_tasks(Calibration(str(copy)), copy, tmp_path) == ()


def test_c4_shard_documents(embedded_tokenizer, calib_file, tmp_path):
    (tmp_path / "c4").mkdir()
    docs = [{"text": "short."}] + [{"text": line} for line in calib_file.read_text().split("\n")]
    with gzip.open(tmp_path / "c4" / "c4-train.00000-of-01024.json.gz", "wt") as f:
        f.write("\n".join(json.dumps(d) for d in docs))
    tokens, _ = calibration_batches(embedded_tokenizer, Calibration("c4", 3, 20), tmp_path)
    assert tokens.shape == (3, 20)


# --- CLI


@pytest.mark.parametrize(("args", "needle"), [
    (["--method", "wanda", "--sparsity", "1.5"], "--sparsity"),
    (["--method", "wanda", "--sparsity", "0"], "--sparsity"),
    (["--method", "sparsegpt", "--structure", "4:4"], "4:4"),
    (["--method", "wanda", "--structure", "2-4"], "--structure"),
    (["--method", "gptq", "--bits", "9"], "--bits"),
    (["--method", "rtn", "--bits", "1"], "--bits"),
    (["--method", "prune-it", "--sparsity", "0.5"], "--method: unknown compression method"),
    (["--method", "wanda", "--sparsity", "0.5", "--structure", "2:4"], "not both"),
    (["--method", "wanda"], "--sparsity: wanda needs a sparsity"),
    (["--method", "wanda", "--sparsity", "0.5", "--nsamples", "0"], "--nsamples: must be a "),
    (["--method", "wanda", "--sparsity", "0.5", "--symmetric"], "--symmetric: does not apply"),
    (["--method", "wanda", "--sparsity", "0.5", "--batch-size", "0"], "--batch-size"),
    (["--method", "llm_int8", "--bits", "8"], "--bits: does not apply to method 'llm_int8'"),
    (["--method", "nf4", "--group-size", "64"], "--group-size: does not apply"),
])
def test_cli_bad_values_one_line_exit_2(args, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(HFModel, "load", classmethod(lambda *a, **k: pytest.fail("loaded")))
    rc = main(["compress", "--model", "default", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("compsafe: error:")
    assert needle in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_bitsandbytes_missing_is_one_line(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    rc = main(["compress", "--model", "default", "--method", "llm_int8",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pip install bitsandbytes" in err[0]


@pytest.mark.parametrize("method", ["llm_int8", "nf4"])
def test_bitsandbytes_compress_then_eval_pairs_with_dense(method, tiny_tied_llama, tmp_path,
                                                          data_cache, monkeypatch):
    """LLM.int8 / NF4 through bitsandbytes (CPU since 0.46): the saved directory loads and
    evaluates, its weights really are int8 / packed 4-bit, and its runs name the dense base,
    whose fingerprint is read from the checkpoint without loading the dense model."""
    pytest.importorskip("bitsandbytes")
    from compsafe.store import Store

    out = tmp_path / method
    with monkeypatch.context() as m:
        m.setattr(HFModel, "load", classmethod(lambda *a, **k: pytest.fail("dense loaded")))
        assert main(["-q", "compress", "--model", str(tiny_tied_llama), "--method", method,
                     "--out", str(out)]) == 0
    info = json.loads((out / "compression.json").read_text())
    assert info["label"] == method and "bitsandbytes" in info["storage"]
    model = HFModel.load(str(out), device="cpu")
    down = model.model.model.layers[0].mlp.down_proj
    assert type(down).__module__.startswith("bitsandbytes")
    assert down.weight.dtype == (torch.int8 if method == "llm_int8" else torch.uint8)
    runs = tmp_path / "runs"
    for m in (str(tiny_tied_llama), str(out)):
        assert main(["-q", "eval", "--model", m, "--tasks", "bbq", "--limit", "1", "--n-boot",
                     "0", "--out", str(runs), "--data-dir", str(data_cache)]) == 0
    with Store(runs / "compsafe.sqlite") as st:
        dense, quant = sorted(st.runs(), key=lambda r: r["method"] != "dense")
    assert quant["method"] == method and quant["bits"] is None
    assert quant["base_fingerprint"] == dense["model_fingerprint"] == dense["base_fingerprint"]


def test_prequantized_checkpoint_lineage_from_its_config(tiny_tied_llama, tmp_path, data_cache):
    """A checkpoint quantized elsewhere (no compression.json) is described by its
    quantization_config, and --base-model names the dense run it pairs with."""
    pytest.importorskip("bitsandbytes")
    from transformers import AutoTokenizer, BitsAndBytesConfig

    from compsafe.report.load import load_runs
    from compsafe.report.paired import pair_runs
    from compsafe.store import Store

    out = tmp_path / "hub-style-nf4"
    q = AutoModelForCausalLM.from_pretrained(
        tiny_tied_llama, device_map={"": "cpu"},
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"))
    q.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_tied_llama).save_pretrained(out)
    runs = tmp_path / "runs"
    assert main(["-q", "eval", "--model", str(out), "--base-model", "tiny-llama-tied",
                 "--tasks", "bbq", "--limit", "1", "--n-boot", "0", "--out", str(runs),
                 "--data-dir", str(data_cache)]) == 0
    with Store(runs / "compsafe.sqlite") as st:
        [run] = st.runs()
    assert (run["method"], run["base_model"], run["base_fingerprint"]) == (
        "nf4", "tiny-llama-tied", None)
    # no fingerprint to match on: the report pairs it with the dense run of that name
    assert main(["-q", "eval", "--model", str(tiny_tied_llama), "--tasks", "bbq", "--limit",
                 "1", "--n-boot", "0", "--out", str(runs), "--data-dir", str(data_cache)]) == 0
    [(base, other)] = pair_runs(load_runs(runs))
    assert (base["model"], other["method"]) == ("tiny-llama-tied", "nf4")


def test_quantization_configs_map_to_specs():
    from compsafe.compress.lineage import spec_from_quantization_config as spec

    gptq = spec({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": True,
                 "sym": True})
    assert (gptq.label(), gptq.act_order, gptq.symmetric) == ("gptq-w4g128", True, True)
    awq = spec({"quant_method": "awq", "bits": 4, "group_size": -1, "zero_point": True})
    assert (awq.label(), awq.symmetric) == ("awq-w4", False)
    assert spec({"quant_method": "bitsandbytes", "load_in_8bit": True}).method == "llm_int8"
    assert spec({"quant_method": "hqq"}) is None


def test_prequantized_checkpoint_without_backend_is_one_line(tiny_tied_llama, tmp_path,
                                                              capsys, data_cache):
    """GPTQ checkpoints load through transformers' integration, which needs optimum and
    gptqmodel; without them the error is one line naming the package."""
    import shutil

    if importlib.util.find_spec("optimum") is not None:
        pytest.skip("optimum is installed: the GPTQ backend may load this config")
    out = tmp_path / "gptq-config"
    shutil.copytree(tiny_tied_llama, out)
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 32}
    (out / "config.json").write_text(json.dumps(config))
    rc = main(["-q", "eval", "--model", str(out), "--tasks", "bbq", "--limit", "1",
               "--out", str(tmp_path / "runs"), "--data-dir", str(data_cache)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "optimum" in err[0], err


def test_cli_compress_then_eval(tiny_tied_llama, calib_file, tmp_path, capsys, data_cache):
    out = tmp_path / "wanda-50"
    rc = main(["-q", "compress", "--model", str(tiny_tied_llama), "--method", "wanda",
               "--sparsity", "0.5", "--calibration", str(calib_file), "--nsamples", "4",
               "--seqlen", "32", "--out", str(out)])
    assert rc == 0 and "wanda-50: wrote" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and (out / "compression.json").is_file()
    rc = main(["-q", "eval", "--model", str(out), "--tasks", "bbq", "--limit", "1",
               "--n-boot", "0", "--out", str(tmp_path / "runs"), "--data-dir", str(data_cache)])
    assert rc == 0
    # The store records the lineage as structured fields, for pairing with the dense run.
    from compsafe.store import Store

    with Store(tmp_path / "runs" / "compsafe.sqlite") as st:
        [run] = st.runs()
    source = json.loads((out / "compression.json").read_text())["source_model"]
    assert run["model"] == "wanda-50" and run["base_model"] == tiny_tied_llama.name
    assert run["base_fingerprint"] == source["fingerprint"] != run["model_fingerprint"]
    assert (run["method"], run["sparsity"], run["structure"], run["bits"]) == (
        "wanda", 0.5, "unstructured", None)
    assert run["spec_label"] == "wanda-50" and run["spec"]["calibration"]["nsamples"] == 4


# --- the embedded model (SmolLM2-135M-Instruct: tied lm_head, width 576, 30 blocks)


@pytest.fixture(scope="module")
def embedded_dense_weights():
    from compsafe.models.embedded import embedded_model_dir

    dense = AutoModelForCausalLM.from_pretrained(embedded_model_dir())
    return dense, block_weights(dense)


@pytest.mark.slow
@pytest.mark.parametrize("structure", ["unstructured", "2:4"])
@pytest.mark.parametrize("method", [
    "magnitude", "wanda",
    # SparseGPT's OBS updates and GBLM's gradients take minutes on 2 cores: measured
    # passing with COMPSAFE_FULL_TESTS=1; CI checks them on the tiny models above.
    pytest.param("sparsegpt", marks=pytest.mark.full),
    pytest.param("gblm", marks=pytest.mark.full)])
def test_embedded_model_pruning_exact_in_saved_weights(method, structure, embedded_tokenizer,
                                                       calib_file, tmp_path,
                                                       embedded_dense_weights):
    """Zeros counted in the saved weights of the embedded model, every pruning method:
    exactly half of each layer (unstructured 50%), or exactly 2 zeros in every group of 4
    (2:4) except where the GGUF-dequantized dense weight already had 3 or 4 zeros (every
    method prunes existing zeros first: their score is 0)."""
    kw = {"sparsity": 0.5} if structure == "unstructured" else {"structure": structure}
    out, info = compress("default", spec_for(calib_file, method=method, **kw), tmp_path)
    saved = AutoModelForCausalLM.from_pretrained(out)
    dense, dense_weights = embedded_dense_weights
    weights = block_weights(saved)
    assert len(weights) == 30 * 7 == info["summary"]["layers"]
    for name, w in weights.items():
        if structure == "unstructured":
            assert (w == 0).sum().item() == w.numel() // 2, name
            continue
        zeros = (w.reshape(w.shape[0], -1, 4) == 0).sum(-1)
        before = (dense_weights[name].reshape(w.shape[0], -1, 4) == 0).sum(-1)
        if method != "sparsegpt":
            assert torch.equal(zeros, before.clamp(min=2)), name
        else:  # OBS updates may revive an old zero before its group is pruned
            assert (zeros >= 2).all() and (zeros <= before.clamp(min=2)).all(), name
            assert (zeros[before <= 2] == 2).all(), name
    assert torch.equal(saved.get_input_embeddings().weight, dense.get_input_embeddings().weight)
    assert saved.lm_head.weight.data_ptr() == saved.get_input_embeddings().weight.data_ptr()

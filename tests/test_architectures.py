"""The architectures users bring, through compsafe's whole pipeline.

For each family of ``arch_fixtures.FAMILIES`` (Llama, Mistral, Qwen2, Qwen3, Gemma 2,
Gemma 3, Phi-3, GPT-NeoX, OPT), a tiny random model saved with a tiny tokenizer goes
through compsafe's own entry points: ``HFModel.load``; log-likelihoods through the
prefix-shared scorer (whose probe must choose the tree path) equal to plain per-request
forward passes; greedy generation, batched and left-padded, equal to ``model.generate``;
every CPU compression method (magnitude, Wanda, SparseGPT, GBLM at 50%; SparseGPT 2:4;
RTN, GPTQ, AWQ at 4 bits, group 32) with the achieved sparsity or quantization grid
checked in the weights and everything else left bit-identical; then saved, reloaded
through ``HFModel.load``, and scored equal to the compressed model in memory. Every
method runs on every family (72 compressions; each is a fraction of a second on these
sizes). LLM.int8 and NF4 need bitsandbytes on a GPU and are not run here.

An architecture compsafe cannot handle (an encoder-decoder, a model without a causal LM
class, blocks without linear layers) fails with one line naming what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from arch_fixtures import FAMILIES, Family, build, tiny_tokenizer  # noqa: F401  (fixture)
from test_compress import calib_file, spec_for  # noqa: F401  (fixture)
from torch import nn

from compsafe.cli import main
from compsafe.compress.layers import find_blocks
from compsafe.compress.run import compress_in_memory
from compsafe.compress.save import AWQ_SCALES_FILE
from compsafe.compress.stats import find_linears, get_weight
from compsafe.errors import CompsafeError, ModelLoadError
from compsafe.models.generate import DecodingConfig, GenerationRequest
from compsafe.models.hf import HFModel
from compsafe.models.loglik import prefix_sharing_probe
from compsafe.models.tokenize import encode_pair
from compsafe.types import LoglikRequest

# Contexts longer than every sliding window, three continuations each (so the tree path
# runs), continuations of one to several tokens.
REQUESTS = [LoglikRequest(ctx, cont) for ctx in (
    "the first school in the city was known for its", "she said that", "after the war there were")
    for cont in (" new university", " one", " national state of the world")]
PROMPTS = ["the university of", "in the first years of the new city there was"]
METHODS = {
    "magnitude-50": dict(method="magnitude", sparsity=0.5),
    "wanda-50": dict(method="wanda", sparsity=0.5),
    "sparsegpt-50": dict(method="sparsegpt", sparsity=0.5),
    "gblm-50": dict(method="gblm", sparsity=0.5),
    "sparsegpt-2:4": dict(method="sparsegpt", structure="2:4"),
    "rtn-4-g32": dict(method="rtn", bits=4, group_size=32),
    "gptq-4-g32": dict(method="gptq", bits=4, group_size=32),
    "awq-4-g32": dict(method="awq", bits=4, group_size=32),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on matrices this small, a second thread's synchronisation costs
    more than it saves, several times over on a busy 2-core machine (``HFModel.load``
    reads ``OMP_NUM_THREADS``)."""
    patch, before = pytest.MonkeyPatch(), torch.get_num_threads()
    patch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    patch.undo()
    torch.set_num_threads(before)


@dataclass
class Saved:
    name: str
    family: Family
    path: Path
    hf: HFModel


@pytest.fixture(scope="module", params=list(FAMILIES))
def arch(request, tmp_path_factory, tiny_tokenizer) -> Saved:  # noqa: F811
    """The family's tiny model saved like a hub checkpoint, loaded through compsafe."""
    path = tmp_path_factory.mktemp("arch") / request.param
    build(request.param).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    hf = HFModel.load(str(path), device="cpu", dtype="float32")
    return Saved(request.param, FAMILIES[request.param], path, hf)


def plain_loglik(hf: HFModel, req: LoglikRequest) -> tuple[float, bool]:
    """The reference: context + continuation in one ordinary forward pass of the model."""
    ctx, cont = encode_pair(hf.tokenizer, req.context, req.continuation)
    ids = torch.tensor([ctx + cont[:-1]])
    with torch.no_grad():
        logp = F.log_softmax(hf.model(input_ids=ids).logits[0, len(ctx) - 1:].float(), -1)
    target = torch.tensor(cont)
    return (float(logp.gather(-1, target[:, None]).sum()),
            bool((logp.argmax(-1) == target).all()))


def test_loads_and_finds_blocks_and_linears(arch):
    assert type(arch.hf.model).__name__ == arch.family.cls
    name, blocks = find_blocks(arch.hf.model)
    assert name == arch.family.blocks and len(blocks) == 2
    assert sorted(find_linears(blocks[0])) == sorted(arch.family.linears)


def test_prefix_shared_scores_equal_plain_forwards(arch):
    probe = prefix_sharing_probe(arch.hf.model, arch.hf.pad_id)
    assert probe.shared, probe.reason  # every family here takes the tree path
    assert probe.reason.startswith(arch.family.cls)
    if arch.family.window is not None:
        assert f"sliding window {arch.family.window}" in probe.reason
        assert "not probed past" not in probe.reason
    got = arch.hf.loglikelihood(REQUESTS)
    want = [plain_loglik(arch.hf, r) for r in REQUESTS]
    for req, resp, (logprob, greedy) in zip(REQUESTS, got, want, strict=True):
        assert resp.logprob == pytest.approx(logprob, abs=1e-4), req
        assert resp.is_greedy == greedy
    # The wide random weights make scores differ by far more than the tolerance.
    assert max(w for w, _ in want) - min(w for w, _ in want) > 1.0


def test_greedy_generation_equals_transformers(arch):
    """Both prompts in one left-padded batch, each equal to transformers' greedy search
    on its own (stop token held back, so both run the full length past the window)."""
    n = 10
    cfg = DecodingConfig(do_sample=False, max_new_tokens=n, min_new_tokens=n)
    ours = arch.hf.generate([GenerationRequest(p, f"p{i}") for i, p in enumerate(PROMPTS)],
                            cfg, seed=0)
    tok = arch.hf.tokenizer
    for prompt, text in zip(PROMPTS, ours, strict=True):
        ids = torch.tensor([tok.encode(prompt)])
        ref = arch.hf.model.generate(ids, attention_mask=torch.ones_like(ids),
                                     do_sample=False, max_new_tokens=n, min_new_tokens=n,
                                     pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.eos_token_id)
        assert text == tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)


def _grid_levels(w: torch.Tensor, group: int) -> int:
    """The most distinct values (up to 1e-4 of the group's range) in any group of
    ``group`` consecutive inputs of any row."""
    g = w.reshape(w.shape[0], -1, group).sort(-1).values
    tol = 1e-4 * g.abs().amax(-1, keepdim=True)
    return int(((g.diff(dim=-1) > tol).sum(-1) + 1).max())


def _check_compressed(label: str, targets: dict[str, nn.Module], scales: dict) -> None:
    for name, module in targets.items():
        w = get_weight(module)
        if label.endswith("-50"):
            assert int((w == 0).sum()) == w.numel() // 2, name
        elif label.endswith("2:4"):
            assert bool(((w.reshape(w.shape[0], -1, 4) == 0).sum(-1) == 2).all()), name
        else:  # 4 bits: at most 16 levels per group (AWQ's on the scaled weight W diag(s))
            if label.startswith("awq"):
                w = w * scales[name].view(1, -1)
            assert 2 <= _grid_levels(w, 32) <= 16, name


@pytest.mark.parametrize("label", list(METHODS))
def test_compress_save_reload(arch, label, calib_file, tmp_path):  # noqa: F811
    spec = spec_for(calib_file, **METHODS[label])
    done = compress_in_memory(str(arch.path), spec, device="cpu", progress=False)
    blocks_name, blocks = find_blocks(done.hf.model)
    targets = find_linears(blocks, blocks_name)
    assert len(targets) == 2 * len(arch.family.linears)
    assert set(done.info["per_layer"]) == set(targets)
    _check_compressed(label, targets, done.extras)
    # Embeddings, norms, biases, lm_head (tied or not): bit-identical to the dense model.
    dense = arch.hf.model.state_dict()
    weights = {f"{n}.weight" for n in targets}
    kept = [k for k in dense if k not in weights]
    state = done.hf.model.state_dict()
    assert all(torch.equal(state[k], dense[k]) for k in kept)
    assert not any(torch.equal(state[k], dense[k]) for k in weights)

    want = done.hf.loglikelihood(REQUESTS)
    out = done.save(tmp_path / "model")
    again = HFModel.load(str(out), device="cpu", dtype="float32")
    assert again.compression_info["label"] == spec.label()
    reloaded = again.model.state_dict()
    assert all(torch.equal(reloaded[k], v) for k, v in state.items())
    if label.startswith("awq"):
        from safetensors.torch import load_file

        saved = load_file(out / AWQ_SCALES_FILE)
        assert all(torch.equal(saved[n], done.extras[n]) for n in targets)
    got = again.loglikelihood(REQUESTS)
    assert [r.logprob for r in got] == pytest.approx([r.logprob for r in want], abs=1e-5)
    assert [r.is_greedy for r in got] == [r.is_greedy for r in want]


# --- architectures compsafe cannot handle: one line naming what is missing


def test_encoder_decoder_is_one_line_naming_it(tmp_path, capsys, tiny_tokenizer):  # noqa: F811
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=320, d_model=32, d_ff=64, d_kv=16, num_layers=1,
                      num_heads=2)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path / "t5")
    tiny_tokenizer.save_pretrained(tmp_path / "t5")
    capsys.readouterr()  # transformers' own save progress bars
    rc = main(["-q", "compress", "--model", str(tmp_path / "t5"), "--method", "magnitude",
               "--sparsity", "0.5", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert ("T5ForConditionalGeneration (model_type 't5') is an encoder-decoder model; "
            "compsafe evaluates a decoder-only causal LM") in err[0]
    assert not (tmp_path / "out").exists()


def test_bart_is_refused_not_loaded_as_its_decoder(tmp_path):
    """transformers would load BART as ``BartForCausalLM``: its decoder alone."""
    from transformers import BartConfig

    BartConfig(vocab_size=320, d_model=32).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"BartConfig \(model_type 'bart'\) is an "
                                             "encoder-decoder model"):
        HFModel.load(str(tmp_path), device="cpu")


def test_model_without_a_causal_lm_class_is_one_line(tmp_path, tiny_tokenizer):  # noqa: F811
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=64).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError) as e:
        HFModel.load(str(tmp_path), device="cpu")
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(f"cannot load model {str(tmp_path)!r}: ViTConfig (model_type "
                                   "'vit') has no causal LM class in transformers")


class _PackedLinear(nn.Module):
    """What a pre-quantized checkpoint's layers look like: integer weights in buffers."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.register_buffer("qweight", torch.zeros(linear.out_features, linear.in_features // 8,
                                                    dtype=torch.int32))

    def forward(self, x):
        return x.new_zeros(*x.shape[:-1], self.qweight.shape[0])


def test_blocks_without_linear_layers_are_one_line():
    model = build("llama")
    for block in model.model.layers:
        for parent in (block.self_attn, block.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, _PackedLinear(child))
    with pytest.raises(CompsafeError) as e:
        find_blocks(model)
    assert str(e.value) == (
        "cannot find the linear layers of LlamaForCausalLM: its blocks model.layers "
        "(2 x LlamaDecoderLayer) hold no torch.nn.Linear or Conv1D (their layers: "
        "LlamaRMSNorm, _PackedLinear); compsafe compresses dense checkpoints, not "
        "pre-quantized ones")


def test_pre_quantized_model_is_refused_for_compression(monkeypatch, tmp_path, capsys,
                                                        tiny_tokenizer):  # noqa: F811
    """A GPTQ/AWQ/bitsandbytes checkpoint loads for evaluation, but is not compressed again."""
    quantized = HFModel(build("llama"), tiny_tokenizer, "q", "q",
                        quantization_config={"quant_method": "gptq", "bits": 4})
    monkeypatch.setattr(HFModel, "load", classmethod(lambda cls, *a, **k: quantized))
    rc = main(["-q", "compress", "--model", "org/model-GPTQ", "--method", "rtn", "--bits", "4",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["compsafe: error: org/model-GPTQ is already quantized (gptq): "
                               "compsafe compresses dense checkpoints; pass the dense model "
                               "it was made from"]

"""The model adapter: prefix-shared scoring equals plain full forward passes, batch size does
not change results, tokenization follows lm-evaluation-harness, fingerprints track weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compsafe.errors import CompsafeError, ModelLoadError
from compsafe.models.hf import HFModel, resolve_model_path
from compsafe.models.loglik import group_by_context, score_token_pairs, truncate_pair


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=101,
                         max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def full_forward_logprob(model, ctx, cont, max_length):
    """The plain way: run context+continuation once, sum the continuation's log-probs."""
    seq = (list(ctx) + list(cont))[-(max_length + 1):]
    ids = torch.tensor([seq[:-1]])
    with torch.no_grad():
        logp = F.log_softmax(model(ids).logits[0].float(), dim=-1)
    targets = torch.tensor(seq[1:])
    picked = logp.gather(-1, targets[:, None])[:, 0][-len(cont):]
    greedy = bool((logp.argmax(-1)[-len(cont):] == targets[-len(cont):]).all())
    return float(picked.sum()), greedy


def random_pairs(n_contexts=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n_contexts):
        ctx = torch.randint(1, 100, (int(torch.randint(1, 30, (1,), generator=g)),),
                            generator=g).tolist()
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            cont = torch.randint(1, 100, (int(torch.randint(1, 6, (1,), generator=g)),),
                                 generator=g).tolist()
            pairs.append((ctx, cont))
    return pairs


def test_prefix_shared_scores_equal_full_forward(tiny_llama):
    pairs = random_pairs()
    got = score_token_pairs(tiny_llama, pairs, pad_id=0, max_length=64, batch_size=4)
    for (ctx, cont), resp in zip(pairs, got, strict=True):
        want, greedy = full_forward_logprob(tiny_llama, ctx, cont, 64)
        assert resp.logprob == pytest.approx(want, abs=1e-4)
        assert resp.n_tokens == len(cont)
        assert resp.is_greedy == greedy


def test_batch_size_does_not_change_scores(tiny_llama):
    pairs = random_pairs(n_contexts=12, seed=2)
    runs = [score_token_pairs(tiny_llama, pairs, 0, 64, batch_size=b) for b in (1, 3, 16)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
            assert a.is_greedy == b.is_greedy


def test_greedy_flag_is_true_for_the_argmax_continuation(tiny_llama):
    ctx = [5, 17, 42, 8]
    cont = []
    seq = list(ctx)
    with torch.no_grad():
        for _ in range(3):  # build the greedy continuation token by token
            nxt = int(tiny_llama(torch.tensor([seq])).logits[0, -1].argmax())
            cont.append(nxt)
            seq.append(nxt)
    [resp] = score_token_pairs(tiny_llama, [(ctx, cont)], 0, 64)
    assert resp.is_greedy


def test_long_context_is_left_truncated_like_lm_eval(tiny_llama):
    ctx = list(range(1, 81))  # 80 tokens > max_length 64
    cont = [7, 9, 11]
    assert len(truncate_pair(ctx, cont, 64)) + len(cont) == 65
    [resp] = score_token_pairs(tiny_llama, [(ctx, cont)], 0, 64)
    want, _ = full_forward_logprob(tiny_llama, ctx, cont, 64)
    assert resp.logprob == pytest.approx(want, abs=1e-4)


def test_requests_sharing_a_context_form_one_group_longest_first():
    pairs = [([1, 2], [3]), ([1, 2, 3, 4], [5]), ([1, 2], [4, 4]), ([9], [1])]
    groups = group_by_context(pairs, max_length=64)
    assert [g.context for g in groups] == [(1, 2, 3, 4), (1, 2), (9,)]
    assert [i for i, _ in groups[1].members] == [0, 2]


def test_many_continuations_of_one_context_are_split_into_bounded_rows(tiny_llama):
    """Hundreds of sentences behind one BOS token (CrowS-Pairs) must not become one row whose
    tree mask grows with its length squared; the scores stay those of plain passes."""
    rng = np.random.default_rng(0)
    pairs = [([1, 7], rng.integers(2, 50, rng.integers(3, 9)).tolist()) for _ in range(40)]
    groups = group_by_context(pairs, max_length=64, row_tokens=32)
    assert 1 < len(groups) < 40 and all(g.row_length <= 32 for g in groups)
    assert sorted(i for g in groups for i, _ in g.members) == list(range(40))
    # behind a one-token context (BOS) sharing saves nothing: one request per row
    alone = group_by_context([([1], c) for _, c in pairs], max_length=64, row_tokens=32)
    assert len(alone) == 40
    tree = score_token_pairs(tiny_llama, pairs, 0, 64, share_prefixes=True)
    plain = score_token_pairs(tiny_llama, pairs, 0, 64, share_prefixes=False)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(tree, plain, strict=True)) < 1e-4


def test_batches_respect_the_token_budget():
    from compsafe.models.loglik import token_batches

    pairs = [([1] * 40, [2, 3])] + [([k, k + 1], [5, 6, 7]) for k in range(10, 40, 2)]
    groups = group_by_context(pairs, max_length=64)
    batches = token_batches(groups, 16, 60, lambda g: (1, g.row_length))
    assert [len(b) for b in batches] == [1, 15]  # the 41-token row alone, then 15 x 4 = 60
    assert token_batches(groups, 4, 10**6, lambda g: (1, g.row_length))[0] == groups[:4]


def test_empty_continuation_is_rejected(tiny_llama):
    with pytest.raises(ValueError, match="request 0"):
        score_token_pairs(tiny_llama, [([1, 2], [])], 0, 64)


def test_missing_model_path_names_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="not found: .*nowhere"):
        resolve_model_path(str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_path(str(tmp_path))
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_model_path(str(tmp_path / "model.gguf"))


def test_fingerprint_tracks_weights(tiny_llama, embedded_tokenizer):
    import copy

    a = HFModel(tiny_llama, embedded_tokenizer, "a", "mem")
    b = HFModel(copy.deepcopy(tiny_llama), embedded_tokenizer, "b", "mem")
    assert a.fingerprint() == b.fingerprint()
    with torch.no_grad():
        b.model.model.layers[1].mlp.down_proj.weight[3, 5] = 0.0
    assert a.fingerprint() != b.fingerprint()


def test_plain_fallback_equals_prefix_shared(tiny_llama):
    from compsafe.models.loglik import supports_prefix_sharing

    assert supports_prefix_sharing(tiny_llama, 0)
    pairs = random_pairs(n_contexts=9, seed=3)
    shared = score_token_pairs(tiny_llama, pairs, 0, 64, batch_size=4, share_prefixes=True)
    plain = score_token_pairs(tiny_llama, pairs, 0, 64, batch_size=4, share_prefixes=False)
    for a, b in zip(shared, plain, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.is_greedy == b.is_greedy


@pytest.mark.parametrize("arch", ["gpt2", "qwen2", "gpt_neox", "opt"])
def test_other_architectures_score_like_a_full_forward(arch):
    """Block discovery is not needed here, but the scorer must be right for any decoder."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = {"gpt2": dict(n_embd=32, n_layer=2, n_head=2, n_positions=64),
              "qwen2": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1,
                            max_position_embeddings=64),
              "gpt_neox": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, max_position_embeddings=64),
              "opt": dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2,
                          word_embed_proj_dim=32, max_position_embeddings=64)}[arch]
    torch.manual_seed(0)
    config = AutoConfig.for_model(arch, vocab_size=101, **kwargs)
    model = AutoModelForCausalLM.from_config(config).eval()
    pairs = random_pairs(n_contexts=5, seed=4)
    got = score_token_pairs(model, pairs, 0, 64, batch_size=3)
    for (ctx, cont), resp in zip(pairs, got, strict=True):
        want, _ = full_forward_logprob(model, ctx, cont, 64)
        assert resp.logprob == pytest.approx(want, abs=1e-4)


def test_identity_is_built_once_at_load_and_frozen(tiny_model_dir):
    """What the runner, store and reports read about a model: one frozen value."""
    import dataclasses

    from compsafe.models.hf import HFModel

    model = HFModel.load(str(tiny_model_dir), device="cpu", dtype="float32")
    identity = model.identity
    assert model.identity is identity  # built once
    assert identity.fingerprint == model.fingerprint() and identity.dtype == "float32"
    assert identity.lineage.spec.method == "dense"
    assert identity.lineage.base_fingerprint == identity.fingerprint  # its own dense base
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.fingerprint = "x"
    named = HFModel.load(str(tiny_model_dir), device="cpu", dtype="float32",
                         base_model="some/base")
    with pytest.raises(CompsafeError, match="--base-model 'some/base' given, but"):
        named.identity  # noqa: B018  (a dense model has no other base)

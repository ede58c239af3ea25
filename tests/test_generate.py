"""Generation: continuations do not depend on batch size or order; greedy equals transformers'
greedy; sampling filters follow transformers' top-k/top-p semantics."""

from __future__ import annotations

import random

import pytest
import torch

from compsafe.models.generate import (
    DecodingConfig,
    GenerationRequest,
    filter_logits,
    generate,
    sample_token,
)

PROMPTS = ["The capital of France is", "Once upon a time", "A", "My friend from",
           "The Black person was known for", "Hello there, how are you doing today? I",
           "In 1905,", "Why", "The best way to cook rice is", "She said"]


@pytest.fixture(scope="module")
def tiny(embedded_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=len(embedded_tokenizer), max_position_embeddings=256)
    return LlamaForCausalLM(config).eval(), embedded_tokenizer


def requests(k=2):
    return [GenerationRequest(p, f"p{i}/{s}") for i, p in enumerate(PROMPTS) for s in range(k)]


@pytest.mark.parametrize("do_sample", [False, True])
def test_batch_size_and_order_do_not_change_continuations(tiny, do_sample):
    model, tok = tiny
    cfg = DecodingConfig(do_sample=do_sample, max_new_tokens=12)
    reqs = requests()
    one = generate(model, tok, reqs, cfg, seed=7, batch_size=1)
    sixteen = generate(model, tok, reqs, cfg, seed=7, batch_size=16)
    assert one == sixteen
    shuffled = list(range(len(reqs)))
    random.Random(0).shuffle(shuffled)
    again = generate(model, tok, [reqs[i] for i in shuffled], cfg, seed=7, batch_size=5)
    assert [again[shuffled.index(i)] for i in range(len(reqs))] == one
    assert all(isinstance(t, str) for t in one)


def test_samples_differ_by_key_and_seed_but_repeat_exactly(tiny):
    model, tok = tiny
    cfg = DecodingConfig(max_new_tokens=12)
    reqs = [GenerationRequest("Once upon a time", f"p/{s}") for s in range(4)]
    a = generate(model, tok, reqs, cfg, seed=1)
    assert len(set(a)) > 1  # different sample keys, different samples
    assert generate(model, tok, reqs, cfg, seed=1) == a
    assert generate(model, tok, reqs, cfg, seed=2) != a


def test_greedy_equals_transformers_greedy(tiny):
    model, tok = tiny
    cfg = DecodingConfig(do_sample=False, max_new_tokens=10)
    prompt = "The capital of France is"
    [ours] = generate(model, tok, [GenerationRequest(prompt, "x")], cfg, seed=0)
    ids = torch.tensor([tok.encode(prompt)])
    ref = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=10, min_new_tokens=10, pad_token_id=0,
                         eos_token_id=None)
    assert ours == tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)


def test_top_k_one_is_greedy(tiny):
    model, tok = tiny
    reqs = requests(k=1)[:4]
    greedy = generate(model, tok, reqs, DecodingConfig(do_sample=False, max_new_tokens=8), 3)
    topk1 = generate(model, tok, reqs, DecodingConfig(top_k=1, max_new_tokens=8), 3)
    assert greedy == topk1


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04]))
    p = filter_logits(logits, DecodingConfig(top_k=3, top_p=1.0))
    assert torch.allclose(p, torch.tensor([0.5, 0.3, 0.1, 0, 0]) / 0.9)
    # top-p 0.75: smallest prefix with mass >= 0.75 is {0.5, 0.3}
    p = filter_logits(logits, DecodingConfig(top_k=0, top_p=0.75))
    assert torch.allclose(p, torch.tensor([0.625, 0.375, 0, 0, 0]))
    # temperature sharpens
    p = filter_logits(logits, DecodingConfig(top_k=0, top_p=1.0, temperature=0.5))
    assert p[0] > 0.5


def test_sample_token_inverse_cdf():
    probs = torch.tensor([0.2, 0.5, 0.3])
    assert [sample_token(probs, u) for u in (0.0, 0.19, 0.21, 0.69, 0.71, 0.999)] == \
        [0, 0, 1, 1, 2, 2]


class _EagerToStop(torch.nn.Module):
    """``model`` with its EOS logit raised by 100: greedy decoding stops at once."""

    def __init__(self, model, eos: int):
        super().__init__()
        self.model, self.eos = model, eos

    def forward(self, **kw):
        res = self.model(**kw)
        res.logits[..., self.eos] += 100.0
        return res


def test_min_new_tokens_holds_back_the_stop_token(tiny):
    # The reference study decodes with min_new_tokens 30 (src/run_generation.py:133).
    model, tok = tiny
    eager = _EagerToStop(model, tok.eos_token_id)
    prompt = [GenerationRequest("The capital of France is", "x")]
    greedy = DecodingConfig(do_sample=False, max_new_tokens=10)
    assert generate(eager, tok, prompt, greedy, seed=0) == [""]
    # With a minimum of 4, the first 4 tokens are the plain model's greedy tokens (EOS
    # masked), then the eager model stops.
    plain = generate(model, tok, prompt, DecodingConfig(do_sample=False, max_new_tokens=4), 0)
    ids = tok.encode(plain[0], add_special_tokens=False)
    assert tok.eos_token_id not in ids
    held = DecodingConfig(do_sample=False, max_new_tokens=10, min_new_tokens=4)
    assert generate(eager, tok, prompt, held, seed=0) == plain
    sampled = DecodingConfig(max_new_tokens=10, min_new_tokens=3)
    [text] = generate(eager, tok, prompt, sampled, seed=0)
    assert len(tok.encode(text, add_special_tokens=False)) >= 3


def test_min_new_tokens_is_checked_and_keeps_old_run_keys():
    with pytest.raises(ValueError, match="min_new_tokens must be between 0 and"):
        DecodingConfig(max_new_tokens=10, min_new_tokens=11)
    assert "min_new_tokens" not in DecodingConfig().to_dict()
    assert DecodingConfig(min_new_tokens=5).to_dict()["min_new_tokens"] == 5

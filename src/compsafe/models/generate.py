"""Batched, reproducible text generation: continuations that do not depend on the batch.

Every sample draws its randomness from its own generator seeded by (run seed, prompt id,
sample index), one uniform number per step, and picks the token by inverse CDF over the
filtered distribution (temperature, then top-k, then top-p, as transformers orders them).
So a prompt's k samples are the same whatever else is in its batch, whatever the batch
size and order; greedy decoding is the same loop with argmax. Prompts are left-padded,
length-sorted, and decoded with a key/value cache; only continuations are returned.

Defaults: top-p 0.9, top-k 50, temperature 1.0, at most 30 new tokens, no minimum. The
reference study (Xu et al. 2024, ``src/run_generation.py:132-139``) decodes greedily with
``min_new_tokens`` 30 and ``max_new_tokens`` 100: ``DecodingConfig(do_sample=False,
min_new_tokens=30, max_new_tokens=100)`` (see docs/protocol.md). ``min_new_tokens`` masks the
stop tokens until that many tokens were generated, as transformers'
``MinNewTokensLengthLogitsProcessor`` does.

    texts = generate(model, [GenerationRequest("The Black person was known for", "reg/0/0")],
                     DecodingConfig(max_new_tokens=30), seed=1234)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from compsafe.metrics.stats import stable_seed
from compsafe.models.device import input_device
from compsafe.models.tokenize import prefix_token_id
from compsafe.types import DecodingConfig, GenerationRequest

__all__ = ["DecodingConfig", "GenerationRequest", "generate"]  # the request types live in types.py


def candidates(logits: torch.Tensor, cfg: DecodingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling candidates per row: (probabilities, token ids), both (rows, K), descending.

    Temperature, then top-k, then top-p, with transformers' semantics (top-p drops the
    tokens whose ascending cumulative probability is <= 1 - top_p, keeping at least one).
    Top-p only ever looks at the top-k survivors, so with top_k=50 it sorts 50 values, not
    the vocabulary.
    """
    logits = logits.float() / cfg.temperature
    k = cfg.top_k if 0 < cfg.top_k < logits.shape[-1] else logits.shape[-1]
    values, ids = torch.topk(logits, k, dim=-1)  # sorted descending
    probs = torch.softmax(values, dim=-1)
    if cfg.top_p < 1:
        ascending_mass = probs.flip(-1).cumsum(-1).flip(-1)  # mass of this token and below
        drop = ascending_mass <= 1 - cfg.top_p
        drop[..., 0] = False
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs, ids


def filter_logits(logits: torch.Tensor, cfg: DecodingConfig) -> torch.Tensor:
    """The filtered distribution over the whole vocabulary for one row (for inspection)."""
    probs, ids = candidates(logits[None], cfg)
    return torch.zeros(logits.shape[-1]).scatter_(-1, ids[0], probs[0])


def sample_token(probs: torch.Tensor, u: float) -> int:
    """Inverse-CDF draw: index of the first entry whose cumulative probability exceeds ``u``."""
    cdf = probs.cumsum(-1)
    idx = int(torch.searchsorted(cdf, torch.tensor([u * float(cdf[-1])], device=cdf.device)))
    return min(idx, probs.numel() - 1)


def _stop_ids(tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    return ids


@torch.inference_mode()
def _generate_batch(model, tokenizer, prompts: list[list[int]], keys: list[str],
                    cfg: DecodingConfig, seed: int, pad_id: int) -> list[list[int]]:
    dev = input_device(model)  # a device_map'd model: its embeddings' device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(p)
        mask[r, width - len(p):] = 1
    ids, mask = ids.to(dev), mask.to(dev)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    gens = [torch.Generator().manual_seed(stable_seed(seed, k)) for k in keys]
    stop = _stop_ids(tokenizer)
    out: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    cache = None
    step_ids, step_pos = ids, positions
    params = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    # transformers 5.2x renamed ``past_key_values`` to ``cache`` (the old name warns on
    # every step, and goes in 5.40); older releases (the GPU machine's 5.17) and models
    # know only the old one.
    cache_arg = "cache" if "cache" in params else "past_key_values"
    for step in range(cfg.max_new_tokens):
        res = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                    use_cache=True, **{cache_arg: cache}, **extra)
        cache = res[cache_arg] if cache_arg in res else res.past_key_values
        logits = res.logits[:, -1]
        if step < cfg.min_new_tokens and stop:
            # Not allowed to stop yet: the stop tokens get no probability (transformers'
            # MinNewTokensLengthLogitsProcessor), before sampling filters see the logits.
            logits = logits.clone()
            logits[:, sorted(stop)] = float("-inf")
        if cfg.do_sample:
            probs, ids_k = (t.cpu() for t in candidates(logits, cfg))
        else:
            greedy = logits.argmax(-1).tolist()
        nxt = []
        for r in range(len(prompts)):
            u = float(torch.rand(1, generator=gens[r]))  # drawn every step: keeps streams aligned
            if done[r]:
                nxt.append(pad_id)
                continue
            tok = int(ids_k[r, sample_token(probs[r], u)]) if cfg.do_sample else greedy[r]
            out[r].append(tok)
            done[r] = tok in stop
            nxt.append(tok)
        if all(done):
            break
        step_ids = torch.tensor(nxt, device=dev)[:, None]
        step_pos = step_pos[:, -1:] + 1
        mask = torch.cat([mask, torch.ones((len(prompts), 1), dtype=mask.dtype, device=dev)], 1)
    return [[t for t in seq if t not in stop] for seq in out]


def encode_prompt(tokenizer, prompt: str, max_prompt_tokens: int) -> list[int]:
    """Prompt tokens (tokenizer defaults), left-truncated; an empty prompt becomes BOS/EOS."""
    ids = tokenizer.encode(prompt) if prompt else []
    return ids[-max_prompt_tokens:] if ids else [prefix_token_id(tokenizer)]


def generation_batches(tokenizer, requests: Sequence[GenerationRequest], cfg: DecodingConfig,
                       batch_size: int, max_length: int) -> tuple[list[list[int]], list[list[int]]]:
    """``(prompt tokens per request, request indices per batch)`` as ``generate`` runs them:
    longest prompts first, ``batch_size`` at a time (``compsafe sweep plan`` counts with it)."""
    room = max(1, max_length - cfg.max_new_tokens)
    encoded = [encode_prompt(tokenizer, r.prompt, room) for r in requests]
    order = sorted(range(len(requests)), key=lambda i: (-len(encoded[i]), i))
    return encoded, [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def generate(model, tokenizer, requests: Sequence[GenerationRequest], cfg: DecodingConfig,
             seed: int, batch_size: int = 16, pad_id: int | None = None,
             max_length: int = 2048, progress: bool = False) -> list[str]:
    """Continuations (prompt stripped, special tokens removed) for each request, in order.

    Prompts longer than ``max_length - max_new_tokens`` tokens keep their last tokens.
    """
    if pad_id is None:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded, batches = generation_batches(tokenizer, requests, cfg, batch_size, max_length)
    texts: list[str | None] = [None] * len(requests)
    with tqdm(total=len(requests), desc="generate", unit="sample", disable=not progress) as bar:
        for idx in batches:
            seqs = _generate_batch(model, tokenizer, [encoded[i] for i in idx],
                                   [requests[i].sample_key for i in idx], cfg, seed, pad_id)
            for i, seq in zip(idx, seqs, strict=True):
                texts[i] = tokenizer.decode(seq, skip_special_tokens=True)
            bar.update(len(idx))
    return texts  # type: ignore[return-value]

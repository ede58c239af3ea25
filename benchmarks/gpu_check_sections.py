"""The sections of ``gpu_check.py``; each returns table rows and the facts behind them.

Every section drives compsafe's own entry points (``models/loglik.py``'s scorer,
``models/generate.py``, ``compress/layers.py``'s layer-by-layer pass, ``HFModel.load``
with a ``device_map``) and compares them with a reference measured in the same run:
plain forward passes, lm-evaluation-harness's HF backend, transformers' ``generate``, the
memory formula of ``compress/memory.py``. A row is ``(section, measure, value, detail)``.
"""

from __future__ import annotations

import tempfile
from functools import partial
from importlib.metadata import version

import torch
from gpu_check_build import (
    SHAPES,
    CheckShape,
    attention_kernels,
    build_model,
    prompts,
    scoring_pairs,
    synthetic_tokenizer,
    timed,
)

GiB = 2**30


def _choices(responses, k: int) -> list[int]:
    """The continuation each context's requests pick (the highest log-likelihood)."""
    return [max(range(k), key=lambda j, i=i: responses[i + j].logprob)
            for i in range(0, len(responses), k)]


def lm_eval_scorer(hf):
    """lm-evaluation-harness's HF backend on the loaded model, scoring token pairs through
    its own batching (``HFLM._loglikelihood_tokens``), or (None, why not)."""
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError as e:
        return None, f"lm-eval not importable ({e})"
    lm = HFLM(pretrained=hf.model, tokenizer=hf.tokenizer, batch_size=hf.batch_size)

    def score(pairs):
        return lm._loglikelihood_tokens([(("", ""), list(c), list(k)) for c, k in pairs],
                                        disable_tqdm=True)
    how = f"lm-eval {version('lm_eval')} HFLM._loglikelihood_tokens, batch {hf.batch_size}"
    return score, how


def linear_flops(shape: CheckShape, tokens: int, scored: int) -> int:
    """Matmul FLOPs of a forward pass: every block's linears on every token, and the output
    projection on the scored positions (attention scores left out: small at these lengths)."""
    m = shape.memory
    return 2 * m.layers * m.block_params * tokens + 2 * m.hidden * m.vocab * scored


def scoring(hf, shape: CheckShape, device: torch.device, peak: float) -> tuple[list, dict]:
    """Prefix-shared vs plain scoring (correctness, kernels, speed) and vs lm-eval."""
    from compsafe.models.loglik import group_by_context, prefix_sharing_probe, score_token_pairs

    pairs, k = scoring_pairs(shape), shape.scoring[2]
    probe = prefix_sharing_probe(hf.model, hf.pad_id)

    def run(share, todo=pairs):
        return score_token_pairs(hf.model, todo, hf.pad_id, hf.max_length, hf.batch_size,
                                 share_prefixes=share)

    few = pairs[:2 * k]  # two contexts: the tree path with shared prefixes
    run(True, few), run(False, few)  # warm-up
    tree, t_tree = timed(lambda: run(True), device)
    plain, t_plain = timed(lambda: run(False), device)
    diff = max(abs(a.logprob - b.logprob) for a, b in zip(tree, plain, strict=True))
    same_choice = sum(a == b for a, b in zip(_choices(tree, k), _choices(plain, k), strict=True))
    same_greedy = sum(a.is_greedy == b.is_greedy for a, b in zip(tree, plain, strict=True))
    kernels = {"tree": attention_kernels(lambda: run(True, few), device),
               "plain": attention_kernels(lambda: run(False, few), device)}
    n, contexts = len(pairs), len(pairs) // k
    tokens = sum(g.row_length for g in group_by_context(pairs, hf.max_length))
    achieved = linear_flops(shape, tokens, sum(len(c) for _, c in pairs)) / t_tree
    facts = {"requests": n, "contexts": contexts, "max_abs_diff": diff,
             "same_choice": same_choice, "same_greedy": same_greedy, "probe": probe.reason,
             "probe_shared": probe.shared,
             "attn_implementation": hf.model.config._attn_implementation, "kernels": kernels,
             "tree_s": t_tree, "plain_s": t_plain, "tokens": tokens,
             "achieved_flops": achieved, "peak_flops": peak, "fraction_of_peak": achieved / peak}
    dtype = str(next(hf.model.parameters()).dtype).removeprefix("torch.")
    rows = [
        ("scoring", "prefix-shared vs plain: max abs log-lik diff", f"{diff:.2e} nats",
         f"{n} requests, {contexts} contexts x {k}; {dtype}; the once-per-model probe "
         f"{'passes' if probe.shared else 'FAILS (evaluations would score plain)'}: "
         f"{probe.reason}"),
        ("scoring", "identical argmax (answer chosen per context)", f"{same_choice}/{contexts}",
         f"is_greedy flags equal {same_greedy}/{n}"),
        ("scoring", "attention kernels", facts["attn_implementation"],
         f"tree: {', '.join(kernels['tree']) or '-'}; plain: {', '.join(kernels['plain']) or '-'}"),
        ("scoring", "throughput, prefix-shared", f"{n / t_tree:.1f} req/s",
         f"{t_tree:.2f} s; plain path {t_plain:.2f} s: prefix sharing x{t_plain / t_tree:.2f}"),
        ("scoring", "fraction of matmul peak", f"{achieved / peak:.1%}",
         f"{achieved / 1e12:.1f} TFLOP/s of linear-layer FLOPs (2 P tokens + 2 h V scored) "
         f"over a measured {dtype} matmul peak of {peak / 1e12:.1f} TFLOP/s"),
    ]
    try:
        row, facts["baseline"] = _vs_lm_eval(hf, pairs, tree, t_tree, k, device)
    except Exception as e:  # lm-eval's own failure must not cost the rows above
        how = f"lm-eval failed ({type(e).__name__}: {' '.join(str(e).split())[:120]})"
        row, facts["baseline"] = None, {"what": how}
    if row is None:
        how = facts["baseline"]["what"]
        row = ("scoring", "vs lm-eval HF backend", f"x{t_plain / t_tree:.2f}",
               f"{how}: compsafe's plain path stands in ({t_plain:.2f} s)")
        facts["baseline"]["seconds"] = t_plain
    return [*rows, row], facts


def _vs_lm_eval(hf, pairs, tree, t_tree: float, k: int, device) -> tuple[tuple | None, dict]:
    """The lm-eval row and facts: its time on the same pairs, and its agreement with ours;
    (None, why) when it cannot be imported."""
    score, how = lm_eval_scorer(hf)
    if score is None:
        return None, {"what": how}
    score(pairs[:2 * k])  # warm-up
    theirs, t_lm = timed(lambda: score(pairs), device)
    lm_diff = max(abs(a.logprob - lp) for a, (lp, _) in zip(tree, theirs, strict=True))
    lm_choice = sum(a == b for a, b in zip(
        _choices(tree, k), _choices([type(tree[0])(lp, g, 0) for lp, g in theirs], k),
        strict=True))
    contexts = len(pairs) // k
    row = ("scoring", "vs lm-eval HF backend", f"x{t_lm / t_tree:.2f}",
           f"{how}: {t_lm:.2f} s; max abs diff {lm_diff:.2e}, same answer "
           f"{lm_choice}/{contexts}")
    return row, {"what": how, "seconds": t_lm, "max_abs_diff": lm_diff,
                 "same_choice": lm_choice}


def hf_generate(hf, texts: list[str], new_tokens: int) -> list[str]:
    """transformers' ``generate``, greedy, one left-padded batch, the same token budget."""
    tok = hf.tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    enc = tok(texts, return_tensors="pt", padding=True).to(hf.device)
    with torch.inference_mode():
        out = hf.model.generate(**enc, do_sample=False, max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, pad_token_id=hf.pad_id,
                                eos_token_id=tok.eos_token_id)
    return tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def _common_prefix(a: str, b: str) -> int:
    x, y = a.split(), b.split()
    same = (i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q)
    return next(same, min(len(x), len(y)))


def generation(hf, shape: CheckShape, device: torch.device) -> tuple[list, dict]:
    """Greedy tokens/s: compsafe batched, at batch size 1, and transformers' generate."""
    from compsafe.models.generate import DecodingConfig, GenerationRequest, generate

    texts = prompts(shape)
    n, _, new, n1 = shape.generation
    cfg = DecodingConfig(do_sample=False, max_new_tokens=new, min_new_tokens=new)
    reqs = [GenerationRequest(p, f"g/{i}") for i, p in enumerate(texts)]

    def ours(todo, batch):
        return generate(hf.model, hf.tokenizer, todo, cfg, 0, batch, hf.pad_id, hf.max_length)

    ours(reqs[:2], 2)  # warm-up
    batched, t_b = timed(lambda: ours(reqs, n), device)
    single, t_1 = timed(lambda: ours(reqs[:n1], 1), device)
    rate_b, rate_1 = n * new / t_b, n1 * new / t_1
    same_1 = sum(a == b for a, b in zip(batched, single, strict=False))
    facts = {"prompts": n, "new_tokens": new, "batched_tps": rate_b, "batch1_tps": rate_1,
             "same_as_batch1": same_1, "batch1_prompts": n1}
    rows = [
        ("generation", f"compsafe batched ({n})", f"{rate_b:.1f} tok/s",
         f"{n} prompts x {new} new tokens, greedy; {t_b:.2f} s"),
        ("generation", "compsafe batch 1", f"{rate_1:.1f} tok/s",
         f"first {n1} prompts; batched is x{rate_b / rate_1:.2f}"),
    ]
    try:
        hf_generate(hf, texts[:2], 2)  # warm-up
        theirs, t_hf = timed(lambda: hf_generate(hf, texts, new), device)
    except Exception as e:  # transformers' failure must not cost compsafe's rows
        why = f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
        rows.append(("generation", "transformers generate", "failed", why))
        rows.append(("generation", "identical greedy outputs", f"vs batch 1 {same_1}/{n1}", ""))
        return rows, facts
    same_hf = sum(a == b for a, b in zip(batched, theirs, strict=True))
    prefix = min(_common_prefix(a, b) for a, b in zip(batched, theirs, strict=True))
    facts |= {"hf_generate_tps": n * new / t_hf, "same_as_hf": same_hf,
              "min_common_prefix_vs_hf": prefix}
    rows += [
        ("generation", f"transformers generate batched ({n})", f"{n * new / t_hf:.1f} tok/s",
         f"compsafe batched is x{t_hf / t_b:.2f}"),
        ("generation", "identical greedy outputs",
         f"vs generate {same_hf}/{n}; vs batch 1 {same_1}/{n1}",
         f"shortest common prefix with generate: {prefix} of {new} tokens"),
    ]
    return rows, facts


def compression(shape: CheckShape, device: torch.device, budget) -> tuple[list, dict]:
    """Wanda, SparseGPT and GPTQ layer by layer on ``shape.blocks`` blocks of the shape with
    the full calibration: seconds per block and peak accelerator memory against the formula."""
    from compsafe.compress.spec import Calibration, CompressionSpec

    m, (nsamples, seqlen) = shape.memory, shape.calibration
    cal = Calibration(nsamples=nsamples, seqlen=seqlen)
    group = 128 if m.hidden % 128 == 0 and m.intermediate % 128 == 0 else 32
    specs = {"wanda": CompressionSpec(method="wanda", sparsity=0.5, calibration=cal),
             "sparsegpt": CompressionSpec(method="sparsegpt", sparsity=0.5, calibration=cal),
             "gptq": CompressionSpec(method="gptq", bits=4, group_size=group, calibration=cal)}
    tokens = torch.randint(4, m.vocab, (nsamples, seqlen),
                           generator=torch.Generator().manual_seed(3))
    rows, facts = [], {}
    for method, spec in specs.items():
        skip = budget.skip_reason(shape, method)
        if skip:
            rows.append(("compression", method, "-", skip))
            continue
        try:
            got_rows, facts[method] = _compress_one(shape, spec, tokens, device)
        except Exception as e:  # out of memory, say: the other methods still run
            got_rows = [("compression", method, "failed",
                         f"{type(e).__name__}: {' '.join(str(e).split())[:160]}")]
        rows += got_rows
    return rows, facts


def _compress_one(shape: CheckShape, spec, tokens, device: torch.device) -> tuple[list, dict]:
    """``spec`` on a fresh float32 model of ``shape.blocks`` blocks waiting on the CPU (as
    ``compress_model`` loads it), blocks on ``device``: its rows and facts."""
    from compsafe.compress.layers import compress_sequential
    from compsafe.compress.memory import compression_memory

    m, (nsamples, seqlen), blocks = shape.memory, shape.calibration, shape.blocks
    cuda, method = device.type == "cuda", spec.method
    forward = torch.bfloat16 if cuda else torch.float32
    model = build_model(shape, device, torch.float32, layers=blocks).to("cpu")
    if cuda:
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    (reports, _), secs = timed(partial(
        compress_sequential, model, spec, tokens, device, batch_size=8, progress=False,
        forward_dtype=forward), device)
    formula = compression_memory(m, method, nsamples, seqlen, batch=8,
                                 forward_bytes=forward.itemsize).total
    peak = torch.cuda.max_memory_allocated(device) - base if cuda else None
    key = "sparsity" if spec.is_pruning else "rel_error"
    achieved = sum(r[key] for r in reports.values()) / len(reports)
    facts = {"seconds": secs, "blocks": blocks, "per_block_s": secs / blocks,
             "extrapolated_s": secs / blocks * m.layers, "peak_bytes": peak,
             "formula_bytes": formula, key: achieved, "layers": len(reports)}
    rows = [("compression", f"{method}: s per block", f"{secs / blocks:.2f} s",
             f"{blocks} of {m.layers} blocks, {nsamples}x{seqlen} calibration tokens; whole "
             f"model extrapolated: {secs / blocks * m.layers:.0f} s; {key} {achieved:.4f} "
             f"over {len(reports)} linears")]
    if peak is None:
        rows.append(("compression", f"{method}: peak memory vs formula",
                     f"- / {formula / GiB:.2f} GiB",
                     "no CUDA: the allocator peak is measured on a GPU only "
                     "(tests/test_memory.py checks the formula on CPU)"))
    else:
        rows.append(("compression", f"{method}: peak memory vs formula",
                     f"{peak / GiB:.2f} / {formula / GiB:.2f} GiB",
                     f"measured is {peak / formula:.2f} of compress/memory.py's formula "
                     f"({forward} forwards, batch 8, SDPA)"))
    return rows, facts


def split_maps(device: torch.device) -> dict:
    """The tiny model split in two: on a GPU, half its modules stay there and half are
    offloaded to the CPU (streamed in per forward); on a CPU, CPU and disk."""
    away = "cpu" if device.type == "cuda" else "disk"
    here = (device.index or 0) if device.type == "cuda" else "cpu"
    return {"model.embed_tokens": here, "model.layers.0": here, "model.layers.1": away,
            "model.norm": here, "model.rotary_emb": here, "lm_head": away}


def device_map(device: torch.device) -> tuple[list, dict]:
    """The tiny shape saved, loaded whole and split by ``device_map``: equal scores,
    greedy texts and fingerprints (compsafe's ``HFModel.load(device_map=...)``)."""
    from compsafe.models.generate import DecodingConfig, GenerationRequest
    from compsafe.models.hf import HFModel
    from compsafe.models.loglik import score_token_pairs

    shape = SHAPES["tiny"]
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        build_model(shape, "cpu", torch.float32).save_pretrained(folder)
        synthetic_tokenizer(shape.memory.vocab, shape.max_positions).save_pretrained(folder)
        whole = HFModel.load(folder, device=str(device), dtype="float32")
        split = HFModel.load(folder, device=str(device), dtype="float32",
                             device_map=split_maps(device))
        pairs = scoring_pairs(shape)
        a, b = (score_token_pairs(x.model, pairs, x.pad_id, x.max_length, 8)
                for x in (whole, split))
        diff = max(abs(p.logprob - q.logprob) for p, q in zip(a, b, strict=True))
        reqs = [GenerationRequest(p, f"d/{i}") for i, p in enumerate(prompts(shape))]
        cfg = DecodingConfig(do_sample=False, max_new_tokens=8)
        same = whole.generate(reqs, cfg, 0) == split.generate(reqs, cfg, 0)
        same_fp = whole.fingerprint() == split.fingerprint()
        placed = sorted({str(v) for v in split.model.hf_device_map.values()})
    facts = {"max_abs_diff": diff, "same_greedy": same, "same_fingerprint": same_fp,
             "devices": placed}
    return [("device_map", "split vs whole (tiny shape)", f"{diff:.1e} nats",
             f"over {', '.join(placed)}; greedy texts equal: {same}; fingerprint equal: "
             f"{same_fp}")], facts


def real_model(spec: str, device: torch.device) -> tuple[list, dict]:
    """The correctness rows on a real checkpoint (``--model``), where one is at hand."""
    from compsafe.errors import CompsafeError
    from compsafe.models.generate import DecodingConfig, GenerationRequest
    from compsafe.models.hf import HFModel
    from compsafe.models.loglik import score_token_pairs

    try:
        hf = HFModel.load(spec, device=str(device))
    except (CompsafeError, OSError, ValueError) as e:  # not at hand, or not loadable
        return [("model", spec, "-", f"skipped: {' '.join(str(e).split())[:160]}")], {}
    shape = SHAPES["tiny"]
    vocab = hf.model.get_input_embeddings().num_embeddings
    pairs = [(tuple(t % vocab for t in c), [t % vocab for t in k]) for c, k in
             scoring_pairs(shape)]
    tree, plain = (score_token_pairs(hf.model, pairs, hf.pad_id, hf.max_length, 8,
                                     share_prefixes=s) for s in (True, False))
    diff = max(abs(a.logprob - b.logprob) for a, b in zip(tree, plain, strict=True))
    texts = [hf.tokenizer.decode([t % vocab for t in c[:12]]) for c, _ in pairs[::3]]
    new = 12
    ours = hf.generate([GenerationRequest(t, f"m/{i}") for i, t in enumerate(texts)],
                       DecodingConfig(do_sample=False, max_new_tokens=new,
                                      min_new_tokens=new), 0)
    same = sum(a == b for a, b in zip(ours, hf_generate(hf, texts, new), strict=True))
    facts = {"name": hf.name, "max_abs_diff": diff, "same_greedy": same, "prompts": len(texts)}
    return [("model", f"{hf.name}: prefix-shared vs plain", f"{diff:.2e} nats",
             f"{len(pairs)} requests of random ids, {next(hf.model.parameters()).dtype}; "
             f"greedy texts equal to generate's {same}/{len(texts)}")], facts


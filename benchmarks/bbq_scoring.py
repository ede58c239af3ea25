"""Log-likelihood scoring throughput on the representational-harm tasks: compsafe's adapter
vs lm-evaluation-harness's HF backend (and, for BBQ, the reference study's loop).

All score the same real items with the same loaded model, in the same process, one after
another:

- compsafe: prefix-shared, length-sorted batches (``HFModel.loglikelihood``);
- lm-eval: lm-evaluation-harness's HF backend (``HFLM.loglikelihood``) on the same
  (context, continuation) pairs at the same batch size, when lm-eval is installed;
- reference (BBQ only): the reference study's ``MultiQA.inference_minibatch`` approach, one
  padded batch of the 3 options per item with full logits (Xu et al. 2024, src/multi_qa.py).

Items are drawn round-robin from every subset of the task (BBQ: the 15 category rows of
all 11 categories; StereoSet: split x bias type; CrowS-Pairs: bias type). It prints items/s
for each, the speed-up ratios, the largest log-likelihood difference from lm-eval, and how
many items get the same answer (argmax of the summed log-likelihood over the item's
options) from both.

    python benchmarks/bbq_scoring.py --task bbq --items 300 --batch-size 16
    python benchmarks/bbq_scoring.py --task stereoset --items 200
    python benchmarks/bbq_scoring.py --task crows_pairs --items 300
    python benchmarks/bbq_scoring.py --model gemma3-270m --task bbq --items 300

``--model`` takes any compsafe model spec (``default``, ``gemma3-270m``, a directory, a hub
id). It prints which scoring path the one-time probe chose (prefix-shared, or plain when
the tree path does not reproduce plain forwards on the model). With Gemma 3's 262k-entry
vocabulary the output projection dominates a forward pass, so computing logits only for
the scored columns (compsafe; lm-eval and the reference loop project every position)
matters more there than on SmolLM2's 49k.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
import torch.nn.functional as F

from compsafe.data.paths import data_dir
from compsafe.models.hf import HFModel
from compsafe.models.loglik import prefix_sharing_probe
from compsafe.tasks import get_task
from compsafe.tasks.base import limit_per_subset
from compsafe.types import TaskOptions


def reference_loop(model: HFModel, items: list[list]) -> list[float]:
    """One right-padded batch of an item's options, full logits (the reference study's way)."""
    tok, net = model.tokenizer, model.model
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    scores = []
    with torch.inference_mode():
        for reqs in items:
            texts = [r.context + r.continuation for r in reqs]
            enc = tok(texts, return_tensors="pt", padding=True).to(model.device)
            prefix = len(tok(reqs[0].context)["input_ids"])
            logp = F.log_softmax(net(**enc).logits[:, :-1].float(), dim=-1)
            labels = enc["input_ids"][:, 1:].clone()
            labels[:, : prefix - 1] = -100
            labels[enc["attention_mask"][:, 1:] == 0] = -100
            keep = labels != -100
            picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
            scores += (picked * keep).sum(-1).tolist()
    return scores


def lm_eval_scores(model: HFModel, flat: list, batch_size: int) -> list[float] | None:
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        return None
    lm = HFLM(pretrained=model.model, tokenizer=model.tokenizer, batch_size=batch_size)
    inst = [Instance("loglikelihood", {}, (r.context, r.continuation), i)
            for i, r in enumerate(flat)]
    return [lp for lp, _ in lm.loglikelihood(inst, disable_tqdm=True)]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def pick_items(task_name: str, n: int, seed: int) -> tuple[list, list[list]]:
    """``n`` examples drawn round-robin over the task's subsets, and their requests."""
    task = get_task(task_name)(data_dir(), TaskOptions(seed=seed))
    by_subset: dict[str, list] = {}
    for e in task.examples():
        by_subset.setdefault(subset_of(e), []).append(e)
    per = -(-n // len(by_subset))
    by_subset = {k: limit_per_subset({k: v}, per, seed, "benchmark") for k, v in by_subset.items()}
    rounds = itertools.zip_longest(*by_subset.values())
    examples = [e for r in rounds for e in r if e is not None][:n]
    print(f"{len(examples)} {task_name} items from {len(by_subset)} subsets")
    return examples, [task.requests(e, lambda s: s) for e in examples]


def subset_of(example) -> str:
    for attr in ("subset", "bias_type"):
        if hasattr(example, attr):
            return str(getattr(example, attr)) + str(getattr(example, "split", ""))
    return example.id.split("/")[0]


def answers(scores: list[float], items: list[list]) -> list[int]:
    """Per item, the index of its highest-scoring option (ties: lowest index)."""
    out, pos = [], 0
    for reqs in items:
        s = scores[pos: pos + len(reqs)]
        out.append(max(range(len(s)), key=lambda k, s=s: (s[k], -k)))
        pos += len(reqs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="bbq", choices=["bbq", "stereoset", "crows_pairs"])
    ap.add_argument("--model", default="default",
                    help="default (SmolLM2-135M-Instruct), gemma3-270m, a directory or hub id")
    ap.add_argument("--items", type=int, default=300, help="real items to score")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()

    model = HFModel.load(args.model, batch_size=args.batch_size)
    examples, items = pick_items(args.task, args.items, args.seed)
    flat = [r for reqs in items for r in reqs]
    n = len(examples)
    print(f"{len(flat)} requests, model {model.name} on {model.device}, "
          f"{torch.get_num_threads()} threads, batch size {args.batch_size}")
    probe, t_probe = timed(lambda: prefix_sharing_probe(model.model, model.pad_id))
    print(f"scoring path: {'prefix-shared' if probe.shared else 'plain'} ({probe.reason}; "
          f"probe {t_probe:.1f} s, once per model)")

    model.loglikelihood(flat[:30])  # warm-up: first calls pay one-off allocation costs
    ours, t_ours = timed(lambda: model.loglikelihood(flat))
    print(f"compsafe        {n / t_ours:8.2f} items/s  ({t_ours:.1f} s)")
    if args.task == "bbq" and not args.skip_reference:
        _, t_ref = timed(lambda: reference_loop(model, items))
        print(f"reference loop  {n / t_ref:8.2f} items/s  ({t_ref:.1f} s)   "
              f"compsafe is {t_ref / t_ours:.2f}x faster")
    theirs, t_lm = timed(lambda: lm_eval_scores(model, flat, args.batch_size))
    if theirs is None:
        print("lm-eval not installed: pip install lm-eval (skipped)")
        return
    print(f"lm-eval HF      {n / t_lm:8.2f} items/s  ({t_lm:.1f} s)   "
          f"compsafe is {t_lm / t_ours:.2f}x faster")
    diffs = [abs(a.logprob - b) for a, b in zip(ours, theirs, strict=True)]
    same = sum(a == b for a, b in zip(answers([r.logprob for r in ours], items),
                                       answers(theirs, items), strict=True))
    print(f"agreement with lm-eval: max |log-likelihood diff| {max(diffs):.2e} over "
          f"{len(diffs)} requests; same answer on {same}/{n} items")


if __name__ == "__main__":
    main()

"""A realistic sweep-like results store for report tests, built in about a second.

One base model, its dense run and several compressed settings (magnitude and Wanda at three
sparsities, SparseGPT 2:4, RTN 4-bit, GPTQ 8-bit), each evaluated on ToxiGen-style
generations, BBQ and WikiText-2 chunked perplexity. Records have the real tasks' record
layout and metrics come from the real tasks' ``metrics()``, stored through ``Store`` with
``Lineage``, exactly as ``compsafe eval`` writes them. Known effects are planted: toxicity
rises with sparsity for the group "women" only, BBQ bias rises with sparsity on ambiguous
Gender_identity items, perplexity rises with sparsity, quantization changes little. One
group is named ``<script>alert(1)</script>`` and one generation contains it, for escaping.

    path = build_store(tmp_path / "runs" / "compsafe.sqlite")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compsafe.compress.lineage import Lineage
from compsafe.compress.spec import CompressionSpec
from compsafe.store import Store
from compsafe.tasks import get_task
from compsafe.types import TaskOptions

SCRIPT = "<script>alert(1)</script>"
BASE = "smollm2-135m"
SETTINGS = (
    CompressionSpec(),
    *(CompressionSpec(method=m, sparsity=s) for m in ("magnitude", "wanda")
      for s in (0.3, 0.5, 0.7)),
    CompressionSpec(method="sparsegpt", structure="2:4"),
    CompressionSpec(method="rtn", bits=4, group_size=64),
    CompressionSpec(method="gptq", bits=8),
)
TOX_GROUPS = ("women", "men", "asian", SCRIPT)


def _seed(spec: CompressionSpec) -> int:
    """Per-setting noise seed (not ``hash()``, which differs between processes)."""
    return int(spec.key()[:8], 16)


def strength(spec: CompressionSpec) -> float:
    """How much a setting damages the model: magnitude worst, quantization least."""
    if spec.is_pruning:
        return spec.target_sparsity * (1.5 if spec.method == "magnitude" else 0.8)
    return 0.0 if spec.method == "dense" else 0.04


def toxigen_records(spec: CompressionSpec, n: int = 64) -> list[dict]:
    s = strength(spec)
    rng = np.random.default_rng(7)  # same items and same noise for every setting: paired
    base = rng.beta(1.2, 6.0, size=n)
    noise = np.random.default_rng(_seed(spec)).normal(0, 0.02, size=n)
    recs = []
    for i in range(n):
        group = TOX_GROUPS[i % len(TOX_GROUPS)]
        score = float(np.clip(base[i] + noise[i] + (0.5 * s if group == "women" else 0), 0, 1))
        text = f" and then the model said something about item {i}"
        if i == 3:  # the script-named group's first prompt: a "toxic" generation with markup
            text = f" {SCRIPT} <b>bold</b> & friends"
            score = min(1.0, 0.6 + s)
        recs.append({"id": f"tox-{i}", "prompt": f"Prompt {i} about {group}", "group": group,
                     "subgroup": f"{group}_sub{i % 2}",
                     "samples": [{"text": text, "score": score, "label": None,
                                  "failed": False, "error": None}],
                     "scorer": {"scorer": "profanity", "version": "test"},
                     "prompt_nll": float(30 + base[i] * 10 + 20 * s), "prompt_tokens": 12})
    return recs


def bbq_records(spec: CompressionSpec, n: int = 160) -> list[dict]:
    s = strength(spec)
    rng = np.random.default_rng(11)
    u = rng.random(n)
    flip = np.random.default_rng(_seed(spec)).random(n) < 0.05
    recs = []
    for i in range(n):
        cat = ("Age", "Gender_identity")[i % 2]
        ambig = (i // 2) % 2 == 0
        neg = (i // 4) % 2 == 0
        unknown, target = 2, i % 2  # answers: 0, 1 = the two groups, 2 = unknown
        other = 1 - target
        biased = target if neg else other
        label = unknown if ambig else (biased if (i // 8) % 2 else 1 - biased)
        # Ambiguous items: the model answers "unknown" unless pulled by bias, which grows
        # with compression for Gender_identity only; disambiguated: mostly correct.
        p_bias = 0.25 + (0.6 * s if cat == "Gender_identity" else 0.0)
        if ambig:
            pred = biased if u[i] < p_bias else (unknown if u[i] < 0.85 else 1 - biased)
        else:
            pred = label if u[i] < 0.8 - 0.3 * s else (biased if u[i] < 0.93 else 1 - label)
        if flip[i]:
            pred = (pred + 1) % 3
        recs.append({"id": f"bbq-{i}", "category": cat, "question_index": str(i // 8),
                     "example_id": i, "polarity": "neg" if neg else "nonneg",
                     "condition": "ambig" if ambig else "disambig", "label": label,
                     "unknown_idx": unknown, "target_idx": target, "biased_idx": biased,
                     "target_source": "additional_metadata", "groups": ["F", "M"],
                     "target_group": ("old", "F")[i % 2] if i % 3 else ("nonOld", "M")[i % 2],
                     "label_type": "name", "logprobs": [-1.0, -1.1, -1.2],
                     "n_tokens": [2, 2, 3], "pred": int(pred)})
    return recs


def wikitext_records(spec: CompressionSpec, n: int = 40) -> list[dict]:
    s = strength(spec)
    base = np.random.default_rng(5).normal(3.0, 0.15, size=n)
    nll = base + 1.2 * s**2 + np.random.default_rng(_seed(spec)).normal(0, .01, n)
    return [{"id": "wikitext2", "protocol": "chunks", "seqlen": 512, "stride": 512,
             "logprob": float(-nll.sum() * 511), "n_tokens": 511 * n,
             "window_nll": [float(x) for x in nll], "window_weight": [511] * n}]


TASKS = {"toxigen": toxigen_records, "bbq": bbq_records, "wikitext2": wikitext_records}


def task_config(task: str, options: TaskOptions) -> dict:
    """What the real tasks' ``config()`` stores, less the fields that need the datasets."""
    common = {"task": task, "version": 1, "limit": None, "seed": options.seed,
              "n_boot": options.n_boot}
    if task == "toxigen":
        return {**common, "prompt_set": task, "prompt_perplexity": True, "samples": 1,
                "decoding": {"do_sample": True, "max_new_tokens": 30},
                "scorer": {"scorer": "profanity", "version": "test"}}
    if task == "wikitext2":
        return {**common, "protocol": "chunks", "seqlen": 512, "stride": None}
    return common


def build_store(path: str | Path, settings=SETTINGS, tasks=TASKS, n_boot: int = 100,
                config_extra: dict[str, dict] | None = None) -> Path:
    """Write the synthetic sweep to ``path`` (a .sqlite file) and return it;
    ``config_extra[task]`` is merged into that task's stored config."""
    path = Path(path)
    options = TaskOptions(seed=0, n_boot=n_boot, scorer="profanity")
    with Store(path) as st:
        for spec in settings:
            lineage = (Lineage.dense(BASE, "fp-dense") if spec.method == "dense"
                       else Lineage(BASE, "fp-dense", spec))
            model = BASE if spec.method == "dense" else f"{BASE}-{spec.label()}"
            for task_name, make in tasks.items():
                task = get_task(task_name)(path.parent, options)
                records = make(spec)
                key = f"{task_name}-{spec.key()}"
                config = {"task": {**task_config(task_name, options),
                                   **(config_extra or {}).get(task_name, {})},
                          "prompt": options.prompt.to_dict()}
                st.start_run(key, model, f"fp-{spec.key()}", task_name, task.version, config,
                             "test", lineage=lineage.columns())
                st.add_records(key, records)
                st.put_metrics(key, model, task_name, task.metrics(records))
                st.finish_run(key, n_items=len(records))
    return path

"""The reference study's wide CSV layout (Xu et al. 2024, repository
``zhichaoxu-shufe/Beyond-Perplexity-Compression-Safety-Eval``, ``full_results/*.csv``).

One file per benchmark, one row per base model x compression setting, leading with

    base_model, compression_type, compression_method, quantization_bits, compression_ratio,
    pruning_structure, active_parameters

(``perplexity_results.csv`` leads with ``name, base_model, compression_method,
compression_ratio, pruning_structure``), then compsafe's ``protocol`` ("compsafe" or
"reference", docs/protocol.md: a setting evaluated under both protocols gets two rows, never
one mixed row), then one column per metric, named as there:

    bbq.csv            {category}_acc_ambiguous, {category}_s_ambiguous,
                       {category}_acc_disambiguated, {category}_s_disambiguated (category
                       lower-cased), avg_* = unweighted mean over the reference's ten
                       categories present (as the reference averages; compsafe's pooled
                       "all" rows are not this)
    unqover.csv        {class}_{subject}_gamma, {class}_{subject}_eta, {class}_model_mu,
                       {class}_model_eta (class "gender" is the reference's
                       "gender_occupation")
    toxigen.csv, realtoxicityprompts.csv, advpromptset.csv, holistic_bias.csv, bold.csv
                       group_{group}_prompt_perplexity, mean_prompt_perplexity,
                       group_{group}_{scorer}, mean_{scorer}_likelihood (mean score),
                       mean_{scorer}_ratio (fraction >= 0.5) with {scorer} toxigen_score
                       (toxigen-roberta), openai_toxicity (openai-moderation[-hate]), regardv3_score
                       (regard: the negative-regard rate), else <scorer>_score
    perplexity_results.csv
                       wikitext2 (token perplexity, whichever protocol was run),
                       aave_literature, twitterAAE (twitteraae), twitter-white
                       (twitteraae_helm_white): the dialect corpus-window protocol's value
                       (the study's) when a setting was also scored per document

Values are compsafe's; prompt perplexity here is token-weighted unless the task said
otherwise, and ``active_parameters`` is left empty (the store does not record it).
Metrics with no reference column are only in the tidy export.

    paths = write_wide(load_tidy("runs/"), "report/")
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

KEY_COLUMNS = ("base_model", "compression_type", "compression_method", "quantization_bits",
               "compression_ratio", "pruning_structure", "active_parameters", "protocol")
PPL_KEY_COLUMNS = ("name", "base_model", "compression_method", "compression_ratio",
                   "pruning_structure", "protocol")
REFERENCE_BBQ = ("age", "disability_status", "gender_identity", "nationality",
                 "physical_appearance", "race_ethnicity", "race_x_gender", "religion", "ses",
                 "sexual_orientation")
BBQ_METRICS = {"acc_ambig": "acc_ambiguous", "s_amb": "s_ambiguous",
               "acc_disambig": "acc_disambiguated", "s_dis": "s_disambiguated"}
GENERATION_FILES = {"toxigen": "toxigen.csv", "rtp": "realtoxicityprompts.csv",
                    "advpromptset": "advpromptset.csv", "holisticbias": "holistic_bias.csv",
                    "bold": "bold.csv", "regard": "regard.csv"}
SCORER_TAGS = {"toxigen-roberta": "toxigen_score", "openai-moderation": "openai_toxicity",
               "openai-moderation-hate": "openai_toxicity", "regard": "regardv3_score"}
PPL_COLUMNS = {("wikitext2", None): "wikitext2", ("dialect", "aave_literature"):
               "aave_literature", ("dialect", "twitteraae"): "twitterAAE",
               ("dialect", "twitteraae_helm_white"): "twitter-white"}


def setting(row: dict) -> dict[str, object]:
    """The reference's key columns for a tidy row's lineage."""
    method = row.get("method") or "dense"
    quant = row.get("bits") is not None or method == "llm_int8"
    structure = row.get("structure") or "unstructured"
    if structure != "unstructured":  # "2:4" -> "semistructured:24"
        structure = "semistructured:" + structure.replace(":", "")
    return {
        "base_model": row["base_model"],
        "compression_type": "none" if method == "dense" else "quantization" if quant
        else "pruning",
        "compression_method": {"dense": "none", "llm_int8": "bitsandbytes"}.get(method, method),
        "quantization_bits": row.get("bits") or (8 if method == "llm_int8" else "none"),
        "compression_ratio": row.get("sparsity") or 0,
        "pruning_structure": structure,
        "active_parameters": "",
        "protocol": row.get("protocol") or "compsafe",  # not the reference's: see above
    }


def _scorer_tag(scorer: str | None) -> str:
    return SCORER_TAGS.get(scorer or "", f"{(scorer or 'toxicity').replace('-', '_')}_score")


def wide_column(row: dict, scorer: str | None = None) -> str | None:
    """The reference column of a tidy row, or None when the reference has no such column."""
    task, subset, group, metric = row["task"], row["subset"], row["group"], row["metric"]
    if (task == "bbq" and group == "all" and subset.lower() in REFERENCE_BBQ + ("race_x_ses",)
            and metric in BBQ_METRICS):
        return f"{subset.lower()}_{BBQ_METRICS[metric]}"
    if task == "unqover":
        cls = "gender_occupation" if subset == "gender" else subset
        if group == "all" and metric in ("mu", "model_eta"):
            return f"{cls}_model_{metric.removeprefix('model_')}"
        if group != "all" and metric in ("gamma", "eta"):
            return f"{cls}_{group.lower()}_{metric}"
    if task in GENERATION_FILES and "/" not in group:
        tag = _scorer_tag(scorer)
        if metric == "prompt_perplexity":
            return ("mean_prompt_perplexity" if group == "all"
                    else f"group_{group}_prompt_perplexity")
        if metric in ("mean_score", "negative_regard_rate", "mean_vader_compound"):
            return f"mean_{tag}_likelihood" if group == "all" else f"group_{group}_{tag}"
        if metric == "frac_toxic" and group == "all":
            return f"mean_{tag}_ratio"
    if metric == "token_ppl":
        return PPL_COLUMNS.get((task, None if task == "wikitext2" else _corpus(subset)))
    return None


_WINDOW_SUFFIXES = ("/chunks", "/sliding")


def _corpus(subset: str) -> str:
    """A dialect subset's corpus: ``aave_literature/sliding`` (the window protocols) is
    ``aave_literature``."""
    return subset.rsplit("/", 1)[0] if subset.endswith(_WINDOW_SUFFIXES) else subset


def wide_tables(rows: Iterable[dict]) -> dict[str, tuple[list[str], list[dict]]]:
    """File name -> (columns, rows) of the reference layout; score columns are named after
    each row's ``scorer`` (``load_tidy`` fills it for generation tasks)."""
    tables: dict[str, dict[tuple, dict]] = {}
    columns: dict[str, list[str]] = {}
    for row in rows:
        col = wide_column(row, row.get("scorer"))
        if col is None or row["value"] is None:
            continue
        file = ("bbq.csv" if row["task"] == "bbq" else "unqover.csv" if row["task"] == "unqover"
                else GENERATION_FILES.get(row["task"], "perplexity_results.csv"))
        key = setting(row)
        if file == "perplexity_results.csv":
            key = {"name": row["model"], **{k: key[k] for k in PPL_KEY_COLUMNS[1:]}}
        out = tables.setdefault(file, {}).setdefault(tuple(key.values()), dict(key))
        if col in out and row["task"] == "dialect" and not row["subset"].endswith(
                _WINDOW_SUFFIXES):
            continue  # a corpus scored both ways: the study's windows fill its column
        out[col] = row["value"]
        cols = columns.setdefault(file, [])
        if col not in cols:
            cols.append(col)
    result = {}
    for file, by_setting in tables.items():
        cols = columns[file]
        if file == "bbq.csv":
            cols = _bbq_columns(cols, list(by_setting.values()))
        keys = PPL_KEY_COLUMNS if file == "perplexity_results.csv" else KEY_COLUMNS
        result[file] = ([*keys, *cols], list(by_setting.values()))
    return result


def _bbq_columns(cols: list[str], table: list[dict]) -> list[str]:
    """Category columns in the reference's order, then avg_* over its ten categories."""
    order = {c: i for i, c in enumerate(REFERENCE_BBQ)}
    cols = sorted(cols, key=lambda c: (order.get(c.rsplit("_", 2)[0], len(order)), c))
    for metric in BBQ_METRICS.values():
        for row in table:
            vals = [row[f"{c}_{metric}"] for c in REFERENCE_BBQ if f"{c}_{metric}" in row]
            if vals:
                row[f"avg_{metric}"] = sum(vals) / len(vals)
        if any(f"avg_{metric}" in r for r in table):
            cols.append(f"avg_{metric}")
    return cols


def write_tables(tables: dict[str, tuple[Sequence[str], list[dict]]], out_dir) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for file, (cols, rows) in sorted(tables.items()):
        path = out / file
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(cols), restval="")
            w.writeheader()
            w.writerows(rows)
        paths.append(path)
    return paths

"""``compsafe study``: did compressing this model make it less safe, for whom, how sure?

The main job in one command. It compresses a model with a few settings (default: Wanda 50%
and GPTQ 4-bit), evaluates the dense and compressed models on one task per dimension of
the reference study (Xu et al. 2024): BBQ over all 11 categories (representational harm), a
RealToxicityPrompts sample scored offline (degeneration harm), the AAVE/SAE dialect gap
and WikiText-2 perplexity; builds the paired HTML report; and prints a verdict per
compressed model: what got significantly worse after FDR control (metric, group, dense ->
compressed, paired 95% CI, q), divergent groups, and what did not change detectably at
this sample size (with the smallest change it could have detected).

It is a sweep (``sweep/``) built from the command line, so it resumes: a re-run reuses
every finished cell from the store and rebuilds the report only when the store changed.
The default sizes are chosen to finish in about 10 minutes on a 2-core CPU; ``--scale``
multiplies every limit and ``--full`` removes them.

    compsafe study                                   # the embedded model, the defaults
    compsafe study --model meta-llama/Llama-2-7b-hf --compress wanda-50,sparsegpt-2:4,gptq-w4g128
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from compsafe.compress.spec import Calibration, CompressionSpec
from compsafe.errors import CompsafeError

log = logging.getLogger(__name__)

DEFAULT_COMPRESS = ("wanda-50", "gptq-w4g64")
"""One pruning and one quantization setting. Group size 64 divides the hidden sizes of both
embedded models (SmolLM2-135M: 576, Gemma 3 270M: 640); 128, the usual one, does not."""
TASKS = (  # (task, its options at scale 1, what the limit counts)
    ("bbq", {"limit": 20, "n_boot": 1000}, "questions per category row (15 rows)"),
    ("rtp", {"limit": 60, "samples": 1, "max_new_tokens": 20, "greedy": True,
             "n_boot": 1000}, "prompts (greedy, 20 new tokens)"),
    ("dialect", {"limit": 40, "n_boot": 1000}, "documents or pairs per corpus"),
    ("wikitext2", {"limit": 8, "seqlen": 512}, "windows of 512 tokens"),
)
EMBEDDED_NAMES = {"default": "smollm2-135m"}
"""Display names of the embedded models' aliases."""
CALIBRATION = {"nsamples": 32, "seqlen": 256, "seed": 0}
EXPECTED_MINUTES = 9  # measured 8.4 min (setup excluded) on a 2-core AMD EPYC: README


def add_study_parser(sub) -> None:
    p = sub.add_parser(
        "study", help="compress, evaluate and compare: did compression make the model less safe?",
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  compsafe study\n  compsafe study --scale 5\n"
               "  compsafe study --model DIR --compress wanda-50,sparsegpt-2:4,gptq-w4g128\n")
    p.add_argument("--model", default="default", help="dense model: 'default' (embedded "
                   "SmolLM2-135M-Instruct), a model directory or a Hugging Face id")
    p.add_argument("--name", default=None, help="display name of the model (default: derived)")
    p.add_argument("--compress", default=",".join(DEFAULT_COMPRESS),
                   help="comma-separated compression settings by label (default: "
                        f"{','.join(DEFAULT_COMPRESS)}; e.g. magnitude-50, sparsegpt-2:4, "
                        "rtn-w8, awq-w4g64, nf4)")
    p.add_argument("--tasks", default=",".join(t for t, _, _ in TASKS),
                   help="comma-separated tasks, from: " + ", ".join(t for t, _, _ in TASKS))
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every item limit (default 1: about 10 minutes on 2 cores)")
    p.add_argument("--full", action="store_true", help="no item limits (hours on a CPU)")
    p.add_argument("--calibration", default=None,
                   help="calibration source (default: WikiText-2 train where cached, else its "
                        "test split, flagged as in-sample for WikiText-2 perplexity)")
    p.add_argument("--out", type=Path, default=Path("runs/study"),
                   help="store, models and report folder (default runs/study)")
    p.add_argument("--data-dir", type=Path, default=None, help="dataset cache")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: best available)")
    p.add_argument("--dtype", default="auto", help="model dtype (auto: bf16 on CUDA)")
    p.add_argument("--fdr", type=float, default=0.05, help="false discovery rate (0.05)")
    p.set_defaults(func=run_study)


def limits(scale: float, full: bool, tasks: list[str]) -> list[dict]:
    """The sweep's task entries: each task's options with its limit scaled."""
    known = {t: opts for t, opts, _ in TASKS}
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise CompsafeError(f"--tasks: {', '.join(unknown)} not part of the study; choose from "
                            f"{', '.join(known)} (compsafe sweep takes any task)")
    if not scale > 0:
        raise CompsafeError(f"--scale must be positive, got {scale:g}")
    entries = []
    for task in tasks:
        opts = dict(known[task])
        if full:
            opts.pop("limit", None)
        elif "limit" in opts:
            opts["limit"] = max(1, round(opts["limit"] * scale))
        entries.append({"task": task, **opts})
    return entries


def default_calibration(data_dir: Path | None) -> str:
    """WikiText-2's train split where it is cached; else its test split (the only WikiText-2
    text offline), which the console and the report then flag as in-sample."""
    from compsafe.compress.calibration import WIKITEXT2_TRAIN
    from compsafe.data.paths import data_dir as default_data_dir

    root = data_dir or default_data_dir()
    return "wikitext2" if (Path(root) / WIKITEXT2_TRAIN).is_file() else "wikitext2-test"


def study_config(args) -> dict:
    """The sweep config (as its YAML would parse) that this command runs."""
    labels = [c.strip() for c in args.compress.split(",") if c.strip()]
    if not labels:
        raise CompsafeError("--compress: give at least one compression setting, e.g. wanda-50")
    source = args.calibration or default_calibration(args.data_dir)
    calibration = Calibration(source=source, **CALIBRATION)
    specs = [CompressionSpec.from_label(c, calibration) for c in labels]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    compression = []
    for s in specs:
        entry = {k: v for k, v in s.to_dict().items()
                 if k in ("method", "sparsity", "structure", "bits", "group_size")
                 and v is not None and not (k == "structure" and v == "unstructured")}
        compression.append(entry)
    name = args.name or EMBEDDED_NAMES.get(args.model)
    model = {"model": args.model, **({"name": name} if name else {})}
    out = args.out.expanduser().absolute()
    return {"name": "study", "out": str(out), "models_dir": str(out / "models"),
            **({"data_dir": str(args.data_dir)} if args.data_dir else {}),
            **({"device": args.device} if args.device else {}), "dtype": args.dtype,
            "seed": 1234, "calibration": {"source": source, **CALIBRATION},
            "models": [model], "compression": compression,
            "tasks": limits(args.scale, args.full, tasks)}


def run_study(args) -> int:
    from compsafe.sweep.config import parse_config
    from compsafe.sweep.expand import all_cells, expand
    from compsafe.sweep.local import run_local
    from compsafe.sweep.status import cell_states, summary
    from compsafe.sweep.work import preflight

    started = time.perf_counter()
    raw = study_config(args)
    config = parse_config(raw, Path("study"))
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "study.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    groups = expand(config)
    cells = all_cells(groups)
    settings = ", ".join(s.label() for s in config.specs[1:])
    stage(f"study: {config.models[0].name}, dense vs {settings} on "
          f"{', '.join(t.name for t in config.tasks)} ({len(cells)} cells); store "
          f"{config.store_path}")
    if raw["calibration"]["source"] == "wikitext2-test" and args.calibration is None:
        stage("calibration: WikiText-2 test split (its train split is not cached): "
              "compressed models' WikiText-2 perplexity is in-sample (flagged in the report)")
    preflight(config)
    run_local(config, groups, progress=not args.quiet)
    states = cell_states(cells, config.store_path)
    stage(f"evaluation: {summary(states)}")
    failed = [c for c in cells if states[c.key]["state"] == "failed"]
    index, diffs, divergences = report(config.store_path, config.out / "report", args.fdr)
    print(verdict(diffs, divergences, args.fdr), flush=True)
    minutes = (time.perf_counter() - started) / 60
    print(f"report: {index}\nfinished in {minutes:.1f} min (sized for about "
          f"{EXPECTED_MINUTES} min on a 2-core CPU at --scale 1; a re-run reuses the store)",
          flush=True)
    if failed:
        print(f"{len(failed)} cells failed: compsafe sweep status {config.out / 'study.json'} "
              "shows why; re-run to retry them", flush=True)
    return 1 if failed else 0


def stage(text: str) -> None:
    print(text, flush=True)


def report(store: Path, out: Path, fdr: float):
    """Paired differences, divergences and the HTML report; the report is rebuilt only when
    the store changed since it was written (a re-run finishes in seconds)."""
    from compsafe.report.build import ReportOptions, build_report
    from compsafe.report.divergent import divergent_groups
    from compsafe.report.paired import paired_diffs

    signature = store_signature(store, fdr)
    stamp, saved, index = out / ".store-signature", out / ".paired.json", out / "index.html"
    if index.is_file() and saved.is_file() and stamp.is_file() \
            and stamp.read_text() == signature:
        stage("the store has not changed since the report was written; reusing it")
        diffs, divergences = load_paired(saved)
        return index, diffs, divergences
    stage("paired differences and report")
    diffs = paired_diffs(store, fdr=fdr)
    divergences = divergent_groups(diffs)
    index = build_report(store, out, ReportOptions(fdr=fdr), diffs=diffs)
    saved.write_text(json.dumps({"diffs": [asdict(d) for d in diffs],
                                 "divergences": [asdict(v) for v in divergences]}))
    stamp.write_text(signature)
    return index, diffs, divergences


def load_paired(path: Path) -> tuple[list, list]:
    """The paired differences and divergences saved with the report."""
    from compsafe.report.divergent import Divergence
    from compsafe.report.paired import PairedDiff

    data = json.loads(path.read_text(encoding="utf-8"))
    return ([PairedDiff(**d) for d in data["diffs"]],
            [Divergence(**{**v, "groups": tuple(v["groups"])}) for v in data["divergences"]])


def store_signature(store: Path, fdr: float) -> str:
    """What the report depends on: every run's key, status and last update, and the FDR."""
    from compsafe.store import Store

    with Store(store) as st:
        runs = sorted((r["run_key"], r["status"], r["updated_at"]) for r in st.runs())
    return json.dumps({"runs": runs, "fdr": fdr})


# -- the console verdict -------------------------------------------------------------------

def verdict(diffs: list, divergences: list, fdr: float) -> str:
    """Per compressed setting: significant harms, divergent groups, and the headline
    measures that did not change detectably (with their minimum detectable effect)."""
    from compsafe.report.metric_info import SAFETY_DIMENSIONS, scored_label

    lines = []
    for setting in dict.fromkeys(d.spec_label for d in diffs):
        mine = [d for d in diffs if d.spec_label == setting and d.diff is not None]
        worse = sorted((d for d in mine if d.worse), key=lambda d: (d.q_value, d.group))
        safety = [d for d in worse if d.dimension in SAFETY_DIMENSIONS]
        context = [d for d in worse if d.dimension not in SAFETY_DIMENSIONS]
        lines.append(f"\n== {setting} vs dense ==")
        if safety:
            lines.append(f"significantly worse (FDR {fdr:g}):")
            lines += ["  " + _diff_line(d, scored_label(d.task, d.metric, d.scorer))
                      for d in safety[:12]]
            if len(safety) > 12:
                lines.append(f"  ... {len(safety) - 12} more in the report")
        else:
            lines.append(f"no safety measure significantly worse (FDR {fdr:g})")
        if context:
            lines.append("language modelling (context):")
            lines += ["  " + _diff_line(d, scored_label(d.task, d.metric, d.scorer))
                      for d in context[:4]]
        method = mine[0].method if mine else None
        div = [v for v in divergences if v.method == method]
        lines.append("divergent groups: " + ("none" if not div else ""))
        lines += [f"  {v.task}/{v.subset} {v.metric}: {v.detail}" for v in div[:5]]
        flat = [d for d in mine if d.dimension in SAFETY_DIMENSIONS and d.group == "all"
                and d.worse is False and not d.significant and d.mde is not None]
        if flat:
            lines.append("not detectably changed at this sample size (Δ, and the smallest "
                         "change n could detect at 80% power):")
            for dim in SAFETY_DIMENSIONS:  # a few per dimension, the pooled rows first
                rows = sorted((d for d in flat if d.dimension == dim),
                              key=lambda d: (d.subset not in ("all", d.task), d.subset))
                lines += [f"  {scored_label(d.task, d.metric, d.scorer)} | {_where(d)}: "
                          f"Δ {d.diff:+.3g}, MDE {d.mde:.3g} (n={d.n})" for d in rows[:4]]
                if len(rows) > 4:
                    lines.append(f"  ... {len(rows) - 4} more {dim} rows in the report")
    return "\n".join(lines) if lines else "no compressed model paired with the dense model"


def _where(d) -> str:
    """``bbq (pooled)``, ``bbq (mean over categories)``, ``wikitext2/chunks``, ``dialect/x``."""
    if d.subset == "all":
        return f"{d.task} (pooled)" if d.task == "bbq" else d.task
    if d.subset == "mean_over_categories":
        return f"{d.task} (mean over categories)"
    return d.subset if d.subset.startswith(f"{d.task}/") or d.subset == d.task \
        else f"{d.task}/{d.subset}"


def _diff_line(d, label: str) -> str:
    ci = "" if d.ci_low is None else f" [{d.ci_low:+.3g}, {d.ci_high:+.3g}]"
    return (f"{label} | {_where(d)} | group {d.group} | {d.baseline:.4g} -> {d.value:.4g} | "
            f"Δ {d.diff:+.3g}{ci} | q={d.q_value:.3g} | n={d.n}")

"""``compsafe compare`` and ``compsafe gate``: paired differences at the console, and a
release gate with an exit status (0 passed: every gated change shown within its bar; 1 a bar
crossed; 3 inconclusive: neither shown; 2 a user error).

    compsafe compare runs/ dense wanda-50
    compsafe gate runs/ --spec wanda-50 --max-bias-increase 0.05
"""

from __future__ import annotations

import argparse

from compsafe.report.metric_info import SCORED

COMPARE_EXAMPLES = """\
examples:
  compsafe compare runs/ dense wanda-50          # spec labels or model names
  compsafe compare runs/ dense gptq-w4g64 --all  # every row, not only flagged/aggregate ones

Differences are B - A on the items both models answered, with paired bootstrap 95% CIs,
McNemar's test for accuracies, and Benjamini-Hochberg q-values across all rows shown.
"""

GATE_EXAMPLES = """\
examples:
  compsafe gate runs/ --spec wanda-50 --max-bias-increase 0.05
  compsafe gate runs/ --spec gptq-w4g64 --max-toxicity-increase 0.02 --max-ppl-ratio 1.1

A bar is crossed when a change is significant (BH q <= --fdr, CI excluding 0), harmful,
and its point estimate is beyond the bar. Exit status: 0 passed, 1 crossed, 2 usage or data error.
"""


def _common(p) -> None:
    p.add_argument("--fdr", type=float, default=0.05, help="false discovery rate (0.05)")
    p.add_argument("--n-boot", type=int, default=1000, help="paired bootstrap replicates")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def register(sub) -> None:
    """Add the ``compare`` and ``gate`` subcommands to ``compsafe``'s subparsers."""
    p = sub.add_parser("compare", help="paired differences between two models' results",
                       epilog=COMPARE_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="results store: a .sqlite file or the folder holding it")
    p.add_argument("model_a", help="reference: a model name or spec label (e.g. dense)")
    p.add_argument("model_b", help="compared: a model name or spec label (e.g. wanda-50)")
    p.add_argument("--all", action="store_true", help="print every row")
    _common(p)
    p.set_defaults(func=run_compare)
    g = sub.add_parser("gate", help="pass (0) only when the evidence shows a compression "
                       "setting within its safety bars; 1 crossed, 3 inconclusive",
                       epilog=GATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("store", help="results store: a .sqlite file or the folder holding it")
    g.add_argument("--spec", required=True, help="spec label of the gated setting (wanda-50)")
    g.add_argument("--baseline", default="dense", help="baseline spec label (dense)")
    g.add_argument("--max-bias-increase", type=float, default=None,
                   help="largest allowed increase of a representational bias score")
    g.add_argument("--max-toxicity-increase", type=float, default=None,
                   help="largest allowed increase of a toxicity / negative-regard metric")
    g.add_argument("--max-ppl-ratio", type=float, default=None,
                   help="largest allowed perplexity ratio, compressed / baseline")
    _common(g)
    g.set_defaults(func=run_gate)


def _fmt(x, spec="+.3f") -> str:
    """A number, or "-" for None."""
    return "-" if x is None else format(x, spec)


def format_table(diffs, show_all: bool = False) -> str:
    """A fixed-width table of paired differences; flags: WORSE, better, changed."""
    head = ("task", "subset", "group", "metric", "n", "A", "B", "B-A", "95% CI", "MDE80", "test",
            "q", "")
    lines = []
    for d in diffs:
        if not (show_all or d.significant or d.group == "all"):
            continue
        flag = ("WORSE" if d.worse else "better" if d.significant and d.worse is False
                else "changed" if d.significant else "")
        ci = "-" if d.ci_low is None else f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]"
        metric = f"{d.metric}[{d.scorer}]" if d.scorer and d.metric in SCORED else d.metric
        lines.append((d.task, d.subset, d.group, metric, str(d.n), _fmt(d.baseline, ".3f"),
                      _fmt(d.value, ".3f"), _fmt(d.diff), ci, _fmt(d.mde, ".3f"), d.test,
                      _fmt(d.q_value, ".2g"), flag))
    widths = [max(len(str(r[i])) for r in [head, *lines]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *lines])


def run_compare(args) -> int:
    from compsafe.errors import CompsafeError
    from compsafe.report.load import load_runs
    from compsafe.report.paired import diffs_for_pairs, pair_models

    pairs = pair_models(load_runs(args.store), args.model_a, args.model_b)
    if not pairs:
        raise CompsafeError(f"{args.model_a} and {args.model_b} share no task run with the "
                            "same task configuration; nothing to pair")
    diffs = diffs_for_pairs(args.store, pairs, args.fdr, args.n_boot, args.seed)
    print(format_table(diffs, args.all))
    n_sig = sum(d.significant for d in diffs)
    n_worse = sum(bool(d.worse) for d in diffs)
    print(f"{len(diffs)} paired rows over {len(pairs)} tasks; {n_sig} significant at FDR "
          f"{args.fdr:g}, {n_worse} worse for {args.model_b} than {args.model_a}")
    print("n: paired items; MDE80: the smallest |B-A| this n detects with 80% power "
          "(alpha 0.05), so a row without a flag means 'not detected', not 'no change'; "
          "test 'untestable': too few items for any test to reach p <= 0.05")
    return 0


def run_gate(args) -> int:
    from compsafe.errors import CompsafeError
    from compsafe.report.gate import gate
    from compsafe.report.load import load_runs
    from compsafe.report.paired import diffs_for_pairs, pair_runs

    bars = (args.max_bias_increase, args.max_toxicity_increase, args.max_ppl_ratio)
    if all(b is None for b in bars):
        raise CompsafeError("gate needs a bar: --max-bias-increase, --max-toxicity-increase "
                            "or --max-ppl-ratio")
    runs = load_runs(args.store)
    labels = sorted({r["spec_label"] for r in runs if r["status"] == "done"
                     and r.get("spec_label")})
    for label in (args.spec, args.baseline):
        if label not in labels:
            raise CompsafeError(f"no finished run with spec label {label!r}; known: "
                                f"{', '.join(labels) or 'none'}")
    pairs = [(b, c) for b, c in pair_runs(runs, args.baseline)
             if c.get("spec_label") == args.spec]
    if not pairs:
        raise CompsafeError(f"no {args.spec} run has a {args.baseline} run of the same base "
                            "model, task and task configuration to compare with")
    diffs = diffs_for_pairs(args.store, pairs, args.fdr, args.n_boot, args.seed)
    verdict = gate(diffs, *bars)
    if verdict.outcome == "failed":
        crossed = verdict.crossings
        more = f" (+{len(crossed) - 1} more)" if len(crossed) > 1 else ""
        print(f"gate: FAILED {crossed[0].reason()}{more}")
    elif verdict.outcome == "inconclusive":
        more = (f" (+{len(verdict.open) - 1} more rows not shown within their bar)"
                if len(verdict.open) > 1 else "")
        print(f"gate: INCONCLUSIVE {verdict.open[0].reason()}{more}")
    else:
        print(f"gate: passed {args.spec} vs {args.baseline}: all {verdict.checked} gated rows "
              f"of {len(diffs)} paired rows over {len(pairs)} tasks have an upper 95% bound "
              f"below their bar")
    return verdict.exit_code

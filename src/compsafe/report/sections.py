"""The report's sections as HTML: summary, one section per dimension, trade-offs, methods.

Every value from the store (model, setting, group, subset names, generations) goes through
``html.el``, which escapes it; nothing here concatenates raw strings into markup. The
summary answers the question first (what got worse, and for whom); the dimension sections
hold the evidence (tables of value, change, CI, q and a flag, then figures).

    body = summary(ctx) + dimension_section(ctx, "representational") + methods(ctx)
"""

from __future__ import annotations

from compsafe.report.cells import (
    MAX_ROWS,
    TOP,
    Context,
    caveat_list,
    diff_table,
    fmt,
    has_caveat,
    relative,
    value_cell,
    where,
)
from compsafe.report.figures import Figure, setting_order
from compsafe.report.html import Markup, el, join, table
from compsafe.report.metric_info import (
    AGGREGATE_SUBSETS,
    SAFETY_DIMENSIONS,
    metric_info,
    scored_label,
    whole_task,
)

TITLES = {"degeneration": "Degeneration harm", "representational": "Representational harm",
          "dialect": "Dialect bias", "language_modeling": "Language modeling",
          "downstream": "Downstream tasks"}
INTROS = {
    "degeneration": "Toxicity, regard and sentiment of the models' own continuations.",
    "representational": "Stereotyped answers in question answering (BBQ, UnQover).",
    "dialect": "How much harder the model finds African-American English than SAE.",
    "language_modeling": "Perplexity: the ability compression is usually judged by.",
    "downstream": "Knowledge and truthfulness benchmarks.",
}
def value_rows(ctx: Context, dim: str) -> list[dict]:
    """Whole-task rows of ``dim`` (group "all"; a pooled task's aggregates only) with a
    harmful direction, or that their task declares as context (a corpus's perplexity)."""
    infos = [(r, metric_info(r["task"], r["metric"])) for r in ctx.rows
             if r["dimension"] == dim and r["group"] == "all"]
    return whole_task([r for r, info in infos if info.worse_when or info.context])


def values_table(ctx: Context, dim: str) -> Markup:
    """Every model's own value of every task of ``dim``, the baseline's first: the numbers
    behind the changes, and the only ones for tasks no compressed model ran."""
    rows = value_rows(ctx, dim)
    if not rows:
        return Markup("")
    baseline = ctx.meta["baseline"]
    order = {}
    for r in sorted(rows, key=lambda r: (r["spec_label"] != baseline, setting_order(r))):
        order.setdefault(r["spec_label"], len(order))
    columns = sorted(order, key=order.get)
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        key = (r["base_model"], r["task"], r["subset"], r["metric"], r["scorer"])
        cells.setdefault(key, {})[r["spec_label"]] = r
    body = []
    for (base, task, subset, metric, scorer), by in sorted(cells.items(), key=lambda kv: (
            kv[0][0], kv[0][1], kv[0][2] not in AGGREGATE_SUBSETS, kv[0][2], kv[0][3])):
        first = by.get(baseline) or next(iter(by.values()))
        task_text = where(task, subset)
        if any(has_caveat(ctx, base, c, task) for c in by):
            task_text = el("span", task_text, el("sup", "†"))
        body.append([*([base] if ctx.many_bases else []), task_text,
                     scored_label(task, metric, scorer), str(first["n"]),
                     *(value_cell(by.get(c)) for c in columns)])
    head = [*(["base model"] if ctx.many_bases else []), "task / subset", "metric", "n",
            *columns]
    numeric = [*([False] if ctx.many_bases else []), False, False, True,
               *(True for _ in columns)]
    tasks = {r["task"] for r in rows}
    alone = sorted(t for t in tasks if {r["spec_label"] for r in rows if r["task"] == t}
                   == {baseline})
    note = (el("p", f"Only {baseline} was evaluated on {', '.join(alone)}: "
                    "no compressed model to compare with.", class_="note") if alone else None)
    return join([el("details", el("summary", f"Values of every model ({len(body)} rows, "
                                             f"{baseline} first; 95% CI below each value)"),
                    el("div", table(head, body, numeric), class_="wrap"), note,
                    caveat_list(ctx, tasks), open=True)])


def summary(ctx: Context) -> Markup:
    valid = [d for d in ctx.diffs if d.diff is not None]
    worse = sorted((d for d in valid if d.significant and d.worse), key=lambda d: -relative(d))
    better = [d for d in valid if d.significant and d.worse is False]
    cards = el("div", [el("div", el("b", str(v)), el("span", k), class_="card") for k, v in (
        ("compression settings", len(ctx.settings)), ("paired comparisons", len(valid)),
        ("significantly worse", len(worse)), ("significantly better", len(better)),
        ("divergent-group findings", len(ctx.divergences)))], class_="cards")
    fdr = ctx.meta["fdr"]
    intro = el("p", "Changes of each compressed model against the ", el("b", ctx.meta["baseline"]),
               f" baseline on the same items, significant after Benjamini–Hochberg at FDR {fdr:g}"
               ", sorted by size relative to the baseline value. In every table, n is the "
               "number of paired items and MDE (80%) the smallest change that n detects with "
               "80% power: a row without a flag means the change was not detected at this "
               "sample size, not that there was none; 'untestable' rows have too few items "
               "for any test to reach p ≤ 0.05.")
    # Safety first, one dimension after another; language modelling and downstream
    # changes are context for them, one click away.
    found = Markup("")
    for dim in SAFETY_DIMENSIONS:
        tested = [d for d in valid if d.dimension == dim and d.worse is not None]
        if not tested:
            continue
        harmful = [d for d in worse if d.dimension == dim]
        found += el("h3", TITLES[dim])
        if not harmful:
            found += el("p", f"Nothing significantly worse at FDR {fdr:g} "
                             f"({len(tested)} paired comparisons).", class_="muted")
            continue
        found += diff_table(ctx, harmful[:TOP], with_group=True)
        if len(harmful) > TOP:
            found += el("details", el("summary", f"{len(harmful) - TOP} more significantly "
                                                 f"harmful changes in {TITLES[dim].lower()}"),
                        diff_table(ctx, harmful[TOP:], with_group=True))
    if not found:
        found = el("p", "No safety measure was compared.", class_="muted")
    context = [d for d in worse if d.dimension not in SAFETY_DIMENSIONS]
    if context:
        found += el("details", el("summary", f"Language modelling and downstream: {len(context)} "
                                             "significantly worse (context for the above)"),
                    diff_table(ctx, context, with_group=True))
    return join([el("h2", "What got worse, and for whom", id="summary"), incomplete(ctx),
                 cards, intro, found, el("h3", "Divergent groups"), divergences(ctx)])


def incomplete(ctx: Context) -> Markup | None:
    """A warning naming the runs whose metrics leave failed scores out (None if none)."""
    if not ctx.incomplete:
        return None
    runs = join(el("li", el("b", r["model"]), f" ({r['spec_label']}) ", el("code", r["task"]),
                    f": {r['n_failed']} failed scores")
                 for r in ctx.incomplete)
    return el("div", el("p", el("b", "Incomplete: "), f"{len(ctx.incomplete)} run(s) left "
                        "failed scores (scorer or API errors) out of their metrics; their rows "
                        "are marked incomplete in data/tidy.csv. Run the same command again to "
                        "retry only the failed scores."), el("ul", runs), class_="warn")


def divergences(ctx: Context) -> Markup:
    if not ctx.divergences:
        return el("p", "No group moved differently from the others.", class_="muted")
    scorers = {d.task: d.scorer for d in ctx.diffs if d.scorer}
    rows = [[v.kind.replace("_", " "), v.base_model if ctx.many_bases else v.method,
             where(v.task, v.subset), scored_label(v.task, v.metric, scorers.get(v.task)),
             join((el("code", g) for g in v.groups), ", "),
             v.detail] for v in ctx.divergences[:MAX_ROWS]]
    head = ["finding", "model" if ctx.many_bases else "method", "task / subset", "metric",
            "groups", "detail"]
    return el("div", table(head, rows), class_="wrap")


def figure(f: Figure) -> Markup:
    return el("figure", el("a", el("img", src=f.png, alt=f.title), href=f.svg),
              el("figcaption", el("b", f.title), ". ", f.caption, " ",
                 el("a", "SVG", href=f.svg)))


def figure_grid(figs: list[Figure]) -> Markup:
    """Small figures side by side (two per row on a laptop screen)."""
    return el("div", [figure(f) for f in figs], class_="grid") if figs else Markup("")


def skipped_notes(ctx: Context, dimension: str) -> Markup:
    notes = [s for s in ctx.figures.skipped if s.dimension == dimension]
    return join(el("p", f"Figure not drawn ({s.kind.replace('_', ' ')}): {s.reason}.",
                   class_="note") for s in notes)




def dimension_section(ctx: Context, dim: str) -> Markup:
    head = [el("h2", TITLES.get(dim, dim), id=dim), el("p", INTROS.get(dim, ""), class_="lead")]
    diffs = sorted((d for d in ctx.diffs if d.dimension == dim and d.diff is not None),
                   key=lambda d: (d.task, d.subset, d.metric, setting_order(d)))
    if not any(r["dimension"] == dim for r in ctx.rows):
        return join([*head, el("p", "No results stored for this dimension.", class_="muted")])
    directed = [d for d in diffs if metric_info(d.task, d.metric).worse_when]
    overall = [d for d in directed if d.group == "all"]
    # Tasks with a pooled subset ("all": every BBQ category) show it (and BBQ's mean over
    # categories) first; their per-subset rows are one click away, so the table stays
    # short enough to read.
    whole = {id(d) for d in whole_task(overall)}
    per_subset = [d for d in overall if id(d) not in whole]
    overall = [d for d in overall if id(d) in whole]
    groups = [d for d in directed if d.group != "all" and d.significant]
    figs = ctx.figures.of(dim)
    parts = [*head, el("h3", "Overall changes"),
             figure_grid([f for f in figs if f.kind == "metric_vs_compression"])]
    parts.append(diff_table(ctx, overall, with_group=False) if overall else
                 el("p", unpaired_reason(ctx, dim), class_="muted"))
    parts.append(values_table(ctx, dim))
    if per_subset:
        parts.append(el("details", el("summary", f"Per subset ({len(per_subset)} rows)"),
                        diff_table(ctx, per_subset, with_group=False)))
    parts.append(el("h3", "Changes per group"))
    parts += [figure(f) for f in figs if f.kind != "metric_vs_compression"]
    parts.append(diff_table(ctx, groups, with_group=True) if groups else
                 el("p", "No group changed significantly.", class_="muted"))
    parts.append(skipped_notes(ctx, dim))
    if dim == "degeneration":
        parts.append(examples(ctx))
    diag = [d for d in diffs if not metric_info(d.task, d.metric).worse_when and d.group == "all"]
    if diag:
        parts.append(el("details", el("summary", f"Diagnostics without a harmful direction "
                                                 f"({len(diag)} rows)"),
                        diff_table(ctx, diag, with_group=False)))
    return join(parts)


def unpaired_reason(ctx: Context, dim: str) -> str:
    """Why a dimension has no paired change: which tasks lack a baseline or a compressed run."""
    baseline = ctx.meta["baseline"]
    by_task: dict[str, set[str]] = {}
    for r in ctx.rows:
        if r["dimension"] == dim:
            by_task.setdefault(r["task"], set()).add(r["spec_label"])
    only_base = sorted(t for t, s in by_task.items() if s == {baseline})
    no_base = sorted(t for t, s in by_task.items() if baseline not in s)
    parts = []
    if only_base:
        parts.append(f"no compressed model was evaluated on {', '.join(only_base)} (the "
                     f"{baseline} values are below)")
    if no_base:
        parts.append(f"{baseline} was not evaluated on {', '.join(no_base)}, so nothing "
                     "pairs with the compressed runs")
    return ("No paired overall changes: " + "; ".join(parts) + "." if parts
            else "No paired overall changes: no items are shared by the baseline and the "
                 "compressed runs.")


def examples(ctx: Context) -> Markup:
    parts = [el("h3", "Most toxic generations per setting")]
    if not ctx.examples:
        return join([*parts, el("p", "No scored generations with a toxicity scorer in the "
                                     "store.", class_="muted")])
    parts.append(el("p", "The highest-scored continuations of each setting, shown as text. "
                         "They may be offensive.", class_="note"))
    rows = []
    for (base, setting), items in ctx.examples.items():
        name = f"{base} · {setting}" if ctx.many_bases else setting
        rows += [[name, e["task"], el("code", e["group"]), fmt(e["score"]),
                  el("div", e["prompt"], class_="gen"), el("div", e["text"], class_="gen")]
                 for e in items]
    head = ["setting", "task", "group", "score", "prompt", "continuation"]
    numeric = [False, False, False, True, False, False]
    return join([*parts, el("div", table(head, rows, numeric), class_="wrap")])


def tradeoffs(ctx: Context) -> Markup:
    figs = ctx.figures.of("")
    return join([el("h2", "Trade-offs across dimensions", id="tradeoffs"),
                 *(figure(f) for f in figs), skipped_notes(ctx, "")])


def downloads(ctx: Context) -> Markup:
    items = [el("li", el("a", p.as_posix(), href=p.as_posix())) for p in ctx.exports]
    return join([el("h2", "Data", id="data"),
                 el("p", "Every number above as files: tidy rows, paired differences, and "
                         "the reference study's wide layout."), el("ul", items)])


def methods(ctx: Context) -> Markup:
    m = ctx.meta
    facts = [("baseline", m["baseline"]), ("false discovery rate", f"{m['fdr']:g} "
             "(Benjamini–Hochberg over all groups and metrics of this report)"),
             ("bootstrap replicates", m["n_boot"]), ("seed", m["seed"]),
             ("tests", m["tests"]), ("generation scorers", m.get("scorers", "—")),
             ("compsafe version", m["version"]), ("store", m["store"]),
             ("runs / metric rows", f"{m['n_runs']} / {len(ctx.rows)}"),
             ("protocol", protocol_fact(ctx.rows)), ("generated", m["generated"])]
    return el("footer", el("h2", "Methods", id="methods"),
              el("p", "Δ is compressed − dense on the same items; CIs are 95% paired "
                      "bootstrap percentile intervals; ratio metrics are recomputed on each "
                      "resample. ▲ worse / ▼ better: significant after FDR control, in the "
                      "metric's harmful direction."),
              el("dl", [[el("dt", k), el("dd", str(v))] for k, v in facts]))


PROTOCOL_DOC = "docs/protocol.md"
"""compsafe's table of every setting where the reference study's protocol and compsafe's
differ (in the compsafe repository)."""


def protocol_fact(rows: list[dict]) -> str:
    """Which protocols the report's rows follow, and where their differences are listed."""
    names = sorted({r["protocol"] for r in rows if r.get("protocol")}) or ["compsafe"]
    return (f"{' and '.join(names)} (runs of different protocols are never paired; what "
            f"differs from the reference study: {PROTOCOL_DOC} in compsafe)")


def nav(dims: list[str]) -> Markup:
    links = [("summary", "Summary"), *((d, TITLES.get(d, d)) for d in dims),
             ("tradeoffs", "Trade-offs"), ("data", "Data"), ("methods", "Methods")]
    return el("nav", [el("a", text, href=f"#{anchor}") for anchor, text in links])

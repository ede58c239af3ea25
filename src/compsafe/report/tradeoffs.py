"""Figures across dimensions: degeneration vs representational harm, and the perplexity
vs safety trade-off with its Pareto front (Xu et al. 2024, figures 3 and 4).

One metric per dimension stands for it: the one most settings have, preferring the
reference study's headline metrics (``HEADLINE``) and pooled subsets. Called by
``figures.make_figures``; drawing is in ``plots.py``.

    front = pareto_front([("dense", 19.1, 0.15), ("wanda-50", 23.0, 0.14)])
"""

from __future__ import annotations

from collections import defaultdict

from compsafe.report import plots
from compsafe.report.figures import (
    FigureContext,
    FigureSet,
    Skipped,
    is_baseline,
    setting_order,
    where_label,
    worse_text,
)
from compsafe.report.metric_info import badness
from compsafe.report.plots import Point

HEADLINE = ("expected_max_toxicity", "toxicity_probability", "mean_score", "frac_toxic",
            "negative_regard_rate", "s_amb", "s_dis", "mu", "model_eta", "token_ppl",
            "word_ppl", "ppl_ratio_aave_over_sae", "acc", "mc2")
"""Metrics the reference study leads with; they pick the axes when a dimension has several
(the others are still drawn in their own figures)."""


def _pick(ctx: FigureContext, items: list[dict], dimension: str) -> tuple | None:
    """The (task, subset, metric) of ``dimension`` with the most settings, preferring the
    reference study's headline metrics and pooled subsets."""
    count = defaultdict(set)
    for d in items:
        if d["dimension"] == dimension and d["group"] == "all" and ctx.worse(d["task"],
                                                                             d["metric"]):
            count[(d["task"], d["subset"], d["metric"])].add((d["base_model"], d["spec_label"]))
    if not count:
        return None
    return min(count, key=lambda k: (-len(count[k]), HEADLINE.index(k[2]) if k[2] in HEADLINE
                                     else len(HEADLINE), k[1] != "all", k))


def _select(items: list[dict], key: tuple) -> dict[tuple, dict]:
    return {(d["base_model"], d["spec_label"]): d for d in items
            if (d["task"], d["subset"], d["metric"]) == key and d["group"] == "all"}


def harm_scatter(ctx: FigureContext, rows, diffs, out: FigureSet, limit: int) -> None:
    """Δ degeneration metric against Δ representational metric, one point per setting."""
    kind = "harm_scatter"
    valid = [d for d in diffs if d["diff"] is not None]
    xk, yk = _pick(ctx, valid, "degeneration"), _pick(ctx, valid, "representational")
    if xk is None or yk is None:
        missing = "degeneration" if xk is None else "representational"
        out.skipped.append(Skipped(kind, "", f"no {missing}-harm metric with paired changes"))
        return
    xs, ys = _select(valid, xk), _select(valid, yk)
    points = [Point(xs[s]["diff"], ys[s]["diff"], ys[s]["ci_low"], ys[s]["ci_high"],
                    _name(ctx, s), xs[s]["method"], xs[s]["ci_low"], xs[s]["ci_high"])
              for s in sorted(set(xs) & set(ys), key=lambda s: setting_order(xs[s]))]
    if not points:
        out.skipped.append(Skipped(kind, "", "no compression setting has both a degeneration "
                                   "and a representational change"))
        return
    xl, yl = (f"Δ {ctx.label(k[0], k[2])} ({where_label(k)})" for k in (xk, yk))
    title = "Degeneration vs representational harm (change against dense)"
    fig = plots.harm_scatter(points, ctx.style, xl, yl, ctx.worse(xk[0], xk[2]),
                             ctx.worse(yk[0], yk[2]), title)
    caption = "One point per compression setting; error bars are 95% paired bootstrap CIs."
    if {ctx.worse(xk[0], xk[2]), ctx.worse(yk[0], yk[2])} <= {"higher", "lower"}:
        caption += " The shaded quadrant is worse on both."
    else:  # a signed bias score: both signs are bias, so no single quadrant is "worse"
        caption += (" For a signed bias score or a preference rate, moving away from its "
                    "unbiased value on either side is worse.")
    ctx.save(fig, out, kind, "", title, caption, *xk, *yk)


def _name(ctx: FigureContext, setting: tuple) -> str:
    return f"{setting[0]} {setting[1]}" if ctx.many_bases else setting[1]


def pareto_front(points: list[tuple[str, float, float]]) -> set[str]:
    """Labels of the points no other point beats or ties on both (lower is better on both)."""
    front = set()
    for label, x, y in points:
        if not any(x2 <= x and y2 <= y and (x2 < x or y2 < y) for _, x2, y2 in points):
            front.add(label)
    return front


def tradeoff(ctx: FigureContext, rows, diffs, out: FigureSet, limit: int) -> None:
    """Perplexity against up to two safety metrics (absolute values), Pareto front marked."""
    kind = "tradeoff"
    valid = [r for r in rows if r["value"] is not None]
    xk = _pick(ctx, valid, "language_modeling")
    if xk is None:
        out.skipped.append(Skipped(kind, "", "no language-modeling metric (perplexity) stored"))
        return
    xs = _select(valid, xk)
    panels = []
    for dim in ("degeneration", "representational", "dialect"):
        yk = _pick(ctx, valid, dim)
        if yk is None or len(panels) == 2:
            continue
        ys = _select(valid, yk)
        common = sorted(set(xs) & set(ys), key=lambda s: setting_order(xs[s]))
        if len(common) < 2:
            continue
        wx, wy = ctx.worse(xk[0], xk[2]), ctx.worse(yk[0], yk[2])
        pts = [Point(xs[s]["value"], ys[s]["value"], ys[s]["ci_low"], ys[s]["ci_high"],
                     _name(ctx, s), "dense" if is_baseline(xs[s], ctx.baseline) else
                     xs[s]["method"], xs[s]["ci_low"], xs[s]["ci_high"]) for s in common]
        front = pareto_front([(p.label, badness(wx, p.x), badness(wy, p.y)) for p in pts])
        note = f"x: {worse_text(wx)}; y: {worse_text(wy)}"
        panels.append((pts, front, f"{ctx.label(yk[0], yk[2])} ({where_label(yk)})", note))
    if not panels:
        out.skipped.append(Skipped(kind, "", "no safety metric shares two or more settings "
                                   "with the perplexity rows"))
        return
    xvals = [p.x for pts, *_ in panels for p in pts if p.x > 0]
    log_x = bool(xvals) and max(xvals) / min(xvals) > 5
    title = "Perplexity vs safety trade-off"
    fig = plots.tradeoff(panels, f"{ctx.label(xk[0], xk[2])} ({where_label(xk)})", log_x, ctx.style,
                         title)
    caption = ("Absolute values per setting (dense: star). Ringed points joined by the dotted "
               "line form the Pareto front: no other setting is better on both axes.")
    ctx.save(fig, out, kind, "", title, caption, *xk)

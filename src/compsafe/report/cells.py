"""The pieces report tables are made of: the report's ``Context``, number formats, the
change flag, the task / subset cell with its caveat mark, and the table of paired changes.

Every value from the store goes through ``html.el``, which escapes it.

    diff_table(ctx, diffs, with_group=True)  # setting, task, group, metric, n, Δ, CI, q, flag
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from compsafe.report.caveats import task_caveats
from compsafe.report.figures import FigureSet
from compsafe.report.html import Markup, el, join, table
from compsafe.report.metric_info import scored_label

MAX_ROWS = 150
TOP = 15  # harmful changes listed first in the summary; the rest are one click away


@dataclass
class Context:
    """Everything a section needs; built by ``build.build_report``."""

    rows: list[dict]
    diffs: list  # PairedDiff
    divergences: list  # Divergence
    figures: FigureSet
    examples: dict[tuple[str, str], list[dict]]  # (base model, setting) -> top generations
    exports: list[Path]  # relative to the report folder
    meta: dict[str, object]
    many_bases: bool = False
    settings: list[str] = field(default_factory=list)
    caveats: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    incomplete: list[dict] = field(default_factory=list)  # runs with failed scores left


def fmt(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    if abs(v) < 1e-12:  # float noise of a difference that is really zero (-2.8e-17)
        v = 0.0
    return f"{v:+.4g}" if signed else f"{v:.4g}"


def fmt_q(q: float | None) -> str:
    return "—" if q is None else "<0.001" if q < 0.001 else f"{q:.3f}"


def ci(lo: float | None, hi: float | None) -> str:
    return "—" if lo is None or hi is None else f"[{lo:+.3g}, {hi:+.3g}]"


def flag(d) -> Markup:
    if not d.significant:
        return Markup("")
    if d.worse is True:
        return el("span", "▲ worse", class_="worse nowrap")
    if d.worse is False:
        return el("span", "▼ better", class_="better nowrap")
    return el("span", "changed", class_="nowrap")


def where(task: str, subset: str) -> str:
    if subset in (task, "all"):
        return task
    return subset if subset.startswith(f"{task}/") else f"{task} / {subset}"


def setting_name(ctx: Context, d) -> str:
    return f"{d.base_model} · {d.spec_label}" if ctx.many_bases else d.spec_label


def relative(d) -> float:
    """Size of a change for sorting: relative to the dense value where that is nonzero."""
    if d.baseline:
        return abs(d.diff) / abs(d.baseline)
    return abs(d.diff)


def has_caveat(ctx: Context, base: str, setting: str, task: str) -> bool:
    return bool(ctx.caveats.get((base, setting, task))
                or ctx.caveats.get((base, ctx.meta["baseline"], task)))


def task_cell(ctx: Context, d) -> Markup:
    """The task / subset cell, marked † when the task's numbers carry a caveat (listed
    under the table)."""
    text = where(d.task, d.subset)
    if has_caveat(ctx, d.base_model, d.spec_label, d.task):
        return el("span", text, el("sup", "†", title="see the caveats under this table"))
    return el("span", text)


def caveat_list(ctx: Context, tasks: set[str]) -> Markup:
    """The coverage caveats of ``tasks``, for the foot of a table showing their numbers."""
    evaluated: dict[str, set[str]] = {}
    for r in ctx.rows:
        if r["task"] in tasks:
            evaluated.setdefault(r["task"], set()).add(r["spec_label"])
    items = [el("li", "† ", el("b", task), ": ", note,
                f" ({', '.join(settings)})" if settings else "")
             for task, note, settings in task_caveats(ctx.caveats, evaluated)]
    return el("ul", items, class_="caveats") if items else Markup("")


def diff_table(ctx: Context, diffs: list, with_group: bool, limit: int = MAX_ROWS) -> Markup:
    headers = ["setting", "task / subset", *(["group"] if with_group else []), "metric", "n",
               "dense", "compressed", "Δ", "95% CI of Δ", "MDE (80%)", "q", ""]
    numeric = [False, False, *([False] if with_group else []), False, True, True, True, True,
               True, True, True, False]
    body = [[el("span", setting_name(ctx, d), class_="nowrap"), task_cell(ctx, d),
             *([el("code", d.group)] if with_group else []),
             scored_label(d.task, d.metric, d.scorer), str(d.n), fmt(d.baseline),
             fmt(d.value), fmt(d.diff, True), ci(d.ci_low, d.ci_high), fmt(d.mde),
             "untestable" if d.test == "untestable" else fmt_q(d.q_value),
             flag(d)] for d in diffs[:limit]]
    more = (el("p", f"{len(diffs) - limit} more rows in data/paired.csv.", class_="note")
            if len(diffs) > limit else None)
    return join([el("div", table(headers, body, numeric), class_="wrap"), more,
                 caveat_list(ctx, {d.task for d in diffs[:limit]})])


def value_cell(r: dict | None) -> Markup | str:
    if r is None:
        return "—"
    return join([fmt(r["value"]), el("br"), el("small", ci(r["ci_low"], r["ci_high"]),
                                              class_="muted")])

"""The report's figures: what to draw from the store's rows and paired differences.

Four kinds, after the reference study (Xu et al. 2024, figures 1-4):

- ``metric_vs_compression``: each headline metric against sparsity per pruning method,
  with CI bands, quantization settings beside it as categories, dense as a reference line;
- ``group_heatmap``: per-group changes (compressed - dense), rows groups, columns
  settings, significant cells (after FDR) outlined;
- ``harm_scatter``: change in degeneration harm against change in representational harm,
  one point per setting, CIs as error bars;
- ``tradeoff``: perplexity against safety per setting with the Pareto front.

Each figure is saved as PNG and SVG under ``OUT/figures``. A kind whose data is absent is
skipped with a reason the HTML report shows. Drawing itself lives in ``plots.py``.

    figs = make_figures(load_tidy(store), paired_diffs(store), "report/")
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from compsafe.report import plots
from compsafe.report.metric_info import (
    DIMENSIONS,
    harm,
    metric_info,
    scored_label,
    unbiased_centre,
)
from compsafe.report.plots import Point, Style

WORSE_TEXT = {"higher": "higher is worse", "lower": "lower is worse"}


def worse_text(worse_when: str | None) -> str:
    """"higher is worse", "further from 50 is worse", ... ("" without a direction)."""
    centre = unbiased_centre(worse_when)
    if centre is not None:
        return f"further from {centre:g} is worse"
    return WORSE_TEXT.get(worse_when or "", "")
MAX_GROUPS = 30


@dataclass(frozen=True)
class Figure:
    """One saved figure; ``png``/``svg`` are paths relative to the report folder."""

    kind: str
    dimension: str  # its report section; "" for figures across dimensions
    title: str
    caption: str
    png: str
    svg: str


@dataclass(frozen=True)
class Skipped:
    """A figure kind (or part of one) not drawn, and why."""

    kind: str
    dimension: str
    reason: str


@dataclass
class FigureSet:
    figures: list[Figure] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def of(self, dimension: str) -> list[Figure]:
        return [f for f in self.figures if f.dimension == dimension]


def _scorers(rows: list[dict]) -> dict[str, str]:
    """Each generation task's scorer name (several: joined with "/")."""
    found: dict[str, set] = {}
    for r in rows:
        if r.get("scorer"):
            found.setdefault(r["task"], set()).add(r["scorer"])
    return {t: "/".join(sorted(s)) for t, s in found.items()}


def make_figures(rows: list[dict], diffs: Iterable, out_dir: str | Path, baseline: str = "dense",
                 fdr: float = 0.05, limit: int = 24) -> FigureSet:
    """Draw every figure kind whose data exists; at most ``limit`` figures per kind.

    ``rows`` are ``load_tidy`` rows, ``diffs`` ``PairedDiff``s (or dicts of their fields).
    """
    diffs = [asdict(d) if is_dataclass(d) else dict(d) for d in diffs]
    ctx = FigureContext(Path(out_dir), baseline, fdr,
               Style.for_methods({r["method"] for r in [*rows, *diffs]
                                  if r.get("method") and not is_baseline(r, baseline)}),
               len({r["base_model"] for r in rows}) > 1, _scorers(rows))
    ctx.fig_dir.mkdir(parents=True, exist_ok=True)
    out = FigureSet()
    with plt.rc_context(plots.RC):
        # Imported here: tradeoffs.py builds on this module's context and helpers.
        from compsafe.report.tradeoffs import harm_scatter, tradeoff

        for draw in (_metric_figures, _heatmaps, harm_scatter, tradeoff):
            draw(ctx, rows, diffs, out, limit)
    return out


@dataclass(frozen=True)
class FigureContext:
    """What every figure of one report shares: output folder, baseline, FDR level, the
    method colours, and whether names need their base model (several base models)."""

    out_dir: Path
    baseline: str
    fdr: float
    style: Style
    many_bases: bool
    scorers: dict[str, str] = field(default_factory=dict)  # task -> its generation scorer

    @property
    def fig_dir(self) -> Path:
        return self.out_dir / "figures"

    def worse(self, task: str, metric: str) -> str | None:
        return metric_info(task, metric).worse_when

    def label(self, task: str, metric: str) -> str:
        return scored_label(task, metric, self.scorers.get(task)) or metric

    def save(self, fig, out: FigureSet, kind: str, dimension: str, title: str, caption: str,
             *key: object) -> None:
        stem = _slug(kind, *key)
        for ext in ("png", "svg"):
            # No timestamp in the SVG, so identical inputs give identical files.
            fig.savefig(self.fig_dir / f"{stem}.{ext}",
                        metadata={"Date": None} if ext == "svg" else None)
        plt.close(fig)
        out.figures.append(Figure(kind, dimension, title, caption, f"figures/{stem}.png",
                                  f"figures/{stem}.svg"))


def _slug(*parts: object) -> str:
    """A safe file name from data strings (any name from a dataset could hold '/' or '..')."""
    text = "-".join(str(p) for p in parts if p not in (None, ""))
    clean = re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.")[:80]
    return f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def is_baseline(r: dict, baseline: str) -> bool:
    """The baseline is a spec label, as ``paired.pair_runs`` matches it."""
    return r.get("spec_label") == baseline


def setting_order(r) -> tuple:
    """Pruning by method then sparsity (N:M after unstructured), then quantization by bits.

    ``r`` is a row dict or an object with the lineage fields (a ``PairedDiff``)."""
    def get(k):
        return r.get(k) if isinstance(r, dict) else getattr(r, k, None)

    family = 0 if get("sparsity") is not None else 1 if get("bits") is not None else 2
    return (family, get("method") or "", (get("structure") or "unstructured")
            != "unstructured", get("sparsity") or 0.0, -(get("bits") or 0),
            get("group_size") or 0, get("spec_label") or "")


def _quant_tick(r: dict) -> str:
    if r.get("bits") is None:
        return r.get("spec_label") or r.get("method") or "?"
    return f"{r['bits']}-bit" + (f" g{r['group_size']}" if r.get("group_size") else "")


def where_label(k: tuple) -> str:
    task, subset, _ = k
    if subset in (task, "all") or subset.startswith(f"{task}/"):  # "wikitext2/chunks"
        return subset if subset.startswith(f"{task}/") else task
    return f"{task}/{subset}"


def _title(ctx: FigureContext, base: str, task: str, subset: str, what: str) -> str:
    where = where_label((task, subset, None))
    return (f"{base}: " if ctx.many_bases else "") + f"{where}: {what}"


def _axis(ctx: FigureContext, task: str, metric: str) -> str:
    worse = worse_text(ctx.worse(task, metric))
    return _wrap(ctx.label(task, metric)) + (f"\n({worse})" if worse else "")


def _wrap(text: str, width: int = 34) -> str:
    """Long metric labels on several lines, so an axis label never runs off the figure."""
    return "\n".join(textwrap.wrap(text, width)) or text


def _point(r: dict, x: float, label: str = "") -> Point:
    return Point(x, r["value"], r.get("ci_low"), r.get("ci_high"), label, r.get("method") or "")


def _metric_figures(ctx: FigureContext, rows, diffs, out: FigureSet, limit: int) -> None:
    kind = "metric_vs_compression"
    groups = defaultdict(list)
    for r in rows:
        if r["group"] == "all" and r["value"] is not None and ctx.worse(r["task"], r["metric"]):
            groups[(r["dimension"], r["base_model"], r["task"], r["subset"], r["metric"])].append(r)
    # Where a task has a pooled "all" subset, its per-subset breakdown goes to the heatmaps.
    pooled = {(k[1], k[2], k[4]) for k in groups if k[3] == "all"}
    keys = [k for k in groups if k[3] == "all" or (k[1], k[2], k[4]) not in pooled]
    keys = [k for k in keys if any(not is_baseline(r, ctx.baseline) for r in groups[k])]
    keys.sort(key=lambda k: (_dim_index(k[0]), *k[1:]))
    for dim in DIMENSIONS:
        if not any(k[0] == dim for k in keys) and any(r["dimension"] == dim for r in rows):
            out.skipped.append(Skipped(kind, dim, "no metric with a harmful direction has "
                                       "values for a compressed setting"))
    for k in capped(keys, limit, kind, out, lambda k: _title(ctx, *k[1:4], ctx.label(k[2], k[4])),
                    "their numbers are in the tables"):
        dim, base, task, subset, metric = k
        dense = next((_point(r, 0.0, "dense") for r in groups[k] if is_baseline(r, ctx.baseline)),
                     None)
        lines, nm, quant = defaultdict(list), defaultdict(list), defaultdict(list)
        comp = sorted((r for r in groups[k] if not is_baseline(r, ctx.baseline)), key=setting_order)
        ticks = list(dict.fromkeys(_quant_tick(r) for r in comp if r.get("sparsity") is None))
        for r in comp:
            if r.get("sparsity") is None:
                quant[r["method"]].append(_point(r, ticks.index(_quant_tick(r))))
            elif (r.get("structure") or "unstructured") == "unstructured":
                lines[r["method"]].append(_point(r, r["sparsity"]))
            else:
                nm[f"{r['method']} {r['structure']}"].append(_point(r, r["sparsity"]))
        title = _title(ctx, base, task, subset, ctx.label(task, metric))
        fig = plots.metric_vs_compression(dict(lines), dict(nm), dict(quant), ticks, dense,
                                          ctx.style, title, _axis(ctx, task, metric))
        caption = ("Value per compression setting with 95% bootstrap CI (bands, bars); "
                   "dashed line: dense baseline with its CI.")
        ctx.save(fig, out, kind, dim, title, caption, base, task, subset, metric)


def capped(keys: list[tuple], limit: int, kind: str, out: FigureSet, name, where: str
           ) -> list[tuple]:
    """At most ``limit`` of ``keys`` per dimension (``key[0]``); for each dimension that
    loses some, a note in that dimension's section naming what was not drawn."""
    kept, dropped = [], defaultdict(list)
    for k in keys:
        (kept if sum(1 for j in kept if j[0] == k[0]) < limit else dropped[k[0]]).append(k)
    for dim, lost in dropped.items():
        names = "; ".join(name(k) for k in lost[:8]) + ("; …" if len(lost) > 8 else "")
        out.skipped.append(Skipped(kind, dim, f"{len(lost)} more not drawn (at most {limit} "
                                   f"per section; {where}): {names}"))
    return kept


def _dim_index(dim: str) -> int:
    return DIMENSIONS.index(dim) if dim in DIMENSIONS else len(DIMENSIONS)


def _heatmaps(ctx: FigureContext, rows, diffs, out: FigureSet, limit: int) -> None:
    kind = "group_heatmap"
    cells = defaultdict(list)
    for d in diffs:
        if d["group"] != "all" and d["diff"] is not None and ctx.worse(d["task"], d["metric"]):
            cells[(d["dimension"], d["base_model"], d["task"], d["subset"], d["metric"])].append(d)
    keys = [k for k, ds in cells.items() if len({d["group"] for d in ds}) >= 2]
    if not keys:
        out.skipped.append(Skipped(kind, "", "no metric has paired changes for two or more "
                                   "groups"))
        return
    # Heatmaps with the most significant cells first: those are the ones to look at.
    keys.sort(key=lambda k: (-sum(d["significant"] for d in cells[k]), _dim_index(k[0]), *k))
    for k in capped(keys, limit, kind, out, lambda k: _title(ctx, *k[1:4], ctx.label(k[2], k[4])),
                    "see data/paired.csv"):
        dim, base, task, subset, metric = k
        ds = cells[k]
        settings = list(dict.fromkeys(d["spec_label"] for d in sorted(ds, key=setting_order)))
        groups = sorted({d["group"] for d in ds})
        note = ""
        if len(groups) > MAX_GROUPS:
            size = defaultdict(float)
            for d in ds:
                size[d["group"]] = max(size[d["group"]], abs(d["diff"]))
            groups = sorted(sorted(groups, key=lambda g: -size[g])[:MAX_GROUPS])
            note = f" Showing the {MAX_GROUPS} groups with the largest changes."
        values = np.full((len(groups), len(settings)), np.nan)
        harms = np.full(values.shape, np.nan)
        sig = np.zeros(values.shape, dtype=bool)
        counts = np.zeros(values.shape, dtype=int)
        worse = ctx.worse(task, metric)
        for d in ds:
            if d["group"] in groups:
                i, j = groups.index(d["group"]), settings.index(d["spec_label"])
                values[i, j], sig[i, j] = d["diff"], bool(d["significant"])
                h = harm(worse, d["baseline"], d["value"])
                harms[i, j] = d["diff"] if h is None else h
                counts[i, j] = d["n"]
        title = _title(ctx, base, task, subset, f"change in {ctx.label(task, metric)} per group")
        cbar = (f"harm: change of {ctx.label(task, metric)} toward worse ({worse_text(worse)}); "
                "red = worse, blue = better")
        fig = plots.heatmap(values, harms, sig, [_short(g) for g in groups], settings, title,
                            cbar, counts)
        caption = (f"Colour: harm of the paired change against the dense model (red: worse, "
                   f"blue: better, whatever the metric's sign convention); text: the signed "
                   f"change (compressed − dense) and n, the paired items. Outlined cells with * "
                   f"are significant after Benjamini–Hochberg at FDR {ctx.fdr:g}." + note)
        ctx.save(fig, out, kind, dim, title, caption, base, task, subset, metric)


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"

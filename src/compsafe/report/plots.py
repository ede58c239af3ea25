"""Matplotlib drawing for the report's four figure kinds, on prepared plain data.

``figures.py`` decides what to draw (which metrics, settings and groups) and where to save
it; this module only draws. Colours are the Okabe-Ito palette (distinguishable with the
common colour-vision deficiencies) with a marker per method as a second cue; diverging
heatmaps are coloured by *harm* (ColorBrewer RdBu, centred at 0: red is worse, whatever
the metric's sign convention) and annotated with the signed change and n.

Every text from data is drawn literally (``text.parse_math`` off), so tick labels must never
be mathtext: log axes get a plain formatter (``plain_log_axis``), values within float noise
of 0 are drawn as 0 (no ``1e-17`` axis for a metric that did not change), and titles and
colour-bar labels are wrapped to the figure's width (``fit``) rather than clipped.

    fig = metric_vs_compression(series, dense, style, title="...", ylabel="...")
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FuncFormatter,
    MaxNLocator,
    NullFormatter,
    PercentFormatter,
)
from matplotlib.transforms import Bbox  # noqa: E402

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000",
             "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DENSE_COLOUR = "#555555"
RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
      "figure.dpi": 100, "savefig.dpi": 130, "axes.spines.top": False,
      "axes.spines.right": False, "svg.hashsalt": "compsafe",
      # Group and model names come from data: a "$" must not switch on mathtext.
      "text.parse_math": False,
      # No offset or multiplier text above an axis ("1e-17", "+3.1"): values are plain.
      "axes.formatter.useoffset": False}
NOISE = 1e-12  # |value| below this is float noise of a zero (a difference of equal sums)


def fit(text: str, fig, fontsize: float = 11.0, share: float = 1.0) -> str:
    """``text`` wrapped to ``share`` of the figure's width (0.62 em per character: DejaVu
    Sans averages about 0.6 em on mixed text; 0.55 still clipped 80-character titles), so
    a long title or colour-bar label never runs off the figure. A label centred on an axes
    that sits off the figure's centre (a heatmap's colour bar) needs ``share`` < 1."""
    chars = max(20, int(share * fig.get_figwidth() * 72 / (0.62 * fontsize)) - 2)
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def plain_log_axis(axis) -> None:
    """Log-axis ticks as plain numbers ("20", "0.5"): matplotlib's default log labels are
    mathtext, which literal text would show as ``$\\mathdefault{10^{1}}$``."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def denoise(v: float | None) -> float | None:
    return 0.0 if v is not None and abs(v) < NOISE else v


@dataclass(frozen=True)
class Style:
    """A fixed colour and marker per method, shared by every figure of one report."""

    colours: dict[str, str]
    markers: dict[str, str]

    @classmethod
    def for_methods(cls, methods) -> Style:
        ms = sorted(set(methods))
        return cls({m: OKABE_ITO[i % len(OKABE_ITO)] for i, m in enumerate(ms)},
                   {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(ms)})

    def colour(self, method: str) -> str:
        return self.colours.get(method, DENSE_COLOUR)

    def marker(self, method: str) -> str:
        return self.markers.get(method, "o")


@dataclass(frozen=True)
class Point:
    """One value with its CI; ``x`` is sparsity, a category index, or another metric."""

    x: float
    y: float
    lo: float | None = None
    hi: float | None = None
    label: str = ""
    method: str = ""
    x_lo: float | None = None
    x_hi: float | None = None

    def __post_init__(self):
        for name in ("x", "y", "lo", "hi", "x_lo", "x_hi"):  # float noise of a zero is 0
            object.__setattr__(self, name, denoise(getattr(self, name)))


def _yerr(points: list[Point]) -> np.ndarray:
    return np.array([[p.y - (p.lo if p.lo is not None else p.y) for p in points],
                     [(p.hi if p.hi is not None else p.y) - p.y for p in points]])


def _xerr(points: list[Point]) -> np.ndarray:
    return np.array([[p.x - (p.x_lo if p.x_lo is not None else p.x) for p in points],
                     [(p.x_hi if p.x_hi is not None else p.x) - p.x for p in points]])


def _dense_line(ax, dense: Point | None) -> None:
    if dense is None:
        return
    ax.axhline(dense.y, color=DENSE_COLOUR, ls="--", lw=1.2, label="dense (baseline)")
    if dense.lo is not None and dense.hi is not None:
        ax.axhspan(dense.lo, dense.hi, color=DENSE_COLOUR, alpha=0.12, lw=0)


def metric_vs_compression(lines: dict[str, list[Point]], nm: dict[str, list[Point]],
                          quant: dict[str, list[Point]], quant_ticks: list[str],
                          dense: Point | None, style: Style, title: str, ylabel: str):
    """Left panel: value against sparsity, a line with a CI band per pruning method
    (starting from dense at 0) and N:M points; right panel: quantization settings as
    categories. The dense value is a dashed reference line across both panels."""
    has_prune, has_quant = bool(lines or nm), bool(quant)
    ncols = int(has_prune) + int(has_quant)
    widths = [3.2, 1.2 + 0.5 * len(quant_ticks)][: ncols] if has_prune else [1]
    fig, axes = plt.subplots(1, ncols, sharey=True, squeeze=False, layout="constrained",
                             figsize=(4.6 + 2.0 * has_quant, 3.9),
                             gridspec_kw={"width_ratios": widths})
    axes = list(axes[0])
    if has_prune:
        ax = axes.pop(0)
        for method, pts in lines.items():
            pts = ([dense] if dense else []) + sorted(pts, key=lambda p: p.x)
            xs, ys = [p.x for p in pts], [p.y for p in pts]
            ax.plot(xs, ys, marker=style.marker(method), color=style.colour(method), lw=1.8,
                    label=method)
            lo = [p.lo if p.lo is not None else p.y for p in pts]
            hi = [p.hi if p.hi is not None else p.y for p in pts]
            ax.fill_between(xs, lo, hi, color=style.colour(method), alpha=0.18, lw=0)
        for i, (name, pts) in enumerate(nm.items()):
            method = pts[0].method
            # A small shift keeps N:M points at the same sparsity apart.
            xs = [p.x + 0.012 * (i - (len(nm) - 1) / 2) for p in pts]
            ax.errorbar(xs, [p.y for p in pts], yerr=_yerr(pts), fmt=style.marker(method),
                        mfc="white", mew=1.8, ms=8, color=style.colour(method), capsize=3,
                        ls="none", label=name)
        _dense_line(ax, dense)
        ax.set_xlabel("sparsity (share of weights pruned)")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if has_quant:
        ax = axes.pop(0)
        at = {}  # methods with a point at each tick: only those share (and split) it
        for method, pts in quant.items():
            for p in pts:
                at.setdefault(p.x, []).append(method)
        for method, pts in quant.items():
            xs = [p.x + 0.3 * (at[p.x].index(method) - (len(at[p.x]) - 1) / 2)
                  / max(len(at[p.x]) - 1, 1) for p in pts]
            ax.errorbar(xs, [p.y for p in pts], yerr=_yerr(pts),
                        fmt=style.marker(method), color=style.colour(method), ms=7, capsize=3,
                        ls="none", label=method)
        _dense_line(ax, dense)
        ax.set_xticks(range(len(quant_ticks)), quant_ticks, rotation=30, ha="right")
        ax.set_xlim(-0.6, len(quant_ticks) - 0.4)
        ax.set_xlabel("quantization (weight bits)")
        if not has_prune:
            ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(fit(title, fig))
    _legend(fig)
    return fig


def _legend(fig) -> None:
    handles, labels = {}, []
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="outside lower center",
                   ncol=min(len(labels), 4), frameon=False)


def heatmap(values: np.ndarray, harms: np.ndarray, significant: np.ndarray, rows: list[str],
            cols: list[str], title: str, cbar_label: str, counts: np.ndarray | None = None):
    """Rows groups, columns settings; colour the *harm* of each change (> 0: worse, red),
    text the signed change and its paired n; significant cells outlined and starred. NaN
    cells (no paired value) stay blank; ``harms`` is finite where ``values`` is."""
    nr, nc = values.shape
    fig, ax = plt.subplots(layout="constrained",
                           figsize=(min(3.2 + 0.85 * nc + 0.06 * max(map(len, rows)), 15),
                                    min(2.9 + 0.32 * nr, 22)))
    harms = np.where(np.abs(harms) < NOISE, 0.0, harms)
    span = float(np.nanmax(np.abs(harms))) if np.isfinite(harms).any() else 1.0
    span = span or 1.0
    im = ax.imshow(np.ma.masked_invalid(harms), cmap="RdBu_r",
                   aspect="auto", norm=TwoSlopeNorm(0.0, -span, span))
    ax.set_xticks(range(nc), cols, rotation=35, ha="right")
    ax.set_yticks(range(nr), rows)
    ax.set_xlabel("compression setting")
    ax.set_ylabel("group")
    annotate = nr * nc <= 400
    for i in range(nr):
        for j in range(nc):
            v = values[i, j]
            if not math.isfinite(v):
                continue
            if significant[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="black", lw=1.8))
            if annotate:
                text = f"{denoise(v):+.3g}" + ("*" if significant[i, j] else "")
                if counts is not None:
                    text += f"\nn={int(counts[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7.5,
                        color="white" if abs(harms[i, j]) > 0.6 * span else "black")
    # Below the plot, horizontal: the label is long, and a short heatmap has no room for it
    # along a vertical bar.
    cb = fig.colorbar(im, ax=ax, location="bottom", shrink=0.5, aspect=35, pad=0.02)
    # Five ticks at most: a half-width bar with matplotlib's default eight runs its labels
    # into each other ("-1.00-0.75-0.50").
    cb.locator = MaxNLocator(5, symmetric=True)
    cb.formatter = FuncFormatter(lambda v, _: f"{v:+.2g}" if v else "0")
    cb.update_ticks()
    cb.set_label(fit(cbar_label, fig, 10, share=0.6))
    # A figure title, centred on the figure: over the axes it would be pushed right by the
    # group labels and clipped.
    fig.suptitle(fit(title, fig))
    return fig


def harm_scatter(points: list[Point], style: Style, xlabel: str, ylabel: str,
                 worse_x: str | None, worse_y: str | None, title: str):
    """One point per compression setting: change in a degeneration metric (x) against the
    change in a representational one (y), both with CIs; the quadrant where both got worse
    is shaded."""
    fig, ax = plt.subplots(layout="constrained", figsize=(6.4, 4.8))
    ax.axhline(0, color=DENSE_COLOUR, lw=1)
    ax.axvline(0, color=DENSE_COLOUR, lw=1)
    for method in dict.fromkeys(p.method for p in points):
        pts = [p for p in points if p.method == method]
        ax.errorbar([p.x for p in pts], [p.y for p in pts], yerr=_yerr(pts), xerr=_xerr(pts),
                    fmt=style.marker(method), color=style.colour(method), ms=7, capsize=2,
                    elinewidth=1, ls="none", label=method)
    if worse_x in ("higher", "lower") and worse_y in ("higher", "lower"):
        x0, x1 = ax.get_xlim()
        y0, y1 = ax.get_ylim()
        xs = (0, x1) if worse_x == "higher" else (x0, 0)
        ys = (0, y1) if worse_y == "higher" else (y0, 0)
        ax.add_patch(Rectangle((xs[0], ys[0]), xs[1] - xs[0], ys[1] - ys[0], color="#D55E00",
                               alpha=0.08, lw=0, label="both worse"))
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(fit(title, fig))
    _legend(fig)
    _label_points(ax, points)
    return fig


# Candidate label offsets (points): close first, then rings further out, in 12 directions.
_OFFSETS = tuple((round(r * math.cos(a)) + (4 if math.cos(a) >= 0 else -4),
                  round(r * math.sin(a)) - 4)
                 for r in (6, 16, 28, 42) for a in np.linspace(0, 2 * math.pi, 12, endpoint=False))


def _label_points(ax, points: list[Point]) -> None:
    """Label each point with the first nearby position that overlaps no other label or
    marker (greedy placement on the drawn figure); a thin leader line when it lands far.
    Call it after the legend, so the axes no longer move."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = []
    for p in points:
        x, y = ax.transData.transform((p.x, p.y))
        taken.append(Bbox.from_extents(x - 5, y - 5, x + 5, y + 5))
    for p in sorted(points, key=lambda q: (q.x, q.y)):
        for k, (dx, dy) in enumerate((*_OFFSETS, _OFFSETS[0])):
            last = k == len(_OFFSETS)
            text = {"fontsize": 7.5, "color": "#333333", "ha": "left" if dx >= 0 else "right",
                    "xytext": (dx, dy), "textcoords": "offset points"}
            ann = ax.annotate(p.label, (p.x, p.y), **text)
            bb = ann.get_window_extent(renderer)  # the text only: no arrow yet
            inside = frame.containsx(bb.x0) and frame.containsx(bb.x1) and \
                frame.containsy(bb.y0) and frame.containsy(bb.y1)
            if last or (inside and not any(bb.overlaps(t) for t in taken)):
                taken.append(bb)
                if 12 <= k < len(_OFFSETS):  # beyond the first ring: a leader line
                    ann.remove()
                    ax.annotate(p.label, (p.x, p.y), **text, arrowprops={
                        "arrowstyle": "-", "color": "#999999", "lw": 0.6, "shrinkB": 4})
                break
            ann.remove()


def tradeoff(panels: list[tuple[list[Point], set[str], str, str]], xlabel: str, log_x: bool,
             style: Style, title: str):
    """Perplexity (x) against a safety metric (y) per setting; each panel's Pareto front
    (settings no other setting beats on both) is connected and ringed.

    ``panels``: (points, labels on the front, y label, note on which way is better)."""
    fig, axes = plt.subplots(1, len(panels), squeeze=False, layout="constrained",
                             figsize=(5.2 * len(panels), 4.6))
    for ax, (points, front, ylabel, note) in zip(axes[0], panels, strict=True):
        for method in dict.fromkeys(p.method for p in points):
            pts = [p for p in points if p.method == method]
            colour = DENSE_COLOUR if method == "dense" else style.colour(method)
            ax.errorbar([p.x for p in pts], [p.y for p in pts], yerr=_yerr(pts),
                        xerr=_xerr(pts), fmt=style.marker(method) if method != "dense" else "*",
                        ms=10 if method == "dense" else 7, color=colour, capsize=2,
                        elinewidth=0.8, ecolor=colour + "88", ls="none", label=method)
        on_front = sorted((p for p in points if p.label in front), key=lambda p: p.x)
        ax.plot([p.x for p in on_front], [p.y for p in on_front], color="black", lw=1.2,
                ls=":", zorder=1, label="Pareto front")
        ax.scatter([p.x for p in on_front], [p.y for p in on_front], s=190, facecolors="none",
                   edgecolors="black", lw=1.3, zorder=3)
        if log_x:
            ax.set_xscale("log")
            plain_log_axis(ax.xaxis)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(note, fontsize=9, color="#444444")
        ax.grid(alpha=0.3)
    fig.suptitle(fit(title, fig))
    _legend(fig)
    for ax, (points, *_rest) in zip(axes[0], panels, strict=True):
        _label_points(ax, points)
    return fig

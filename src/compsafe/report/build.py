"""Build the static report folder from a results store: ``index.html``, figures, CSVs.

The folder opens from disk (no server, no JavaScript, no external URLs):

    report/index.html            summary, one section per dimension, trade-offs, methods
    report/figures/*.png|svg     figures.py
    report/data/*.csv            exports.py (tidy rows, paired differences, wide layout)

    build_report("runs/", "report/", ReportOptions(baseline="dense", fdr=0.05))
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from compsafe import __version__
from compsafe.errors import CompsafeError, UnknownNameError
from compsafe.report import sections
from compsafe.report.caveats import run_caveats
from compsafe.report.cells import Context
from compsafe.report.figures import setting_order
from compsafe.report.html import el, join, page
from compsafe.report.load import load_runs, load_tidy, resolve_store, run_scorer
from compsafe.report.metric_info import DIMENSIONS, metric_info

log = logging.getLogger("compsafe.report")

MAX_TEXT = 400
"""Characters of a prompt or generation shown in the report (the CSVs are complete)."""


@dataclass(frozen=True)
class ReportOptions:
    baseline: str = "dense"
    fdr: float = 0.05
    n_boot: int = 1000
    seed: int = 0
    examples: int = 3  # most toxic generations shown per setting
    figure_limit: int = 24  # per figure kind


def check_baseline(rows: list[dict], baseline: str) -> None:
    """The baseline must name a stored setting by its spec label (``dense``, ``wanda-50``),
    as ``paired.pair_runs`` matches it."""
    known = {r["spec_label"] for r in rows if r["spec_label"]}
    if baseline not in known:
        raise UnknownNameError("baseline", baseline, sorted(known))


def build_report(store, out_dir, options: ReportOptions = ReportOptions(),
                 diffs: list | None = None) -> Path:
    """Write the report for ``store`` (a .sqlite file or a folder) to ``out_dir``; returns
    the path of ``index.html``. Raises ``CompsafeError`` for a missing or empty store and
    an unknown baseline. ``diffs``: the store's ``paired_diffs`` with these options, when
    the caller has them already."""
    from compsafe.report.divergent import divergent_groups
    from compsafe.report.exports import write_paired, write_tidy, write_wide
    from compsafe.report.figures import make_figures
    from compsafe.report.paired import paired_diffs

    o = options
    store_path = resolve_store(store)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CompsafeError(f"report folder {out} is a file; give a folder for --out")
    rows = load_tidy(store_path)
    if not rows:
        raise CompsafeError(f"{store_path}: the store has no metric rows yet; run "
                            f"'compsafe eval' or 'compsafe sweep' first")
    check_baseline(rows, o.baseline)
    runs = load_runs(store_path)
    log.info("%d metric rows from %d runs in %s", len(rows), len(runs), store_path)
    log.info("paired differences against %r (%d bootstrap replicates)", o.baseline, o.n_boot)
    if diffs is None:
        diffs = paired_diffs(store_path, baseline=o.baseline, fdr=o.fdr, n_boot=o.n_boot,
                             seed=o.seed)
    divergences = divergent_groups(diffs)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    exported = [*write_tidy(rows, data), write_paired(diffs, data), *write_wide(rows, data)]
    log.info("drawing figures")
    figs = make_figures(rows, diffs, out, o.baseline, o.fdr, o.figure_limit)
    log.info("%d figures drawn, %d skipped", len(figs.figures), len(figs.skipped))
    ctx = Context(
        rows=rows, diffs=diffs, divergences=divergences, figures=figs,
        examples=toxic_examples(store_path, runs, o.examples, o.baseline),
        exports=[Path(p).relative_to(out) if Path(p).is_relative_to(out) else Path(p)
                 for p in exported],
        meta={"baseline": o.baseline, "fdr": o.fdr, "n_boot": o.n_boot, "seed": o.seed,
              "tests": ", ".join(sorted({d.test for d in diffs})) or "—",
              "version": __version__, "store": store_path.resolve(), "n_runs": len(runs),
              "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "scorers": run_scorers(runs)},
        many_bases=len({r["base_model"] for r in rows}) > 1,
        caveats=run_caveats(runs, rows),
        settings=sorted({(r["base_model"], r["spec_label"]) for r in rows
                         if r["spec_label"] != o.baseline}),
        incomplete=[r for r in runs if r.get("incomplete")])
    index = out / "index.html"
    index.write_text(render(ctx), encoding="utf-8")
    log.info("report written to %s", index)
    return index


def render(ctx: Context) -> str:
    dims = [d for d in DIMENSIONS if any(r["dimension"] == d for r in ctx.rows)]
    models = sorted({r["base_model"] for r in ctx.rows})
    header = join([el("h1", "Did compression make these models less safe?"),
                   el("p", "Base model", "s" if len(models) > 1 else "", ": ",
                      join((el("b", m) for m in models), ", "),
                      f" · {len(ctx.settings)} compression settings against the ",
                      el("b", ctx.meta["baseline"]), " baseline.", class_="lead"),
                   sections.nav(dims)])
    body = join([header, sections.summary(ctx),
                 *(sections.dimension_section(ctx, d) for d in dims),
                 sections.tradeoffs(ctx), sections.downloads(ctx), sections.methods(ctx)])
    return str(page("compsafe report", body))


def toxic_examples(store_path: Path, runs: list[dict], k: int, baseline: str = "dense"
                   ) -> dict[tuple, list[dict]]:
    """The ``k`` highest-scored generations per (base model, setting), over the runs whose
    records were scored by a toxicity scorer (sentiment or regard scores are not toxicity)."""
    from compsafe.metrics.generation import scorer_kind
    from compsafe.store import Store

    found: dict[tuple, list[dict]] = defaultdict(list)
    if k <= 0:
        return {}
    settings = {}
    with Store(store_path) as st:
        for run in runs:
            if metric_info(run["task"], "").dimension != "degeneration":
                continue  # only generation tasks have scored samples; skip reading the rest
            settings[(run["base_model"], run["spec_label"])] = run
            for rec in st.records(run["run_key"]):
                scorer = rec.get("scorer")
                if not isinstance(scorer, dict) or not isinstance(rec.get("samples"), list):
                    break  # not a generation task: its records have no scored samples
                try:
                    kind = scorer_kind(str(scorer.get("scorer")))
                except UnknownNameError as e:
                    raise CompsafeError(f"run {run['run_key']} ({run['task']}): {e}; register "
                                        f"it before reporting (docs/extending.md)") from e
                if kind != "toxicity":
                    break
                group = rec.get("group")
                group = ", ".join(map(str, group)) if isinstance(group, list) else str(group)
                for s in rec["samples"]:
                    if isinstance(s.get("score"), (int, float)) and not s.get("failed"):
                        found[(run["base_model"], run["spec_label"])].append(
                            {"task": run["task"], "group": group, "score": float(s["score"]),
                             "prompt": _cut(str(rec.get("prompt", ""))),
                             "text": _cut(str(s.get("text", "")))})
    order = sorted(found, key=lambda key: (key[0], key[1] != baseline,
                                           setting_order(settings[key])))
    return {key: sorted(found[key], key=lambda e: -e["score"])[:k] for key in order}


def run_scorers(runs: list[dict]) -> str:
    """Every generation scorer behind the report's numbers, with its version, in words."""
    from compsafe.scorers import scorer_label

    found = {json.dumps(s, sort_keys=True): s for s in map(run_scorer, runs) if s}
    return "; ".join(scorer_label(s) for _, s in sorted(found.items())) or "—"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"

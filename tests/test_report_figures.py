"""Report figures: every kind drawn from a synthetic sweep store, valid PNG and SVG files,
graceful skipping when a kind's data is absent, and the Pareto front on a hand case."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from report_fixtures import build_store

from compsafe.report.figures import make_figures, setting_order
from compsafe.report.load import load_tidy
from compsafe.report.paired import paired_diffs
from compsafe.report.tradeoffs import pareto_front

KINDS = {"metric_vs_compression", "group_heatmap", "harm_scatter", "tradeoff"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    store = build_store(tmp_path_factory.mktemp("sweep") / "compsafe.sqlite", n_boot=20)
    return store, load_tidy(store), paired_diffs(store, n_boot=100, seed=0)


def _check_files(out: Path, fig) -> None:
    png, svg = out / fig.png, out / fig.svg
    assert png.read_bytes()[:8] == PNG_MAGIC, png
    assert png.stat().st_size > 5_000, f"{png} is suspiciously small"
    root = ET.parse(svg).getroot()  # well-formed XML
    assert root.tag.endswith("svg"), svg
    # File names come from data (group and task names): they must stay inside figures/.
    assert png.resolve().parent == (out / "figures").resolve()


def test_every_kind_is_drawn_as_png_and_svg(sweep, tmp_path):
    _, rows, diffs = sweep
    figs = make_figures(rows, diffs, tmp_path, limit=2)
    assert {f.kind for f in figs.figures} == KINDS
    for f in figs.figures:
        _check_files(tmp_path, f)
        assert f.title and f.caption
    # limit=2 leaves some metric figures and heatmaps undrawn, and says so
    assert any("not drawn" in s.reason for s in figs.skipped)
    dims = {f.dimension for f in figs.figures if f.kind == "metric_vs_compression"}
    assert dims <= {"degeneration", "representational", "language_modeling"}


def test_heatmap_ranks_planted_group_first(sweep, tmp_path):
    """The planted toxicity shift for "women" makes the toxigen heatmaps the ones with the
    most significant cells, so they come first."""
    _, rows, diffs = sweep
    figs = make_figures(rows, diffs, tmp_path, limit=1)
    heat = [f for f in figs.figures if f.kind == "group_heatmap"]
    degeneration = [f for f in heat if f.dimension == "degeneration"]
    assert len(degeneration) == 1 and "toxigen" in degeneration[0].title
    # the cap is per section, and each section names what it did not draw
    assert len(heat) == len({f.dimension for f in heat})
    notes = [s for s in figs.skipped if s.kind == "group_heatmap"]
    assert notes and all(s.dimension in {f.dimension for f in heat} for s in notes)
    dropped = next(s for s in notes if s.dimension == "degeneration")
    assert "more not drawn (at most 1 per section" in dropped.reason
    assert "toxigen: Mean profanity score [profanity]" in dropped.reason


def test_heatmap_colour_is_harm_whatever_the_sign_convention(monkeypatch, tmp_path):
    """Accuracy falling (lower is worse) and a signed bias moving away from 0 in either
    direction are both coloured as harm (> 0, red); the text keeps the signed change."""
    from compsafe.report import plots

    seen = {}
    real = plots.heatmap

    def spy(values, harms, *args, **kw):
        seen.setdefault("calls", []).append((values.copy(), harms.copy()))
        return real(values, harms, *args, **kw)

    monkeypatch.setattr(plots, "heatmap", spy)
    common = {"dimension": "downstream", "base_model": "m", "subset": "all", "method": "rtn",
              "bits": 4, "spec_label": "rtn-w4", "significant": True, "n": 50}
    diffs = [{**common, "task": "mmlu", "metric": "acc", "group": g, "baseline": 0.5,
              "value": 0.5 + d, "diff": d} for g, d in (("a", -0.1), ("b", 0.05))]
    diffs += [{**common, "dimension": "representational", "task": "bbq", "metric": "s_dis",
               "group": g, "baseline": b, "value": v, "diff": v - b}
              for g, b, v in (("x", -0.1, -0.3), ("y", 0.1, 0.3), ("z", 0.3, 0.1))]
    make_figures([], diffs, tmp_path)
    by_metric = {round(float(v[0, 0]), 3): h[:, 0] for v, h in seen["calls"]}
    acc, s_dis = by_metric[-0.1], by_metric[-0.2]
    assert list(acc.round(3)) == [0.1, -0.05]  # accuracy fell: harm; rose: not
    assert list(s_dis.round(3)) == [0.2, 0.2, -0.2]  # away from 0 either way: harm


def test_figures_have_plain_ticks_no_noise_axes_and_fitted_titles():
    import matplotlib.pyplot as plt

    from compsafe.report import plots
    from compsafe.report.plots import Point, Style

    style = Style.for_methods(["wanda"])
    with plt.rc_context(plots.RC):
        # a log perplexity axis: plain numbers, never "$\mathdefault{10^{1}}$"
        pts = [Point(x, 0.1 * i, label=f"s{i}", method="wanda")
               for i, x in enumerate((12.0, 40.0, 300.0, 2500.0))]
        fig = plots.tradeoff([(pts, {"s0"}, "bias", "note")], "perplexity", True, style, "t")
        fig.canvas.draw()
        labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        assert labels and not any("$" in t or "mathdefault" in t for t in labels)
        plt.close(fig)
        # a metric that did not change (float noise of 0): no 1e-17 axis
        noise = [Point(s, 1e-17 * (i - 1), label=f"p{i}", method="wanda")
                 for i, s in enumerate((0.3, 0.5, 0.7))]
        long_title = "bbq: " + "a very long metric label that would not fit " * 3
        fig = plots.metric_vs_compression({"wanda": noise}, {}, {}, [], Point(0, 0.0), style,
                                          long_title, "s_dis")
        fig.canvas.draw()
        ax = fig.axes[0]
        assert ax.yaxis.get_offset_text().get_text() == ""
        assert not any("e-" in t.get_text() for t in ax.get_yticklabels())
        # the title is wrapped inside the figure, not clipped at its edges
        box = fig._suptitle.get_window_extent(fig.canvas.get_renderer())
        assert "\n" in fig._suptitle.get_text()
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width
        plt.close(fig)


def test_missing_dimensions_are_skipped_with_reasons(sweep, tmp_path):
    _, rows, diffs = sweep
    bbq_rows = [r for r in rows if r["task"] == "bbq"]
    bbq_diffs = [d for d in diffs if d.task == "bbq"]
    figs = make_figures(bbq_rows, bbq_diffs, tmp_path)
    kinds = {f.kind for f in figs.figures}
    assert kinds == {"metric_vs_compression", "group_heatmap"}
    reasons = {s.kind: s.reason for s in figs.skipped}
    assert "degeneration" in reasons["harm_scatter"]
    assert "perplexity" in reasons["tradeoff"]
    for f in figs.figures:
        _check_files(tmp_path, f)


def test_no_data_at_all_draws_nothing(tmp_path):
    figs = make_figures([], [], tmp_path)
    assert figs.figures == []
    assert {s.kind for s in figs.skipped} >= {"group_heatmap", "harm_scatter", "tradeoff"}


def test_dense_only_store_has_no_comparison_figures(sweep, tmp_path):
    _, rows, _ = sweep
    dense = [r for r in rows if r["spec_label"] == "dense"]
    figs = make_figures(dense, [], tmp_path)
    assert figs.figures == []
    assert any(s.kind == "metric_vs_compression" for s in figs.skipped)


def test_pareto_front_hand_case():
    pts = [("dense", 10.0, 0.30), ("a", 12.0, 0.20), ("b", 12.0, 0.25), ("c", 20.0, 0.10),
           ("d", 25.0, 0.10), ("e", 9.0, 0.40)]
    # b is beaten by a (same x, lower y), d by c (same y, lower x); the rest trade off.
    assert pareto_front(pts) == {"dense", "a", "c", "e"}
    assert pareto_front([]) == set()


def test_setting_order_pruning_then_quantization():
    rows = [{"method": "rtn", "bits": 4, "spec_label": "rtn-w4"},
            {"method": "wanda", "sparsity": 0.5, "structure": "2:4", "spec_label": "wanda-2:4"},
            {"method": "wanda", "sparsity": 0.7, "structure": "unstructured"},
            {"method": "wanda", "sparsity": 0.3, "structure": "unstructured"},
            {"method": "rtn", "bits": 8, "spec_label": "rtn-w8"}]
    ordered = sorted(rows, key=setting_order)
    assert [r.get("sparsity") for r in ordered[:3]] == [0.3, 0.7, 0.5]
    assert [r["bits"] for r in ordered[3:]] == [8, 4]


def test_report_package_never_imports_torch():
    import subprocess

    code = ("import sys, compsafe.report.build, compsafe.report.figures, "
            "compsafe.report.cli_report; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent)
    assert out.stdout.strip() == "False"

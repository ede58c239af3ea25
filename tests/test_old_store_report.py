"""A store built before issue 17 reports exactly as it did then (issue 17: "the store of a
run made before the change reports identically after it").

``tests/data/store_pre17/`` holds a store built by compsafe at c4966b3 (the commit before
the registries of tasks, scorers, methods, metric declarations, model identity and option
validation) as a SQL dump, and what that version's ``compsafe report`` and
``compsafe report --findings`` wrote from it; its README says how it was built. The
current ``compsafe report`` runs on the same store and must write the same bytes, up to:

- ``index.html``'s footer values ``compsafe version``, ``store`` (the store's path: a
  temporary folder) and ``generated`` (the time of writing): each replaced by a
  placeholder, and each must occur exactly once, so nothing else can be hidden that way;
- ``findings.md``'s "Runs in the store" paragraph, added deliberately after c4966b3 by
  29ba4d3 ("Findings say which settings and tasks each model's verdicts rest on"): it
  must read exactly ``RUNS_IN_STORE`` and is then removed before the comparison.

Nothing else is normalised: a changed metric label, harm direction, dimension, number or
column fails here, with a diff of the first differing lines.
"""

from __future__ import annotations

import difflib
import re
import sqlite3
from pathlib import Path

import pytest
from sweep_helpers import run_cli

pytestmark = pytest.mark.slow  # two full reports with their figures: ~40 s on 2 busy cores

FIXTURE = Path(__file__).parent / "data" / "store_pre17"
FOOTER = ("compsafe version", "store", "generated")
RUNS_IN_STORE = (
    "Runs in the store (models without a compressed setting have no verdict):\n\n"
    "- tiny-llama: 3 settings (dense, magnitude-50, rtn-w4g32) x 5 tasks "
    "(bbq, dialect, rtp, unqover, wikitext2)\n\n")


def expected_files(folder: str) -> list[str]:
    """The old version's text outputs under ``folder`` of the fixture, relative to it."""
    root = FIXTURE / folder
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.suffix in (".csv", ".html"))


def normalise_footer(html: str) -> str:
    for name in FOOTER:
        pattern = re.compile(rf"<dt>{re.escape(name)}</dt><dd>[^<]*</dd>")
        html, n = pattern.subn(f"<dt>{name}</dt><dd>(normalised)</dd>", html)
        assert n == 1, f"index.html: footer entry {name!r} found {n} times, expected once"
    return html


REFINED_RULES = (
    # "Findings 2 and 3: verdicts rest on the comparisons that carry them" (after c4966b3):
    # finding 2 asks whether toxicity moved before calling the bias side undetectable, and
    # lists how the significant changes went; finding 3 trends only the series in which a
    # group changed significantly. The old text with exactly these edits must come out.
    ("- no significant paired difference among 14 comparisons; 95% CI widths median 0.507 "
     "(max 2.74); minimum detectable |Δ| at 80% power: median 0.439\n",
     "- why: toxicity did not change detectably: no significant paired difference among 2 "
     "comparisons; 95% CI widths median 0.147 (max 0.168); minimum detectable |Δ| at 80% "
     "power: median 0.109\n"),
    ("- both: none\n\n\n## 3.",
     "- both: none\n- degeneration: 0 significant changes of 2, 0 better, 0 worse\n"
     "- representational: 0 significant changes of 12, 0 better, 0 worse\n\n\n## 3."),
    ("rising with sparsity (mean Spearman rho > 0 over metric series with >= 3 sparsities).",
     "rising with sparsity: mean Spearman rho > 0.5 over the metric series (>= 3 sparsities) "
     "in which some group changed significantly."),
)


def with_refined_rules(markdown: str) -> str:
    """The old findings text with ``REFINED_RULES``' edits, each found exactly once."""
    for old, new in REFINED_RULES:
        assert markdown.count(old) == 1, f"findings.md: {old[:60]!r} found " \
                                         f"{markdown.count(old)} times, expected once"
        markdown = markdown.replace(old, new)
    return markdown


def without_runs_paragraph(markdown: str) -> str:
    assert markdown.count(RUNS_IN_STORE) == 1, \
        "findings.md: the 'Runs in the store' paragraph (29ba4d3) is missing or changed"
    return markdown.replace(RUNS_IN_STORE, "", 1)


def differences(pairs: list[tuple[str, str, str]]) -> str:
    """``(name, expected, got)`` -> a short diff of every file that differs ('' if none)."""
    out = []
    for name, want, got in pairs:
        if want != got:
            diff = difflib.unified_diff(want.splitlines(), got.splitlines(), f"old/{name}",
                                        f"current/{name}", n=0, lineterm="")
            out.append("\n".join(line[:300] for line in list(diff)[:20]))
    return "\n\n".join(out)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def old_store(tmp_path_factory) -> Path:
    """The fixture's SQL dump loaded into a fresh ``compsafe.sqlite``, schema version
    included (the dump's last line: ``iterdump`` leaves ``PRAGMA user_version`` out)."""
    path = tmp_path_factory.mktemp("store_pre17") / "compsafe.sqlite"
    conn = sqlite3.connect(path)
    try:
        conn.executescript(read(FIXTURE / "store.sql"))
        assert conn.execute("PRAGMA user_version").fetchone() == (5,)  # c4966b3's schema
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (15,)
    finally:
        conn.close()
    return path


def test_report_of_old_store_is_unchanged(old_store, tmp_path):
    out = tmp_path / "report"
    rc, _, err = run_cli(["report", str(old_store), "--out", str(out)])
    assert rc == 0, err
    want = expected_files("report")
    assert "index.html" in want and "data/paired.csv" in want and "data/tidy.csv" in want
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                     if p.suffix == ".csv" or p.name == "index.html")
    assert written == want, "the report writes other files than c4966b3 wrote"
    pairs = []
    for name in want:
        old, new = read(FIXTURE / "report" / name), read(out / name)
        if name == "index.html":
            old, new = normalise_footer(old), normalise_footer(new)
        pairs.append((name, old, new))
    diff = differences(pairs)
    assert not diff, diff


def test_findings_of_old_store_are_unchanged(old_store, tmp_path):
    md = tmp_path / "findings.md"
    rc, _, err = run_cli(["report", str(old_store), "--findings", str(md)])
    assert rc == 0, err
    want = expected_files("findings")
    assert want == ["paired.csv"]
    written = sorted(p.name for p in (tmp_path / "findings").glob("*.csv"))
    assert written == want, "the findings write other CSVs than c4966b3 wrote"
    pairs = [("findings.md", with_refined_rules(read(FIXTURE / "findings.md")),
              without_runs_paragraph(read(md))),
             *((f"findings/{n}", read(FIXTURE / "findings" / n),
                read(tmp_path / "findings" / n)) for n in want)]
    diff = differences(pairs)
    assert not diff, diff

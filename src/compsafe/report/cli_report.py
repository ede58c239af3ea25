"""``compsafe report``: the static HTML report of a results store.

Parsing only; the work is in ``build.py``, imported when the command runs, so that
``compsafe --help`` does not load matplotlib.

    compsafe report runs/ --baseline dense --out report/
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPORT_EXAMPLES = """\
examples:
  compsafe report runs/ --out report/                  # runs/compsafe.sqlite -> report/
  compsafe report runs/quick/compsafe.sqlite --baseline dense --fdr 0.1 --out report/
  open report/index.html                               # any browser, from disk
  compsafe report runs/validation --findings docs/validation.md   # the study's findings

The folder holds index.html (summary of what got worse and for whom, one section per
safety dimension with tables and figures, methods), figures/*.png|svg and data/*.csv.
Δ is compressed - dense on the same items, with paired bootstrap CIs; significance is
controlled by Benjamini-Hochberg at --fdr over every group and metric of the report.
"""


def add_report_parser(sub) -> None:
    """Register ``report`` on the ``compsafe`` subcommand parser."""
    p = sub.add_parser(
        "report", help="write a static HTML report (figures, tables, CSVs) of a results store",
        description="Compare compressed models with their dense baseline, per group, with "
                    "paired CIs and FDR control, and write a report folder that opens from disk.",
        epilog=REPORT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", type=Path, metavar="STORE_OR_DIR",
                   help="a results store (.sqlite) or the folder holding compsafe.sqlite")
    p.add_argument("--baseline", default="dense",
                   help="spec label of the setting every other one is compared with "
                        "(default dense; e.g. wanda-50 to compare against that)")
    p.add_argument("--out", type=Path, default=Path("report"),
                   help="report folder, created if missing (default report/)")
    p.add_argument("--fdr", type=_fraction, default=0.05,
                   help="false discovery rate for Benjamini-Hochberg (default 0.05)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="paired bootstrap replicates per comparison (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--findings", type=Path, default=None, metavar="MD",
                   help="instead of the HTML report, check the reference study's four "
                        "findings and write them as Markdown (e.g. docs/validation.md), with "
                        "headline figures and paired.csv in a folder beside it")
    p.set_defaults(func=run_report)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


def run_report(args) -> int:
    from compsafe.report.build import ReportOptions, build_report

    if args.n_boot < 1:
        from compsafe.errors import CompsafeError

        raise CompsafeError(f"--n-boot must be at least 1, got {args.n_boot}")
    if args.findings is not None:
        from compsafe.report.findings_doc import write_findings

        path = write_findings(args.store, args.findings, args.fdr, args.n_boot, args.seed)
        print(f"findings: {path}")
        return 0
    index = build_report(args.store, args.out, ReportOptions(
        baseline=args.baseline, fdr=args.fdr, n_boot=args.n_boot, seed=args.seed))
    print(f"report: {index}")
    return 0

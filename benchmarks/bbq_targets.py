"""How often BBQ's stereotyped-group fallback agrees with the official ``target_loc``.

For every item of the 11 categories, the official target (``additional_metadata.csv``,
read as the BBQ authors' scripts read it) is compared with the fallback compsafe uses when
that file is absent (``compsafe.data.bbq_targets``), with and without the templates that
give the intersectional categories' second attribute. Items whose ``target_loc`` is NA are
left out. Prints, per reported category (names split), the agreement, the share the
fallback leaves untargeted, and the share it gets wrong; then lists a few disagreements.

    python benchmarks/bbq_targets.py --data ../shared/data
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from compsafe.data.bbq import (
    CATEGORIES,
    METADATA_PATHS,
    read_category,
    subset_name,
    with_fallback_targets,
    with_official_targets,
)
from compsafe.data.bbq_targets import read_metadata, read_templates


def compare(root: Path, use_templates: bool) -> tuple[dict[str, Counter], list]:
    meta = read_metadata(next(root / p for p in METADATA_PATHS if (root / p).is_file()))
    templates = read_templates(root / "templates") if use_templates else {}
    counts: dict[str, Counter] = {}
    wrong = []
    for category in CATEGORIES:
        items = read_category(root / f"{category}.jsonl", category)
        official = with_official_targets(items, meta)
        fallback = with_fallback_targets(items, templates)
        for o, f in zip(official, fallback, strict=True):
            if o.target_idx is None:
                continue
            c = counts.setdefault(subset_name(category, o.label_type), Counter())
            c["n"] += 1
            c["same_subset"] += o.label_type == f.label_type
            if f.target_idx is None:
                c["none"] += 1
            elif f.target_idx == o.target_idx:
                c["agree"] += 1
            else:
                wrong.append(o)
    return counts, wrong


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data"))
    args = ap.parse_args()
    root = Path(args.data) / "bbq"
    for use_templates in (True, False):
        counts, wrong = compare(root, use_templates)
        print(f"\nfallback {'with' if use_templates else 'without'} templates "
              f"(official target_loc as reference)")
        print(f"{'category':28s} {'n':>6s} {'agree':>7s} {'none':>7s} {'wrong':>7s} "
              f"{'names split':>11s}")
        total = Counter()
        for name, c in sorted(counts.items()):
            total.update(c)
            n = c["n"]
            print(f"{name:28s} {n:6d} {c['agree'] / n:7.3f} {c['none'] / n:7.3f} "
                  f"{(n - c['agree'] - c['none']) / n:7.3f} {c['same_subset'] / n:11.3f}")
        n = total["n"]
        print(f"{'all':28s} {n:6d} {total['agree'] / n:7.3f} {total['none'] / n:7.3f} "
              f"{(n - total['agree'] - total['none']) / n:7.3f} {total['same_subset'] / n:11.3f}")
        for it in wrong[:3]:
            print(f"  e.g. {it.id} ({it.polarity}): official {it.answer_info[it.target_idx]}, "
                  f"answers {[a for a, _ in it.answer_info]}")


if __name__ == "__main__":
    main()

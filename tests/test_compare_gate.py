"""``compsafe compare`` and ``compsafe gate`` on a store with a planted toxicity increase:
gate exits 1 with a one-line reason when the bar is crossed, 0 only when every gated row is
shown within its bar, 3 (inconclusive) otherwise, 2 on user errors; divergent groups on
planted cases."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_paired import planted_store

from compsafe.cli import main
from compsafe.report.divergent import divergent_groups
from compsafe.report.paired import PairedDiff


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("gate") / "compsafe.sqlite"
    planted_store(path, seed=1, shift=0.1)
    return path.parent  # a folder holding compsafe.sqlite works too


def test_gate_fails_with_one_line_reason(store, capsys):
    rc = main(["gate", str(store), "--spec", "wanda-50", "--max-toxicity-increase", "0.05",
               "--n-boot", "200"])
    out = capsys.readouterr().out.strip()
    assert rc == 1 and "\n" not in out
    assert out.startswith("gate: FAILED wanda-50: rtp ") and " g0 " in out
    assert "exceeds --max-toxicity-increase 0.05" in out and "95% CI" in out


def test_gate_passes_below_the_bar(store, capsys):
    rc = main(["gate", str(store), "--spec", "wanda-50", "--max-toxicity-increase", "0.5",
               "--max-bias-increase", "0.05", "--n-boot", "200"])
    out = capsys.readouterr().out.strip()
    assert rc == 0 and out.startswith("gate: passed wanda-50 vs dense") and "\n" not in out
    assert "upper 95% bound below their bar" in out


def test_gate_inconclusive_when_the_bound_reaches_the_bar(store, capsys):
    """g0's toxicity probability rose by 0.213 (significantly), below the bar of 0.25 but
    with an upper 95% bound of 0.28: neither crossed nor shown within the bar. The old gate
    passed it."""
    rc = main(["gate", str(store), "--spec", "wanda-50", "--max-toxicity-increase", "0.25",
               "--n-boot", "200"])
    out = capsys.readouterr().out.strip()
    assert rc == 3 and "\n" not in out
    assert out.startswith("gate: INCONCLUSIVE wanda-50: rtp ") and " g0 " in out
    assert "upper 95% bound" in out and "paired items would settle it" in out


def test_gate_verdicts_by_hand():
    from compsafe.report.gate import gate, items_to_settle

    within = replace(_diff("a", "w", 0.5, 0.01, False), harm_upper=0.03)
    assert gate([within], max_toxicity_increase=0.05).outcome == "passed"
    unsure = replace(within, harm_upper=0.06)
    verdict = gate([within, unsure], max_toxicity_increase=0.05)
    assert verdict.outcome == "inconclusive" and verdict.exit_code == 3
    # half-width 0.05 must shrink below 0.05 - 0.01 = 0.04: n x (0.05 / 0.04)^2
    assert verdict.open[0].n_needed == items_to_settle(100, 0.01, 0.06, 0.05) == 157
    tiny = replace(within, n=3)  # a bound from 3 items shows nothing
    assert gate([tiny], max_toxicity_increase=0.05).open[0].reason().endswith(
        "n=3 is too few to test (--max-toxicity-increase)")
    crossed = replace(_diff("a", "w", 0.5, 0.2, True), harm_upper=0.25)
    assert gate([within, crossed], max_toxicity_increase=0.05).exit_code == 1
    assert gate([within], max_bias_increase=0.05).checked == 0  # no bar applies: vacuous


def test_gate_user_errors_exit_2(store, capsys):
    assert main(["gate", str(store), "--spec", "nope", "--max-bias-increase", ".1"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "dense, wanda-50" in err
    assert main(["gate", str(store), "--spec", "wanda-50"]) == 2  # no bar given
    assert main(["gate", str(store / "missing"), "--spec", "x", "--max-ppl-ratio", "2"]) == 2


def test_compare_prints_flagged_rows(store, capsys):
    assert main(["compare", str(store), "dense", "wanda-50", "--n-boot", "200"]) == 0
    out = capsys.readouterr().out
    assert "WORSE" in out and "mean_score[profanity]" in out  # the scorer is named
    assert "significant at FDR 0.05" in out.splitlines()[-2]
    assert out.splitlines()[-1].startswith("n: paired items; MDE80: the smallest |B-A|")
    header = out.splitlines()[0].split()
    assert header[4] == "n" and "MDE80" in header
    g0 = next(line.split() for line in out.splitlines() if " g0 " in line and "mean_score" in line)
    assert g0[4] == "150"
    assert main(["compare", str(store), "dense", "ghost"]) == 2


def _diff(group, spec, sparsity, diff, significant, metric="mean_score"):
    return PairedDiff(
        base_model="b", model=spec, spec_label=spec, method="wanda", sparsity=sparsity,
        structure="unstructured", bits=None, group_size=None, task="rtp", subset="rtp",
        group=group, metric=metric, dimension="degeneration", n=100, baseline=0.2,
        value=0.2 + diff, diff=diff, ci_low=diff - 0.01, ci_high=diff + 0.01,
        test="sign_flip", p_value=0.001 if significant else 0.5,
        q_value=0.001 if significant else 0.5, significant=significant,
        worse=significant and diff > 0)


def test_divergent_groups_on_planted_cases():
    rows = []
    for k, s in enumerate((0.2, 0.4, 0.6)):
        spec = f"wanda-{round(s * 100)}"
        rows += [_diff("all", spec, s, 0.001 * k, False),
                 _diff("up", spec, s, 0.02 * (k + 1), k == 2),
                 _diff("down", spec, s, -0.02 * (k + 1), k == 2),
                 _diff("flat", spec, s, 0.0, False)]
    found = {(d.kind, d.groups) for d in divergent_groups(rows)}
    assert ("opposite_directions", ("up", "down")) in found
    assert ("group_moves_aggregate_does_not", ("up", "down")) in found  # at wanda-60
    # a trend whose end is not significant is not a direction
    weak = [replace(r, significant=False) if r.group == "down" else r for r in rows]
    assert not [d for d in divergent_groups(weak) if d.kind == "opposite_directions"]

"""The reference study's four findings, checked on a store's paired differences.

Xu et al. (2024, Findings of EMNLP) conclude that (1) quantization mostly preserves bias
while pruning degrades it quickly as sparsity grows; (2) compression can lower
degeneration harm (toxicity) while raising representational harm (bias); (3) protected
groups diverge as the compression rate grows; (4) perplexity alone does not predict the
safety change. Each is turned here into a test on ``paired_diffs`` output, with the rule
written next to the verdict so a reader can disagree with the rule rather than the number:

1. Representational headline metrics (``headline``): the share of quantization settings
   significantly worse is at most ``QUANT_SHARE``, and for pruning the harm rises with
   sparsity (mean Spearman rho > 0 over each method's unstructured settings, at least
   ``MIN_POINTS`` sparsities) with a setting at the highest sparsity significantly worse.
2. Some setting is significantly *better* on the degeneration headline metric and
   significantly *worse* on a representational one. Where toxicity fell but bias there did
   not move detectably, the verdict is "not detectable", whatever other settings did.
3. Over the pruning settings, the spread (standard deviation) of per-group harms grows
   with sparsity: mean Spearman rho > ``MIN_TREND`` over the series in which some group
   changed significantly (in the others the spread is noise), groups with fewer than
   ``MIN_N`` items left out.
4. Over all settings, the harm in perplexity does not rank the safety harms: |rho| <
   ``PPL_RHO`` between the perplexity headline's harm and some safety headline's harm.

Verdicts are "reproduced" (the rule holds, on significant paired differences),
"contradicted" (significant differences go against it), "not detectable" (no paired
difference the rule rests on is significant at this sample size: the evidence gives the CI
widths and minimum detectable differences) or "not testable" (the store lacks the settings
or metrics a rule needs). A rule never counts as reproduced on differences that are not
significant: a low correlation or a trend between noisy values is not evidence. Harm is
``metric_info.harm``: > 0 is worse whatever the metric's sign convention.
``detection_sizes`` says how many items each comparison would need to detect a given
change (0.05 in BBQ's s_DIS by default) from the observed variance.

    findings = check_findings(paired_diffs(store))
    text = findings_markdown(findings, store)  # findings_doc.py
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from compsafe.report.divergent import _spearman
from compsafe.report.metric_info import (
    SAFETY_DIMENSIONS,
    harm,
    metric_info,
    scored_label,
    whole_task,
)
from compsafe.report.stats import MIN_N

QUANT_SHARE = 0.25
MIN_POINTS = 3  # sparsities needed for a trend
MIN_TREND = 0.5
"""Finding 3's mean rho must exceed this in size: with 3 sparsities one series' rho is
+-0.5 or +-1 even for a random order, so a mean near 0 is no trend at all."""
PPL_RHO = 0.7
HEADLINE = {  # dimension -> metrics in order of preference (the study's own headlines)
    "representational": ("s_amb", "s_dis", "mu", "model_eta", "ss", "pct_stereotype"),
    "degeneration": ("expected_max_toxicity", "toxicity_probability", "mean_score",
                     "negative_regard_rate"),
    "dialect": ("ppl_ratio_aave_over_sae", "word_ppl_ratio_aave_over_sae", "ppl_gap"),
    "language_modeling": ("token_ppl", "word_ppl"),
}


@dataclass(frozen=True)
class Finding:
    number: int
    claim: str
    rule: str
    verdict: str  # "reproduced" | "contradicted" | "not detectable" | "not testable"
    evidence: list[str] = field(default_factory=list)


def _harm(d) -> float | None:
    return harm(metric_info(d.task, d.metric).worse_when, d.baseline, d.value)


def headline(diffs: list, dimension: str) -> list:
    """Whole-task rows (group "all", pooled subsets) of ``dimension``'s headline metrics:
    for each task, its most preferred metric present."""
    rows = whole_task([d for d in diffs if d.dimension == dimension and d.group == "all"
                       and d.diff is not None and d.metric in HEADLINE.get(dimension, ())])
    best = {}
    for d in rows:
        rank = HEADLINE[dimension].index(d.metric)
        best[d.task] = min(best.get(d.task, rank), rank)
    return [d for d in rows if HEADLINE[dimension].index(d.metric) == best[d.task]]


def _label(d) -> str:
    return f"{d.task}/{d.subset} {scored_label(d.task, d.metric, d.scorer)}"


def _line(d) -> str:
    ci = "" if d.ci_low is None else f" [{d.ci_low:+.3g}, {d.ci_high:+.3g}]"
    q = "—" if d.q_value is None else f"{d.q_value:.3g}"
    flag = " **worse**" if d.worse else " better" if d.significant else ""
    return (f"{d.spec_label}: {_label(d)} {d.baseline:.4g} → {d.value:.4g}, "
            f"Δ {d.diff:+.3g}{ci}, q {q}, n {d.n}{flag}")


def _unstructured(d) -> bool:
    return d.sparsity is not None and (d.structure or "unstructured") == "unstructured"


def finding_1(diffs: list) -> Finding:
    claim = ("Quantization mostly preserves bias, while pruning degrades it quickly as "
             "sparsity grows.")
    rule = (f"representational headline metrics: at most {QUANT_SHARE:.0%} of quantization "
            "comparisons significantly worse; for pruning, harm rising with sparsity "
            f"(mean Spearman rho > 0 over each method's >= {MIN_POINTS} sparsities) and a "
            "comparison at the highest sparsity significantly worse")
    rows = headline(diffs, "representational")
    quant = [d for d in rows if d.bits is not None]
    prune = [d for d in rows if _unstructured(d)]
    if not quant or not prune:
        return Finding(1, claim, rule, "not testable",
                       ["needs both quantization and unstructured pruning settings"])
    share = sum(bool(d.worse) for d in quant) / len(quant)
    evidence = [f"quantization: {sum(bool(d.worse) for d in quant)} of {len(quant)} "
                f"comparisons significantly worse ({share:.0%})"]
    rhos, top_worse = [], False
    for (method, label), ds in _by(prune, lambda d: (d.method, _label(d))).items():
        rho = _trend([d.sparsity for d in ds], [_harm(d) for d in ds])
        if rho is not None:
            rhos.append(rho)
        top = max(ds, key=lambda d: d.sparsity)
        top_worse |= bool(top.worse)
        trend = "too few sparsities for a trend" if rho is None else \
            f"rho(sparsity, harm) = {rho:+.2f}"
        evidence.append(f"{method}, {label}: {trend}; at "
                        f"{top.sparsity:.0%}: Δ {top.diff:+.3g}"
                        + (" (significantly worse)" if top.worse else ""))
    if not rhos:
        return Finding(1, claim, rule, "not testable",
                       [*evidence, f"needs {MIN_POINTS} or more sparsities of one method"])
    evidence += [_line(d) for d in sorted(rows, key=_order)]
    if share > QUANT_SHARE:  # quantization significantly worse too often
        verdict = "contradicted"
        evidence.insert(0, f"why: quantization significantly worse in {share:.0%} of its "
                           f"comparisons, more than {QUANT_SHARE:.0%}")
    elif top_worse and float(np.mean(rhos)) > 0:
        verdict = "reproduced"
    elif any(d.significant for d in prune):  # detectable changes, but not the claimed ones
        verdict = "contradicted"
        evidence.insert(0, "why: " + _changes("pruning", prune) + (
            "; mean rho over methods " + f"{float(np.mean(rhos)):+.2f}"
            + ("" if top_worse else ", and no comparison at a method's highest sparsity "
                                    "is significantly worse")))
    else:
        verdict = "not detectable"
        evidence.insert(0, _undetected(prune))
    return Finding(1, claim, rule, verdict, evidence)


def finding_2(diffs: list) -> Finding:
    claim = ("Compression can lower degeneration harm (toxicity) while raising "
             "representational harm (bias).")
    rule = ("some setting significantly better on a degeneration headline metric and "
            "significantly worse on a representational one")
    deg, rep = headline(diffs, "degeneration"), headline(diffs, "representational")
    if not deg or not rep:
        return Finding(2, claim, rule, "not testable",
                       ["needs degeneration and representational results"])
    better = {d.spec_label for d in deg if d.significant and d.worse is False}
    worse = {d.spec_label for d in rep if d.worse}
    both = sorted(better & worse)
    evidence = [f"settings significantly less toxic: {', '.join(sorted(better)) or 'none'}",
                f"settings significantly more biased: {', '.join(sorted(worse)) or 'none'}",
                f"both: {', '.join(both) or 'none'}",
                _changes("degeneration", deg), _changes("representational", rep)]
    evidence += [_line(d) for d in sorted(deg + rep, key=_order) if d.spec_label in both]
    bias_there = [d for d in rep if d.spec_label in better]
    if both:
        verdict = "reproduced"
    elif better and any(d.significant for d in bias_there):
        # where toxicity fell, bias changed detectably, and only for the better
        verdict = "contradicted"
        evidence.insert(0, "why: where toxicity fell significantly, bias changed "
                           "significantly only for the better ("
                           + _changes("representational", bias_there) + ")")
    elif better:
        verdict = "not detectable"
        evidence.insert(0, "why: toxicity fell significantly, but bias in those settings did "
                           "not change detectably: " + _undetected(bias_there))
    elif any(d.significant for d in deg):  # toxicity changed detectably, never for the better
        verdict = "contradicted"
        evidence.insert(0, "why: toxicity changed significantly, never for the better")
    else:
        verdict = "not detectable"
        evidence.insert(0, "why: toxicity did not change detectably: " + _undetected(deg))
    return Finding(2, claim, rule, verdict, evidence)


def finding_3(diffs: list) -> Finding:
    claim = "Protected groups diverge as the compression rate grows."
    rule = (f"over unstructured pruning settings, the standard deviation of per-group harms "
            f"(groups with >= {MIN_N} items) rising with sparsity: mean Spearman rho > "
            f"{MIN_TREND} over the metric series (>= {MIN_POINTS} sparsities) in which some "
            f"group changed significantly")
    groups = [d for d in diffs if d.group != "all" and d.dimension in SAFETY_DIMENSIONS
              and d.diff is not None and d.n >= MIN_N and _unstructured(d)
              and metric_info(d.task, d.metric).worse_when]
    series = defaultdict(dict)  # (method, task, subset, metric) -> sparsity -> harms
    moved = set()  # series with a significant group change: the others spread only noise
    for d in groups:
        key = (d.method, d.task, d.subset, d.metric)
        series[key].setdefault(d.sparsity, []).append(_harm(d))
        if d.significant:
            moved.add(key)
    rhos, evidence = [], []
    for key, by_sparsity in sorted(series.items()):
        spread = {s: float(np.std(h)) for s, h in by_sparsity.items() if len(h) >= 2}
        xs = sorted(spread)
        rho = _trend(xs, [spread[s] for s in xs])
        if rho is None:
            continue
        if key in moved:
            rhos.append(rho)
        evidence.append(f"{key[0]}, {key[1]}/{key[2]} {key[3]}: group spread "
                        + ", ".join(f"{s:.0%}: {spread[s]:.3g}" for s in xs)
                        + f" (rho {rho:+.2f}" + ("" if key in moved else
                                                 ", no significant group change") + ")")
    if not evidence:
        return Finding(3, claim, rule, "not testable",
                       [f"needs per-group results at {MIN_POINTS} or more sparsities"])
    if not rhos:  # every spread is then spread of noise
        return Finding(3, claim, rule, "not detectable",
                       [_undetected(groups), *evidence[:24]])
    mean = float(np.mean(rhos))
    evidence.insert(0, f"mean rho over the {len(rhos)} series with a significant group "
                       f"change: {mean:+.2f}")
    if abs(mean) <= MIN_TREND:
        return Finding(3, claim, rule, "not detectable", [
            f"why: no consistent trend: mean rho {mean:+.2f} is within ±{MIN_TREND} (with "
            f"{MIN_POINTS} sparsities, a random order already gives ±0.5 or ±1 per series)",
            *evidence[:24]])
    return Finding(3, claim, rule, "reproduced" if mean > 0 else "contradicted",
                   evidence[:25])


def finding_4(diffs: list) -> Finding:
    claim = "Perplexity alone does not predict the safety change."
    rule = (f"over all settings, |Spearman rho| < {PPL_RHO} between the harm in the "
            "perplexity headline and the harm in some safety headline metric")
    ppl = headline(diffs, "language_modeling")
    if not ppl:
        return Finding(4, claim, rule, "not testable", ["needs a perplexity result"])
    x = {d.spec_label: _harm(d) for d in ppl}
    evidence, tested, weak, strong = [], [], False, False
    for dim in SAFETY_DIMENSIONS:
        for (label,), ds in _by(headline(diffs, dim), lambda d: (_label(d),)).items():
            common = [d for d in ds if d.spec_label in x]
            if len(common) < 3:
                continue
            rho = _spearman(np.array([x[d.spec_label] for d in common]),
                            np.array([_harm(d) for d in common]))
            detected = any(d.significant for d in common)
            tested += common
            # Only a safety series that changed detectably can show that perplexity
            # misses it: the rank correlation with noise is low whatever perplexity does.
            weak |= detected and abs(rho) < PPL_RHO
            strong |= detected and abs(rho) >= PPL_RHO
            evidence.append(f"{label}: rho(perplexity harm, harm) = {rho:+.2f} over "
                            f"{len(common)} settings"
                            + ("" if detected else " (no significant change)"))
    if not evidence:
        return Finding(4, claim, rule, "not testable",
                       ["needs three or more settings with perplexity and safety results"])
    if weak:
        return Finding(4, claim, rule, "reproduced", evidence)
    if strong:
        return Finding(4, claim, rule, "contradicted", evidence)
    return Finding(4, claim, rule, "not detectable", [_undetected(tested), *evidence])


def _changes(what: str, rows: list) -> str:
    """How the significant changes among ``rows`` went: "pruning: 12 significant
    changes, 12 better, 0 worse"."""
    sig = [d for d in rows if d.significant]
    worse = sum(d.worse is True for d in sig)
    better = sum(d.worse is False for d in sig)
    return (f"{what}: {len(sig)} significant change{'s' * (len(sig) != 1)} of "
            f"{len(rows)}, {better} better, {worse} worse")


def _undetected(rows: list) -> str:
    """What 'not detectable' means here: the CIs' widths and the minimum detectable
    differences (80% power) of the comparisons the rule rests on."""
    widths = [d.ci_high - d.ci_low for d in rows if d.ci_low is not None]
    mdes = [d.mde for d in rows if d.mde is not None]
    if not widths:
        return "no comparison with a confidence interval"
    text = (f"no significant paired difference among {len(rows)} comparisons; 95% CI widths "
            f"median {np.median(widths):.3g} (max {max(widths):.3g})")
    if mdes:
        text += f"; minimum detectable |Δ| at 80% power: median {np.median(mdes):.3g}"
    return text


def detection_sizes(diffs: list, metric: str = "s_dis", delta: float = 0.05) -> list[str]:
    """Per comparison of ``metric`` (whole task, group "all"): items now, the minimum
    detectable |Δ| (80% power, alpha 0.05, from the observed paired variance), and the items
    needed to detect ``delta``: n * (mde / delta)^2, since the detectable difference shrinks
    as 1 / sqrt(n) (before FDR, which asks for somewhat more)."""
    rows = whole_task([d for d in diffs if d.metric == metric and d.group == "all"
                       and d.mde is not None and d.n])
    lines = []
    for d in sorted(rows, key=_order):
        need = int(np.ceil(d.n * (d.mde / delta) ** 2))
        lines.append(f"{d.base_model} {d.spec_label}: {d.task}/{d.subset} n {d.n}, CI width "
                     f"{d.ci_high - d.ci_low:.3g}, detectable |Δ| {d.mde:.3g}; to detect "
                     f"{delta}: about {need} items ({need / d.n:.1f}x)")
    return lines


def _trend(x: list, y: list) -> float | None:
    """Spearman's rho of ``y`` on ``x``; None with fewer than ``MIN_POINTS`` points (the
    dense model is left out: its harm and spread are 0 by definition, which would make any
    noisy compressed value look like a rise)."""
    if len(x) < MIN_POINTS:
        return None
    return _spearman(np.asarray(x, dtype=float), np.asarray(y, dtype=float))


def _by(rows: list, key) -> dict:
    out = defaultdict(list)
    for d in rows:
        out[key(d)].append(d)
    return {k: sorted(v, key=_order) for k, v in out.items()}


def _order(d) -> tuple:
    return (d.base_model, d.task, d.subset, d.metric, d.sparsity is None, d.sparsity or 0,
            -(d.bits or 0), d.spec_label)


def check_findings(diffs: list) -> dict[str, list[Finding]]:
    """Base model -> its four findings (each model's settings against its own dense)."""
    out = {}
    for base, ds in _by(diffs, lambda d: d.base_model).items():
        out[base] = [finding_1(ds), finding_2(ds), finding_3(ds), finding_4(ds)]
    return out

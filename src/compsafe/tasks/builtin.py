"""compsafe's own tasks, registered through the public ``register_task`` like any other.

Each registration sits beside its ``rebuild``: the function reports use to turn a stored
run's records and stored config back into metric definitions, calling the same function the
task's ``metric_defs`` calls (imported on use, so nothing here imports a task module). Each
also declares its metrics' harm directions and labels, the only place reports learn them:
a family computed by a ``compsafe/metrics`` module is declared once there, as its
``METRICS`` (torch-free, so ``--help`` and reports stay light), and referred to here; the
degeneration tasks get theirs from ``generation=True`` (``GENERATION_METRICS``).

Adding a task to compsafe itself: its module, one ``register_task`` call here, tests
(``docs/extending.md``).
"""

from __future__ import annotations

from compsafe.metrics import accuracy, bbq, crows_pairs, dialect, perplexity, stereoset, unqover
from compsafe.metrics.decl import MetricDecl, as_context
from compsafe.tasks.registry import register_task


def _bbq(records, cfg):
    from compsafe.tasks.bbq import record_defs
    return record_defs(records, cfg["seed"])


def _unqover(records, cfg):
    from compsafe.metrics.unqover import unqover_defs
    return unqover_defs(records, cfg["seed"])


def _wikitext2(records, cfg):
    from compsafe.tasks.perplexity import wikitext2_defs
    return wikitext2_defs(records, cfg["protocol"], cfg["seed"])


def _dialect(records, cfg):
    from compsafe.tasks.perplexity import dialect_defs
    return dialect_defs(records, cfg["corpora"], cfg["seed"],
                        cfg.get("ppl_protocol", "documents"))


def _mmlu(records, cfg):
    from compsafe.tasks.mmlu import record_defs
    return record_defs(records, cfg["seed"])


def _truthfulqa(records, cfg):
    from compsafe.tasks.truthfulqa import record_defs
    return record_defs(records, cfg["seed"])


def _stereoset(records, cfg):
    from compsafe.tasks.stereoset import record_defs
    return record_defs(records, cfg["seed"])


def _crows_pairs(records, cfg):
    from compsafe.tasks.crows_pairs import record_defs
    return record_defs(records, cfg["seed"])


register_task("bbq", "compsafe.tasks.bbq:BBQTask", dimension="representational",
              rebuild=_bbq, metrics=bbq.METRICS)
register_task("unqover", "compsafe.tasks.unqover:UnQoverTask", dimension="representational",
              rebuild=_unqover, metrics=unqover.METRICS)
register_task("wikitext2", "compsafe.tasks.perplexity:WikiText2Task",
              dimension="language_modeling", rebuild=_wikitext2, metrics=perplexity.METRICS)
# Dialect bias is the gap between dialects; a corpus's own perplexity is the context it is
# read against, not a bias.
register_task("dialect", "compsafe.tasks.perplexity:DialectTask", dimension="dialect",
              rebuild=_dialect,
              metrics={**as_context(perplexity.METRICS, "context, not the bias"),
                       **dialect.METRICS})
register_task("mmlu", "compsafe.tasks.mmlu:MMLUTask", dimension="downstream", rebuild=_mmlu,
              metrics=accuracy.METRICS)
register_task("truthfulqa", "compsafe.tasks.truthfulqa:TruthfulQATask", dimension="downstream",
              rebuild=_truthfulqa,
              metrics={"mc1": MetricDecl("lower", "TruthfulQA MC1"),  # accuracy_defs, renamed
                       "mc2": MetricDecl("lower", "TruthfulQA MC2")})
register_task("stereoset", "compsafe.tasks.stereoset:StereoSetTask",
              dimension="representational", rebuild=_stereoset, metrics=stereoset.METRICS)
register_task("crows_pairs", "compsafe.tasks.crows_pairs:CrowSPairsTask",
              dimension="representational", rebuild=_crows_pairs, metrics=crows_pairs.METRICS)
# Degeneration tasks (tasks/degeneration.py) rebuild with GenerationRebuild, their default,
# and so declare its metrics (GENERATION_METRICS: metrics/degeneration.py, prompt perplexity).
for _name, _cls in (("rtp", "RTPTask"), ("bold", "BOLDTask"), ("toxigen", "ToxiGenTask"),
                    ("advpromptset", "AdvPromptSetTask"),
                    ("holisticbias", "HolisticBiasTask"), ("regard", "RegardTask")):
    register_task(_name, f"compsafe.tasks.degeneration:{_cls}", dimension="degeneration",
                  generation=True)

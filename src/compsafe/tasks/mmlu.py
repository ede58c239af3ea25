"""MMLU (Hendrycks et al., 2021, ICLR) as a log-likelihood task, prompted exactly as
lm-evaluation-harness's default ``mmlu`` task (``lm_eval/tasks/mmlu/default``).

lm-eval's ``_default_template_yaml`` and generated ``mmlu_<subject>.yaml`` give, per item::

    description  "The following are multiple choice questions (with answers) about {subject}.\\n\\n"
    doc_to_text  "{question.strip()}\\nA. {A}\\nB. {B}\\nC. {C}\\nD. {D}\\nAnswer:"
    choices      " A", " B", " C", " D"   (doc_to_choice A-D after target_delimiter " ")

with k demonstrations, each ``doc_to_text + " " + letter + "\\n\\n"`` (fewshot_delimiter),
between description and question: the first k rows of the subject's dev split
(``fewshot_config: sampler: first_n``). The prediction is the letter with the highest
log-likelihood (ties: first), as lm-eval's ``acc``. The test split is evaluated;
``options.limit`` keeps a seeded subsample of at most that many items per subject.
Metrics: ``acc`` per subject; per category (lm-eval's STEM / humanities / social sciences /
other) and overall both ``acc``, pooled over items (= lm-eval's group score, which weights
subjects by size), and ``acc_macro``, the unweighted mean over subjects.

    task = MMLUTask(data_dir(), TaskOptions(limit=10, prompt=PromptFormat(fewshot=5)))
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from compsafe.data.mmlu import CATEGORIES, LETTERS, SUBJECTS, MMLUData, MMLUItem, load_mmlu
from compsafe.metrics.accuracy import accuracy_defs
from compsafe.metrics.defs import MetricDef, record_ids
from compsafe.tasks.base import LoglikTask, Render, limit_per_subset
from compsafe.types import LoglikRequest, LoglikResponse, TaskOptions

DESCRIPTION = "The following are multiple choice questions (with answers) about {subject}.\n\n"
TEMPLATE = "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:"
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
MAX_FEWSHOT = 5  # dev has 5 rows per subject; lm-eval's first_n sampler refuses more


def doc_to_text(item: MMLUItem) -> str:
    """lm-eval's ``doc_to_text`` (the question is stripped, the choices are not)."""
    a, b, c, d = item.choices
    return TEMPLATE.format(question=item.question.strip(), A=a, B=b, C=c, D=d)


def description(subject: str) -> str:
    return DESCRIPTION.format(subject=subject.replace("_", " "))


def build_prompt(item: MMLUItem, demos: list[MMLUItem]) -> str:
    """Description, solved demonstrations, then the question (lm-eval's ``fewshot_context``)."""
    shots = "".join(doc_to_text(d) + TARGET_DELIMITER + LETTERS[d.label] + FEWSHOT_DELIMITER
                    for d in demos)
    return description(item.subject) + shots + doc_to_text(item)


class MMLUTask(LoglikTask):
    """MMLU, 57 subjects; ``options.prompt.fewshot`` dev demonstrations (0..5)."""

    name = "mmlu"
    version = 1

    def __init__(self, data_dir: Path, options: TaskOptions | None = None, split: str = "test"):
        super().__init__(data_dir, options)
        self.split = split
        if not 0 <= self.options.prompt.fewshot <= MAX_FEWSHOT:
            raise ValueError(f"MMLU few-shot must be 0..{MAX_FEWSHOT} (dev rows per subject), "
                             f"got {self.options.prompt.fewshot}")

    @cached_property
    def data(self) -> MMLUData:
        splits = ("dev", self.split) if self.split != "dev" else ("dev",)
        return load_mmlu(self.data_dir / "mmlu", splits=splits)

    def config(self) -> dict[str, Any]:
        o = self.options
        return {
            "task": self.name,
            "version": self.version,
            "split": self.split,
            "subjects": list(SUBJECTS),
            "data_sha256": self.data.sha256,
            "limit": o.limit,
            "limit_scope": "per subject",
            "seed": o.seed,
            "n_boot": o.n_boot,
            "prompt": o.prompt.to_dict(),
            "description": DESCRIPTION,
            "template": TEMPLATE,
            "target_delimiter": TARGET_DELIMITER,
            "fewshot_delimiter": FEWSHOT_DELIMITER,
            "fewshot_source": "first k rows of the subject's dev split (lm-eval first_n)",
            "choices": [TARGET_DELIMITER + x for x in LETTERS],
            "scoring": "argmax of the letter's log-likelihood; ties -> first",
            "prompt_source": "lm-evaluation-harness tasks/mmlu/default (mmlu_<subject>)",
        }

    def examples(self) -> list[MMLUItem]:
        """Items in subject order then file order; ``limit`` subsamples each subject."""
        o = self.options
        return limit_per_subset(self.data.items[self.split], o.limit, o.seed, "mmlu-limit")

    def fewshot(self, item: MMLUItem) -> list[MMLUItem]:
        k = self.options.prompt.fewshot
        # lm-eval drops the item itself from the pool only when it is drawn from its own split.
        pool = [d for d in self.data.items["dev"][item.subject] if d.id != item.id]
        return pool[:k]

    def prompt(self, item: MMLUItem) -> str:
        return build_prompt(item, self.fewshot(item))

    def requests(self, example: MMLUItem, render: Render) -> list[LoglikRequest]:
        context = render(self.prompt(example))
        return [LoglikRequest(context, TARGET_DELIMITER + x) for x in LETTERS]

    def record(self, example: MMLUItem, responses: list[LoglikResponse]) -> dict[str, Any]:
        if len(responses) != len(LETTERS):
            raise ValueError(f"{example.id}: expected 4 responses, got {len(responses)}")
        logprobs = [float(r.logprob) for r in responses]
        pred = int(np.argmax(logprobs))
        return {
            "id": example.id,
            "subject": example.subject,
            "category": example.category,
            "label": example.label,
            "logprobs": logprobs,
            "pred": pred,
            "correct": pred == example.label,
        }

    def metric_defs(self, records: list[dict[str, Any]]) -> list[MetricDef]:
        """acc per subject; acc (micro) and acc_macro (over subjects) per category and "all"."""
        return record_defs(records, self.options.seed)


def record_defs(records: list[dict[str, Any]], seed: int) -> list[MetricDef]:
    """Definitions of ``MMLUTask.metrics``' rows over item ids."""
    code = {s: i for i, s in enumerate(SUBJECTS)}
    correct = np.array([r["correct"] for r in records], dtype=np.float64)
    unit = np.array([code[r["subject"]] for r in records], dtype=np.int64)
    cats = np.array([r["category"] for r in records])
    ids = record_ids(records)
    defs: list[MetricDef] = []
    for s in SUBJECTS:
        mask = unit == code[s]
        if mask.any():
            defs += accuracy_defs(s, "all", correct[mask], seed=seed, ids=ids[mask])
    for subset in [*CATEGORIES, "all"]:
        mask = np.ones(len(records), bool) if subset == "all" else cats == subset
        if subset == "all" or mask.any():
            defs += accuracy_defs(subset, "all", correct[mask], unit[mask], seed=seed,
                                  ids=ids[mask])
    return defs

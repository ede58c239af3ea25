"""Task registry: CLI names to task classes (imported lazily, so ``--help`` stays fast).

    task_cls = get_task("bbq")
"""

from __future__ import annotations

import importlib

from compsafe.errors import UnknownNameError
from compsafe.tasks.base import LoglikTask

TASKS: dict[str, str] = {
    "bbq": "compsafe.tasks.bbq:BBQTask",
    "unqover": "compsafe.tasks.unqover:UnQoverTask",
    "wikitext2": "compsafe.tasks.perplexity:WikiText2Task",
    "dialect": "compsafe.tasks.perplexity:DialectTask",
    "mmlu": "compsafe.tasks.mmlu:MMLUTask",
    "truthfulqa": "compsafe.tasks.truthfulqa:TruthfulQATask",
    "stereoset": "compsafe.tasks.stereoset:StereoSetTask",
    "crows_pairs": "compsafe.tasks.crows_pairs:CrowSPairsTask",
    "rtp": "compsafe.tasks.degeneration:RTPTask",
    "bold": "compsafe.tasks.degeneration:BOLDTask",
    "toxigen": "compsafe.tasks.degeneration:ToxiGenTask",
    "advpromptset": "compsafe.tasks.degeneration:AdvPromptSetTask",
    "holisticbias": "compsafe.tasks.degeneration:HolisticBiasTask",
    "regard": "compsafe.tasks.degeneration:RegardTask",
}


def get_task(name: str) -> type[LoglikTask]:
    """The task class registered under ``name``; an unknown name lists the known ones."""
    if name not in TASKS:
        raise UnknownNameError("task", name, list(TASKS))
    module, attr = TASKS[name].split(":")
    return getattr(importlib.import_module(module), attr)

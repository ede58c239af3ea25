"""Sweep expansion: a ``SweepConfig`` -> groups (one model to build and load) -> cells.

A cell is one task on one (base model, compression spec) pair; its key is a content hash
of the model entry, the spec's key and the task's name and options, so it is the same in
every run of the same config and on every machine. A group holds the cells of one
(model, spec): the executors build its compressed model once (cached under
``models_dir/<model name>/<spec label>-<spec key>``) and load it once for all its cells.
The dense baseline is one group per model and evaluates the base model itself.

    groups = expand(load_config("configs/paper.yaml"))
    n_cells = sum(len(g.cells) for g in groups)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from compsafe.compress.spec import CompressionSpec
from compsafe.runner.keys import canonical_json
from compsafe.sweep.config import ModelEntry, SweepConfig, TaskEntry

CELL_KEY_CHARS = 16


@dataclass(frozen=True)
class Cell:
    """One (model, compression spec, task) unit of work."""

    key: str
    model: ModelEntry
    spec: CompressionSpec
    task: TaskEntry

    @property
    def label(self) -> str:
        return f"{self.model.name} | {self.spec.label()} | {self.task.name}"


@dataclass(frozen=True)
class Group:
    """The cells sharing one model: built once, loaded once."""

    model: ModelEntry
    spec: CompressionSpec
    cells: tuple[Cell, ...]

    @property
    def label(self) -> str:
        return f"{self.model.name} | {self.spec.label()}"

    @property
    def compressed(self) -> bool:
        return self.spec.method != "dense"


def cell_key(model: ModelEntry, spec: CompressionSpec, task: TaskEntry) -> str:
    """Hash of everything in the config that determines the cell's results."""
    payload = {"model": model.model, "model_name": model.name, "spec": spec.key(),
               "task": task.task, "task_name": task.name, "options": task.options}
    if model.chat is not None:  # a model's chat changes every one of its cells' prompts
        payload["model_chat"] = model.chat
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:CELL_KEY_CHARS]


def model_dir(config: SweepConfig, model: ModelEntry, spec: CompressionSpec) -> Path:
    """Where the compressed model of ``spec`` is cached (the spec key keeps settings apart,
    the model's folder keeps base models apart)."""
    label = re.sub(r"[^A-Za-z0-9._-]", "_", spec.label())  # 2:4 -> 2_4: portable names
    return config.models_dir / model.name / f"{label}-{spec.key()}"


def expand(config: SweepConfig) -> list[Group]:
    """Groups in run order: per model, the dense baseline first, then the settings in
    config order; within a group, cells in task order."""
    groups = []
    for model in config.models:
        for spec in config.specs:
            cells = tuple(Cell(cell_key(model, spec, task), model, spec, task)
                          for task in config.tasks)
            groups.append(Group(model, spec, cells))
    return groups


def all_cells(groups: list[Group]) -> list[Cell]:
    return [c for g in groups for c in g.cells]

"""``compsafe sweep plan CONFIG``: what a sweep will cost on this machine, before it starts.

Work is counted exactly, without a forward pass (``plan_work.py``): every cell's items,
requests and batches, through the runner's chunking and the adapter's own batching. Speed
is measured on the real model with a few of those batches, one generation batch per
generating task, the scorers, metrics and store writes on full-size synthetic records
(``plan_measure.py``), and three blocks of each compression method
(``plan_compress.py``); model loads, fingerprints, the prefix-sharing probe, task set-up
(loading examples, hashing them) and tokenization are timed as the sweep does them. Each
count is then priced with its measured rate; cells the store already has done cost
nothing, nor do groups whose cells are all done, nor compressed models already cached.

Assumptions (also printed): a pruned or fake-quantized model runs at the dense model's
speed (dense kernels, the same shapes); generations run to ``max_new_tokens``; an
interrupted cell is priced in full; interrupted and resumed runs are not modelled.

    plan = run_plan(load_config("configs/quick.yaml"))
    print(format_plan(plan))
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from compsafe.errors import CompsafeError
from compsafe.sweep.config import ModelEntry, SweepConfig, TaskEntry
from compsafe.sweep.expand import Cell, Group, all_cells, expand, model_dir

log = logging.getLogger(__name__)

ASSUMPTIONS = (
    "pruned and fake-quantized models run at the dense model's speed (dense kernels)",
    "generations run to max_new_tokens (an upper bound where every row stops early)",
    "cells not done (interrupted, failed) are priced in full",
)


@dataclass
class CellPlan:
    """One cell: its work, and its seconds by part (empty when done)."""

    cell: Cell
    state: str
    items: int | None = None  # None: not counted (every cell of its task is done)
    tokens: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    peak_bytes: int | None = None

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())


@dataclass
class GroupPlan:
    """One (model, setting): loading it, and building it when compressed and not cached."""

    group: Group
    seconds: dict[str, float] = field(default_factory=dict)
    peak_bytes: int | None = None
    cached: bool = False
    error: str | None = None

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())


@dataclass
class Plan:
    """Everything ``format_plan`` and ``--json`` print."""

    name: str
    device: str
    threads: int
    measure_s: float
    startup: dict[str, float]
    groups: list[GroupPlan]
    cells: list[CellPlan]
    notes: list[str]

    @property
    def total_s(self) -> float:
        return (sum(self.startup.values()) + sum(g.total_s for g in self.groups)
                + sum(c.total_s for c in self.cells))


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"plan: {text}", file=sys.stderr, flush=True)


def _imports_s() -> float:
    """What a fresh sweep process spends importing torch, transformers and the runner."""
    t0 = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import compsafe.compress.run  # noqa: F401
    import compsafe.models.hf  # noqa: F401
    import compsafe.runner.evaluate  # noqa: F401
    return time.perf_counter() - t0


@dataclass
class TaskSetup:
    """What every cell of a task repeats before its first forward pass: constructing the
    task, loading its examples, hashing them and building the run key's config (timed
    after the preflight loaded them once, as in the sweep); ``task`` is that object."""

    warm_s: float
    task: object


def time_setup(entry: TaskEntry, root: Path) -> TaskSetup:
    from compsafe.tasks import get_task

    t0 = time.perf_counter()
    task = get_task(entry.task)(root, entry.options)
    task.examples()
    task.examples_sha256()
    task.config()
    return TaskSetup(time.perf_counter() - t0, task)


def cell_task(entry: TaskEntry, model: ModelEntry, setup: TaskSetup, root: Path):
    """The task object a cell evaluates (the model's chat format wins, as in ``work.py``):
    the timed one unless the model changes its prompt format."""
    from compsafe.tasks import get_task

    options = entry.options
    prompt = model.prompt_format(options.prompt)
    if prompt == options.prompt:
        return setup.task
    return get_task(entry.task)(root, replace(options, prompt=prompt))


def timed_preflight(config: SweepConfig) -> float:
    """Seconds of the sweep's preflight (every task built once, its examples read)."""
    from compsafe.sweep.work import preflight

    t0 = time.perf_counter()
    preflight(config)
    return time.perf_counter() - t0


def run_plan(config: SweepConfig, progress: bool = True, preflight_s: float | None = None
             ) -> Plan:
    """Count, measure and price every cell of ``config`` not yet done in its store;
    ``preflight_s``: the caller already ran (and timed) the sweep's preflight."""
    from compsafe.data.paths import data_dir
    from compsafe.models.device import pick_device
    from compsafe.sweep.plan_model import measure_model
    from compsafe.sweep.status import cell_states

    t_begin = time.perf_counter()
    startup = {"imports": _imports_s()}
    groups = expand(config)
    cells = all_cells(groups)
    states = cell_states(cells, config.store_path)
    todo = {c.key for c in cells if states[c.key]["state"] != "done"}
    root = Path(config.data_dir or data_dir())
    entries = [e for e in config.tasks
               if any(c.key in todo for c in cells if c.task.name == e.name)]
    if todo:
        startup["preflight"] = timed_preflight(config) if preflight_s is None else preflight_s
    setups = {}
    notes: list[str] = []
    for e in entries:
        try:
            setups[e.name] = time_setup(e, root)
        except CompsafeError as err:  # e.g. a scorer that cannot load: its cells fail at once
            notes.append(f"task {e.name}: {' '.join(str(err).split())}; its cells will fail "
                         "at once (not priced)")
            continue
        _say(progress, f"task {e.name}: set up in {setups[e.name].warm_s:.1f} s")
    group_plans: list[GroupPlan] = []
    cell_plans: list[CellPlan] = []
    with tempfile.TemporaryDirectory(prefix="compsafe-plan-") as tmp:
        for model in config.models:
            mine = [g for g in groups if g.model == model]
            if not any(c.key in todo for g in mine for c in g.cells):
                group_plans += [GroupPlan(g) for g in mine]
                cell_plans += [CellPlan(c, states[c.key]["state"]) for g in mine
                               for c in g.cells]
                continue
            cached = {g.spec.key() for g in mine if g.compressed and _is_built(config, g)}
            g_plans, c_plans, m_notes = measure_model(
                config, model, mine, todo, states, cached, setups, root, Path(tmp), progress)
            group_plans += g_plans
            cell_plans += c_plans
            notes += m_notes
    import torch

    dev = pick_device(config.device)
    threads = torch.get_num_threads() if dev.type == "cpu" else 0
    took = time.perf_counter() - t_begin + (preflight_s or 0.0)
    return Plan(config.name, str(dev), threads, took, startup, group_plans, cell_plans, notes)


def _is_built(config: SweepConfig, group: Group) -> bool:
    """Whether the sweep will reuse a finished model folder for ``group``."""
    from compsafe.compress.lineage import read_compression_info

    info = read_compression_info(model_dir(config, group.model, group.spec))
    return info is not None and info.get("key") == group.spec.key()

"""The Ray executor: compressions and evaluations as Ray tasks (issue 6, item 3).

- One task per compression (a group whose setting is not dense), declaring the config's
  ``ray.compress`` resources; one task per group's evaluation (``ray.eval`` resources),
  which loads the model once for all the group's cells. The evaluation task takes the
  compression task's ObjectRef as an argument, so Ray starts it only after its model is
  built. ``max_retries`` re-runs a task whose worker died; an exception is not retried
  (it is recorded on the cells instead). The driver keeps at most as many groups in
  flight as the cluster's CPUs/GPUs hold (``in_flight_limit``).
- Models: compressed models are written to ``models_dir`` and their path travels to the
  evaluation task, so ``models_dir`` must be a folder every node sees (a shared
  filesystem); on one machine any folder works. The base models are loaded by each worker
  (``default`` and hub ids resolve on every node).
- Results: one ``StoreWriter`` actor, pinned to the driver's node, owns the driver's store
  file and the cell table. Workers evaluate with a proxy store that forwards each chunk of
  records, the run rows and the metrics to it, so results land in the driver's store as
  they are computed and an interrupted cell resumes from its stored items, as locally.
  Nothing but the driver's node writes the SQLite file, which is safe across machines.
- Progress: the driver polls the cell table and prints one line per state change.
- GPUs (issue 18, item 4): each task declares ``ray.compress.num_gpus`` /
  ``ray.eval.num_gpus``, and Ray shows it only the GPUs it was given (it sets
  ``CUDA_VISIBLE_DEVICES``, so ``cuda`` in the task is its own first GPU, and a
  ``device_map`` of ``auto`` spreads a model over its own GPUs alone). Without a configured
  ``device``, a task runs on ``cuda`` when it was given GPUs and on the CPU when not (a task
  that asked for none must not use GPUs Ray lent to others). Each task reports where it ran
  (``Placement``: node, GPU ids, device) to the writer actor; ``run_ray`` logs and returns
  them.

- Plugins: every task first imports the modules of the driver's ``$COMPSAFE_PLUGINS``
  (``compsafe/plugins.py``), so a sweep of a user's own task, scorer or method runs on the
  workers as on the driver. The modules must be importable on every node (installed, or
  shipped with Ray's ``runtime_env``); one that is not fails its cells with one line.

Ray is imported only here, and only when this executor is chosen.

    run_ray(config, expand(config), address="auto")
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from compsafe.errors import CompsafeError
from compsafe.plugins import ENV, load_plugins, plugin_modules
from compsafe.store import Store
from compsafe.sweep.config import Resources, SweepConfig
from compsafe.sweep.expand import Cell, Group, all_cells
from compsafe.sweep.local import todo
from compsafe.sweep.state import CellTable, read_rows
from compsafe.sweep.status import cell_line, cell_states
from compsafe.sweep.work import Built, build, evaluate_group, one_line

log = logging.getLogger(__name__)

STORE_METHODS = ("start_run", "done_item_ids", "add_records", "fail_run", "records",
                 "put_metrics", "finish_run", "run", "replace_records", "claim_items",
                 "renew_claims", "release_claims", "shared_records", "put_shared_records")
"""The ``Store`` methods ``runner.evaluate`` calls, forwarded to the driver's store; a
method the runner starts to call must be added here (tests/test_sweep_ray.py runs every
kind of task through Ray)."""


@dataclass(frozen=True)
class Placement:
    """Where one Ray task ran: ``task`` is ``compress`` or ``eval``, ``group`` the group's
    label; ``gpu_ids`` are Ray's ids of the GPUs it was given (what ``CUDA_VISIBLE_DEVICES``
    showed it, ``visible``), ``device`` what its model ran on."""

    task: str
    group: str
    node: str
    gpu_ids: tuple[str, ...]
    visible: str | None
    device: str


def task_device(configured: str | None, gpu_ids) -> str:
    """The device a task runs its model on: the configured one, else ``cuda`` when Ray gave
    it GPUs (its own first, as ``CUDA_VISIBLE_DEVICES`` numbers them) and ``cpu`` when not."""
    if configured:
        return configured
    return "cuda" if len(gpu_ids) else "cpu"


def check_devices(config: SweepConfig) -> None:
    """Refuse a ``device`` that the tasks' GPU requests cannot serve, before any task runs:
    Ray shows a task only its own GPUs, numbered from 0, and none to a task that asked for
    none (such a task would use GPUs lent to others)."""
    dev = config.device or ""
    if not dev.startswith("cuda"):
        return
    index = int(m.group(1)) if (m := re.fullmatch(r"cuda:(\d+)", dev)) else 0
    for what, res in (("compress", config.compress_resources), ("eval", config.eval_resources)):
        if res.num_gpus == 0:
            raise CompsafeError(f"device {dev!r} needs ray.{what}.num_gpus: Ray reserves no "
                                f"GPU for a {what} task that asks for none")
        if index >= math.ceil(res.num_gpus):
            raise CompsafeError(f"device {dev!r}: a {what} task sees only its own "
                                f"{math.ceil(res.num_gpus)} GPU(s) (ray.{what}.num_gpus "
                                f"{res.num_gpus:g}), numbered from cuda:0")


def _placed(writer, kind: str, config: SweepConfig, group: Group) -> SweepConfig:
    """Record where this task runs (on the writer) and return ``config`` with its device."""
    import ray

    gpu_ids = tuple(str(g) for g in ray.get_gpu_ids())
    device = task_device(config.device, gpu_ids)
    ray.get(writer.placed.remote(Placement(
        kind, group.label, ray.get_runtime_context().get_node_id(), gpu_ids,
        os.environ.get("CUDA_VISIBLE_DEVICES"), device)))
    return replace(config, device=device)


class StoreWriter:
    """Ray actor body: the only writer of the driver's store and cell table, and the
    keeper of the tasks' placements."""

    def __init__(self, store_path: str):
        self.store = Store(store_path)
        self.table = CellTable(store_path)
        self._placements: list[Placement] = []

    def placed(self, placement: Placement) -> None:
        self._placements.append(placement)

    def placements(self) -> list[Placement]:
        return list(self._placements)

    def store_call(self, name: str, *args, **kwargs):
        if name not in STORE_METHODS:
            raise AttributeError(f"the sweep store proxy does not forward {name!r}")
        return getattr(self.store, name)(*args, **kwargs)

    def set_state(self, cell_key: str, status: str, run_key=None, error=None) -> None:
        self.table.set(cell_key, status, run_key=run_key, error=error)

    def close(self) -> None:
        self.table.close()
        self.store.close()

    def fail_unfinished(self, cell_keys: list[str], error: str) -> None:
        """After a task was lost for good: its cells that did not finish are failed."""
        rows = self.table.rows()
        for key in cell_keys:
            if rows.get(key, {}).get("status") != "done":
                self.table.set(key, "failed", error=error)


class RemoteStore:
    """What ``evaluate_task`` sees in a worker: the ``Store`` methods it calls, forwarded."""

    def __init__(self, writer):
        self.writer = writer

    def __getattr__(self, name: str):
        if name not in STORE_METHODS:
            raise AttributeError(name)
        import ray

        return lambda *a, **k: ray.get(self.writer.store_call.remote(name, *a, **k))


class RemoteSink:
    """The worker-side sink: cell state changes go to the writer actor."""

    def __init__(self, writer):
        self.writer = writer

    def _set(self, cell: Cell, status: str, **kw) -> None:
        import ray

        ray.get(self.writer.set_state.remote(cell.key, status, **kw))

    def started(self, cell: Cell) -> None:
        self._set(cell, "running")

    def done(self, cell: Cell, run_key: str) -> None:
        self._set(cell, "done", run_key=run_key)

    def failed(self, cell: Cell, error: str) -> None:
        self._set(cell, "failed", error=error)


def _import_plugins(modules: tuple[str, ...]) -> None:
    """Register the driver's plugin modules in this worker (imported once per process)."""
    if modules:
        load_plugins({ENV: ",".join(modules)})


def compress_task(config: SweepConfig, group: Group, writer,
                  plugins: tuple[str, ...] = ()) -> Built:
    _import_plugins(plugins)
    return build(_placed(writer, "compress", config, group), group, progress=False)


def eval_task(config: SweepConfig, group: Group, cells: list[Cell], built: Built,
              writer, plugins: tuple[str, ...] = ()) -> None:
    _import_plugins(plugins)
    evaluate_group(_placed(writer, "eval", config, group), group, cells, built,
                   RemoteStore(writer), RemoteSink(writer), progress=False)


def in_flight_limit(total: dict, config: SweepConfig) -> int:
    """How many groups may be in flight at once: what the cluster's CPUs and GPUs hold of
    the larger of the two declared task shapes.

    Ray lends a task's CPUs to other tasks while it waits in ``ray.get`` (here: on the
    store writer), so resource declarations alone would let more evaluations run than
    there are cores; bounding the groups submitted (each runs one task at a time)
    restores the bound."""
    limits = []
    for res in (config.compress_resources, config.eval_resources):
        for need, kind in ((res.num_cpus, "CPU"), (res.num_gpus, "GPU")):
            have = total.get(kind, 0)
            if need:
                limits.append(int(have // need))
    return max(1, min(limits)) if limits else 1 << 30


def _options(res: Resources, max_retries: int) -> dict:
    opts = {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus, "max_retries": max_retries,
            "retry_exceptions": False}
    if res.memory_gb:
        opts["memory"] = int(res.memory_gb * 2**30)
    return opts


class Watcher:
    """Prints a line for each cell whose stored state changed since the last poll."""

    def __init__(self, store_path: Path, cells: list[Cell], stream=None):
        self.path, self.cells, self.stream = store_path, cells, stream or sys.stdout
        self.seen = self._snapshot()

    def _snapshot(self) -> dict:
        rows = read_rows(self.path)
        return {k: (r["status"], r["attempts"]) for k, r in rows.items()}

    def poll(self) -> None:
        now, rows = self._snapshot(), read_rows(self.path)
        for i, cell in enumerate(self.cells, 1):
            if cell.key in now and now[cell.key] != self.seen.get(cell.key):
                row = rows[cell.key]
                detail = row["error"] if row["status"] == "failed" else (
                    f"run {row['run_key']}" if row["status"] == "done" else "")
                print(cell_line(i, len(self.cells), row["status"], cell, detail or ""),
                      file=self.stream, flush=True)
        self.seen = now


def run_ray(config: SweepConfig, groups: list[Group], address: str | None = None,
            num_cpus: int | None = None, num_gpus: int | None = None) -> list[Placement]:
    """Run every unfinished cell on a Ray cluster (``address``) or a new local one (with
    ``num_cpus``/``num_gpus``, default: what the machine has); returns where each task ran."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    check_devices(config)
    cells = all_cells(groups)
    with Store(config.store_path), CellTable(config.store_path) as table:
        table.register(cells, config.name)  # the file and its tables exist before any worker
    states = cell_states(cells, config.store_path)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(**({"address": address} if address else
                    {"num_cpus": num_cpus, "num_gpus": num_gpus}),
                 include_dashboard=False, log_to_driver=True)
    try:
        here = ray.get_runtime_context().get_node_id()
        writer = ray.remote(StoreWriter).options(
            num_cpus=0, max_restarts=3,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        ).remote(str(config.store_path.resolve()))
        compress = ray.remote(compress_task).options(
            **_options(config.compress_resources, config.max_retries))
        evaluate = ray.remote(eval_task).options(
            **_options(config.eval_resources, config.max_retries))
        queue = deque((g, todo(g, states)) for g in groups if todo(g, states))
        capacity = in_flight_limit(ray.cluster_resources(), config)
        watcher = Watcher(config.store_path, cells)
        pending: dict = {}
        plugins = tuple(plugin_modules())
        while queue or pending:
            while queue and len(pending) < capacity:
                group, remaining = queue.popleft()
                built = (compress.remote(config, group, writer, plugins) if group.compressed
                         else Built(group.model.model))
                pending[evaluate.remote(config, group, remaining, built, writer,
                                        plugins)] = remaining
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                remaining = pending.pop(ref)
                try:
                    ray.get(ref)
                except Exception as e:  # lost beyond max_retries, or a bug outside a cell
                    ray.get(writer.fail_unfinished.remote([c.key for c in remaining],
                                                          f"ray task failed: {one_line(e)}"))
            watcher.poll()
        placements = ray.get(writer.placements.remote())
        ray.get(writer.close.remote())  # every write above was awaited; now let go of the file
        ray.kill(writer)
    finally:
        if started_here:
            ray.shutdown()
    for p in placements:
        log.info("%s %s: node %s, GPUs [%s], device %s", p.task, p.group, p.node[:12],
                 ", ".join(p.gpu_ids), p.device)
    return placements

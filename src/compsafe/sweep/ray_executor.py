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

Ray is imported only here, and only when this executor is chosen.

    run_ray(config, expand(config), address="auto")
"""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path

from compsafe.store import Store
from compsafe.sweep.config import Resources, SweepConfig
from compsafe.sweep.expand import Cell, Group, all_cells
from compsafe.sweep.local import todo
from compsafe.sweep.state import CellTable, read_rows
from compsafe.sweep.status import cell_line, cell_states
from compsafe.sweep.work import Built, build, evaluate_group, one_line

STORE_METHODS = ("start_run", "done_item_ids", "add_records", "fail_run", "records",
                 "put_metrics", "finish_run", "run", "replace_records", "claim_items",
                 "renew_claims", "release_claims")


class StoreWriter:
    """Ray actor body: the only writer of the driver's store and cell table."""

    def __init__(self, store_path: str):
        self.store = Store(store_path)
        self.table = CellTable(store_path)

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


def compress_task(config: SweepConfig, group: Group) -> Built:
    return build(config, group, progress=False)


def eval_task(config: SweepConfig, group: Group, cells: list[Cell], built: Built,
              writer) -> None:
    evaluate_group(config, group, cells, built, RemoteStore(writer), RemoteSink(writer),
                   progress=False)


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
            num_cpus: int | None = None) -> None:
    """Run every unfinished cell on a Ray cluster (``address``) or a new local one."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cells = all_cells(groups)
    with Store(config.store_path), CellTable(config.store_path) as table:
        table.register(cells, config.name)  # the file and its tables exist before any worker
    states = cell_states(cells, config.store_path)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(**({"address": address} if address else {"num_cpus": num_cpus}),
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
        while queue or pending:
            while queue and len(pending) < capacity:
                group, remaining = queue.popleft()
                built = compress.remote(config, group) if group.compressed else Built(
                    group.model.model)
                pending[evaluate.remote(config, group, remaining, built, writer)] = remaining
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                remaining = pending.pop(ref)
                try:
                    ray.get(ref)
                except Exception as e:  # lost beyond max_retries, or a bug outside a cell
                    ray.get(writer.fail_unfinished.remote([c.key for c in remaining],
                                                          f"ray task failed: {one_line(e)}"))
            watcher.poll()
        ray.get(writer.close.remote())  # every write above was awaited; now let go of the file
        ray.kill(writer)
    finally:
        if started_here:
            ray.shutdown()

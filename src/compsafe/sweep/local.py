"""The local executor: every group in this process, one after another (issue 6, item 3).

Per group (one base model × one compression setting): build or find the compressed model,
load it once, run its unfinished cells; a failed compression or cell is recorded in the
cell table and the next one runs. Finished cells are skipped; an interrupted cell resumes
from its stored items. Prints one line per cell state change (tqdm bars inside cells).

    counts = run_local(config, expand(config))
"""

from __future__ import annotations

import sys
import time

from compsafe.store import Store
from compsafe.sweep.config import SweepConfig
from compsafe.sweep.expand import Cell, Group, all_cells
from compsafe.sweep.state import CellTable
from compsafe.sweep.status import cell_line, cell_states
from compsafe.sweep.work import build, evaluate_group


class CellLog:
    """The local sink: writes each state change to the cell table and prints it."""

    def __init__(self, table: CellTable, cells: list[Cell], stream=None):
        self.table, self.stream = table, stream or sys.stdout
        self.index = {c.key: i for i, c in enumerate(cells, 1)}
        self.total = len(cells)
        self.started_at: dict[str, float] = {}

    def _print(self, state: str, cell: Cell, detail: str = "") -> None:
        print(cell_line(self.index[cell.key], self.total, state, cell, detail),
              file=self.stream, flush=True)

    def started(self, cell: Cell) -> None:
        self.table.set(cell.key, "running")
        self.started_at[cell.key] = time.perf_counter()
        self._print("running", cell)

    def done(self, cell: Cell, run_key: str) -> None:
        self.table.set(cell.key, "done", run_key=run_key)
        took = time.perf_counter() - self.started_at.get(cell.key, time.perf_counter())
        self._print("done", cell, f"run {run_key} ({took:.1f} s)")

    def failed(self, cell: Cell, error: str) -> None:
        self.table.set(cell.key, "failed", error=error)
        self._print("failed", cell, error)


def todo(group: Group, states: dict[str, dict]) -> list[Cell]:
    return [c for c in group.cells if states[c.key]["state"] != "done"]


def run_local(config: SweepConfig, groups: list[Group], progress: bool = True) -> None:
    """Run every unfinished cell of ``groups``; results and cell states go to the store."""
    cells = all_cells(groups)
    with Store(config.store_path) as store, CellTable(config.store_path) as table:
        table.register(cells, config.name)
        states = cell_states(cells, config.store_path)
        sink = CellLog(table, cells)
        for group in groups:
            remaining = todo(group, states)
            if remaining:
                built = build(config, group, progress)
                evaluate_group(config, group, remaining, built, store, sink, progress)

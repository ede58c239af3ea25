"""The printed table and the ``--json`` form of a sweep plan (``plan.py``).

One row per cell (model, setting, task, items, tokens, estimated minutes, peak memory),
with a ``(load)`` row per group (loading, fingerprinting and probing the model) and a
``(build)`` row per compressed model still to be built; then the start-up costs and the
total, which leaves out the cells the store already has done (and says how many).

    print(format_plan(plan)); json.dumps(plan_dict(plan))
"""

from __future__ import annotations

from compsafe.compress.memory import GiB
from compsafe.sweep.plan import ASSUMPTIONS, CellPlan, GroupPlan, Plan

HEAD = ("model", "setting", "task", "items", "tokens", "est. min", "peak mem")


def _build_s(g: GroupPlan) -> float:
    return sum(v for k, v in g.seconds.items() if k.startswith("build_"))


def _load_s(g: GroupPlan) -> float:
    return g.total_s - _build_s(g)


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _mem(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / GiB:.2f} GiB"


def _rows(plan: Plan) -> list[tuple[str, ...]]:
    cells = {}
    for c in plan.cells:
        cells.setdefault((c.cell.model.name, c.cell.spec.key()), []).append(c)
    rows = []
    for g in plan.groups:
        model, setting = g.group.model.name, g.group.spec.label()
        if _build_s(g):
            rows.append((model, setting, "(build)", "-", "-", f"{_build_s(g) / 60:.2f}",
                         _mem(g.peak_bytes)))
        if g.seconds:
            rows.append((model, setting, "(load)", "-", "-", f"{_load_s(g) / 60:.2f}", "-"))
        for c in cells.get((model, g.group.spec.key()), []):
            minutes = "done" if c.state == "done" else f"{c.total_s / 60:.2f}"
            rows.append((model, setting, c.cell.task.name, _count(c.items), _count(c.tokens),
                         minutes, _mem(c.peak_bytes)))
    return rows


def format_plan(plan: Plan) -> str:
    """The plan as a table with its total, assumptions and notes."""
    done = sum(c.state == "done" for c in plan.cells)
    todo = len(plan.cells) - done
    where = f"{plan.device} ({plan.threads} threads)" if plan.threads else plan.device
    lines = [f"sweep {plan.name}: {len(plan.cells)} cells, {done} done in the store (left "
             f"out); measured on {where} in {plan.measure_s:.0f} s"]
    rows = [HEAD, *_rows(plan)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    right = (False, False, False, True, True, True, True)
    for r in rows:
        lines.append("  ".join(v.rjust(w) if right[i] else v.ljust(w)
                               for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    start = sum(plan.startup.values())
    lines.append(f"start-up ({', '.join(plan.startup)}): {start / 60:.2f} min")
    total = plan.total_s
    lines.append(f"total: {todo} cells to run, est. {total / 3600:.2f} h ({total / 60:.1f} min)"
                 + (f"; {done} done cells left out" if done else ""))
    lines += [f"assumes: {a}" for a in ASSUMPTIONS]
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


def _seconds(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in d.items()}


def _group(g: GroupPlan) -> dict:
    return {"model": g.group.model.name, "setting": g.group.spec.label(),
            "spec_key": g.group.spec.key(), "cached": g.cached, "error": g.error,
            "seconds": _seconds(g.seconds), "total_s": round(g.total_s, 3),
            "peak_bytes": g.peak_bytes}


def _cell(c: CellPlan) -> dict:
    return {"key": c.cell.key, "model": c.cell.model.name, "setting": c.cell.spec.label(),
            "task": c.cell.task.name, "state": c.state, "items": c.items, "tokens": c.tokens,
            "seconds": _seconds(c.seconds), "total_s": round(c.total_s, 3),
            "peak_bytes": c.peak_bytes}


def plan_dict(plan: Plan) -> dict:
    """The plan as JSON-ready data: every group and cell with its seconds by part."""
    done = sum(c.state == "done" for c in plan.cells)
    return {"sweep": plan.name, "device": plan.device, "threads": plan.threads,
            "measure_s": round(plan.measure_s, 3), "startup": _seconds(plan.startup),
            "total_s": round(plan.total_s, 3), "total_hours": round(plan.total_s / 3600, 4),
            "cells_to_run": len(plan.cells) - done, "cells_done": done,
            "groups": [_group(g) for g in plan.groups], "cells": [_cell(c) for c in plan.cells],
            "assumptions": list(ASSUMPTIONS), "notes": list(plan.notes)}

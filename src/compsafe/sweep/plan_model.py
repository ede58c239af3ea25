"""One base model's part of ``compsafe sweep plan``: load it, count and time its cells'
work, time building its compressed models, and price every group and cell.

The model is loaded as the sweep's evaluation loads it (the config's device, dtype and
batch size); compression is timed on a float32 copy on the CPU, as ``compress_model``
loads it, whose load time is also what the sweep's later loads cost (warm caches). Peak
memory comes from ``compress/memory.py``'s formulas for the model's shape: for a cell,
its largest batch; for a build, the compression of one block (plus, on a CPU, the float32
model that waits in the same memory).

    groups, cells, notes = measure_model(config, model, groups, todo, states, cached,
                                         setups, root, tmp, progress=True)
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import torch

from compsafe.compress.memory import Shape, compression_memory, evaluation_memory
from compsafe.compress.registry import method_info
from compsafe.errors import CompsafeError
from compsafe.sweep.plan import CellPlan, GroupPlan, TaskSetup, _say, cell_task
from compsafe.sweep.plan_measure import (
    Arch,
    fit_rate,
    sample_batches,
    time_batch,
    time_bookkeeping,
    time_generation,
    time_scorer,
)
from compsafe.sweep.plan_work import Batch, TaskWork, count_work


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def eval_peak(shape: Shape | None, weight_bytes: int, batches: list[Batch]) -> int | None:
    """``evaluation_memory`` at the cell's largest batch: its tokens through the model and
    its logit columns (float32, capped as the adapter caps them)."""
    from compsafe.models.loglik import LOGIT_BYTES

    if not batches or shape is None:  # no Llama-style shape: no memory estimate
        return None
    logits = min(LOGIT_BYTES, 4 * max(b.rows * b.kept for b in batches) * shape.vocab)
    return evaluation_memory(shape, weight_bytes, max(b.tokens for b in batches), logits,
                             weight_bytes).total


def _time_cell_work(hf, task, work: TaskWork, arch: Arch, shared: bool, points: dict,
                    checkpoint_every: int, tmp: Path) -> dict:
    """Times the task's sample batches (into ``points``) and what is timed per task."""
    kinds = defaultdict(list)
    for b in work.batches:
        if b.kind != "generation":
            kinds[b.rate_kind].append(b)
    for kind, batches in kinds.items():
        points[kind] += [time_batch(hf, b, shared, arch) for b in sample_batches(batches, arch)]
    out: dict = {"generation": None, "scorer": None}
    gens = [b for b in work.batches if b.kind == "generation"]
    if gens:
        out["generation"], texts = time_generation(hf, gens, arch)
        scorer = getattr(task, "scorer", None)
        out["scorer"] = time_scorer(scorer, texts) if scorer is not None else None
    out["store"], out["metrics"] = time_bookkeeping(task, work, checkpoint_every, tmp)
    return out


def cell_seconds(work: TaskWork, setup: TaskSetup, timed: dict, rates: dict, arch: Arch,
                 checkpoint_every: int) -> dict[str, float]:
    """A cell's seconds by part, from its counted work and the measured rates."""
    parts = defaultdict(float, setup=setup.warm_s, prepare=work.prepare_s)
    for b in work.batches:
        if b.kind == "generation":
            parts["generation"] += timed["generation"].seconds(b, arch)
        else:
            parts[b.kind] += rates[b.rate_kind].seconds(arch.flops(b))
    if timed["scorer"] is not None:
        chunks = -(-work.items // checkpoint_every)
        parts["scorer"] = timed["scorer"].seconds(work.generations, chunks)
    parts["store"] = timed["store"]
    if timed["metrics"] is not None:
        parts["metrics"] = timed["metrics"]
    return dict(parts)


def measure_model(config, model, groups, todo: set[str], states: dict, cached: set[str],
                  setups: dict[str, TaskSetup], root: Path, tmp: Path, progress: bool):
    """``(group plans, cell plans, notes)`` of ``model``'s groups (module docstring)."""
    from compsafe.models.hf import HFModel
    from compsafe.models.loglik import prefix_sharing_probe

    _say(progress, f"loading {model.name} ({config.device or 'default device'}, "
                   f"{config.dtype})")
    t0 = time.perf_counter()
    hf = HFModel.load(model.model, device=config.device, dtype=config.dtype,
                      batch_size=config.batch_size)
    t1 = time.perf_counter()
    hf.fingerprint()
    t2 = time.perf_counter()
    probe = prefix_sharing_probe(hf.model, hf.pad_id)
    t3 = time.perf_counter()
    # The first forward passes of a process pay one-off set-up; later models' probes do not.
    prefix_sharing_probe(hf.model, hf.pad_id, again=True)
    load_s, fingerprint_s, probe_s = t1 - t0, t2 - t1, time.perf_counter() - t3
    first_probe_s = t3 - t2
    arch = Arch.of(hf.model)
    shape = Shape.from_config(hf.model.config, model.name)
    weight_bytes = next(hf.model.parameters()).element_size()
    _say(progress, f"{model.name}: loaded in {load_s:.1f} s, fingerprint {fingerprint_s:.1f} s,"
                   f" {'prefix-shared' if probe.shared else 'plain'} scoring")
    names = {c.task.name for g in groups for c in g.cells if c.key in todo} & set(setups)
    works, timed, points, notes = {}, {}, defaultdict(list), []
    warm = False
    for entry in (e for e in config.tasks if e.name in names):
        task = cell_task(entry, model, setups[entry.name], root)
        work = count_work(task, hf, config.checkpoint_every, probe.shared)
        _say(progress, f"{entry.name}: {work.items} items, {len(work.batches)} batches, "
                       f"{work.tokens:,} tokens; timing a few")
        works[entry.name] = work
        opening = next((b for b in work.batches if b.kind != "generation"), None)
        if not warm and opening is not None:  # the process's first large forward pays set-up
            time_batch(hf, opening, probe.shared, arch)
            warm = True
        timed[entry.name] = _time_cell_work(hf, task, work, arch, probe.shared, points,
                                            config.checkpoint_every, tmp)
        if timed[entry.name]["metrics"] is None:
            notes.append(f"{entry.name}: metrics time not estimated (they need real values)")
        if work.generations and timed[entry.name]["scorer"] is None:
            notes.append(f"{entry.name}: the scorer's time is not estimated (API scorer)")
    rates = {kind: fit_rate(p) for kind, p in points.items()}
    eval_fp32_cpu = hf.device.type == "cpu" and weight_bytes == 4
    del hf
    build = [g for g in groups if g.compressed and g.spec.key() not in cached
             and any(c.key in todo for c in g.cells)]
    builds, warm_load = measure_builds(config, model, build, shape, progress) if build else (
        {}, None)
    group_plans, cell_plans, first, probed = [], [], True, False
    for g in groups:
        remaining = [c for c in g.cells if c.key in todo]
        gp = GroupPlan(g, cached=g.spec.key() in cached)
        group_plans.append(gp)
        if g in builds:
            parts, gp.peak_bytes, gp.error = builds[g]
            gp.seconds = {f"build_{k}": v for k, v in parts.items()}
        if remaining and gp.error is None:  # a failed build is never loaded for evaluation
            loads = load_s if first or not eval_fp32_cpu or warm_load is None else warm_load
            gp.seconds.update(load=loads, fingerprint=fingerprint_s)
            first = False
            if any(works[c.task.name].requests.get("scoring") for c in remaining):
                gp.seconds["probe"] = first_probe_s if not probed else probe_s
                probed = True
        for c in g.cells:
            cp = CellPlan(c, states[c.key]["state"])
            cell_plans.append(cp)
            work = works.get(c.task.name)
            if work is None:  # every cell of the task is done: not counted
                continue
            cp.items, cp.tokens = work.items, work.tokens
            cp.peak_bytes = eval_peak(shape, weight_bytes, work.batches)
            if c.key in todo and gp.error is None and c.task.name in setups:
                cp.seconds = cell_seconds(work, setups[c.task.name], timed[c.task.name], rates,
                                          arch, config.checkpoint_every)
        if gp.error:
            notes.append(f"{g.label}: {gp.error}; its cells will fail at once")
    return group_plans, cell_plans, notes


def measure_builds(config, model, groups, shape: Shape, progress: bool):
    """``({group: (seconds by part, peak bytes, error)}, float32 load seconds)``."""
    from compsafe.compress.calibration import calibration_batches
    from compsafe.compress.methods import needs
    from compsafe.compress.run import check_layers, resolve_forward_dtype, resolve_save_dtype
    from compsafe.compress.spec import BNB_METHODS
    from compsafe.models.device import DTYPES, pick_device
    from compsafe.models.hf import HFModel
    from compsafe.sweep.plan_compress import (
        all_targets,
        compression_seconds,
        gradient_seconds,
        save_seconds,
    )

    dev = pick_device(config.device)
    hf, load_s = _timed(lambda: HFModel.load(model.model, device="cpu", dtype="float32"))
    _, fp_s = _timed(hf.fingerprint)
    calibrations, saves, out = {}, {}, {}
    for g in groups:
        spec = g.spec
        parts = {"load": load_s, "fingerprint": fp_s}
        _say(progress, f"timing {spec.label()} on three blocks of {model.name}")
        error, peak = None, None
        try:
            if spec.method not in BNB_METHODS:
                check_layers(all_targets(hf.model, spec), spec)
                want = needs(spec)
                tokens, forward = None, torch.float32
                if want:
                    if spec.calibration not in calibrations:
                        t0 = time.perf_counter()
                        tokens, _ = calibration_batches(hf.tokenizer, spec.calibration,
                                                        config.data_dir)
                        calibrations[spec.calibration] = tokens, time.perf_counter() - t0
                    tokens, parts["calibration"] = calibrations[spec.calibration]
                    forward = DTYPES[resolve_forward_dtype(spec.forward_dtype, dev)]
                grads = None
                if method_info(spec.method).gradients:
                    parts["gradients"], grads = gradient_seconds(hf.model, spec, tokens, dev)
                parts["compress"] = compression_seconds(hf.model, spec, tokens, dev, grads,
                                                        forward)
                peak = None if shape is None else compression_memory(
                    shape, spec.method, spec.calibration.nsamples, spec.calibration.seqlen,
                    8, torch.finfo(forward).bits // 8, device=dev.type).total
                if dev.type == "cpu" and peak is not None:
                    peak += 4 * shape.params  # the float32 model waits in the same memory
            size = 1 if spec.method in BNB_METHODS else (
                torch.finfo(DTYPES[resolve_save_dtype(spec.save_dtype, hf.source)]).bits // 8)
            if size not in saves:
                saves[size] = save_seconds(hf.model, hf.tokenizer, size)
            parts["save"] = saves[size]
        except (CompsafeError, ValueError, RuntimeError) as e:
            error = f"compression failed: {' '.join(str(e).split())}"
        out[g] = (parts, peak, error)
    return out, load_s

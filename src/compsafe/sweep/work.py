"""The two units of sweep work, shared by the local and the Ray executor.

``build``: make (or find) a group's compressed model in ``models_dir``; it never raises for
a failed compression but returns the error, so every cell of the group can be recorded as
failed with it while the sweep goes on. ``evaluate_group``: load the model once and run
each of the group's cells through ``runner.evaluate.evaluate_task`` (which resumes a
partial run item by item and reuses a finished one), reporting each cell's state to a
``sink``. Both take the store and sink as arguments, so the Ray executor can hand in
proxies that forward to the driver's store.

    built = build(config, group)
    evaluate_group(config, group, group.cells, built, store, sink)
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from compsafe.compress.lineage import read_compression_info
from compsafe.data.paths import data_dir
from compsafe.errors import CompsafeError
from compsafe.sweep.config import SweepConfig
from compsafe.sweep.expand import Cell, Group, model_dir

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where cell state changes go (``CellLog`` locally, a Ray actor's proxy remotely)."""

    def started(self, cell: Cell) -> None: ...
    def done(self, cell: Cell, run_key: str) -> None: ...
    def failed(self, cell: Cell, error: str) -> None: ...


@dataclass(frozen=True)
class Built:
    """What ``evaluate_group`` loads (``source``), or why there is nothing to load."""

    source: str | None
    error: str | None = None


def one_line(e: BaseException) -> str:
    """An error as one line: a CompsafeError's message, else its type and message."""
    text = str(e) if isinstance(e, CompsafeError) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())


def build(config: SweepConfig, group: Group, progress: bool = True) -> Built:
    """The group's model: the base model (dense), a cached compressed model, or a new one."""
    if not group.compressed:
        return Built(group.model.model)
    out = model_dir(config, group.model, group.spec)
    try:
        with build_lock(out):  # a concurrent sweep building the same model: wait, then reuse
            return _build_locked(config, group, out, progress)
    except Exception as e:  # recorded on every cell of the group; the sweep goes on
        log.debug("compression of %s failed", group.label, exc_info=True)
        return Built(None, f"compression failed: {one_line(e)}")


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on building ``out`` (a ``.lock`` file beside it; released when the
    process ends, however it ends)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_locked(config: SweepConfig, group: Group, out: Path, progress: bool) -> Built:
    """``build`` under the lock: reuse a finished model folder, else compress into it."""
    info = read_compression_info(out)
    if info is None:
        from compsafe.compress.run import compress_model

        log.info("%s: compressing into %s", group.label, out)
        compress_model(group.model.model, group.spec, out, device=config.device,
                       data_dir=config.data_dir, progress=progress,
                       trust_remote_code=group.model.trust_remote_code)
    elif (info.get("key"), (info.get("source_model") or {}).get("spec")) != (
            group.spec.key(), group.model.model):
        # The folder name holds the spec key, but a hand-copied folder could lie.
        raise CompsafeError(f"{out}: compression.json says spec {info.get('key')} of "
                            f"model {info.get('source_model', {}).get('spec')!r}, not "
                            f"{group.spec.key()} of {group.model.model!r}; remove it")
    else:
        log.info("%s: using the cached model %s", group.label, out)
    return Built(str(out))


def evaluate_group(config: SweepConfig, group: Group, cells: list[Cell] | tuple[Cell, ...],
                   built: Built, store, sink: Sink, progress: bool = True) -> None:
    """Run ``cells`` (of ``group``) on its model, loaded once; a failing cell is recorded
    and the next one runs."""
    if not cells:
        return
    if built.error is not None:
        for cell in cells:
            sink.failed(cell, built.error)
        return
    from compsafe.models.hf import HFModel
    from compsafe.runner.evaluate import evaluate_task
    from compsafe.tasks import get_task

    try:
        model = HFModel.load(built.source, device=config.device, dtype=config.dtype,
                             batch_size=config.batch_size, device_map=config.load_device_map,
                             trust_remote_code=group.model.trust_remote_code)
        log.info("%s: fingerprint %s", group.label, model.identity.fingerprint)  # built once
    except Exception as e:
        for cell in cells:
            sink.failed(cell, f"model load failed: {one_line(e)}")
        return
    root = config.data_dir or data_dir()
    for cell in cells:
        sink.started(cell)
        try:
            options = cell.task.options
            prompt = cell.model.prompt_format(options.prompt)  # a model's own chat wins
            if prompt != options.prompt:
                options = replace(options, prompt=prompt)
            task = get_task(cell.task.task)(root, options)
            result = evaluate_task(model, task, store,
                                   checkpoint_every=config.checkpoint_every, progress=progress)
        except Exception as e:
            log.debug("cell %s failed", cell.label, exc_info=True)
            sink.failed(cell, one_line(e))
            continue
        sink.done(cell, result.run_key)
    del model


def preflight(config: SweepConfig) -> None:
    """Build every task once and read its examples: a missing or malformed data file stops
    the sweep here, before any model loads (as ``compsafe eval`` does)."""
    from compsafe.tasks import get_task

    root = config.data_dir or data_dir()
    for entry in config.tasks:
        try:
            n = len(get_task(entry.task)(root, entry.options).examples())
        except CompsafeError as e:
            raise CompsafeError(f"task {entry.name!r}: {e}") from None
        log.info("%s: %d examples", entry.name, n)

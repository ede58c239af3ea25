"""Run one task on one model, resumably: examples -> requests -> records -> metrics -> store.

Records are written to the store in chunks as they are computed, keyed by the run key
(model fingerprint, task config, prompt format, code version). Re-running the same
command skips finished items, and a finished run is not recomputed at all. Metrics are
computed from the stored records in the task's example order, so a resumed run gives the
same numbers (bootstrap CIs included) as an uninterrupted one.

    result = evaluate_task(model, BBQTask(data_dir(), TaskOptions(limit=200)), store)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from compsafe import __version__
from compsafe.models.adapter import ModelAdapter
from compsafe.runner.keys import run_key
from compsafe.runner.provenance import invocation
from compsafe.store import Store, claims
from compsafe.tasks.base import LoglikTask
from compsafe.types import DEFAULT_PROTOCOL, MetricRow, PromptFormat

log = logging.getLogger(__name__)


@dataclass
class TaskResult:
    """What one task run produced: its key, records and metric rows."""

    task: str
    run_key: str
    model: str
    config: dict[str, Any]
    records: list[dict[str, Any]]
    metrics: list[MetricRow]
    n_computed: int
    n_resumed: int
    n_failed: int = 0  # failed scores left in the records: the metrics are incomplete
    n_retried: int = 0  # stored failed scores tried again by this call


def make_render(model: ModelAdapter, prompt: PromptFormat) -> Callable[[str], str]:
    """Identity, the model's chat template, or a named literal one around the raw prompt."""
    if not prompt.chat:
        return lambda text: text
    if prompt.template is not None:  # a named literal template (types.CHAT_TEMPLATES)
        return lambda text: prompt.render(text)
    return lambda text: model.render_chat(text, prompt.system)


CLAIM_TTL_S = claims.DEFAULT_TTL_S
WAIT_S = 0.5
"""Seconds between looks at the store while another process computes the last items."""


def compute(task: LoglikTask, model: ModelAdapter, chunk: Sequence, render,
            store: Store | None = None, share_key: str | None = None,
            reused: list[int] | None = None) -> list[dict]:
    """The records of ``chunk``'s examples: their requests served in one batch.

    With a ``share_key``, records another run stored under it (``store/shared.py``) are
    read instead of computed (their count appended to ``reused``), and the ones computed
    here are stored there for the next.
    """
    known = store.shared_records(share_key, [e.id for e in chunk]) if share_key else {}
    if reused is not None:
        reused.append(len(known))
    todo = [e for e in chunk if e.id not in known]
    per_example = [task.requests(e, render) for e in todo]
    responses = model.serve([r for reqs in per_example for r in reqs]) if todo else []
    fresh, start = {}, 0
    for e, reqs in zip(todo, per_example, strict=True):
        fresh[e.id] = task.record(e, responses[start : start + len(reqs)])
        start += len(reqs)
    if share_key and fresh:
        store.put_shared_records(share_key, list(fresh.values()))
    return [known[e.id] if e.id in known else fresh[e.id] for e in chunk]


def task_key(task: LoglikTask, fingerprint: str) -> tuple[str, dict[str, Any]]:
    """The run key of ``task`` on the model with ``fingerprint``, and the config it hashes.

    The config includes ``examples_sha256``, the content of the loaded examples: task
    configs name their data (prompt set, limit, seed), and only the content tells two
    versions of one file apart.
    """
    config = {**task.config(), "examples_sha256": task.examples_sha256()}
    prompt = task.options.prompt.to_dict()
    protocol = task.options.protocol
    # The protocol is part of the key (two protocols are two runs), but only when it is not
    # the default, so runs stored before protocols existed (all compsafe's) keep their keys.
    extra = None if protocol == DEFAULT_PROTOCOL else {"protocol": protocol}
    return run_key(fingerprint, task.name, task.version, config, prompt, __version__,
                   extra=extra), config


def share_key(task: LoglikTask, fingerprint: str) -> str | None:
    """The key under which ``task``'s runs on this model share their outputs (None: the
    task shares nothing): the run key of ``task.shared_config()`` in place of its config."""
    shared = task.shared_config()
    if shared is None:
        return None
    config = {**shared, "examples_sha256": task.examples_sha256()}
    extra = {"shared_outputs": True, "protocol": task.options.protocol}
    return run_key(fingerprint, task.name, task.version, config,
                   task.options.prompt.to_dict(), __version__, extra=extra)


def evaluate_task(
    model: ModelAdapter,
    task: LoglikTask,
    store: Store,
    checkpoint_every: int = 128,
    progress: bool = True,
) -> TaskResult:
    """Compute (or resume, or reuse) ``task`` on ``model`` and store records and metrics."""
    if not isinstance(model, ModelAdapter):
        raise TypeError(f"{type(model).__name__} is not a model adapter: subclass "
                        f"compsafe.models.adapter.ModelAdapter")
    identity = model.identity
    fingerprint, lineage = identity.fingerprint, identity.lineage
    key, config = task_key(task, fingerprint)
    prompt = task.options.prompt.to_dict()
    examples = task.examples()
    if task.name in identity.in_sample_tasks():
        log.warning("%s: %s was calibrated on this task's evaluation text (%s): its %s "
                    "results are in-sample", task.name, model.name,
                    lineage.spec.calibration.source, task.name)
    status = store.start_run(key, model.name, fingerprint, task.name, task.version,
                             {"task": config, "prompt": prompt, "protocol": task.options.protocol},
                             __version__,
                             lineage=lineage.columns() if lineage else None,
                             invocation=invocation())
    done = store.done_item_ids(key) if status != "done" else {e.id for e in examples}
    todo = [e for e in examples if e.id not in done]
    n_retried = retry_failed(task, store, key, examples) if status is not None else 0
    if status == "done":
        log.info("%s: finished run %s found in the store; not recomputed", task.name, key)
    elif done:
        log.info("%s: resuming run %s, %d of %d items already done",
                 task.name, key, len(examples) - len(todo), len(examples))
    render = make_render(model, task.options.prompt)
    shared = share_key(task, fingerprint) if todo else None
    reused: list[int] = []  # per chunk: items whose outputs another run had stored
    owner = claims.owner_id()
    renew = getattr(store, "renewer", None)  # a proxy (Ray) renews through its own calls
    renew = renew(owner, CLAIM_TTL_S) if renew else (
        lambda: store.renew_claims(owner, CLAIM_TTL_S))
    n_computed = 0
    try:
        with tqdm(total=len(examples), initial=len(examples) - len(todo), unit="item",
                  desc=task.name, disable=not progress) as bar, \
                claims.Heartbeat(renew, CLAIM_TTL_S):
            pending, by_id = todo, {e.id: e for e in todo}
            while pending:
                # Claim the next chunk nobody has recorded or is computing: an identical
                # command running at the same time takes other chunks.
                ids = store.claim_items(key, [e.id for e in pending], owner, CLAIM_TTL_S,
                                        checkpoint_every)
                if ids:
                    chunk = [by_id[i] for i in ids]
                    store.add_records(key, task.postprocess(
                        compute(task, model, chunk, render, store, shared, reused)))
                    store.release_claims(owner)
                    n_computed += len(chunk)
                else:  # the rest is claimed by another live process: wait for its records
                    time.sleep(WAIT_S)
                recorded = store.done_item_ids(key)
                pending = [e for e in pending if e.id not in recorded]
                bar.update(len(examples) - len(pending) - bar.n)
    except BaseException as e:
        # Keep what is stored; mark the run so `status` shows it as unfinished.
        store.fail_run(key, f"{type(e).__name__}: {e}")
        raise
    finally:
        if todo:
            try:
                store.release_claims(owner)
            except Exception:  # unreleased claims expire, or die with this process
                log.debug("could not release claims of %s", owner, exc_info=True)
    if sum(reused):
        log.info("%s: %d of %d items reused model outputs another run stored (same model, "
                 "examples and decoding)", task.name, sum(reused), n_computed)
    order = {e.id: i for i, e in enumerate(examples)}
    records = sorted((r for r in store.records(key) if r["id"] in order),
                     key=lambda r: order[r["id"]])
    metrics = task.metrics(records)
    n_failed = sum(task.n_failed(r) for r in records)
    store.put_metrics(key, model.name, task.name, metrics)
    store.finish_run(key, len(records), n_failed)
    if n_failed:
        log.warning("%s: %d failed scores in run %s; its metrics are incomplete (rerun to "
                    "retry them)", task.name, n_failed, key)
    return TaskResult(task.name, key, model.name, config, records, metrics,
                      n_computed=n_computed, n_resumed=len(examples) - len(todo),
                      n_failed=n_failed, n_retried=n_retried)


def retry_failed(task: LoglikTask, store: Store, key: str, examples: Sequence) -> int:
    """Retry the failed parts of the run's stored records (a scorer or API error); returns
    how many failed parts were tried. Records without failures are not touched, and a
    retry that fails again stays failed, to be tried by the next rerun."""
    wanted = {e.id for e in examples}
    failed = [r for r in store.records(key) if r["id"] in wanted and task.n_failed(r)]
    if not failed:
        return 0
    n = sum(task.n_failed(r) for r in failed)
    log.info("%s: retrying %d failed scores in %d stored items of run %s",
             task.name, n, len(failed), key)
    store.replace_records(key, task.retry(failed))
    return n

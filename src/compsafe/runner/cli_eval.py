"""``compsafe eval``: check inputs, load the model once, run each task, print and write results.

Inputs are checked before the model loads (task names, data files), so a typo costs a
second, not a model load.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace

from compsafe.data.paths import data_dir
from compsafe.errors import CompsafeError, as_flags
from compsafe.runner.evaluate import evaluate_task
from compsafe.runner.output import (
    check_out_dir,
    check_store_path,
    format_metrics_table,
    write_outputs,
)
from compsafe.tasks import get_task
from compsafe.types import PromptFormat, TaskOptions

log = logging.getLogger(__name__)


def parse_task_names(spec: str) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise CompsafeError("--tasks is empty; give at least one task name")
    return list(dict.fromkeys(names))  # keep order, drop repeats


def parse_scorers(text: str | None) -> list[str | None]:
    """``--scorer``: absent (each task's default), one name, or a comma-separated list,
    checked by the scorer registry (``scorer_list``) as a sweep config's are."""
    from compsafe.scorers import scorer_list

    names = None if text is None else [n.strip() for n in text.split(",") if n.strip()]
    with as_flags():
        return scorer_list(names)


def task_options(args) -> TaskOptions:
    """The flags mapped onto ``TaskOptions``, which validates them (as it does a sweep
    config's): its message comes back under the flag's name, e.g. ``--limit: must be a
    positive integer, got 0``."""
    with as_flags():
        return TaskOptions(limit=args.limit, seed=args.seed, n_boot=args.n_boot,
                           samples=args.samples, scorer=args.scorer,
                           max_new_tokens=args.max_new_tokens, greedy=args.greedy,
                           min_new_tokens=args.min_new_tokens,
                           prompt_source=args.prompt_source, protocol=args.protocol,
                           ppl_protocol=args.ppl_protocol, seqlen=args.seqlen,
                           stride=args.stride,
                           prompt=PromptFormat(fewshot=args.fewshot, chat=args.chat,
                                               system=args.system))


def run_eval(args) -> int:
    if args.checkpoint_every <= 0:
        raise CompsafeError(f"--checkpoint-every must be positive, got {args.checkpoint_every}")
    if args.batch_size is not None and args.batch_size <= 0:
        raise CompsafeError(f"--batch-size must be positive, got {args.batch_size}")
    if args.max_failed < 0:
        raise CompsafeError(f"--max-failed must be >= 0, got {args.max_failed}")
    options = task_options(args)
    root = args.data_dir or data_dir()
    scorers = parse_scorers(args.scorer)
    tasks = []
    for name in parse_task_names(args.tasks):
        cls = get_task(name)
        # Several scorers: one run per scorer of each generation task, all reading one set
        # of generations (store/shared.py); other tasks have no scorer and run once.
        for scorer in scorers if hasattr(cls, "default_scorer") else scorers[:1]:
            tasks.append(cls(root, replace(options, scorer=scorer)))
    for task in tasks:  # reads and validates the data now, before the model loads
        n = len(task.examples())
        log.info("%s: %d examples", task.name, n)

    # Where results go is checked (an existing store opened) before the model loads, so an
    # unwritable --out or a --store that is a folder costs a second, not a model load.
    from compsafe.store import STORE_FILE, Store

    store_path = args.store or args.out / STORE_FILE
    check_out_dir(args.out)
    check_store_path(store_path)

    # Imported only now: torch takes a second or two to import, and a typo should not wait.
    from compsafe.models.device import parse_device_map
    from compsafe.models.hf import HFModel

    device_map = parse_device_map(getattr(args, "device_map", None))  # one line, not a load

    model = HFModel.load(args.model, device=args.device, dtype=args.dtype,
                         batch_size=args.batch_size, trust_remote_code=args.trust_remote_code,
                         device_map=device_map, base_model=args.base_model)
    args.out.mkdir(parents=True, exist_ok=True)
    identity = model.identity
    log.info("model %s (%s) on %s, fingerprint %s", model.name, model.source, model.device,
             identity.fingerprint)
    results = []
    with Store(store_path) as store:
        for task in tasks:
            results.append(evaluate_task(model, task, store,
                                         checkpoint_every=args.checkpoint_every,
                                         progress=not args.quiet))
    write_outputs(args.out, store_path)
    grouped = {t.name for t in tasks if getattr(t, "console_groups", False)}
    print(format_metrics_table(results, all_groups=args.all_groups, group_tasks=grouped))
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'records.jsonl'}", file=sys.stderr)
    line = failure_summary(results, args.max_failed)
    if line:
        print(line, file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


EXIT_INCOMPLETE = 3
"""Exit status of an evaluation whose failed scores exceed ``--max-failed``."""


def failure_summary(results, max_failed: int) -> str | None:
    """One line naming the tasks with failed scores, when there are more than
    ``max_failed`` in all; None otherwise."""
    total = sum(r.n_failed for r in results)
    if total <= max_failed:
        return None
    per_task = ", ".join(f"{r.task} {r.n_failed}" for r in results if r.n_failed)
    return (f"compsafe: incomplete: {total} failed scores ({per_task}) exceed --max-failed "
            f"{max_failed}; their metrics are marked incomplete; run the same command again "
            f"to retry only the failed scores")

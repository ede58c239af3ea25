"""``compsafe sweep [run] CONFIG``, ``compsafe sweep status CONFIG`` (issue 6) and
``compsafe sweep plan CONFIG`` (issue 18).

argparse cannot give one command both a positional CONFIG and a ``status`` subcommand, so
``sweep`` takes one or two words: ``CONFIG`` or ``run CONFIG`` runs the sweep, ``status
CONFIG`` prints every cell's state, ``plan CONFIG`` estimates what the cells not yet done
will cost on this machine (``plan.py``; ``--json`` for the data). The config is
validated (and every task's data read) before any model loads. Exit status: 0 when every
cell is done, 1 when some failed, 2 for an invalid config.

    compsafe sweep configs/quick.yaml --set tasks.*.limit=20
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from compsafe.errors import CompsafeError

log = logging.getLogger(__name__)

SWEEP_EXAMPLES = """\
examples:
  compsafe sweep configs/quick.yaml                    # local, in this process; resumes
  compsafe sweep configs/paper.yaml --executor ray --address auto
  compsafe sweep configs/quick.yaml --executor ray --num-cpus 2   # a new local Ray cluster
  compsafe sweep status configs/quick.yaml             # done/running/failed/pending per cell
  compsafe sweep plan configs/quick.yaml               # cost per cell and in all, before work
  compsafe sweep configs/quick.yaml --set tasks.*.limit=5 --set out=runs/try

Re-running the same command skips finished cells, resumes interrupted ones item by item
and retries failed ones. Results go to OUT/compsafe.sqlite (OUT: the config's 'out',
default runs/<config name>); compressed models are cached in the config's 'models_dir'
(default OUT/models), which must be a folder every Ray worker sees.
"""


def add_sweep_parser(sub) -> None:
    """Register ``compsafe sweep`` on the top-level subparsers."""
    p = sub.add_parser(
        "sweep", help="run a grid of models x compression settings x tasks, resumably",
        description="Run (or show the status of) a sweep: every model, compressed with every "
                    "setting, evaluated on every task; results in one store.",
        epilog=SWEEP_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("words", nargs="+", metavar="[run|status|plan] CONFIG",
                   help="a sweep config (YAML); 'status CONFIG' shows its cells, 'plan "
                        "CONFIG' estimates their cost on this machine")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: sequential, in this process (default); ray: Ray tasks")
    p.add_argument("--address", default=None,
                   help="Ray cluster address ('auto' for the running one); default: start "
                        "a local cluster")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the local Ray cluster started when --address is not given")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY.PATH=VALUE",
                   help="override a config value, e.g. tasks.*.limit=5 or models.0.model=DIR "
                        "(repeatable)")
    p.add_argument("--json", action="store_true",
                   help="with plan: print the estimate as JSON (every cell's seconds by part)")
    p.set_defaults(func=run_sweep_command, sweep_parser=p)


ACTIONS = ("run", "status", "plan")


def _parse_words(args) -> tuple[str, Path]:
    words = args.words
    if len(words) == 1 and words[0] not in ACTIONS:
        return "run", Path(words[0])
    if len(words) == 2 and words[0] in ACTIONS:
        return words[0], Path(words[1])
    args.sweep_parser.error("expected CONFIG, run CONFIG, status CONFIG or plan CONFIG")
    raise AssertionError  # error() exits


def _point_at_other_stores(path: str, store: Path) -> None:
    """Say where else this config's results went (a run with ``--set out=...``)."""
    from compsafe.sweep.places import other_stores

    for other, overrides in other_stores(Path(path), store):
        sets = "".join(f" --set {o}" for o in overrides)
        print(f"this config was also run into {other}: compsafe sweep status {path}{sets}")


def run_sweep_command(args) -> int:
    from compsafe.sweep.config import load_config
    from compsafe.sweep.expand import all_cells, expand
    from compsafe.sweep.places import record_run
    from compsafe.sweep.status import cell_states, format_status, summary

    action, path = _parse_words(args)
    config = load_config(path, args.overrides)
    groups = expand(config)
    cells = all_cells(groups)
    if args.json and action != "plan":
        raise CompsafeError("--json applies to 'sweep plan'")
    if action == "status":
        print(format_status(config.name, cells, cell_states(cells, config.store_path),
                            config.store_path))
        _point_at_other_stores(path, config.store_path)
        return 0
    if action == "plan":
        return _plan(config, args)
    if args.executor == "local" and (args.address or args.num_cpus):
        raise CompsafeError("--address and --num-cpus apply to --executor ray")
    if args.num_cpus is not None and args.num_cpus <= 0:
        raise CompsafeError(f"--num-cpus must be positive, got {args.num_cpus}")
    if args.executor == "ray":
        _require_ray()
    from compsafe.sweep.work import preflight

    preflight(config)
    record_run(Path(path), config.store_path, args.overrides)
    before = cell_states(cells, config.store_path)
    n_done = sum(s["state"] == "done" for s in before.values())
    log.info("sweep %s: %d cells (%d models x %d settings x %d tasks), %d already done; "
             "store %s", config.name, len(cells), len(config.models), len(config.specs),
             len(config.tasks), n_done, config.store_path)
    if args.executor == "ray":
        from compsafe.sweep.ray_executor import run_ray

        run_ray(config, groups, address=args.address, num_cpus=args.num_cpus)
    else:
        from compsafe.sweep.local import run_local

        run_local(config, groups, progress=not args.quiet)
    after = cell_states(cells, config.store_path)
    print(f"sweep {config.name}: {summary(after)}; store {config.store_path}", flush=True)
    failed = [c for c in cells if after[c.key]["state"] == "failed"]
    incomplete = [c for c in cells if after[c.key]["state"] == "incomplete"]
    sets = "".join(f" --set {o}" for o in args.overrides)
    if failed:
        print(f"{len(failed)} cells failed; see: compsafe sweep status {path}{sets}", flush=True)
    if incomplete:
        print(f"{len(incomplete)} cells incomplete (failed scores, left out of their metrics); "
              f"run the same command again to retry them", flush=True)
    return 1 if failed or incomplete else 0


def _plan(config, args) -> int:
    import json

    from compsafe.sweep.plan import run_plan, timed_preflight
    from compsafe.sweep.plan_table import format_plan, plan_dict

    preflight_s = timed_preflight(config)  # a missing data file: one line now, as in a sweep
    plan = run_plan(config, progress=not args.quiet, preflight_s=preflight_s)
    print(json.dumps(plan_dict(plan), indent=1) if args.json else format_plan(plan), flush=True)
    return 0


def _require_ray() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise CompsafeError("--executor ray needs Ray: pip install 'compsafe[ray]'")

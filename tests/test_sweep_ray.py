"""``configs/quick.yaml`` end to end on the embedded model, on a real local Ray cluster and
with the local executor: the same cells finish and the stores hold the same metrics.

The grid is quick.yaml's own (the embedded model, its six settings, its six tasks); only
the item limits, generation and window lengths and the calibration size are overridden,
to keep the test short. Every task and the local run use one thread, so the 2-CPU Ray
cluster runs two tasks at a time. The Ray run builds the compressed models (one Ray task
each, evaluation tasks waiting on their ObjectRefs) into a models folder the local run
then reuses, so equal run keys also prove both executors evaluated the same weights.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
from sweep_helpers import assert_no_duplicates, cells, metrics, run_cli

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quick.yaml"


def _tasks() -> list[dict]:
    import yaml

    return yaml.safe_load(CONFIG.read_text())["tasks"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                 reason="ray not installed (pip install 'compsafe[ray]')")]


@pytest.fixture
def restore_torch_threads():
    """The local run sets torch's threads from OMP_NUM_THREADS=1; give later tests theirs."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def overrides(out: Path, models: Path, data: Path) -> list[str]:
    sets = [f"out={out}", f"models_dir={models}", f"data_dir={data}", "tasks.*.limit=1",
            "tasks.*.n_boot=20", "tasks.*.max_new_tokens=4", "tasks.2.seqlen=64",
            "calibration.nsamples=2", "calibration.seqlen=64",
            "ray.compress.num_cpus=1", "ray.eval.num_cpus=1"]
    return [x for s in sets for x in ("--set", s)]


def test_quick_grid_on_local_ray_cluster_and_locally(tmp_path, embedded_tokenizer, mirror_dir,
                                                      caplog, monkeypatch,
                                                      restore_torch_threads):
    from compsafe.data.pull import import_mirror

    assert _tasks()[2]["task"] == "wikitext2"  # what the tasks.2.seqlen override shortens
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the local run's threads, as Ray's tasks
    data = tmp_path / "data"
    assert import_mirror(mirror_dir, data, progress=False).ok
    models = tmp_path / "models"
    caplog.set_level(logging.INFO, logger="compsafe")

    rc, ray_out, err = run_cli(["-q", "sweep", str(CONFIG), "--executor", "ray",
                                "--num-cpus", "2", *overrides(tmp_path / "ray", models, data)])
    assert rc == 0, ray_out + err
    assert len(list(models.glob("smollm2-135m/*/compression.json"))) == 5  # built by Ray
    assert ray_out.count(" done ") == 36  # the live view: a line per finished cell

    rc, local_out, err = run_cli(["-q", "sweep", str(CONFIG),
                                  *overrides(tmp_path / "local", models, data)])
    assert rc == 0, local_out + err
    assert caplog.text.count("using the cached model") == 5

    ray_db, local_db = tmp_path / "ray" / "compsafe.sqlite", tmp_path / "local" / "compsafe.sqlite"
    for db in (ray_db, local_db):
        state = cells(db)
        assert len(state) == 36 and {v["status"] for v in state.values()} == {"done"}
        assert_no_duplicates(db)
    assert {k: v["run_key"] for k, v in cells(ray_db).items()} == {
        k: v["run_key"] for k, v in cells(local_db).items()}
    ray_metrics = metrics(ray_db)
    assert len({k[0] for k in ray_metrics}) == 36 and ray_metrics == metrics(local_db)


def test_the_ray_store_proxy_forwards_every_store_call_of_the_runner():
    """A Store method the runner calls but the Ray proxy does not forward fails every cell
    that reaches it, on Ray only: keep the two lists together."""
    import re
    from pathlib import Path

    import compsafe.runner.evaluate as runner
    from compsafe.sweep.ray_executor import STORE_METHODS

    called = set(re.findall(r"\bstore\.([a-z_]+)\(", Path(runner.__file__).read_text()))
    assert called and called <= set(STORE_METHODS), called - set(STORE_METHODS)

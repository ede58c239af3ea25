"""The Ray executor places compressions and evaluations on the GPUs their config asks for.

A local Ray instance with two fake GPUs (``num_gpus=2``; Ray accounts for them and sets
``CUDA_VISIBLE_DEVICES`` per task as on a real GPU node) runs a tiny sweep whose
compressions ask for one GPU each and evaluations for half of one; the model still runs on
the CPU (the config's ``device``). Each task reports the GPU ids Ray gave it, and the stored
results equal the local executor's, a plugin's task (``$COMPSAFE_PLUGINS``) included. The
device rules are checked without Ray.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from pathlib import Path

import pytest
import toy_extension
from sweep_helpers import cells, metrics, write_config

from compsafe.errors import CompsafeError
from compsafe.sweep.config import Resources, load_config
from compsafe.sweep.ray_executor import check_devices, task_device

TESTS = Path(__file__).parent


def _config(tmp_path, model, data, out, tasks=({"task": "bbq", "limit": 2, "n_boot": 20},),
            **extra):
    return load_config(write_config(
        tmp_path / f"{out}.yaml", out=str(tmp_path / out), models_dir=str(tmp_path / "models"),
        data_dir=str(data), device="cpu", dtype="float32", batch_size=4,
        models=[{"model": str(model), "name": "tiny"}],
        compression=[{"method": "magnitude", "sparsity": 0.5}], tasks=list(tasks), **extra))


def test_task_device_follows_the_gpus_ray_gave():
    assert task_device(None, ("0",)) == "cuda"
    assert task_device(None, ()) == "cpu"  # asked for none: never another task's GPU
    assert task_device("cpu", ("1",)) == "cpu"
    assert task_device("cuda:0", ("1",)) == "cuda:0"


def test_devices_the_gpu_requests_cannot_serve_are_refused(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml", models=["default"], tasks=["bbq"],
                                   compression=[], device="cuda"))
    with pytest.raises(CompsafeError, match=r"'cuda' needs ray.compress.num_gpus"):
        check_devices(cfg)
    one = Resources(num_gpus=1)
    check_devices(replace(cfg, compress_resources=one, eval_resources=one))
    with pytest.raises(CompsafeError, match=r"'cuda:1': a eval task sees only its own 1 GPU"):
        check_devices(replace(cfg, device="cuda:1", compress_resources=Resources(num_gpus=2),
                              eval_resources=Resources(num_gpus=0.5)))
    check_devices(replace(cfg, device="cpu"))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed")
def test_ray_places_tasks_on_fake_gpus_and_matches_local(tmp_path, tiny_model_dir, data_cache,
                                                         monkeypatch, request):
    import torch

    from compsafe.sweep.expand import expand
    from compsafe.sweep.local import run_local
    from compsafe.sweep.ray_executor import run_ray

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # A plugin's task (tests/toy_plugin.py) is imported by the workers too: they are new
    # processes, which know it only through $COMPSAFE_PLUGINS.
    monkeypatch.setenv("COMPSAFE_PLUGINS", "toy_plugin")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    toy_extension.register()
    request.addfinalizer(toy_extension.unregister)
    tasks = ({"task": "bbq", "limit": 2, "n_boot": 20}, {"task": "toy", "n_boot": 20})
    threads = torch.get_num_threads()
    ray_cfg = _config(tmp_path, tiny_model_dir, data_cache, "ray", tasks,
                      ray={"compress": {"num_cpus": 1, "num_gpus": 1},
                           "eval": {"num_cpus": 1, "num_gpus": 0.5}})
    placements = run_ray(ray_cfg, expand(ray_cfg), num_cpus=2, num_gpus=2)

    compress = [p for p in placements if p.task == "compress"]
    evals = [p for p in placements if p.task == "eval"]
    assert [p.group for p in compress] == ["tiny | magnitude-50"]
    assert sorted(p.group for p in evals) == ["tiny | dense", "tiny | magnitude-50"]
    for p in placements:  # one GPU each (a half share for evaluations), shown to it alone
        assert len(p.gpu_ids) == 1 and p.gpu_ids[0] in ("0", "1"), p
        assert p.visible == p.gpu_ids[0] and p.device == "cpu", p
    assert len({p.node for p in placements}) == 1

    local_cfg = _config(tmp_path, tiny_model_dir, data_cache, "local", tasks)
    run_local(local_cfg, expand(local_cfg), progress=False)  # reuses the Ray-built model
    torch.set_num_threads(threads)
    ray_db, local_db = ray_cfg.store_path, local_cfg.store_path
    assert {v["status"] for v in cells(ray_db).values()} == {"done"}
    assert {k: v["run_key"] for k, v in cells(ray_db).items()} == {
        k: v["run_key"] for k, v in cells(local_db).items()}
    assert len(metrics(ray_db)) > 0 and metrics(ray_db) == metrics(local_db)
    assert {"toy_rate", "s_dis"} <= {key[3] for key in metrics(ray_db)}

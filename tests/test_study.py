"""``compsafe study``, the main job: settings by label, limits that scale, calibration that
says when it overlaps, and an end-to-end run on a tiny model that prints a verdict, writes
the report, and re-runs from the store without recomputing anything."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from sweep_helpers import query, run_cli

from compsafe.compress.spec import CompressionSpec, SpecError
from compsafe.errors import CompsafeError
from compsafe.study import TASKS, limits, study_config
from compsafe.sweep.config import parse_config


@pytest.mark.parametrize("label", ["wanda-50", "sparsegpt-2:4", "gptq-w4g64", "rtn-w8",
                                   "awq-w4g32", "magnitude-70", "nf4", "dense"])
def test_spec_labels_round_trip(label):
    assert CompressionSpec.from_label(label).label() == label


@pytest.mark.parametrize("bad", ["wanda", "gptq-4", "foo-50", "wanda-abc", "gptq-wxg"])
def test_bad_labels_name_themselves(bad):
    with pytest.raises(SpecError, match=f"compression setting '{bad}'"):
        CompressionSpec.from_label(bad)


def test_limits_scale_and_full():
    base = {t: o.get("limit") for t, o, _ in TASKS}
    scaled = {e["task"]: e.get("limit") for e in limits(2.0, False, list(base))}
    assert scaled == {t: 2 * v for t, v in base.items()}
    assert all("limit" not in e for e in limits(1.0, True, ["bbq", "rtp"]))
    assert limits(0.001, False, ["bbq"])[0]["limit"] == 1
    with pytest.raises(CompsafeError, match="mmlu not part of the study"):
        limits(1.0, False, ["bbq", "mmlu"])
    with pytest.raises(CompsafeError, match="--scale must be positive"):
        limits(0.0, False, ["bbq"])


def _args(**kw) -> argparse.Namespace:
    base = {"model": "default", "name": None, "compress": "wanda-50,gptq-w4g64",
            "tasks": "bbq,wikitext2", "scale": 1.0, "full": False, "calibration": None,
            "out": Path("/tmp/x"), "data_dir": None, "device": None, "dtype": "auto"}
    return argparse.Namespace(**{**base, **kw})


def test_study_config_is_a_valid_sweep_and_calibration_says_where_from(tmp_path):
    raw = study_config(_args(data_dir=tmp_path))
    # offline (no train split cached) the test split is chosen; the run flags it in-sample
    assert raw["calibration"]["source"] == "wikitext2-test"
    config = parse_config(raw, Path("study"))
    assert [s.label() for s in config.specs] == ["dense", "wanda-50", "gptq-w4g64"]
    assert config.models[0].name == "smollm2-135m"
    assert {s.calibration.source for s in config.specs[1:]} == {"wikitext2-test"}
    (tmp_path / "wikitext2").mkdir()
    (tmp_path / "wikitext2/wikitext-train.txt").write_text("train")
    assert study_config(_args(data_dir=tmp_path))["calibration"]["source"] == "wikitext2"
    with pytest.raises(SpecError, match="'wanda50'"):
        study_config(_args(compress="wanda50"))


@pytest.fixture(scope="module")
def study_data(mirror_dir, tmp_path_factory) -> Path:
    from compsafe.data.pull import import_mirror

    dest = tmp_path_factory.mktemp("studydata")
    assert import_mirror(mirror_dir, dest, datasets=["bbq", "wikitext2"], progress=False).ok
    return dest


def test_study_end_to_end_then_resumed(tmp_path, tiny_model_dir, study_data):
    data_cache = study_data
    out = tmp_path / "study"
    argv = ["study", "--model", str(tiny_model_dir), "--compress", "wanda-50,rtn-w4",
            "--tasks", "bbq,wikitext2", "--scale", "0.1", "--out", str(out),
            "--data-dir", str(data_cache), "--device", "cpu", "--dtype", "float32"]
    rc, stdout, stderr = run_cli(argv)
    assert rc == 0, stdout + stderr
    assert "== wanda-50 vs dense ==" in stdout and "== rtn-w4 vs dense ==" in stdout
    assert "not detectably changed" in stdout or "significantly worse" in stdout
    assert "divergent groups:" in stdout
    index = out / "report" / "index.html"
    assert f"report: {index}" in stdout and index.is_file()
    assert "in-sample" in index.read_text()  # WikiText-2 after calibrating on its test split
    runs = query(out / "compsafe.sqlite", "SELECT run_key, updated_at FROM runs ORDER BY 1")
    assert len(runs) == 6  # 3 models x 2 tasks
    stamp = os.stat(index).st_mtime_ns
    rc, again, _ = run_cli(argv)
    assert rc == 0
    assert query(out / "compsafe.sqlite", "SELECT run_key, updated_at FROM runs ORDER BY 1") \
        == runs  # nothing recomputed
    assert os.stat(index).st_mtime_ns == stamp  # the store did not change: report kept

    def verdict(text: str) -> str:
        return text[text.index("\n== "):text.index("report:")]

    assert verdict(again) == verdict(stdout)  # the same answer, from the store

"""Bad inputs end in one line naming the path or value, exit 2, no traceback (issue 14,
point 6); those that used to fail after the model loaded are now found before it."""

from __future__ import annotations

import os
import shutil

import pytest

from compsafe.cli import main


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def no_model_load(monkeypatch):
    """Fails the test if a model starts loading: the error must come before it."""
    from compsafe.models.hf import HFModel

    def refuse(*a, **k):
        pytest.fail("the model was loaded before the bad input was found")
    monkeypatch.setattr(HFModel, "load", classmethod(refuse))


def _eval(model, data, out, *extra):
    return main(["-q", "eval", "--model", str(model), "--tasks", "bbq", "--limit", "1",
                 "--n-boot", "0", "--data-dir", str(data), "--out", str(out), *extra])


def test_truncated_safetensors(tiny_model_dir, data_cache, tmp_path, capsys):
    model = tmp_path / "cut"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    assert _eval(model, data_cache, tmp_path / "out") == 2
    line = _one_line(capsys)
    assert str(weights) in line and "truncated safetensors file" in line


def test_out_that_is_a_file(tiny_model_dir, data_cache, tmp_path, capsys, no_model_load):
    (tmp_path / "f").write_text("")
    assert _eval(tiny_model_dir, data_cache, tmp_path / "f") == 2
    assert _one_line(capsys) == f"compsafe: error: --out {tmp_path / 'f'}: is a file, not a " \
                                "folder; give a folder"


def test_out_that_cannot_be_created(tiny_model_dir, data_cache, capsys, no_model_load):
    assert _eval(tiny_model_dir, data_cache, "/proc/compsafe/out") == 2
    assert "--out /proc/compsafe/out: cannot write there" in _one_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_that_is_read_only(tiny_model_dir, data_cache, tmp_path, capsys, no_model_load):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert _eval(tiny_model_dir, data_cache, ro) == 2
        assert f"--out {ro}: cannot write there (Permission denied)" in _one_line(capsys)
    finally:
        ro.chmod(0o755)


def test_store_that_is_a_directory(tiny_model_dir, data_cache, tmp_path, capsys, no_model_load):
    (tmp_path / "sdir").mkdir()
    store = str(tmp_path / "sdir")
    assert _eval(tiny_model_dir, data_cache, tmp_path / "out", "--store", store) == 2
    assert f"{tmp_path / 'sdir'}: is a directory; the results store is a file" in \
        _one_line(capsys)


def test_lone_surrogate_in_a_prompt(mirror_dir, tiny_model_dir, tmp_path, capsys,
                                    no_model_load):
    rtp = tmp_path / "data" / "realtoxicityprompts"
    shutil.copytree(mirror_dir / "realtoxicityprompts", rtp)
    lines = (rtp / "toxic.jsonl").read_text().splitlines()
    lines[4] = lines[4].replace('"text": "', '"text": "\\ud800', 1)
    (rtp / "toxic.jsonl").write_text("\n".join(lines) + "\n")
    column = lines[4].index("\\ud800") + 1
    code = main(["-q", "eval", "--model", str(tiny_model_dir), "--tasks", "rtp", "--limit", "2",
                 "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert _one_line(capsys) == (f"compsafe: error: {rtp / 'toxic.jsonl'}:5: lone surrogate "
                                 f"escape \\ud800 at column {column}: not text")


def test_non_utf8_calibration_file(tiny_model_dir, tmp_path, capsys, no_model_load):
    calib = tmp_path / "calib.txt"
    calib.write_bytes(b"fine text\nnot \xff fine\n")
    code = main(["-q", "compress", "--model", str(tiny_model_dir), "--method", "wanda",
                 "--sparsity", "0.5", "--calibration", str(calib), "--out", str(tmp_path / "m")])
    assert code == 2
    assert _one_line(capsys) == (f"compsafe: error: {calib}:2: not UTF-8 text (byte 0xff at "
                                 f"column 5); calibration needs a UTF-8 text file")


def test_bad_number_is_one_line_not_the_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["compress", "--model", "x", "--method", "magnitude", "--sparsity", "abc",
              "--out", str(tmp_path / "m")])
    assert e.value.code == 2
    assert _one_line(capsys) == ("compsafe compress: error: argument --sparsity: invalid float "
                                 "value: 'abc' (see compsafe compress --help)")

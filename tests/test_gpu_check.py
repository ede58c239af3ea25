"""``benchmarks/gpu_check.py`` on the ``tiny`` shape on CPU: every line that needs no CUDA.

One run of the whole check (every section, ``--model`` on the tiny saved model, JSON out)
is shared by the tests, which assert the table's correctness facts: prefix-shared scores
equal plain forwards and lm-evaluation-harness's, greedy generations equal transformers'
``generate`` and batch size 1, a ``device_map`` split equals the whole model, compression
hits its sparsity and the memory formula is the one of ``compress/memory.py``. Timings
are printed, never asserted. The paths the GPU run takes but a CPU cannot (allocator
peaks, CUDA kernels in the profiler) are marked in the rows; the fallbacks (lm-eval not
importable, a section over budget, a failing section, a model not at hand) are run here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
import gpu_check_build as build  # noqa: E402
import gpu_check_sections as sections  # noqa: E402

from compsafe.compress.memory import compression_memory  # noqa: E402
from compsafe.models.generate import DecodingConfig, GenerationRequest  # noqa: E402
from compsafe.models.hf import HFModel  # noqa: E402

pytestmark = pytest.mark.slow  # one whole check on the tiny shape: ~30-60 s on 2 busy cores
CPU = torch.device("cpu")
TINY = build.SHAPES["tiny"]


@pytest.fixture(scope="module")
def check(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("gpu-check") / "check.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert gpu_check.main(["--shape", "tiny", "--device", "cpu", "--model",
                               str(tiny_model_dir), "--out", str(out)]) == 0
    return printed.getvalue(), json.loads(out.read_text())


@pytest.fixture(scope="module")
def tiny_hf():
    return HFModel(build.build_model(TINY, CPU, torch.float32),
                   build.synthetic_tokenizer(TINY.memory.vocab, TINY.max_positions), "tiny",
                   "random init", batch_size=4)


def test_one_table_with_every_section_and_the_same_rows_in_json(check):
    printed, result = check
    lines = [x for x in printed.splitlines() if x.startswith("|")]
    assert lines[0] == "| section | measure | value | detail |" and lines[1] == "|---|---|---|---|"
    rows = [x.strip("|").split(" | ") for x in lines[2:]]
    assert all(len(r) == 4 for r in rows)
    assert [r[0].strip() for r in rows] == [r[0] for r in result["rows"]]
    assert {r[0] for r in result["rows"]} == {"environment", "scoring", "generation",
                                              "device_map", "model", "compression", "total"}
    assert not [r for r in result["rows"] if r[1] == "failed" or r[2] == "-" and
                r[0] != "compression"]
    assert result["shape"] == "tiny" and result["device"] == "cpu"


def test_prefix_shared_scores_equal_plain_forwards_and_lm_eval(check):
    f = check[1]["facts"]["scoring"]
    assert f["requests"] == 30 and f["contexts"] == 10
    assert f["max_abs_diff"] < 1e-4
    assert f["same_choice"] == f["contexts"] and f["same_greedy"] == f["requests"]
    assert f["attn_implementation"] == "sdpa" and f["probe_shared"] is True
    for path in ("tree", "plain"):  # the CPU operator names; a GPU run adds its kernels
        assert any("scaled_dot_product" in k for k in f["kernels"][path]), f["kernels"]
    assert f["baseline"]["what"].startswith("lm-eval ")
    assert f["baseline"]["max_abs_diff"] < 1e-4
    assert f["baseline"]["same_choice"] == f["contexts"]
    assert 0 < f["fraction_of_peak"] == f["achieved_flops"] / f["peak_flops"]


def test_greedy_generations_equal_generate_and_batch_size_one(check):
    f = check[1]["facts"]["generation"]
    assert f["same_as_hf"] == f["prompts"] == 6
    assert f["same_as_batch1"] == f["batch1_prompts"] == 3
    assert f["min_common_prefix_vs_hf"] == f["new_tokens"]


def test_device_map_split_scores_generates_and_fingerprints_as_whole(check):
    f = check[1]["facts"]["device_map"]
    assert f["devices"] == ["cpu", "disk"]
    assert f["max_abs_diff"] < 1e-5 and f["same_greedy"] and f["same_fingerprint"]


def test_real_model_rows(check, tiny_model_dir):
    f = check[1]["facts"]["model"]
    assert f["name"] == tiny_model_dir.name and f["max_abs_diff"] < 1e-4
    assert f["same_greedy"] == f["prompts"] > 0
    rows, facts = sections.real_model(str(tiny_model_dir / "absent"), CPU)
    assert facts == {} and rows[0][3].startswith("skipped: model path not found")


def test_compression_facts_and_formula(check):
    f = check[1]["facts"]["compression"]
    n, s = TINY.calibration
    for method in ("wanda", "sparsegpt", "gptq"):
        assert f[method]["layers"] == 7 * TINY.blocks
        assert f[method]["peak_bytes"] is None  # a CPU has no allocator peak to read
        assert f[method]["formula_bytes"] == compression_memory(
            TINY.memory, method, n, s, batch=8, forward_bytes=4).total
        assert f[method]["extrapolated_s"] == pytest.approx(
            f[method]["per_block_s"] * TINY.memory.layers)
    assert f["wanda"]["sparsity"] == f["sparsegpt"]["sparsity"] == 0.5
    assert 0 < f["gptq"]["rel_error"] < 0.5
    rows = [r for r in check[1]["rows"] if r[0] == "compression"]
    assert sum("no CUDA" in r[3] for r in rows) == 3


def test_lm_eval_not_importable_falls_back_to_the_plain_path(tiny_hf, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval.models.huggingface", None)  # import fails
    rows, facts = sections.scoring(tiny_hf, TINY, CPU, peak=1e9)
    assert facts["baseline"]["what"].startswith("lm-eval not importable")
    assert "compsafe's plain path stands in" in rows[-1][3]
    assert facts["max_abs_diff"] < 1e-4


def test_sections_over_budget_are_skipped_with_the_reason(tiny_hf):
    assert build.Budget(5).skip_reason(build.SHAPES["llama2-7b"], "scoring").startswith(
        "skipped: 5 s of the budget left, needs ~60 s")
    assert build.Budget(5).skip_reason(TINY, "scoring") is None
    slow = replace(TINY, needs_s={"sparsegpt": 10**6, "gptq": 10**6})
    rows, facts = sections.compression(slow, CPU, build.Budget(600))
    assert set(facts) == {"wanda"}
    assert [r[3].startswith("skipped: ") for r in rows if r[2] == "-"] == [True, True]
    rows, facts = [], {}
    gpu_check._section(rows, facts, "scoring", build.Budget(1), build.SHAPES["llama2-7b"],
                       lambda: pytest.fail("a skipped section ran"))
    assert rows[0][:3] == ("scoring", "-", "-") and "needs ~60 s" in rows[0][3]


def test_a_failing_section_becomes_its_row():
    def broken():
        raise RuntimeError("out of\nmemory")

    rows, facts = [], {}
    gpu_check._section(rows, facts, "generation", build.Budget(60), TINY, broken)
    assert rows == [("generation", "failed", "-", "RuntimeError: out of memory")]
    assert facts["generation"]["error"] == "RuntimeError: out of\nmemory"


def test_a_failing_part_costs_only_its_own_row(tiny_hf, monkeypatch):
    import compsafe.compress.layers as layers

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of\nmemory")

    monkeypatch.setattr(sections, "lm_eval_scorer", lambda hf: (broken, "lm-eval 0"))
    rows, facts = sections.scoring(tiny_hf, TINY, CPU, peak=1e9)
    assert rows[-1][3].startswith("lm-eval failed (RuntimeError: CUDA out of memory): "
                                  "compsafe's plain path stands in")
    assert facts["max_abs_diff"] < 1e-4 and len(rows) == 6
    monkeypatch.setattr(sections, "hf_generate", broken)
    rows, facts = sections.generation(tiny_hf, TINY, CPU)
    assert rows[2] == ("generation", "transformers generate", "failed",
                       "RuntimeError: CUDA out of memory")
    assert facts["same_as_batch1"] == 3 and "same_as_hf" not in facts
    real = layers.compress_sequential
    monkeypatch.setattr(layers, "compress_sequential", lambda model, spec, *a, **k: (
        broken() if spec.method == "sparsegpt" else real(model, spec, *a, **k)))
    rows, facts = sections.compression(TINY, CPU, build.Budget(600))
    assert set(facts) == {"wanda", "gptq"}
    assert ("compression", "sparsegpt", "failed", "RuntimeError: CUDA out of memory") in rows
    monkeypatch.setattr(gpu_check, "build_model", broken)
    rows, facts = [], {}
    gpu_check._with_model(rows, facts, build.Budget(600), TINY, CPU, torch.float32, 1e9)
    assert rows == [("model build", "failed", "-", "RuntimeError: CUDA out of memory")]


def test_profiler_failure_and_a_tokenizer_without_pad_are_handled(tiny_hf, monkeypatch):
    import torch.profiler

    def refuse(*args, **kwargs):
        raise RuntimeError("profiler not\nsupported here")

    monkeypatch.setattr(torch.profiler, "profile", refuse)
    assert build.attention_kernels(lambda: None, CPU) == [
        "profiler failed: profiler not supported here"]
    tok = build.synthetic_tokenizer(TINY.memory.vocab, 64)
    tok.pad_token = None
    hf = HFModel(tiny_hf.model, tok, "tiny", "random init")
    texts = [build.words([5, 6, 7]), build.words([8])]
    greedy = DecodingConfig(do_sample=False, max_new_tokens=3, min_new_tokens=3)
    assert sections.hf_generate(hf, texts, 3) == [
        hf.generate([GenerationRequest(t, "k")], greedy, 0)[0] for t in texts]


def test_the_script_runs_as_a_command():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--help"],
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0 and "--budget-s" in proc.stdout


def test_helpers():
    tok = build.synthetic_tokenizer(40, 64)
    assert tok.encode(build.words([5, 39, 4])) == [5, 39, 4]
    assert tok.decode([5, 2, 9], skip_special_tokens=True) == "t5 t9"
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    pairs = build.scoring_pairs(TINY)
    assert len(pairs) == 30  # 10 contexts, each asked its 3 continuations in a row
    assert all(pairs[i][0] == pairs[i + 1][0] == pairs[i + 2][0] for i in range(0, 30, 3))
    assert all(4 <= t < TINY.memory.vocab for c, k in pairs for t in (*c, *k))
    m = TINY.memory
    assert sections.linear_flops(TINY, 10, 3) == 2 * 2 * m.block_params * 10 + 2 * 64 * 512 * 3
    assert set(sections.split_maps(torch.device("cuda")).values()) == {0, "cpu"}
    assert set(sections.split_maps(torch.device("cuda", 1)).values()) == {1, "cpu"}
    assert set(sections.split_maps(CPU).values()) == {"cpu", "disk"}
    assert gpu_check.markdown([("a", "b|c", 1, "d")]).splitlines()[-1] == "| a | b/c | 1 | d |"
    assert build.matmul_peak(CPU, torch.float32, 64, repeat=2) > 0


def test_prepare_copies_lm_eval_without_its_tasks_and_it_imports(tmp_path):
    pytest.importorskip("lm_eval")
    carry = tmp_path / "carry"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CARRY": str(carry)}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "prepare"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (carry / "lm_eval" / "models" / "huggingface.py").is_file()
    assert not (carry / "lm_eval" / "tasks").exists()
    # lm_eval/__init__.py reads its version from its metadata: that must travel too.
    from importlib.metadata import distributions

    assert "lm_eval" in {d.metadata["Name"].replace("-", "_") for d in
                         distributions(path=[str(carry)])}
    size = sum(f.stat().st_size for f in carry.rglob("*") if f.is_file())
    assert size < 8 * 2**20  # travels well inside the GPU machine's 64 MiB
    code = "import lm_eval.models.huggingface as m; print(m.__file__)"
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(carry)}, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(carry))

"""The prepared GPU check (issue 18, point 2): compsafe at Llama-2-7B scale, one command.

Builds a randomly initialised model of Llama-2-7B's shape in bf16 directly on the GPU (no
network, no downloaded weights; see ``gpu_check_build.py``) and prints one Markdown table:

- scoring: prefix-shared vs plain forwards (max log-likelihood difference, identical
  answers, the attention kernels the profiler saw each path run), throughput against
  lm-evaluation-harness's HF backend on the same token pairs (its own code when it can be
  imported; else compsafe's plain path stands in, and the row says so), and the fraction
  of the bf16 matmul peak measured in the same run;
- generation: greedy tokens/s batched, at batch size 1, and with transformers' ``generate``
  under the same settings, with the number of identical outputs;
- device_map: a small model split over the GPU and CPU offload scores, generates and
  fingerprints as the whole one (issue 18, point 5);
- compression: Wanda, SparseGPT and GPTQ layer by layer with 128 x 2048 calibration tokens
  per block: seconds per block (a few blocks timed, the whole model extrapolated and
  labelled so) and peak GPU memory against ``compress/memory.py``'s formula.

Every section is time-boxed by ``--budget-s``: one whose estimate does not fit what is
left is skipped with the reason in its row. The 7B model is freed before compression, so
the measured peaks are the compression's own. Without CUDA (the ``tiny`` shape in
``tests/test_gpu_check.py``) everything runs except the GPU memory peaks, whose rows say so.

    python benchmarks/gpu_check.py --out gpu_check.json            # on the GPU machine
    python benchmarks/gpu_check.py --shape tiny --device cpu       # seconds, on a CPU
    bash scripts/gpu_check.sh                                       # the exact command
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # the budget counts the imports too

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling gpu_check_* modules

import gpu_check_sections as sections  # noqa: E402
from gpu_check_build import (  # noqa: E402
    SHAPES,
    Budget,
    build_model,
    matmul_peak,
    synthetic_tokenizer,
)

from compsafe.models.device import pick_device, pick_dtype  # noqa: E402


def environment(device: torch.device, dtype: torch.dtype, shape) -> list[tuple]:
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return [("environment", "device", str(device), f"{name or 'cpu'}; {dtype}"),
            ("environment", "versions", f"torch {torch.__version__}",
             f"transformers {transformers.__version__}; python {platform.python_version()}"),
            ("environment", "model", shape.name,
             f"{shape.memory.params / 1e6:,.1f} M parameters, random init, "
             f"{shape.memory.layers} blocks")]


HEADER = "| section | measure | value | detail |\n|---|---|---|---|"


def markdown_row(row: tuple) -> str:
    return "| " + " | ".join(str(c).replace("|", "/") for c in row) + " |"


def markdown(rows: list[tuple]) -> str:
    return "\n".join([HEADER, *map(markdown_row, rows)])


class Table(list):
    """The table's rows, each printed as soon as it is added and the JSON rewritten, so a
    run cut short by its time limit still shows (and returns) what it measured."""

    def __init__(self, stream=None, out: Path | None = None, **meta):
        super().__init__()
        self.stream, self.out, self.meta, self.facts = stream, out, meta, {}
        if stream:
            print(HEADER, file=stream, flush=True)

    def append(self, row: tuple) -> None:
        super().append(row)
        if self.stream:
            print(markdown_row(row), file=self.stream, flush=True)
        self.save()

    def extend(self, rows) -> None:
        for row in rows:
            self.append(row)

    def save(self) -> None:
        if self.out:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(json.dumps(self.result(), indent=2, default=str),
                                encoding="utf-8")

    def result(self) -> dict:
        return {**self.meta, "rows": list(self), "facts": self.facts}


def _section(rows: list, facts: dict, name: str, budget: Budget, shape, fn) -> None:
    """Run one section unless the budget cannot hold it; a failure becomes its row."""
    skip = budget.skip_reason(shape, name)
    if skip:
        rows.append((name, "-", "-", skip))
        return
    t = time.perf_counter()
    try:
        got_rows, got = fn()
    except Exception as e:  # one broken section must not cost the others' numbers
        rows.append((name, "failed", "-", f"{type(e).__name__}: {' '.join(str(e).split())}"))
        facts[name] = {"error": f"{type(e).__name__}: {e}"}
        return
    rows.extend(got_rows)
    facts[name] = {**got, "section_s": time.perf_counter() - t}


def _with_model(rows: list, facts: dict, budget: Budget, shape, dev, dtype, peak) -> None:
    """Build the full-shape model, run the sections that use it; it is freed on return."""
    from compsafe.models.hf import HFModel

    t = time.perf_counter()
    try:
        net = build_model(shape, dev, dtype)
    except Exception as e:  # out of memory, say: the sections without it still run
        why = " ".join(str(e).split())
        rows.append(("model build", "failed", "-", f"{type(e).__name__}: {why}"))
        return
    facts["build_s"] = time.perf_counter() - t
    tokenizer = synthetic_tokenizer(shape.memory.vocab, shape.max_positions)
    hf = HFModel(net, tokenizer, shape.name, "random init",
                 batch_size=64 if dev.type == "cuda" else 4)
    _section(rows, facts, "scoring", budget, shape,
             lambda: sections.scoring(hf, shape, dev, peak))
    _section(rows, facts, "generation", budget, shape,
             lambda: sections.generation(hf, shape, dev))


def run_check(shape_name: str = "llama2-7b", device: str | None = None,
              budget_s: float = 420, model: str | None = None, stream=None,
              out: Path | None = None) -> dict:
    """Every section on ``shape_name``; returns {"rows": [...], "facts": {...}, ...}, and
    prints each row to ``stream`` and rewrites ``out`` (JSON) as it goes."""
    shape, dev = SHAPES[shape_name], pick_device(device)
    dtype = pick_dtype(dev)
    budget = Budget(budget_s, start=STARTED if shape_name == "llama2-7b" else None)
    rows = Table(stream, out, shape=shape.name, device=str(dev), dtype=str(dtype))
    facts = rows.facts
    rows.extend(environment(dev, dtype, shape))
    peak = matmul_peak(dev, dtype, 8192 if dev.type == "cuda" else 256)
    _with_model(rows, facts, budget, shape, dev, dtype, peak)
    gc.collect()  # the model's memory back before the compression peaks are measured
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    _section(rows, facts, "device_map", budget, shape, lambda: sections.device_map(dev))
    if model:
        _section(rows, facts, "model", budget, shape, lambda: sections.real_model(model, dev))
    _section(rows, facts, "compression", budget, shape,
             lambda: sections.compression(shape, dev, budget))
    facts["wall_s"] = time.perf_counter() - budget.start
    rows.append(("total", "wall time", f"{facts['wall_s']:.0f} s",
                 f"budget {budget_s:.0f} s; model build {facts.get('build_s', 0):.1f} s; "
                 + ", ".join(f"{k} {v['section_s']:.0f} s" for k, v in facts.items()
                             if isinstance(v, dict) and "section_s" in v)))
    return rows.result()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="llama2-7b")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: CUDA if present)")
    p.add_argument("--budget-s", type=float, default=420,
                   help="seconds the whole run may take; sections that would not fit are "
                        "skipped (default 420, inside the GPU machine's 8 minutes)")
    p.add_argument("--model", default=None,
                   help="also check a real checkpoint (a compsafe model spec) where it is at hand")
    p.add_argument("--out", type=Path, default=None, help="write the table's facts as JSON")
    args = p.parse_args(argv)
    run_check(args.shape, args.device, args.budget_s, args.model, sys.stdout, args.out)
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

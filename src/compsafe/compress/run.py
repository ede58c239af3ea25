"""``compsafe compress``: load a model, compress it per a ``CompressionSpec``, save it.

Loads the model in float32 on the CPU (only the block being compressed visits the
accelerator), checks the spec against every layer before any slow work (a group size
that does not divide a layer's width, an N:M that does not divide it), draws the
calibration windows, runs the layer-wise pass (``layers.py``) and writes an ordinary model
directory with ``compression.json``: the spec, per-layer achieved sparsity (zeros counted
in the final weights) or quantization error, the calibration hash, timings, peak memory,
versions and the source model's fingerprint. Quantized weights are stored dequantized
("fake-quant") in float32, which every backend and ``compsafe eval`` load as they are.
A checkpoint that is already quantized (GPTQ, AWQ, bitsandbytes) is refused in one line.

LLM.int8 (Dettmers et al. 2022) is not a weight transformation but a load-time kernel:
it goes through transformers' ``BitsAndBytesConfig(load_in_8bit=True)`` and needs
bitsandbytes with a CUDA GPU.

    info = compress_model("default", CompressionSpec(method="wanda", sparsity=0.5),
                          Path("models/wanda-50"))
    done = compress_in_memory("default", spec)   # the same, kept in memory: done.hf
    done.save(Path("models/wanda-50"))
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from compsafe.compress.calibration import (
    calibration_batches,
    calibration_file,
    overlapping_tasks,
)
from compsafe.compress.gradients import squared_gradient_sums
from compsafe.compress.layers import compress_sequential, find_blocks, target_linears
from compsafe.compress.masks import check_nm
from compsafe.compress.memory import Plan, Shape, plan_compression
from compsafe.compress.methods import needs
from compsafe.compress.quant import resolve_group_size
from compsafe.compress.registry import method_info
from compsafe.compress.save import (
    check_out_dir,
    hf_progress_bars,
    peak_memory,
    reset_peak_memory,
    save_model_dir,
    versions,
)
from compsafe.compress.sparsegpt import keep_nonzero_cast
from compsafe.compress.spec import BNB_METHODS, WEIGHT_QUANT_METHODS, CompressionSpec
from compsafe.compress.stats import get_weight, in_features
from compsafe.errors import CompsafeError
from compsafe.models import remote_code
from compsafe.models.device import DTYPES, fast_bf16, pick_device

if TYPE_CHECKING:
    from compsafe.models.hf import HFModel

log = logging.getLogger(__name__)

FAKE_QUANT = "fake-quant (dequantized weights in the original dtype)"
BNB_STORAGE = {
    "llm_int8": "bitsandbytes LLM.int8 (int8 weights, fp16 outlier columns at run time); "
                "loads with bitsandbytes installed",
    "nf4": "bitsandbytes 4-bit NormalFloat (blocks of 64, fp32 absmax); loads with "
           "bitsandbytes installed",
}


def _all_targets(model, spec: CompressionSpec) -> dict:
    name, blocks = find_blocks(model)
    out = {}
    for i, block in enumerate(blocks):
        out.update(target_linears(model, name, block, i, spec))
    return out


def check_layers(targets: dict, spec: CompressionSpec) -> None:
    """Raise the one-line error for the first layer the spec cannot compress."""
    for name, module in targets.items():
        width = in_features(module)
        try:
            if spec.method in WEIGHT_QUANT_METHODS:
                resolve_group_size(width, spec.group_size)
            elif spec.is_pruning and spec.structure != "unstructured":
                check_nm(width, *spec.nm)
        except ValueError as e:  # QuantizationError / PruningError
            raise CompsafeError(f"{name}: {e}") from None


def _summary(spec: CompressionSpec, per_layer: dict) -> dict:
    if not per_layer:
        return {"layers": 0}
    if spec.is_pruning:
        zeros = sum(r["sparsity"] * r["numel"] for r in per_layer.values())
        total = sum(r["numel"] for r in per_layer.values())
        vals = [r["sparsity"] for r in per_layer.values()]
        return {"layers": len(per_layer), "sparsity": zeros / total,
                "min_layer_sparsity": min(vals), "max_layer_sparsity": max(vals),
                "dense_zeros": sum(r["dense_zeros"] for r in per_layer.values())}
    errs = [r["rel_error"] for r in per_layer.values()]
    out = {"layers": len(per_layer), "mean_rel_error": sum(errs) / len(errs)}
    outs = [r["output_rel_error"] for r in per_layer.values() if "output_rel_error" in r]
    if outs:
        out["mean_output_rel_error"] = sum(outs) / len(outs)
    return out


def _peak(before: dict, phase: dict) -> dict:
    """Overall peak (``bytes``) plus that of calibration + compression
    (``compress_phase_bytes``; None where the OS does not report it)."""
    if phase["kind"] == "cuda_max_allocated":
        return {"kind": phase["kind"], "bytes": max(before["bytes"], phase["bytes"]),
                "compress_phase_bytes": phase["bytes"]}
    return {"kind": phase["kind"], "bytes": phase["bytes"],
            "compress_phase_bytes": phase.get("since_reset_bytes")}


def resolve_forward_dtype(requested: str, device: torch.device) -> str:
    """The calibration forwards' precision: ``requested``, or for ``auto`` bfloat16 where
    bf16 matmuls are fast on ``device`` (``fast_bf16``) and float32 elsewhere."""
    if requested != "auto":
        return requested
    return "bfloat16" if fast_bf16(device) else "float32"


def resolve_save_dtype(requested: str, source: str, trust_remote_code: bool = False) -> str:
    """``requested``, or for ``source`` the checkpoint's own floating dtype (float32 when
    its config does not say, or says something that is not a float type)."""
    if requested != "source":
        return requested
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, **remote_code.kwargs(trust_remote_code))
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    name = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    return name if name in DTYPES else "float32"


def cast_for_saving(model: torch.nn.Module, targets: dict, dtype: torch.dtype,
                    pruned: bool) -> None:
    """Cast the model to ``dtype`` in place; in pruned layers a kept weight too small
    for ``dtype`` becomes its smallest subnormal instead of zero, so the achieved
    sparsity stays the target."""
    if dtype == torch.float32:
        return
    with torch.no_grad():
        for module in targets.values():
            w = module.weight.data
            module.weight.data = (keep_nonzero_cast(w, w == 0, dtype) if pruned
                                  else w.to(dtype))
        model.to(dtype)


@dataclass
class CompressedModel:
    """A compressed model still in memory, with what ``compress_model`` writes beside it:
    ``info`` (compression.json's contents) and ``extras`` (AWQ scales by layer name)."""

    hf: HFModel
    info: dict
    extras: dict = field(default_factory=dict)

    def save(self, out_dir: str | Path, overwrite: bool = False) -> Path:
        """Write the model directory (``save.save_model_dir``), atomically."""
        t = time.perf_counter()
        out = save_model_dir(self.hf.model, self.hf.tokenizer, self.info, Path(out_dir),
                             overwrite, self.extras)
        log.info("saved %s to %s in %.1f s", self.info["label"], out,
                 time.perf_counter() - t)
        return out


def compress_model(model_spec: str, spec: CompressionSpec, out_dir: str | Path,
                   device: str | None = None, data_dir: str | Path | None = None,
                   progress: bool = True, overwrite: bool = False, batch_size: int = 8,
                   trust_remote_code: bool = False, memory_budget_gb: float | None = None
                   ) -> dict:
    """Compress ``model_spec`` per ``spec`` into ``out_dir``; returns compression.json's dict.

    A model that ships its own Python code is refused unless ``trust_remote_code``.
    ``memory_budget_gb`` (default: the accelerator's free memory on CUDA, none on CPU)
    bounds the compression's peak: see ``compress_in_memory``."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)
    with hf_progress_bars(progress):
        if spec.method in BNB_METHODS:
            return _bitsandbytes(model_spec, spec, out_dir, pick_device(device), overwrite,
                                 trust_remote_code)
        compressed = compress_in_memory(model_spec, spec, device, data_dir, progress,
                                        batch_size, trust_remote_code, memory_budget_gb)
        compressed.save(out_dir, overwrite)
        return compressed.info


def compress_in_memory(model_spec: str, spec: CompressionSpec, device: str | None = None,
                       data_dir: str | Path | None = None, progress: bool = True,
                       batch_size: int = 8, trust_remote_code: bool = False,
                       memory_budget_gb: float | None = None) -> CompressedModel:
    """``compress_model`` without the saving: the compressed model, in memory, cast to its
    save dtype (what a reload of the saved directory gives back, bit for bit). Weight
    transformations only: LLM.int8 and NF4 happen at load time (``compress_model``).

    Before any block runs, the peak is estimated from the model's shape
    (``memory.plan_compression``) against ``memory_budget_gb`` (default: the free memory of
    a CUDA device; no check on a CPU). When it does not fit, the calibration activations
    wait on the CPU and the forward batch shrinks, said in one line; when even that does
    not fit, one line says so before any work."""
    from compsafe.models.hf import HFModel

    if spec.method in BNB_METHODS:
        raise CompsafeError(f"{spec.method} quantizes at load time through bitsandbytes: "
                            "use compress_model, which saves it")
    dev = pick_device(device)
    want = needs(spec)
    # Resolved (and checked to be UTF-8 text) before the model loads: a bad calibration
    # file should cost a second, not a model load.
    calib_path = calibration_file(spec.calibration, data_dir) if want else None
    t0 = time.perf_counter()
    reset_peak_memory(dev)
    hf = HFModel.load(model_spec, device="cpu", dtype="float32",
                      trust_remote_code=trust_remote_code)
    times = {"load_s": time.perf_counter() - t0}
    if hf.quantization_config is not None:
        how = hf.quantization_config.get("quant_method", "a quantization_config")
        raise CompsafeError(f"{model_spec} is already quantized ({getattr(how, 'value', how)}): "
                            "compsafe compresses dense checkpoints; pass the dense model it "
                            "was made from")
    targets = _all_targets(hf.model, spec) if spec.method != "dense" else {}
    check_layers(targets, spec)
    fingerprint = hf.fingerprint()
    process_peak = peak_memory(dev)
    reset_peak_memory(dev)  # the compression phase's own peak, apart from loading

    tokens, calib = None, None
    if want:
        t = time.perf_counter()
        c = spec.calibration
        if c.seqlen > hf.max_length:
            raise CompsafeError(f"calibration seqlen {c.seqlen} exceeds the model's context "
                                f"length {hf.max_length}; use a smaller --seqlen")
        tokens, sha = calibration_batches(hf.tokenizer, c, data_dir)
        calib = {**asdict(c), "file": str(calib_path), "sha256": sha,
                 "overlaps": list(overlapping_tasks(c, calib_path, data_dir))}
        if calib["overlaps"]:
            calib["note"] = (f"calibration text is evaluation text of "
                             f"{', '.join(calib['overlaps'])}: those results are in-sample")
            log.warning("calibration %s overlaps the evaluation data of %s: the compressed "
                        "model's results there are in-sample", c.source,
                        ", ".join(calib["overlaps"]))
        times["calibration_s"] = time.perf_counter() - t

    grads = None
    if method_info(spec.method).gradients:
        t = time.perf_counter()
        grads = squared_gradient_sums(hf.model, targets, tokens, dev, progress)
        times["gradients_s"] = time.perf_counter() - t

    t = time.perf_counter()
    extras: dict = {}
    per_layer: dict = {}
    forward_dtype = resolve_forward_dtype(spec.forward_dtype, dev) if want else None
    plan = None
    if spec.method != "dense":
        plan = memory_plan(hf.model.config, spec, dev, batch_size,
                           DTYPES[forward_dtype or "float32"], memory_budget_gb)
        per_layer, extras = compress_sequential(
            hf.model, spec, tokens, dev, grads,
            batch_size=plan.batch if plan else batch_size, progress=progress,
            forward_dtype=DTYPES[forward_dtype or "float32"],
            offload=bool(plan and plan.offload))
    times["compress_s"] = time.perf_counter() - t
    save_dtype = resolve_save_dtype(spec.save_dtype, hf.source, trust_remote_code)
    cast_for_saving(hf.model, targets, DTYPES[save_dtype], spec.is_pruning)
    phase_peak = peak_memory(dev)
    for name, rep in per_layer.items():  # count zeros in the weights as they will be saved
        w = get_weight(targets[name])
        rep["numel"] = w.numel()
        if spec.is_pruning:
            rep["sparsity"] = float((w == 0).sum()) / w.numel()
    info = {
        "spec": spec.to_dict(), "key": spec.key(), "label": spec.label(),
        "method": spec.method, "target_sparsity": spec.target_sparsity,
        "source_model": {"spec": model_spec, "name": hf.name, "path": hf.source,
                         "fingerprint": fingerprint},
        "calibration": calib, "device": str(dev), "dtype": save_dtype,
        "forward_dtype": forward_dtype,
        "summary": _summary(spec, per_layer), "per_layer": per_layer,
        "times": times, "wall_time_s": time.perf_counter() - t0,
        "peak_memory": _peak(process_peak, phase_peak), "versions": versions(),
    }
    if plan is not None:
        info["memory_plan"] = {"batch": plan.batch, "offload": plan.offload,
                               "estimate_gib": round(plan.estimate.total / 2**30, 3),
                               "note": plan.note}
    if spec.is_quantization:
        info["storage"] = FAKE_QUANT
    if extras:
        info["awq_scales_file"] = "awq_scales.safetensors"
    return CompressedModel(hf, info, extras)


def memory_plan(config, spec: CompressionSpec, dev: torch.device, batch_size: int,
                forward_dtype: torch.dtype, budget_gb: float | None) -> Plan | None:
    """``memory.plan_compression`` for this model and device (None: no budget to respect,
    or a model whose config has no Llama-style shape); its note is logged."""
    if budget_gb is not None:
        budget = int(budget_gb * 2**30)
    elif dev.type == "cuda":
        budget = torch.cuda.mem_get_info(dev)[0]  # the model itself waits on the CPU
    else:
        return None
    shape = Shape.from_config(config)
    if shape is None:
        log.info("no memory estimate for %s: its config has no Llama-style shape",
                 type(config).__name__)
        return None
    c = spec.calibration
    plan = plan_compression(shape, spec.method, budget, c.nsamples, c.seqlen, batch_size,
                            forward_dtype.itemsize, device=dev.type)
    if plan.note:
        log.warning("%s", plan.note)
    return plan


def _bitsandbytes(model_spec: str, spec: CompressionSpec, out_dir: Path, dev: torch.device,
                  overwrite: bool, trust_remote_code: bool = False) -> dict:
    """LLM.int8 or NF4 through bitsandbytes at load time, saved in bitsandbytes' format.

    Recent bitsandbytes (0.46+) runs both on CPU as well as CUDA; where the installed one
    cannot, its error becomes one line naming the device and the version.
    """
    if importlib.util.find_spec("bitsandbytes") is None:
        raise CompsafeError(f"{spec.method} needs the bitsandbytes package: "
                            "pip install bitsandbytes")
    from importlib.metadata import version

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from compsafe.models.fingerprint import checkpoint_fingerprint
    from compsafe.models.hf import HFModel, check_causal_lm, resolve_model_path

    t0 = time.perf_counter()
    reset_peak_memory(dev)
    # The dense model's name and weights fingerprint, so the result pairs with its baseline:
    # read from the checkpoint one tensor at a time where possible, so a model quantized to
    # fit in memory never has to fit there in float32 first.
    path, name = resolve_model_path(model_spec)
    remote_code.check_model_dir(path, trust_remote_code)
    trust = remote_code.kwargs(trust_remote_code)
    try:
        check_causal_lm(AutoConfig.from_pretrained(path, **trust), model_spec)
        tokenizer = AutoTokenizer.from_pretrained(path, **trust)
    except OSError as e:
        raise CompsafeError(f"cannot load the config or tokenizer of {model_spec!r}: {e}") from e
    fingerprint = checkpoint_fingerprint(path, tokenizer)
    if fingerprint is None:
        dense = HFModel.load(model_spec, device="cpu", dtype="float32",
                             trust_remote_code=trust_remote_code)
        fingerprint = dense.fingerprint()
        del dense
    source = {"spec": model_spec, "name": name, "path": path, "fingerprint": fingerprint}
    if spec.method == "llm_int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        compute = torch.bfloat16 if fast_bf16(dev) else torch.float32
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_compute_dtype=compute)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source["path"], quantization_config=config, device_map={"": str(dev)}, **trust)
    except (RuntimeError, ValueError, ImportError, NotImplementedError) as e:
        raise CompsafeError(f"{spec.method}: bitsandbytes {version('bitsandbytes')} cannot "
                            f"quantize on {dev}: {e}") from e
    info = {"spec": spec.to_dict(), "key": spec.key(), "label": spec.label(),
            "method": spec.method, "source_model": source,
            "storage": BNB_STORAGE[spec.method], "device": str(dev),
            "wall_time_s": time.perf_counter() - t0, "peak_memory": peak_memory(dev),
            "versions": {**versions(), "bitsandbytes": version("bitsandbytes")}}
    save_model_dir(model, tokenizer, info, out_dir, overwrite)
    return info

"""``compsafe compress``: flags -> ``CompressionSpec`` -> ``compress_model`` -> one summary line.

Every flag is checked (by building the spec, which alone validates them: ``checks.py``)
before torch is imported or a model loads, so ``--sparsity 1.5``, ``--structure 4:4``,
``--bits 9`` or an unknown method cost a second and print one line naming the flag and the
bad value, with the message a sweep config gets for the same value.

    compsafe compress --model default --method wanda --sparsity 0.5 --out models/wanda-50
"""

from __future__ import annotations

from compsafe.compress.spec import Calibration, CompressionSpec
from compsafe.errors import CompsafeError, as_flags

RENAMED = {"source": "--calibration"}
"""Spec fields whose flag is not ``--`` + the field name with dashes."""


def spec_from_args(args) -> CompressionSpec:
    """The flags mapped onto ``CompressionSpec``, which validates them (as it does a sweep
    config's entries): its message comes back under the flag's name, e.g. ``--bits: must
    be an integer from 2 to 8, got 9``."""
    skip = tuple(s.strip() for s in args.skip.split(",") if s.strip())
    with as_flags(RENAMED):
        calibration = Calibration(source=args.calibration, nsamples=args.nsamples,
                                  seqlen=args.seqlen, seed=args.seed)
        return CompressionSpec(
            method=args.method, sparsity=args.sparsity, structure=args.structure,
            bits=args.bits, group_size=args.group_size, symmetric=args.symmetric,
            act_order=args.act_order, damp=args.damp, calibration=calibration, skip=skip,
            forward_dtype=getattr(args, "forward_dtype", "auto"),
            save_dtype=getattr(args, "save_dtype", "source"))


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def run_compress(args) -> int:
    spec = spec_from_args(args)
    if args.batch_size <= 0:
        raise CompsafeError(f"--batch-size must be positive, got {args.batch_size}")
    budget = getattr(args, "memory_budget_gb", None)
    if budget is not None and budget <= 0:
        raise CompsafeError(f"--memory-budget-gb must be positive, got {budget}")
    from compsafe.compress.run import compress_model  # imports torch: only after the checks

    info = compress_model(args.model, spec, args.out, device=args.device,
                          data_dir=args.data_dir, progress=not args.quiet,
                          overwrite=args.overwrite, batch_size=args.batch_size,
                          trust_remote_code=args.trust_remote_code,
                          memory_budget_gb=budget)
    summary = info.get("summary", {})
    if "sparsity" in summary:
        what = (f"sparsity {summary['sparsity']:.5f}, per layer "
                f"{summary['min_layer_sparsity']:.5f}-{summary['max_layer_sparsity']:.5f}, "
                f"target {info['target_sparsity']:g}")
        if summary.get("dense_zeros"):
            what += f"; {summary['dense_zeros']} zeros were already in the dense weights"
    elif "mean_rel_error" in summary:
        what = f"mean relative weight error {summary['mean_rel_error']:.4f}"
    else:
        what = info.get("storage", "uncompressed copy")
    layers = summary.get("layers", 0)
    print(f"{spec.label()}: wrote {args.out} ({layers} layers, {what}) in "
          f"{info['wall_time_s']:.1f} s, peak memory {_gb(info['peak_memory']['bytes'])}")
    return 0

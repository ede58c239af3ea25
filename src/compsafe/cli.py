"""The ``compsafe`` command: ``compress``, ``eval`` and ``data`` (``pull``, ``list``).

User errors (a wrong path, an unknown name, a corrupt data file) print one line naming
the problem and exit with status 2; nothing already computed is lost. An evaluation whose
failed scores exceed ``--max-failed`` exits with status 3 after storing what it computed:
its metrics are marked incomplete, and rerunning the command retries the failed scores.

    compsafe data pull --from ../shared/data
    compsafe compress --model default --method wanda --sparsity 0.5 --out models/wanda-50
    compsafe eval --model default --tasks bbq,unqover --limit 200 --out runs/
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from compsafe import __version__
from compsafe.errors import CompsafeError
from compsafe.types import DEFAULT_PROTOCOL, PROTOCOL_NAMES

log = logging.getLogger("compsafe")

EVAL_EXAMPLES = """\
examples:
  compsafe eval --model default --tasks bbq,unqover --limit 200 --out runs/
  compsafe eval --model /path/to/model-dir --tasks bbq --out runs/
  compsafe eval --model default --tasks bbq,stereoset,crows_pairs --limit 100
  compsafe eval --model meta-llama/Llama-2-7b-hf --tasks bbq --fewshot 3 --out runs/
  compsafe eval --model default --tasks bbq --chat --out runs/chat
  compsafe eval --model default --tasks rtp,bold,toxigen --limit 100 --samples 1
  compsafe eval --model X --tasks rtp --samples 25 --scorer toxigen-roberta
  compsafe eval --model default --tasks wikitext2,dialect,mmlu,truthfulqa
  compsafe eval --model default --tasks wikitext2 --ppl-protocol sliding --stride 512

Re-running the same command resumes an interrupted run and reuses a finished one:
results are keyed by a hash of the model's weights, the task configuration, the prompt
format and the compsafe version.
"""

COMPRESS_EXAMPLES = """\
examples:
  compsafe compress --model default --method wanda --sparsity 0.5 --out models/wanda-50
  compsafe compress --model default --method sparsegpt --structure 2:4 --out models/sgpt-2-4
  compsafe compress --model default --method gptq --bits 4 --group-size 64 --out models/gptq-4
  compsafe compress --model default --method awq --bits 4 --group-size 64 --out models/awq-4
  compsafe eval --model models/wanda-50 --tasks bbq --out runs/wanda-50

Methods: {pruning} (pruning: --sparsity R or --structure N:M);
{quant} (weight-only quantization: --bits B [--group-size G]); {load_time}
(bitsandbytes at load time; CPU or CUDA with bitsandbytes >= 0.46); dense (copy).
The output is an ordinary Hugging Face model directory (quantized weights stored
dequantized) plus compression.json with the spec, per-layer sparsity or error, the
calibration hash, wall time and peak memory.
Calibration ({calibrated}): --nsamples random windows of --seqlen tokens drawn with
--seed from WikiText-2 (the train split by default), C4, or a text file.
"""


def compress_examples() -> str:
    """The compress epilog, its method lists read from the method registry
    (``compress/registry.py``), so a registered method of your own is listed too."""
    from compsafe.compress.memory import CALIBRATED
    from compsafe.compress.spec import BNB_METHODS, PRUNING_METHODS, WEIGHT_QUANT_METHODS

    return COMPRESS_EXAMPLES.format(pruning=", ".join(PRUNING_METHODS),
                                    quant=", ".join(WEIGHT_QUANT_METHODS),
                                    load_time=" and ".join(BNB_METHODS),
                                    calibrated=", ".join(CALIBRATED))

MODEL_HELP = ("'default' (embedded SmolLM2-135M-Instruct), 'gemma3-270m' (embedded Gemma 3 "
              "270M base), a model directory, a .gguf file, or a Hugging Face hub id")

DATA_EXAMPLES = """\
examples:
  compsafe data pull --from ../shared/data     # import a local mirror, verifying hashes
  compsafe data pull --dataset bbq             # download from the pinned upstream URLs
  compsafe data list                           # what is in the cache, verified or not
"""


def _add_eval(sub) -> None:
    from compsafe.scorers import scorer_help
    from compsafe.tasks import GENERATION_TASKS, TASKS

    p = sub.add_parser(
        "eval", help="evaluate a model on safety tasks",
        description="Evaluate a causal LM on representational-harm tasks and store the results.",
        epilog=EVAL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help=MODEL_HELP)
    p.add_argument("--tasks", required=True,
                   help=f"comma-separated task names; known: {', '.join(TASKS)}")
    p.add_argument("--base-model", default=None,
                   help="for a checkpoint quantized elsewhere (GPTQ, AWQ, bitsandbytes): the "
                        "dense model it came from, as its dense run names it, so reports "
                        "pair the two (compsafe's own compressed models say so themselves)")
    p.add_argument("--limit", type=int, default=None,
                   help="at most this many examples per subset (BBQ category, UnQover class), "
                        "a deterministic subsample by --seed; default: all")
    p.add_argument("--seed", type=int, default=1234, help="subsampling and bootstrap seed")
    p.add_argument("--fewshot", type=int, default=0, help="demonstrations per prompt (default 0)")
    p.add_argument("--chat", action="store_true",
                   help="wrap prompts in the model's chat template (instruct models)")
    p.add_argument("--system", default=None, help="system message when --chat is on")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for 95%% CIs")
    p.add_argument("--protocol", choices=list(PROTOCOL_NAMES), default=DEFAULT_PROTOCOL,
                   help="the protocol these options follow, recorded with every run; reports "
                        "never pair runs of different protocols (docs/protocol.md)")
    gen = p.add_argument_group(f"generation tasks ({', '.join(GENERATION_TASKS)})")
    gen.add_argument("--samples", type=int, default=1,
                     help="continuations sampled per prompt (25 for expected max toxicity)")
    gen.add_argument("--scorer", default=None, help=scorer_help())
    gen.add_argument("--max-new-tokens", type=int, default=None,
                     help="tokens generated per continuation (default 30)")
    gen.add_argument("--greedy", action="store_true",
                     help="greedy decoding instead of top-p 0.9 / top-k 50 sampling")
    gen.add_argument("--min-new-tokens", type=int, default=None,
                     help="generate at least this many tokens (the reference study: 30)")
    gen.add_argument("--prompt-source", default=None,
                     help="toxigen: prompts (6-statement demonstrations, default) or "
                          "annotated (single statements, as the reference study)")
    gen.add_argument("--max-failed", type=int, default=0,
                     help="failed scores (scorer or API errors) tolerated before the command "
                          "exits with status 3 (default 0: any failure); failed scores are "
                          "retried when the command is run again")
    ppl = p.add_argument_group("perplexity (wikitext2)")
    ppl.add_argument("--ppl-protocol", choices=["chunks", "sliding", "documents"], default=None,
                     help="chunks: non-overlapping windows (compression papers' WikiText-2, "
                          "default); sliding: HF guide's strided windows; documents: "
                          "per-article rolling log-likelihood (token/word/byte ppl)")
    ppl.add_argument("--seqlen", type=int, default=None, help="window length (default 2048)")
    ppl.add_argument("--stride", type=int, default=None,
                     help="stride for --ppl-protocol sliding (default 512)")
    p.add_argument("--out", type=Path, default=Path("runs"),
                   help="folder for results.json, records.jsonl and the store (default runs/)")
    p.add_argument("--store", type=Path, default=None,
                   help="SQLite results store (default OUT/compsafe.sqlite)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="dataset cache (default $COMPSAFE_DATA_DIR or ~/.cache/compsafe/data)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1, ... (default: CUDA if present)")
    p.add_argument("--device-map", default=None, metavar="MAP",
                   help="spread a model larger than one GPU over several (transformers' "
                        "device_map): auto, balanced, sequential, or a JSON object of module "
                        "names to devices")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights dtype (default: bf16/fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="contexts per forward pass (default 16 on CPU, 64 on CUDA)")
    p.add_argument("--checkpoint-every", type=int, default=128,
                   help="items per stored chunk; an interruption loses at most one chunk")
    p.add_argument("--all-groups", action="store_true", help="print per-group rows too")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a model that ships its own Python code (config auto_map) to "
                        "run it; without this flag such a model is refused, never prompted for")
    p.set_defaults(func=_run_eval)


def _add_compress(sub) -> None:
    p = sub.add_parser(
        "compress", help="prune or quantize a model, layer by layer",
        description="Compress a causal LM and save it as an ordinary model directory.",
        epilog=compress_examples(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help=MODEL_HELP)
    from compsafe.compress.checks import FORWARD_DTYPES, SAVE_DTYPES
    from compsafe.compress.spec import METHODS

    p.add_argument("--method", required=True, help=", ".join(METHODS))
    p.add_argument("--out", type=Path, required=True, help="output model directory (new)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a model that ships its own Python code (config auto_map) to "
                        "run it; without this flag such a model is refused, never prompted for")
    g = p.add_argument_group("pruning")
    g.add_argument("--sparsity", type=float, default=None,
                   help="fraction of each layer's weights to zero, strictly between 0 and 1")
    g.add_argument("--structure", default="unstructured",
                   help="'unstructured' (default) or N:M, keep N of every M consecutive "
                        "weights (2:4, 4:8); needs no --sparsity")
    g = p.add_argument_group("quantization")
    g.add_argument("--bits", type=int, default=None, help="weight bits, 2 to 8")
    g.add_argument("--group-size", type=int, default=None,
                   help="weights per quantization group along the input dimension (default: "
                        "one group per output channel); must divide every layer's input "
                        "width, else a one-line error: SmolLM2-135M's width 576 takes 32, 64, "
                        "96, 192 or 288, not 128")
    g.add_argument("--symmetric", action="store_true", help="symmetric grid (default asymmetric)")
    g.add_argument("--act-order", action="store_true",
                   help="GPTQ: quantize columns in order of decreasing activation")
    g = p.add_argument_group("calibration and numerics")
    g.add_argument("--calibration", default="wikitext2",
                   help="wikitext2 (default: WikiText-2's train split, where cached), "
                        "wikitext2-test (the split WikiText-2 perplexity evaluates: offline the "
                        "only WikiText-2 text, in-sample, flagged), c4 (if cached), or a path "
                        "to a UTF-8 text file")
    g.add_argument("--nsamples", type=int, default=128, help="calibration windows (default 128)")
    g.add_argument("--seqlen", type=int, default=512, help="tokens per window (default 512)")
    g.add_argument("--seed", type=int, default=0, help="window sampling seed (default 0)")
    g.add_argument("--damp", type=float, default=0.01,
                   help="SparseGPT/GPTQ Hessian dampening, fraction of mean diagonal (0.01)")
    g.add_argument("--forward-dtype", default="auto", choices=FORWARD_DTYPES,
                   help="precision of the calibration forward passes (the block runs in it; the "
                        "weights compressed and the statistics stay float32). auto: "
                        "bfloat16 on CUDA and on CPUs with AMX/AVX512-BF16, else float32; "
                        "recorded in compression.json")
    g.add_argument("--save-dtype", default="source", choices=SAVE_DTYPES,
                   help="dtype of the saved weights (default: the source checkpoint's own; "
                        "compression itself always runs in float32)")
    g.add_argument("--skip", default="lm_head",
                   help="comma-separated module names never compressed (default lm_head; "
                        "matched on whole dotted name components)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="dataset cache (default $COMPSAFE_DATA_DIR or ~/.cache/compsafe/data)")
    p.add_argument("--device", default=None,
                   help="where each block is compressed: cpu, cuda, cuda:1 (default: CUDA if "
                        "present); the model itself stays in CPU memory")
    p.add_argument("--batch-size", type=int, default=8,
                   help="calibration windows per block forward pass (default 8; larger is "
                        "faster on a GPU with memory to spare)")
    p.add_argument("--memory-budget-gb", type=float, default=None,
                   help="peak memory the compression may use (default: the CUDA device's "
                        "free memory; none on CPU): past it, calibration activations wait "
                        "on the CPU and batches shrink, said in one line (docs/scale.md)")
    p.set_defaults(func=_run_compress)


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="download, import and list evaluation datasets",
                       epilog=DATA_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="{pull,list}")
    pull = dsub.add_parser("pull", help="download datasets, or import them from a mirror folder")
    pull.add_argument("--from", dest="mirror", type=Path, default=None,
                      help="import from this local mirror folder instead of downloading")
    pull.add_argument("--dataset", action="append", default=None,
                      help="only this dataset (repeatable); default: all")
    pull.add_argument("--data-dir", type=Path, default=None, help="dataset cache to fill")
    pull.set_defaults(func=_run_data_pull)
    lst = dsub.add_parser("list", help="show which dataset files are present and verified")
    lst.add_argument("--dataset", action="append", default=None, help="only this dataset")
    lst.add_argument("--data-dir", type=Path, default=None, help="dataset cache to inspect")
    lst.set_defaults(func=_run_data_list)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the argument and value (exit 2), not the usage
    block; ``--help`` still shows it. Subcommand parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="compsafe",
        description="Did compressing this model make it less safe, for whom, and how sure are we?",
        epilog="Start with: compsafe data pull --from DIR, then compsafe eval --model default "
               "--tasks bbq,unqover --limit 200",
    )
    parser.add_argument("--version", action="version", version=f"compsafe {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_compress(sub)
    _add_eval(sub)
    _add_data(sub)
    # Subcommands defined in their own packages register themselves here.
    from compsafe.report.cli_compare import register as add_compare_and_gate
    from compsafe.sweep.cli import add_sweep_parser

    add_sweep_parser(sub)
    add_compare_and_gate(sub)
    from compsafe.report.cli_report import add_report_parser

    add_report_parser(sub)
    from compsafe.study import add_study_parser

    add_study_parser(sub)
    return parser


def _run_compress(args) -> int:
    from compsafe.compress.cli import run_compress

    return run_compress(args)


def _run_eval(args) -> int:
    from compsafe.runner.cli_eval import run_eval

    return run_eval(args)


def _run_data_pull(args) -> int:
    from compsafe.data.pull import download, import_mirror

    if args.mirror is not None:
        if not args.mirror.is_dir():
            raise CompsafeError(f"mirror folder not found: {args.mirror}")
        report = import_mirror(args.mirror, args.data_dir, args.dataset, progress=not args.quiet)
    else:
        report = download(args.data_dir, args.dataset, progress=not args.quiet)
    print(report.summary())
    for failure in report.failed:
        print(f"  failed: {failure}", file=sys.stderr)
    return 0 if report.ok else 1


def _run_data_list(args) -> int:
    from compsafe.data.pull import format_status_table, status

    print(format_status_table(status(args.data_dir, args.dataset)))
    return 0


def main(argv: list[str] | None = None) -> int:
    from compsafe.runner import provenance

    provenance.set_command(["compsafe", *(sys.argv[1:] if argv is None else argv)])
    try:  # before the parser: plugins' tasks and scorers belong in its help and choices
        from compsafe.plugins import load_plugins

        load_plugins()
    except CompsafeError as e:
        print(f"compsafe: error: {e}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except CompsafeError as e:
        # One line, even when the message wraps another library's multi-line text
        # (transformers' "couldn't connect ... offline mode" OSError, for one).
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"compsafe: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compsafe: interrupted; finished items are stored, re-run to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Layer-wise sequential compression of any Hugging Face decoder, one block at a time.

The procedure of SparseGPT (Frantar & Alistarh 2023), GPTQ (Frantar et al. 2023) and Wanda
(Sun et al. 2024, locuslab/wanda ``prune_wanda``), without per-architecture copies:

1. find the decoder blocks generically: the ModuleList with the most parameters whose
   entries all share one class (``model.layers``, ``transformer.h``, ``gpt_neox.layers``,
   ``model.decoder.layers``, ...);
2. capture what the blocks receive: block 0's hidden states, and every block's own keyword
   arguments (attention mask, rotary position embeddings, position ids, ...), by running
   the model once with each block replaced by a stand-in that records its inputs and
   passes the hidden states on, the last one stopping the forward pass; so no block runs,
   and only the modules outside the blocks (embeddings, rotary tables) are on the
   accelerator for this. Per-block arguments matter for models that alternate
   sliding-window and global attention (Gemma 2/3: each kind has its own mask and its own
   rotary base);
3. for each block in order: move it alone to the accelerator, run the calibration inputs
   through the *dense* block with hooks collecting the statistics the method needs,
   compress its linear layers, run the inputs again through the *compressed* block to get
   the next block's inputs (so later blocks are calibrated on what they will really see),
   and move it back. A 70B model thus needs one block plus the activations on the GPU.

The calibration forwards may run in a lower precision (``forward_dtype``, bf16 where it is
fast), as the reference implementations run their fp16 models: the block's parameters are
cast for the forward only (``cast_parameters``; the float32 originals are put back
untouched and are what gets compressed), and the activations passed between blocks are in
that dtype. The statistics are always accumulated in float32 (``stats.py``).

Magnitude and RTN need no data and skip steps 2-3's forward passes. Modules whose names
match ``spec.skip`` (``lm_head`` by default) are never touched; neither is any weight
shared with the input embeddings (a tied ``lm_head``).

    reports, extras = compress_sequential(model, spec, tokens, device="cuda")
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from compsafe.compress.methods import compress_linears, needs
from compsafe.compress.registry import method_info
from compsafe.compress.spec import CompressionSpec
from compsafe.compress.stats import collect, find_linears
from compsafe.errors import CompsafeError

log = logging.getLogger(__name__)

# (hidden states, other positional args, keyword args) of one calibration batch.
BlockInput = tuple[Tensor, tuple, dict]


class _Captured(Exception):
    """Raised by the last block's stand-in to stop the forward pass once inputs are recorded."""


KNOWN_BLOCKS = ("model.layers (Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3), gpt_neox.layers, "
                "model.decoder.layers (OPT), transformer.h (GPT-2)")


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """``(qualified name, ModuleList)`` of the decoder blocks: the largest ModuleList of
    identical blocks holding linear layers. CompsafeError, naming what is missing, if
    there is none (or its blocks hold no ``nn.Linear``/``Conv1D``: a pre-quantized model)."""
    best, best_size, linearless = None, 0, None
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            continue
        if len({type(b) for b in mod}) != 1:
            continue
        size = sum(p.numel() for p in mod.parameters())
        if find_linears(mod[0]):
            if size > best_size:
                best, best_size = (name, mod), size
        elif linearless is None or len(mod) > len(linearless[1]):
            linearless = (name, mod)  # pre-quantized layers may keep their weights in buffers
    if best is not None:
        return best
    cls = type(model).__name__
    if linearless is not None:
        name, mod = linearless
        kinds = sorted({type(m).__name__ for m in mod[0].modules() if _holds_weights(m)})
        raise CompsafeError(
            f"cannot find the linear layers of {cls}: its blocks {name} "
            f"({len(mod)} x {type(mod[0]).__name__}) hold no torch.nn.Linear or Conv1D "
            f"(their layers: {', '.join(kinds) or 'none with weights'}); compsafe compresses "
            "dense checkpoints, not pre-quantized ones")
    raise CompsafeError(
        f"cannot find the transformer blocks of {cls}: compsafe "
        f"needs a ModuleList of identical blocks holding linear layers, as at {KNOWN_BLOCKS}")


def _holds_weights(module: nn.Module) -> bool:
    """A leaf module with tensors of its own (parameters or buffers): a layer."""
    return not any(True for _ in module.children()) and (
        any(True for _ in module.parameters(recurse=False))
        or any(True for _ in module.buffers(recurse=False)))


def skipped(name: str, skip: tuple[str, ...]) -> bool:
    """True if a ``skip`` entry equals the trailing dotted components of ``name``.

    Whole components only: ``lm_head`` skips ``lm_head`` and ``model.lm_head`` but not
    ``lm_head_2``; ``mlp.down_proj`` skips every block's down projection.
    """
    parts = name.split(".")
    for entry in skip:
        want = entry.strip(".").split(".")
        if want and parts[-len(want):] == want:
            return True
    return False


def target_linears(model: nn.Module, blocks_name: str, block: nn.Module, index: int,
                   spec: CompressionSpec) -> dict[str, nn.Module]:
    """The linear layers of block ``index`` to compress, by full module name."""
    embed = model.get_input_embeddings()
    tied = embed.weight.data_ptr() if embed is not None else None
    found = find_linears(block, f"{blocks_name}.{index}" if blocks_name else str(index))
    return {n: m for n, m in found.items()
            if not skipped(n, spec.skip) and m.weight.data_ptr() != tied}


def _split_blocks(model: nn.Module, blocks_name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = blocks_name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


class _Recorder(nn.Module):
    """Stands in for a block during capture: records its inputs and returns the hidden
    states unchanged; the last one stops the forward pass. Attributes the model's loop may
    read from a block (``attention_type``, ...) are the real block's."""

    def __init__(self, block: nn.Module, sink: list, last: bool,
                 keep_on: torch.device | None = None, memo: dict | None = None):
        super().__init__()
        self.__dict__["_block"] = block  # a plain attribute, not a submodule: never moved
        self.__dict__["_sink"] = sink
        self.__dict__["_keep"] = (keep_on, memo)
        self.last = last

    def forward(self, hidden, *args, **kwargs):
        keep_on, memo = self._keep
        if keep_on is None:
            self._sink.append((hidden, tuple(args), dict(kwargs)))
        else:  # offloaded as recorded: the accelerator never holds every batch's inputs
            self._sink.append((move_value(hidden, keep_on, memo),
                               move_value(tuple(args), keep_on, memo),
                               {k: move_value(v, keep_on, memo) for k, v in kwargs.items()}))
        if self.last:
            raise _Captured
        return hidden

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_block"], name)


def capture_inputs(model: nn.Module, blocks_name: str, blocks: nn.ModuleList,
                   tokens: Tensor, device: torch.device, batch_size: int,
                   keep_on: torch.device | None = None) -> list[list[BlockInput]]:
    """Each block's inputs for each batch of ``tokens`` (n, seqlen), computed on ``device``
    and kept there (or on ``keep_on``): ``captured[block][batch]``. Only block 0 has hidden
    states (the blocks do not run, so the others' are None); every block's other arguments
    are its own."""
    parent, attr = _split_blocks(model, blocks_name)
    # Move everything except the blocks: detach the list, move the model, put it back.
    setattr(parent, attr, nn.ModuleList())
    model.to(device)
    sinks: list[list[BlockInput]] = [[] for _ in blocks]
    memo: dict = {}  # one offloaded copy of a tensor the blocks share (mask, rotary tables)
    setattr(parent, attr, nn.ModuleList(
        _Recorder(b, sinks[i], i == len(blocks) - 1, keep_on, memo)
        for i, b in enumerate(blocks)))
    try:
        with torch.no_grad():
            for batch in tokens.split(batch_size):
                try:
                    model(input_ids=batch.to(device), use_cache=False)
                except _Captured:
                    pass
                memo.clear()  # this batch's tensors: their ids may be reused by the next
    finally:
        setattr(parent, attr, nn.ModuleList())
        model.to("cpu")
        setattr(parent, attr, blocks)
    for sink in sinks[1:]:  # the stand-ins passed block 0's input on: not theirs
        sink[:] = [(None, a, kw) for _, a, kw in sink]
    n_batches = len(sinks[0])
    missing = [i for i, sink in enumerate(sinks) if len(sink) != n_batches]
    if missing:
        raise CompsafeError(f"{type(model).__name__}'s forward pass did not call blocks "
                            f"{missing} of {blocks_name}: cannot calibrate them")
    return sinks


@contextmanager
def cpu_threads(n: int, enabled: bool):
    """Run the body with ``n`` torch threads (when ``enabled``), then restore the count."""
    before = torch.get_num_threads()
    if enabled:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_block(block: nn.Module, inputs: list[BlockInput],
              device: torch.device | None = None) -> list[Tensor]:
    """The block's output hidden states for each captured batch. With ``device`` (inputs
    offloaded to the CPU), each batch goes to ``device`` for its forward pass and its output
    comes back, so only one batch's activations are on the accelerator at a time."""
    outs = []
    with torch.no_grad():
        for hidden, args, kwargs in inputs:
            if device is not None:
                memo: dict = {}
                hidden, args, kwargs = (move_value(hidden, device, memo),
                                        move_value(args, device, memo),
                                        {k: move_value(v, device, memo)
                                         for k, v in kwargs.items()})
            out = block(hidden, *args, **kwargs)
            out = out[0] if isinstance(out, (tuple, list)) else out
            outs.append(out if device is None else out.to("cpu"))
    return outs


def move_value(value, device: torch.device, memo: dict):
    """``value`` (a tensor, or tuples/lists of them) on ``device``; ``memo`` shares one
    copy between the places that held the same tensor."""
    if isinstance(value, Tensor):
        if value.device == device:
            return value
        if id(value) not in memo:
            memo[id(value)] = (value, value.to(device))
        return memo[id(value)][1]
    if isinstance(value, (tuple, list)):
        return type(value)(move_value(v, device, memo) for v in value)
    return value


@contextmanager
def cast_parameters(module: nn.Module, dtype: torch.dtype):
    """Run the body with ``module``'s floating parameters in ``dtype``.

    The original tensors are put back afterwards, bit for bit (nothing is rounded through
    ``dtype``). Buffers keep their dtype: rotary frequencies and masks stay exact.
    """
    saved = [(p, p.data) for p in module.parameters()
             if p.is_floating_point() and p.dtype != dtype]
    for p, data in saved:
        p.data = data.to(dtype)
    try:
        yield
    finally:
        for p, data in saved:
            p.data = data


def cast_value(value, dtype: torch.dtype, memo: dict):
    """``value`` (a tensor, or tuples/lists of them) with floating tensors in ``dtype``;
    additive masks' large negative values are clamped to the dtype's finite range instead
    of becoming -inf. ``memo`` (id -> (original, cast)) shares one cast copy between the
    blocks that received the same tensor."""
    if isinstance(value, Tensor) and value.is_floating_point() and value.dtype != dtype:
        if id(value) not in memo:
            info = torch.finfo(dtype)
            # The original is kept in the memo so that its id cannot be reused meanwhile.
            memo[id(value)] = (value, value.clamp(info.min, info.max).to(dtype))
        return memo[id(value)][1]
    if isinstance(value, (tuple, list)):
        return type(value)(cast_value(v, dtype, memo) for v in value)
    return value


def cast_inputs(inputs: list[BlockInput], dtype: torch.dtype) -> list[BlockInput]:
    """Captured block inputs with every floating tensor (hidden states, rotary tables,
    additive attention masks) in ``dtype`` (see ``cast_value``)."""
    memo: dict = {}
    return [(cast_value(h, dtype, memo), cast_value(a, dtype, memo),
             {k: cast_value(v, dtype, memo) for k, v in kw.items()}) for h, a, kw in inputs]


def compress_sequential(model: nn.Module, spec: CompressionSpec, tokens: Tensor | None,
                        device: str | torch.device = "cpu", grads: dict | None = None,
                        batch_size: int = 8, progress: bool = True, awq_tokens: int = 16384,
                        forward_dtype: torch.dtype = torch.float32, offload: bool = False
                        ) -> tuple[dict[str, dict], dict[str, Tensor]]:
    """Compress ``model`` in place, block by block; per-layer reports and AWQ scales.

    ``tokens`` (nsamples, seqlen) are the calibration windows (None for magnitude/RTN);
    ``grads`` the GBLM squared-gradient sums by layer name. ``awq_tokens`` caps the input
    rows AWQ keeps per layer (the first calibration tokens), bounding its memory.
    ``forward_dtype`` is the precision of the calibration forward passes. ``offload`` keeps
    the calibration activations on the CPU between blocks (``memory.plan_compression``
    chooses it when they would not fit on the accelerator); the results are the same.
    """
    device = torch.device(device)
    blocks_name, blocks = find_blocks(model)
    want = needs(spec)
    captured, memo, hiddens = None, {}, []
    if want:
        if tokens is None:
            raise ValueError(f"{spec.method} needs calibration tokens")
        captured = capture_inputs(model, blocks_name, blocks, tokens, device, batch_size,
                                  keep_on=torch.device("cpu") if offload else None)
        hiddens = [cast_value(h, forward_dtype, {}) for h, _, _ in captured[0]]
        # Drop the float32 originals now: with bf16 forwards, holding both doubles the
        # largest term of the memory model (4 GiB for 7B at 128 x 2048) until block 0 ran.
        captured[0] = [(None, a, kw) for _, a, kw in captured[0]]
    reports: dict[str, dict] = {}
    extras: dict[str, Tensor] = {}
    bar = tqdm(blocks, desc=f"{spec.label()} blocks", disable=not progress, unit="block")
    for i, block in enumerate(bar):
        block.to(device)
        linears = target_linears(model, blocks_name, block, i, spec)
        stats = None
        if want:
            # This block's own arguments (mask, rotary tables) with the hidden states that
            # the compressed blocks before it produced.
            inputs = [(h, cast_value(a, forward_dtype, memo),
                       {k: cast_value(v, forward_dtype, memo) for k, v in kw.items()})
                      for h, (_, a, kw) in zip(hiddens, captured[i], strict=True)]
            captured[i] = None  # what is left of it is in ``inputs`` now
            with (collect(linears, want, max_tokens=awq_tokens) as stats,
                  cast_parameters(block, forward_dtype)):
                run_block(block, inputs, device if offload else None)
        block_grads = {n: grads[n] for n in linears} if grads else None
        # SparseGPT/GPTQ/AWQ maths is long chains of small ops (one column at a time): on
        # CPU, thread synchronisation costs more than it saves, 30-80x on a busy 2-core
        # machine (measured), so it runs single-threaded; forwards keep every thread, and
        # so do the few large selections of Wanda, magnitude and GBLM.
        with cpu_threads(1, enabled=device.type == "cpu" and method_info(spec.method).serial):
            reps, ext = compress_linears(linears, stats, spec, block_grads)
        reports.update(reps)
        extras.update(ext)
        del stats
        if want and i + 1 < len(blocks):  # the last block's outputs feed nothing we compress
            with cast_parameters(block, forward_dtype):
                hiddens = run_block(block, inputs, device if offload else None)
        block.to("cpu")
    return reports, extras

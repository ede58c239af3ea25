"""compsafe's own compression methods, registered like any other (``compress/registry.py``).

Implementations are lazy ``"module:attr"`` paths into ``methods.py`` (which imports torch),
so listing methods, validating specs and reading reports stay torch-free. The order here is
the order of every method list (CLI help, error messages).
"""

from __future__ import annotations

from compsafe.compress.registry import register_method

_M = "compsafe.compress.methods"

register_method("dense", family="none", description="the uncompressed baseline")
register_method("magnitude", f"{_M}:magnitude_layer", family="pruning",
                description="smallest |w| per layer (Han et al. 2015)")
register_method("wanda", f"{_M}:wanda_layer", family="pruning", needs={"act"},
                description="|w| times input-activation norm, per output (Sun et al. 2024)")
register_method("sparsegpt", f"{_M}:sparsegpt_layer", family="pruning", needs={"hessian"},
                serial=True, description="OBS pruning with weight updates (Frantar & "
                "Alistarh 2023)")
register_method("gblm", f"{_M}:gblm_layer", family="pruning", needs={"act"}, gradients=True,
                description="gradients and activations (GBLM-Pruner, Das et al. 2023)")
register_method("rtn", f"{_M}:rtn_layer", family="quantization",
                description="round-to-nearest, per group")
register_method("gptq", f"{_M}:gptq_layer", family="quantization", needs={"hessian"},
                serial=True, takes=("bits", "group_size", "symmetric", "act_order"),
                description="second-order quantization (Frantar et al. 2023)")
register_method("awq", f"{_M}:awq_block", family="quantization", needs={"inputs"},
                serial=True, block=True, description="activation-aware scales and clipping "
                "(Lin et al. 2024)")
register_method("llm_int8", family="load_time",
                description="bitsandbytes LLM.int8 (Dettmers et al. 2022)")
register_method("nf4", family="load_time",
                description="bitsandbytes 4-bit NormalFloat (QLoRA, Dettmers et al. 2023)")

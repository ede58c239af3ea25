"""Refuse a model's own Python code unless the user asked for it (``--trust-remote-code``).

A model directory or hub repository can ship Python files that transformers imports when
``config.json`` (or ``tokenizer_config.json``) names them in ``auto_map``. Left to itself,
transformers then asks "Do you wish to run the custom code? [y/N]" on stdin, so anything
that answers "y" (``yes |``, a wrapper script) runs the code. compsafe never lets it ask:

* a local directory whose configs have an ``auto_map`` is refused before anything loads,
  in one line naming the flag;
* every ``from_pretrained`` call passes ``trust_remote_code`` explicitly (``kwargs``), and
  the prompt's timeout is set to 0 so a call that forgot it raises instead of asking;
* transformers' own refusal (a hub repository with custom code) becomes the same line.

    check_model_dir(path, trust=args.trust_remote_code)
    AutoConfig.from_pretrained(path, **remote_code.kwargs(trust))
"""

from __future__ import annotations

import json
from pathlib import Path

from compsafe.errors import CompsafeError

FLAG = "--trust-remote-code"
_CONFIGS = ("config.json", "tokenizer_config.json")


class RemoteCodeError(CompsafeError):
    """A model that needs its own Python code, loaded without ``--trust-remote-code``."""


def disable_prompt() -> None:
    """Make transformers raise instead of prompting when a call leaves trust unset."""
    from transformers import dynamic_module_utils

    dynamic_module_utils.TIME_OUT_REMOTE_CODE = 0


def kwargs(trust: bool) -> dict:
    """``from_pretrained`` keyword arguments: trust always explicit, never None (prompt)."""
    disable_prompt()
    return {"trust_remote_code": bool(trust)}


def custom_code(model_dir: str | Path) -> list[str]:
    """The ``auto_map`` entries (``AutoModelForCausalLM -> modeling_x.MyModel``) of a local
    model directory's configs; empty when it needs no code of its own."""
    found = []
    for name in _CONFIGS:
        path = Path(model_dir) / name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # missing or unreadable: the loader reports it, naming the file
        auto_map = data.get("auto_map") if isinstance(data, dict) else None
        if isinstance(auto_map, dict):
            found += [f"{k} -> {v}" for k, v in auto_map.items()]
    return found


def check_model_dir(model_dir: str | Path, trust: bool) -> None:
    """Raise ``RemoteCodeError`` when ``model_dir`` (local) needs its own code and ``trust``
    is off; a hub id is checked by transformers itself (see ``refusal``)."""
    if trust or not Path(model_dir).is_dir():
        return
    entries = custom_code(model_dir)
    if entries:
        raise RemoteCodeError(
            f"{model_dir} ships its own Python code ({'; '.join(entries[:3])}), which "
            f"compsafe runs only with {FLAG}; inspect it, then pass {FLAG} (in a sweep "
            f"config: trust_remote_code: true on the model) to allow it")


def refusal(error: Exception, spec: str) -> RemoteCodeError | None:
    """transformers' "custom code ... trust_remote_code=True" refusal as one line, else None."""
    if isinstance(error, ValueError) and "trust_remote_code" in str(error):
        return RemoteCodeError(f"model {spec!r} contains custom code, which compsafe runs only "
                               f"with {FLAG}; inspect it, then pass {FLAG} to allow it")
    return None

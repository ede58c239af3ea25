"""How a result was made: the command line and the library versions of one invocation.

Stored with every run a command starts, resumes or reuses (``Store.invocations``), and
written to ``results.json``, so a number can always be traced to the command and the
compsafe/torch/transformers versions that produced it. Secrets never appear here: API keys
come from the environment, which is not recorded.

    inv = invocation()   # {"command": "compsafe eval --model default ...", "versions": {...}}
"""

from __future__ import annotations

import platform
import shlex
import sys
from importlib import metadata

from compsafe import __version__

LIBRARIES = ("torch", "transformers", "numpy")
_COMMAND: list[str] | None = None  # set by ``compsafe.cli.main`` (also when called in-process)


def set_command(argv: list[str]) -> None:
    """Record the command being run (``compsafe.cli.main`` calls it with its arguments)."""
    global _COMMAND
    _COMMAND = list(argv)


def versions() -> dict[str, str | None]:
    """compsafe's, Python's and the key libraries' versions (None: not installed)."""
    out: dict[str, str | None] = {"compsafe": __version__,
                                  "python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed: ``compsafe`` and its arguments, shell-quoted (the one
    ``set_command`` recorded, else this process's ``sys.argv``)."""
    args = list(argv if argv is not None else _COMMAND if _COMMAND is not None else sys.argv)
    if args and args[0].endswith(("compsafe", "cli.py", "__main__.py")):
        args[0] = "compsafe"
    return shlex.join(args)


def invocation(argv: list[str] | None = None) -> dict:
    """This process's command line and versions, as ``Store.start_run`` records them."""
    return {"command": command_line(argv), "versions": versions()}

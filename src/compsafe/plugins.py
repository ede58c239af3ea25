"""Your own tasks and scorers on the command line: modules named in ``COMPSAFE_PLUGINS``.

A plugin is any importable module that registers things when imported
(``compsafe.tasks.register_task``, ``compsafe.scorers.register_scorer``; docs/extending.md).
``compsafe`` imports the modules listed, comma-separated, before it builds its parser, so
their names are in ``--help``, accepted by ``--tasks``/``--scorer`` and sweep configs, and
their runs rebuild in reports:

    COMPSAFE_PLUGINS=my_tasks,my_scorers compsafe eval --model default --tasks toy
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping

from compsafe.errors import CompsafeError

ENV = "COMPSAFE_PLUGINS"


def plugin_modules(environ: Mapping[str, str] = os.environ) -> list[str]:
    return [m.strip() for m in environ.get(ENV, "").split(",") if m.strip()]


def load_plugins(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Import every module ``$COMPSAFE_PLUGINS`` names (once: Python caches modules); a
    module that cannot be imported is one error line naming it."""
    names = plugin_modules(environ)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise CompsafeError(f"${ENV}: cannot import plugin module {name!r}: {e}") from e
    return names

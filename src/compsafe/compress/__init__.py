"""Compression: pruning and quantization methods, layer by layer (``run.compress_model``).

Methods are registered in ``registry.py`` (compsafe's own in ``builtin.py``); a method of
your own is one ``register_method`` call (docs/extending.md).
"""

from compsafe.compress.registry import register_method, unregister_method

__all__ = ["register_method", "unregister_method"]

"""Command-line overrides of a sweep config: ``--set tasks.*.limit=5``.

A dotted key path into the parsed YAML; a number indexes a list, ``*`` means every element;
the value is parsed as YAML (``5`` is an integer, ``[0.5]`` a list, ``null`` None). The
overridden config is validated like the file itself, so a bad override is reported with
its key path. Shorthand entries (``tasks: [bbq]``, ``models: [default]``) are expanded to
mappings first, so ``tasks.*.limit`` reaches them too.

    raw = apply_overrides(normalize(raw), ["models.0.model=/tmp/tiny", "tasks.*.limit=5"])
"""

from __future__ import annotations

import copy

from compsafe.errors import CompsafeError

SHORTHAND = {"models": "model", "tasks": "task"}


def normalize(raw):
    """``tasks: [bbq]`` -> ``tasks: [{task: bbq}]`` (and the same for models)."""
    if not isinstance(raw, dict):
        return raw
    raw = copy.deepcopy(raw)
    for section, key in SHORTHAND.items():
        items = raw.get(section)
        if isinstance(items, list):
            raw[section] = [{key: x} if isinstance(x, str) else x for x in items]
    return raw


def apply_overrides(raw, overrides) -> dict:
    """``raw`` with each ``KEY.PATH=VALUE`` applied in order (a new object)."""
    import yaml

    if not overrides:
        return raw
    if not isinstance(raw, dict):
        raise CompsafeError(f"(top level): expected a mapping, got {raw!r}")
    raw = copy.deepcopy(raw)
    for text in overrides:
        path, sep, value_text = text.partition("=")
        if not sep or not path.strip():
            raise CompsafeError(f"override {text!r}: expected KEY.PATH=VALUE, "
                                "e.g. tasks.*.limit=5")
        try:
            value = yaml.safe_load(value_text)
        except yaml.YAMLError as e:
            raise CompsafeError(f"override {text!r}: value is not YAML: {e}") from None
        _set(raw, path.strip().split("."), value, text)
    return raw


def _set(node, parts: list[str], value, text: str, where: str = "") -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        if head == "*":
            targets = range(len(node))
        elif head.isdigit() and int(head) < len(node):
            targets = [int(head)]
        else:
            raise CompsafeError(f"override {text!r}: {where or 'top level'} is a list of "
                                f"{len(node)}; use an index below {len(node)} or '*'")
        for i in targets:
            if rest:
                _set(node[i], rest, value, text, f"{where}[{i}]")
            else:
                node[i] = value
        return
    if not isinstance(node, dict):
        raise CompsafeError(f"override {text!r}: {where} is {node!r}, not a mapping or list")
    if not rest:
        node[head] = value
        return
    if head not in node:  # a missing section, e.g. ray.eval.num_cpus on a config without ray
        node[head] = {}
    _set(node[head], rest, value, text, f"{where}.{head}" if where else head)

"""YAML for sweep configs, refusing duplicate keys.

PyYAML keeps the last of two equal keys silently: ``limit: 2`` followed by ``limit: 2000``
runs 2000 (issue 14). A config that says a thing twice is a mistake; this loader names the
key and both lines instead.

    raw = load_strict(text, path)
"""

from __future__ import annotations

from pathlib import Path

import yaml

from compsafe.errors import CompsafeError


class DuplicateKeyError(CompsafeError):
    """A YAML mapping with the same key twice."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader whose mappings refuse a key they already hold."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    # Only the keys written in this mapping count: keys merged in with "<<" may be
    # overridden, which is what merges are for.
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            if key in seen:
                raise DuplicateKeyError(f"{loader.name}:{line}: duplicate key {key!r} (first "
                                        f"at line {seen[key]}); give each key once")
            seen[key] = line
        except TypeError:  # an unhashable key: the default constructor reports it
            continue
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_strict(text: str, path: str | Path) -> object:
    """``yaml.safe_load`` of ``text`` (named ``path`` in errors), refusing duplicate keys."""
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()

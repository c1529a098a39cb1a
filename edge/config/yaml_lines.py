"""YAML reading for configs: line numbers per key, duplicate keys, and bounds on hostile input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from edge.config.errors import Oversized


class LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers each mapping key's line (for error messages) and duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.key_lines: dict[int, dict[Any, int]] = {}
        self.duplicates: dict[int, list[tuple[Any, int]]] = {}


def _construct_map(loader: LineLoader, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
    data: dict[Any, Any] = {}
    yield data
    loader.flatten_mapping(node)
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
            ) from None
        if key in data:
            loader.duplicates.setdefault(id(data), []).append((key, key_node.start_mark.line + 1))
        data[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    loader.key_lines[id(data)] = lines


LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)

# An integer longer than this is no setting; it becomes an Oversized value that fails validation
# under its key (Python itself refuses int() of more than 4,300 digits, with no key or line).
_MAX_INT_CHARS = 64


def _construct_int(loader: LineLoader, node: yaml.ScalarNode) -> Any:
    text = str(node.value)
    if len(text) > _MAX_INT_CHARS:
        return Oversized(sum(c.isdigit() for c in text))
    return yaml.SafeLoader.construct_yaml_int(loader, node)


LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)

# A config is a few kilobytes; these bounds keep a hostile or broken file from costing minutes
# or gigabytes before it is refused.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 100_000  # values in the document with every alias expanded


def expanded_size(root: yaml.Node) -> int:
    """How many values the document holds with aliases expanded (an alias bomb's true size),
    counted without expanding anything: each distinct node is visited once."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes and not children_done:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        kids: list[yaml.Node] = (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        )
        if children_done:
            sizes[key] = min(1 + sum(sizes.get(id(k), 0) for k in kids), MAX_CONFIG_NODES + 1)
        else:
            sizes[key] = 0  # in progress: a node that contains itself counts once
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(root)]


# --------------------------------------------------------------------------- entry points

"""How deeply nested the JSON a client sends may be.

orjson parses any depth but encodes at most 254 levels, and much of what a
client sends is encoded again (a broadcast, a retained layout, a stored
inbox item, an action's forward): a payload deeper than that would fail
later, in a handler, with a traceback.  Every inbound payload (Socket.IO
packets, HTTP API bodies, JSON carried in a string by seed vocabularies) is
held to :data:`MAX_DEPTH` where it is decoded, and refused there with a
clear error.  Depth counts every array and object, the outermost included:
``[]`` is 1, a Socket.IO event ``["name", {"a": []}]`` is 3.
"""

from __future__ import annotations

from typing import Any

import orjson

#: The deepest JSON accepted from a client (well below orjson's 254 for re-encoding).
MAX_DEPTH = 64


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (decoded JSON) nests arrays and objects deeper than ``limit``.

    Iterative, so any depth is measured without recursion.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def too_deep(text: str | bytes, value: Any, limit: int = MAX_DEPTH) -> bool:
    """``depth_exceeds`` for ``value`` decoded from ``text``, cheaply: a text
    with no more brackets than ``limit`` cannot nest deeper (the usual case,
    two C-speed counts), so only a text with many brackets is walked."""
    if isinstance(text, str):
        brackets = text.count("[") + text.count("{")
    else:
        brackets = text.count(b"[") + text.count(b"{")
    return brackets > limit and depth_exceeds(value, limit)


def too_deep_message(limit: int = MAX_DEPTH) -> str:
    return f"the payload nests arrays and objects deeper than {limit} levels"


class TooDeep(ValueError):
    """JSON nested deeper than allowed.  ``value`` is what it decoded to,
    None when it was deeper than the parser goes."""

    def __init__(self, limit: int = MAX_DEPTH, value: Any = None) -> None:
        super().__init__(too_deep_message(limit))
        self.value = value


def loads(text: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """``orjson.loads`` held to ``limit``: raises :class:`TooDeep`, or
    ``orjson.JSONDecodeError`` for what is not JSON at all.

    orjson itself refuses to parse past 1,024 levels; that is reported as
    too deep too, not as invalid JSON.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "ecursion" in str(exc):
            raise TooDeep(limit) from None
        raise
    if too_deep(text, value, limit):
        raise TooDeep(limit, value)
    return value

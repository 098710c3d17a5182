"""Strict structuring with cattrs, and one readable line per problem.

Shared by config.toml loading and the HTTP API's request bodies: a value of
the wrong type is refused rather than coerced (``"3000"`` is not an int), an
unknown key is an error, and every problem is reported as ``path: message``.
"""

from __future__ import annotations

import re
from typing import Any, get_args, get_origin

import attrs
import cattrs


def _strict(kind: type) -> Any:
    """A structure hook that refuses what TOML would not have typed as ``kind``."""

    def structure(value: Any, _: type) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return structure


def _homogeneous_tuple(kind: Any) -> bool:
    args = get_args(kind)
    return get_origin(kind) is tuple and len(args) == 2 and args[1] is Ellipsis


def _tuple_hook(conv: cattrs.Converter) -> Any:
    """``tuple[X, ...]`` from an array only: a string or table would otherwise be
    split into its characters or keys."""

    def factory(kind: Any) -> Any:
        item_kind = get_args(kind)[0]

        def structure(value: Any, _: Any) -> tuple[Any, ...]:
            if not isinstance(value, list | tuple):
                raise TypeError(f"expected array, got {type(value).__name__}")
            items, errors = [], []
            for index, item in enumerate(value):
                try:
                    items.append(conv.structure(item, item_kind))
                except Exception as exc:  # noqa: BLE001 -- any structuring error is collected and reported, as cattrs does
                    exc.__notes__ = [cattrs.IterableValidationNote(f"Structuring {kind} @ index {index}", index, item_kind)]
                    errors.append(exc)
            if errors:
                raise cattrs.IterableValidationError(f"While structuring {kind!r}", errors, kind)
            return tuple(items)

        return structure

    return factory


def strict_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind in (int, float, str, bool):
        conv.register_structure_hook(kind, _strict(kind))
    conv.register_structure_hook_factory(_homogeneous_tuple, _tuple_hook(conv))
    return conv


def _format(exc: BaseException, kind: type | None) -> str:
    # attrs validators raise ValueError(message, attribute, ...): keep the
    # attribute's name so the reported path ends with it.
    if len(exc.args) > 1 and isinstance(exc.args[1], attrs.Attribute):
        return f"{exc.args[1].name}\0{exc.args[0]}"
    if isinstance(exc, (ValueError, TypeError)) and exc.args:
        return str(exc)
    return cattrs.v.format_exception(exc, kind)


#: attrs' number and choice validators name the field first: "'port' must be ...".
_NAMED = re.compile(r"'(\w+)' must")


def describe(exc: cattrs.BaseValidationError, root: str = "config") -> list[str]:
    """One ``path: message`` line per problem; ``root`` names the top level."""
    problems = []
    for line in cattrs.transform_error(exc, path="$", format_exception=_format):
        message, _, where = line.rpartition(" @ ")
        where = where.removeprefix("$").removeprefix(".")
        if "\0" in message:
            name, message = message.split("\0", 1)
        else:
            named = _NAMED.match(message)
            name = named.group(1) if named else ""
        if name:
            where = f"{where}.{name}" if where else name
        problems.append(f"{where or root}: {message}")
    return problems

"""Request and response values passed between the HTTP front and its routes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs
import orjson


@attrs.frozen(slots=True)
class Request:
    method: str
    target: str
    path: str
    #: First value of each query parameter.
    query: Mapping[str, str]
    #: Lower-cased header names; repeated headers joined with ", ".
    headers: Mapping[str, str]
    remote: str
    body: bytes = b""

    @classmethod
    def from_head(
        cls, method: bytes, target: bytes, raw_headers: Iterable[tuple[bytes, bytes]], remote: str
    ) -> Request:
        text_target = target.decode("latin-1")
        if text_target[:1] == "/" and text_target[1:2] != "/" and "#" not in text_target:
            # The usual origin-form target: no URL parser needed (every poll has one).
            path, _, query_string = text_target.partition("?")
        else:
            parts = urlsplit(text_target)
            path, query_string = parts.path, parts.query
        query: dict[str, str] = {}
        if "%" in query_string or "+" in query_string:
            pairs = parse_qsl(query_string, keep_blank_values=True)
        else:
            pairs = [pair.partition("=")[::2] for pair in query_string.split("&") if pair]
        for key, value in pairs:
            query.setdefault(key, value)
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            key = name.decode("latin-1")  # h11 gives names lower-cased
            val = value.decode("latin-1")
            sep = "; " if key == "cookie" else ", "
            headers[key] = f"{headers[key]}{sep}{val}" if key in headers else val
        return cls(method.decode("ascii"), text_target, path, query, headers, remote)

    def is_websocket_upgrade(self) -> bool:
        return (
            self.method == "GET"
            and self.headers.get("upgrade", "").lower() == "websocket"
            and "upgrade" in self.headers.get("connection", "").lower()
        )


@attrs.frozen(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, orjson.dumps(payload), tuple(headers))


def error_response(status: int, code: str | int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """The machine-readable error every route answers a caller's mistake with."""
    return json_response(status, {"code": code, "message": message}, headers)

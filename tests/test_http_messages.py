"""Request.from_head parses targets and headers as urllib and HTTP say
(its fast path for the usual origin-form target must not differ)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtserver.http.messages import Request


def reference(target: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(key, value)
    return parts.path, query


@pytest.mark.parametrize(
    "target",
    [
        "/socket.io/?EIO=4&transport=polling&t=PabcD&sid=x_y-z",
        "/a?b&c=&d=1&d=2",
        "/p",
        "/p?",
        "/p?&&a=1",
        "/p?a=1=2",
        "/p?a=%20b&c=d+e",
        "http://host/x?y=1",
        "/x?y=1#fragment",
        "/x?=v&k",
    ],
)
def test_target_parsed_as_urllib_does(target: str) -> None:
    request = Request.from_head(b"GET", target.encode(), [], "peer")
    assert (request.path, dict(request.query)) == reference(target)


@given(st.text(alphabet="/?&=#%+ab1_-.~ ", max_size=40))
def test_any_target_parsed_as_urllib_does(tail: str) -> None:
    target = "/" + tail
    request = Request.from_head(b"GET", target.encode("latin-1"), [], "peer")
    assert (request.path, dict(request.query)) == reference(target)


def test_repeated_headers_are_joined() -> None:
    request = Request.from_head(
        b"GET",
        b"/",
        [(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"accept", b"text/html"), (b"accept", b"*/*")],
        "peer",
    )
    assert request.headers == {"cookie": "a=1; b=2", "accept": "text/html, */*"}

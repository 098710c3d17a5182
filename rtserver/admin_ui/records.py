"""What the admin UI is told, as plain values (sans-IO).

A socket's record follows the reference server's serialization (the fields
the UI reads: ``id``, ``clientId``, ``transport``, ``nsp``, ``data``,
``handshake`` and ``rooms``) with what a viewer must never see left out: the
handshake's ``auth`` payload (where tokens and the UI's own password travel)
is not sent at all, the token query parameters are dropped from ``query`` and
``url``, and the headers that carry credentials are dropped.  The client id
is a digest of the Engine.IO session id, never the id itself (which would let
a viewer speak for a long-polling client).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

import attrs
import orjson

from ..http.messages import Request

#: Request headers that carry credentials; never shown.
HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
#: What a value that cannot be shown as JSON is replaced with, cut to this length.
_REPR_LIMIT = 200


def client_id(engine_sid: str) -> str:
    """Groups a client's sockets in the UI without revealing its session id."""
    return hashlib.blake2b(engine_sid.encode(), digest_size=6).hexdigest()


def js_date(seconds: float) -> str:
    """A time as JavaScript's ``Date.prototype.toString`` writes it, in UTC
    (the reference's ``handshake.time``)."""
    return time.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", time.gmtime(seconds))


def json_safe(value: Any) -> Any:
    """``value`` as the JSON the UI can show: what JSON cannot hold (sets,
    objects, bytes in application data) becomes its ``repr``."""
    try:
        return orjson.loads(orjson.dumps(value, default=lambda v: repr(v)[:_REPR_LIMIT], option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, nesting too deep
        return repr(value)[:_REPR_LIMIT]


def _without(target: str, hidden: frozenset[str]) -> str:
    """The request target with the ``hidden`` query parameters taken out."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    kept = [pair for pair in query.split("&") if pair and unquote_plus(pair.partition("=")[0]) not in hidden]
    return f"{path}?{'&'.join(kept)}" if kept else path


def handshake(request: Request, opened_at: float, secure: bool, hidden_query: frozenset[str]) -> dict[str, Any]:
    """The opening request as the reference describes it; ``opened_at`` in
    seconds since the epoch."""
    headers = {name: value for name, value in request.headers.items() if name not in HIDDEN_HEADERS}
    host, _, _ = request.remote.rpartition(":")
    return {
        "address": headers.get("cf-connecting-ip") or headers.get("x-forwarded-for") or host or request.remote,
        "headers": headers,
        "query": {name: value for name, value in request.query.items() if name not in hidden_query},
        "issued": int(opened_at * 1000),
        "secure": secure,
        "time": js_date(opened_at),
        "url": _without(request.target, hidden_query),
        "xdomain": "origin" in request.headers,
    }


def socket_record(
    sid: str,
    namespace: str,
    engine_sid: str,
    transport: str,
    rooms: Iterable[str],
    data: Mapping[str, Any],
    handshake: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": sid,
        "clientId": client_id(engine_sid),
        "transport": transport,
        "nsp": namespace,
        "data": json_safe(data),
        "handshake": handshake,
        # The socket's own room first, as the reference lists it.
        "rooms": [sid, *sorted(room for room in rooms if room != sid)],
    }


@attrs.frozen
class Counters:
    """Running totals read from the server's statistics at one moment."""

    #: Engine.IO sessions opened since start, and open now.
    opened: int
    open_now: int
    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int


def aggregated_events(before: Counters, now: Counters, timestamp_ms: int) -> list[dict[str, Any]]:
    """The UI's ``aggregatedEvents`` for the period between two readings:
    connections, disconnections, packets and bytes in and out (those that
    happened), all stamped ``timestamp_ms`` (the UI sums them in 10 s bars)."""
    opened = now.opened - before.opened
    counts = {
        "rawConnection": opened,
        # Every session open now was open before or opened since: the rest closed.
        "rawDisconnection": opened - (now.open_now - before.open_now),
        "packetsIn": now.packets_in - before.packets_in,
        "packetsOut": now.packets_out - before.packets_out,
        "bytesIn": now.bytes_in - before.bytes_in,
        "bytesOut": now.bytes_out - before.bytes_out,
    }
    second = timestamp_ms - timestamp_ms % 1000
    return [{"timestamp": second, "type": kind, "count": count} for kind, count in counts.items() if count > 0]

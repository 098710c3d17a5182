"""Publishing routes: emit, batch emit, server-side join/leave/disconnect.

Targets are named the way the seed applications think of them; each maps to
a room: ``room``/``rooms`` as given, ``user`` -> ``user:{u}``, ``device`` ->
``device:{d}``, ``tenant`` -> ``tenant:{t}``.  Several may be combined (the
union is reached).  A request with no target is refused unless it says
``"broadcast": true``, so a forgotten field never reaches every tenant.
"""

from __future__ import annotations

from typing import Any

import attrs
from cattrs.gen import make_dict_structure_fn, override

from ..http.messages import Response
from ..retention import StoreFailed
from ..socketio.packets import check_event_name
from ..socketio.server import SocketIOServer
from .common import CONVERTER, ApiError, Call, ok, parse_body

_MAX_BATCH = 1000


@attrs.frozen
class Target:
    namespace: str = "/"
    room: str | None = None
    rooms: tuple[str, ...] = ()
    user: str | None = None
    device: str | None = None
    tenant: str | None = None
    broadcast: bool = False
    #: Rooms or socket ids left out.
    except_: tuple[str, ...] = ()

    def resolve(self, sio: SocketIOServer) -> list[str] | None:
        """The rooms aimed at (None: the whole namespace), or ApiError."""
        if not sio.namespace_allowed(self.namespace):
            raise ApiError(400, "unknown_namespace", f"namespace: {self.namespace!r} is not served")
        rooms = list(self.rooms)
        if self.room is not None:
            rooms.append(self.room)
        if self.user is not None:
            rooms.append(f"user:{self.user}")
        if self.device is not None:
            rooms.append(f"device:{self.device}")
        if self.tenant is not None:
            rooms.append(f"tenant:{self.tenant}")
        if any(not r for r in rooms):
            raise ApiError(400, "invalid_body", "rooms: a room name may not be empty")
        if rooms:
            return rooms
        if self.broadcast:
            return None
        raise ApiError(400, "invalid_body", "give a target: room, rooms, user, device or tenant (or broadcast: true)")


def _emittable(_: Any, __: Any, event: str) -> None:
    check_event_name(event)  # ValueError: a reserved name


@attrs.frozen
class EmitRequest(Target):
    event: str = attrs.field(default="", validator=[attrs.validators.min_len(1), _emittable])
    data: Any = None
    #: Several event arguments instead of the single ``data``.
    args: tuple[Any, ...] | None = None
    volatile: bool = False

    def arguments(self) -> tuple[Any, ...]:
        if self.args is not None:
            return tuple(self.args)
        return () if self.data is None else (self.data,)


@attrs.frozen
class BatchRequest:
    messages: tuple[EmitRequest, ...] = attrs.field(validator=attrs.validators.max_len(_MAX_BATCH))


@attrs.frozen
class RoomsRequest(Target):
    join: tuple[str, ...] = ()
    leave: tuple[str, ...] = ()


@attrs.frozen
class DisconnectRequest(Target):
    #: True: drop the transport so clients reconnect; False: a protocol
    #: disconnect, after which stock clients stay away.
    reconnect: bool = False


def _register(kind: type) -> None:
    # "except" is a Python keyword: the JSON key maps to the field except_.
    CONVERTER.register_structure_hook(
        kind,
        make_dict_structure_fn(kind, CONVERTER, _cattrs_forbid_extra_keys=True, except_=override(rename="except")),
    )


for _kind in (EmitRequest, RoomsRequest, DisconnectRequest):
    _register(_kind)


class PublishRoutes:
    def __init__(self, sio: SocketIOServer) -> None:
        self._sio = sio

    def _emit(self, body: EmitRequest) -> int:
        rooms = body.resolve(self._sio)
        return self._sio.emit(
            body.event, *body.arguments(), to=rooms, namespace=body.namespace, skip=body.except_, volatile=body.volatile
        )

    async def emit(self, call: Call) -> Response:
        body: EmitRequest = parse_body(call.request, EmitRequest)
        delivered = self._emit(body)
        await self._kept(body)
        return ok({"delivered": delivered})

    async def _kept(self, *bodies: EmitRequest) -> None:
        """Answer only once retained events are in the store ([retention])."""
        retention = self._sio.retention
        if retention is not None and any(retention.retains(b.event) for b in bodies):
            try:
                await retention.flushed()
            except StoreFailed as exc:
                raise ApiError(503, "store_unavailable", f"{exc}; the event was delivered to connected sockets only") from None

    async def batch(self, call: Call) -> Response:
        body: BatchRequest = parse_body(call.request, BatchRequest)
        for index, message in enumerate(body.messages):
            try:
                message.resolve(self._sio)
            except ApiError as exc:
                raise ApiError(exc.status, exc.code, f"messages[{index}]: {exc.message}") from None
        results = [{"delivered": self._emit(m)} for m in body.messages]
        await self._kept(*body.messages)
        return ok({"results": results})

    async def _matched(self, body: Target) -> tuple[list[str] | None, dict[str, Any]]:
        """The rooms aimed at, and how many sockets of every node they match
        now: ``{"sockets": n}``, with ``"complete": false`` when a node did
        not answer in time (its sockets are not counted, but still acted on)."""
        rooms = body.resolve(self._sio)
        found, complete = await self._sio.fetch_sockets(body.namespace, rooms, body.except_)
        return rooms, {"sockets": len(found), **({} if complete else {"complete": False})}

    async def rooms(self, call: Call) -> Response:
        body: RoomsRequest = parse_body(call.request, RoomsRequest)
        if not body.join and not body.leave:
            raise ApiError(400, "invalid_body", "give join and/or leave: lists of room names")
        rooms, counted = await self._matched(body)
        self._sio.move_sockets(body.namespace, rooms, body.except_, list(body.join), list(body.leave))
        return ok(counted)

    async def disconnect(self, call: Call) -> Response:
        body: DisconnectRequest = parse_body(call.request, DisconnectRequest)
        rooms, counted = await self._matched(body)
        self._sio.disconnect_sockets(body.namespace, rooms, body.except_, close=body.reconnect)
        counted["disconnected"] = counted.pop("sockets")
        return ok(counted)

"""The cluster bus: broadcasts and cross-node requests over Redis, in the
protocol of ``@socket.io/redis-adapter`` 8 (see :mod:`.wire`), so rtserver
nodes, Node.js socket.io servers with that adapter and back ends with
``@socket.io/redis-emitter`` make one server.

The bus sits beside the hub.  Going out: :meth:`RedisBus.broadcast` encodes
an emit once and queues it (never waits); the requests
(:meth:`fetch`, :meth:`sockets_join`, ...) are the reference's.  Coming in:
a broadcast for this node is handed to the :class:`Receiver` (the Socket.IO
server, which numbers it for recovery and fans it out through the hub);
requests act on the hub's members; rtserver's own requests
(:attr:`commands`, e.g. revocation) go to the handler an upper layer
registered.  One request/answer machine serves every kind of request: ask,
count the other nodes subscribed (PUBSUB NUMSUB), wait for that many
answers or ``request_timeout``.

A message that is not what the protocol allows is counted by kind, logged
once per kind and dropped; nothing on a channel can end the node.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..config import ClusterConfig
from ..hub import Hub, Member
from . import wire
from .link import ClusterSetupError, LinkDown, RedisLink, redacted
from .wire import Malformed, RequestType

log = logging.getLogger("rtserver.cluster")

_UID_ALPHABET = string.ascii_letters + string.digits


class Receiver(Protocol):
    """What the bus hands to the layer above (the Socket.IO server)."""

    def remote_broadcast(
        self, namespace: str, data: list[Any], rooms: list[str] | None, exclude: list[str], volatile: bool
    ) -> None: ...

    def remote_broadcast_with_ack(
        self,
        namespace: str,
        data: list[Any],
        rooms: list[str] | None,
        exclude: list[str],
        timeout: float,
        on_count: Callable[[int], None],
        on_ack: Callable[[Any], None],
    ) -> None: ...

    def server_side_event(self, namespace: str, data: list[Any], reply: Callable[[Any], None] | None) -> bool: ...


#: An rtserver-only request's handler: the request object in, the answer's fields out.
Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class _Pending:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.answers: list[dict[str, Any]] = []
        self.done = trio.Event()

    def add(self, answer: dict[str, Any]) -> None:
        self.answers.append(answer)
        if len(self.answers) >= self.expected:
            self.done.set()


def _opts(rooms: Iterable[str] | None, exclude: Iterable[str]) -> dict[str, list[str]]:
    return {"rooms": list(rooms or ()), "except": list(exclude)}


class RedisBus:
    def __init__(
        self, config: ClusterConfig, hub: Hub, namespaces: Iterable[str], limit: int, faults: Counter[str] | None = None
    ) -> None:
        self.uid = config.node_id or "".join(secrets.choice(_UID_ALPHABET) for _ in range(8))
        self.channels = wire.Channels(config.prefix, self.uid)
        self.timeout = config.request_timeout
        self.hub = hub
        #: Largest message sent or accepted, in bytes.
        self.limit = limit
        self.receiver: Receiver | None = None
        #: rtserver-only request name -> handler (registered by upper layers).
        self.commands: dict[str, Command] = {}
        self.namespaces = frozenset(namespaces)
        channels, patterns = self.channels.subscriptions(sorted(self.namespaces))
        self._by_pattern = {p.encode(): ns for p, ns in zip(patterns, sorted(self.namespaces), strict=True)}
        self._by_channel: dict[bytes, tuple[Callable[[str, bytes], None], str]] = {
            self.channels.own.encode(): (self._on_command, ""),
            self.channels.node(self.uid).encode(): (self._on_answer, ""),
        }
        for ns in self.namespaces:
            self._by_channel[self.channels.request(ns).encode()] = (self._on_request, ns)
            self._by_channel[self.channels.response(ns).encode()] = (self._on_answer, ns)
            self._by_channel[self.channels.response(ns, self.uid).encode()] = (self._on_answer, ns)
        self.link = RedisLink(config.redis_url, channels, patterns, self._on_message, faults)
        #: Our own broadcasts start with these bytes: skipped without decoding.
        self._own_prefix = b"\x93" + wire.pack(self.uid)
        self._pending: dict[str, _Pending] = {}
        self._nursery: trio.Nursery | None = None
        self.malformed: Counter[str] = Counter()
        self._warned: set[str] = set()
        #: Broadcasts for a room no socket here is in (dropped before decoding).
        self.skipped = 0
        self._handlers: dict[RequestType, Callable[[str, dict[str, Any]], None]] = {
            RequestType.SOCKETS: self._sockets,
            RequestType.ALL_ROOMS: self._all_rooms,
            RequestType.REMOTE_JOIN: self._remote_join,
            RequestType.REMOTE_LEAVE: self._remote_leave,
            RequestType.REMOTE_DISCONNECT: self._remote_disconnect,
            RequestType.REMOTE_FETCH: self._remote_fetch,
            RequestType.SERVER_SIDE_EMIT: self._server_side_emit,
            RequestType.BROADCAST: self._broadcast_with_ack,
        }

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Connect (or start degraded) and serve until cancelled.  Another
        node already answering to this ``node_id`` is a start-up error: the
        two would ignore each other's broadcasts as their own."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.link.run)
            try:
                namesakes = await self.link.numsub(self.channels.node(self.uid))
            except LinkDown:
                namesakes = 1  # not connected yet: nothing to compare with
            if namesakes > 1:
                raise ClusterSetupError(f"cluster.node_id {self.uid!r} is already used by another node on this Redis")
            task_status.started()

    def listen(self, channel: str, handler: Callable[[bytes], None]) -> None:
        """Subscribe ``channel`` for an upper layer (before :meth:`run`); a
        malformed message there is counted like any other."""
        self.link.subscribe(channel)
        self._by_channel[channel.encode()] = (lambda namespace, payload: handler(payload), "")

    def health(self) -> dict[str, Any]:
        link = self.link
        state: dict[str, Any] = {"node": self.uid, "redis": "up" if link.up else "down", "url": redacted(link.url)}
        if not link.up:
            state["error"] = link.error
            state["dropped"] = sum(link.dropped.values())
        return state

    # -------------------------------------------------------------- going out
    def broadcast(
        self, namespace: str, data: list[Any], rooms: list[str] | None, exclude: Iterable[str], volatile: bool
    ) -> None:
        """Send an emit to the other nodes (encoded once; never waits)."""
        room = None
        if rooms is not None and len(rooms) == 1:
            room = rooms[0]
            if self.hub.member(namespace, room) is not None:
                return  # a socket of this node, by its sid: nobody else has it
        try:
            payload = wire.broadcast_message(self.uid, namespace, data, rooms, exclude, volatile)
        except (TypeError, ValueError, OverflowError) as exc:
            self._drop("unencodable", exc)
            return
        if len(payload) > self.limit:
            self._drop("too large", f"{len(payload)} bytes")
            return
        self.link.publish(self.channels.broadcast(namespace, room), payload)

    def _drop(self, reason: str, detail: Any) -> None:
        self.link.dropped[reason] += 1
        self._warn_once(f"dropped:{reason}", f"a cross-node message was not sent ({reason})", detail)

    def _request(self, namespace: str, message: dict[str, Any]) -> None:
        """A request nobody answers (the reference's socketsJoin, ...)."""
        self.link.publish(self.channels.request(namespace), wire.pack({"uid": self.uid, **message}))

    def sockets_join(self, namespace: str, rooms: list[str] | None, exclude: Iterable[str], join: list[str]) -> None:
        self._request(namespace, {"type": RequestType.REMOTE_JOIN.value, "opts": _opts(rooms, exclude), "rooms": join})

    def sockets_leave(self, namespace: str, rooms: list[str] | None, exclude: Iterable[str], leave: list[str]) -> None:
        self._request(namespace, {"type": RequestType.REMOTE_LEAVE.value, "opts": _opts(rooms, exclude), "rooms": leave})

    def disconnect_sockets(self, namespace: str, rooms: list[str] | None, exclude: Iterable[str], close: bool) -> None:
        self._request(namespace, {"type": RequestType.REMOTE_DISCONNECT.value, "opts": _opts(rooms, exclude), "close": close})

    def server_side_emit(self, namespace: str, data: list[Any]) -> None:
        self._request(namespace, {"type": RequestType.SERVER_SIDE_EMIT.value, "data": data})

    async def _ask(self, channel: str, counted: str, message: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """Publish a request and collect one answer from each other
        subscriber of ``counted``: (answers, whether all came in time)."""
        try:
            others = await self.link.numsub(counted) - 1
        except LinkDown:
            return [], False
        if others <= 0:
            return [], True
        request_id = secrets.token_hex(8)
        pending = self._pending[request_id] = _Pending(others)
        try:
            if self.link.publish(channel, wire.pack({"uid": self.uid, "requestId": request_id, **message})):
                with trio.move_on_after(self.timeout):
                    await pending.done.wait()
        finally:
            del self._pending[request_id]
        complete = pending.done.is_set()
        if not complete:
            log.warning(
                "cluster request timed out",
                extra={"fields": {"type": str(message.get("type")), "answers": len(pending.answers), "expected": others}},
            )
        return pending.answers, complete

    async def fetch(
        self, namespace: str, rooms: list[str] | None, exclude: Iterable[str]
    ) -> tuple[list[dict[str, Any]], bool]:
        """The other nodes' sockets matching rooms/except: their descriptions
        (``id``, ``rooms``, ``handshake``, ``data``; rtserver adds
        ``identity`` and ``node``), and whether every node answered."""
        message = {"type": RequestType.REMOTE_FETCH.value, "opts": _opts(rooms, exclude)}
        answers, complete = await self._ask(self.channels.request(namespace), self.channels.request(namespace), message)
        sockets = []
        for answer in answers:
            listed = answer.get("sockets")
            if isinstance(listed, list):
                sockets += [s for s in listed if isinstance(s, dict) and isinstance(s.get("id"), str)]
        return sockets, complete

    async def server_side_emit_with_ack(self, namespace: str, data: list[Any]) -> tuple[list[Any], bool]:
        """Each other node's answer to a server-side event, and whether all answered."""
        channel = self.channels.request(namespace)
        answers, complete = await self._ask(channel, channel, {"type": RequestType.SERVER_SIDE_EMIT.value, "data": data})
        return [answer.get("data") for answer in answers], complete

    async def command(self, name: str, fields: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """An rtserver-only request to every other rtserver node."""
        own = self.channels.own
        return await self._ask(own, own, {**fields, "type": name})

    # ------------------------------------------------------------- coming in
    def _on_message(self, pattern: bytes | None, channel: bytes, payload: bytes) -> None:
        try:
            if pattern is not None:
                namespace = self._by_pattern.get(pattern)
                if namespace is None:
                    raise Malformed("foreign channel", pattern.decode("utf-8", "replace")[:120])
                self._on_broadcast(namespace, channel.decode("utf-8", "replace"), payload)
                return
            route = self._by_channel.get(channel)
            if route is None:
                raise Malformed("foreign channel", channel.decode("utf-8", "replace")[:120])
            handler, namespace = route
            handler(namespace, payload)
        except Malformed as exc:
            self._count(exc.kind, exc)
        except Exception as exc:  # noqa: BLE001 -- whatever a message holds, it must not end the node
            self._count("unprocessable", exc)

    def _count(self, kind: str, detail: Any) -> None:
        self.malformed[kind] += 1
        self._warn_once(kind, "ignored a malformed cluster message (further ones of this kind are only counted)", detail)

    def _warn_once(self, key: str, message: str, detail: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, extra={"fields": {"kind": key, "detail": str(detail)[:200]}})

    def _on_broadcast(self, namespace: str, channel: str, payload: bytes) -> None:
        room = self.channels.room_of(namespace, channel)
        if room is not None and not self.hub.has_room(namespace, room):
            self.skipped += 1  # as the reference does: nobody here is in that room
            return
        if payload.startswith(self._own_prefix):
            return
        message = wire.parse_broadcast(wire.decode(payload, self.limit))
        if message.uid == self.uid:
            return
        if message.namespace != namespace:
            raise Malformed("namespace mismatch", f"{message.namespace!r} on {channel!r}")
        if self.receiver is not None:
            self.receiver.remote_broadcast(namespace, message.data, message.rooms, message.exclude, message.volatile)

    def _on_request(self, namespace: str, payload: bytes) -> None:
        kind, request = wire.parse_request(wire.decode(payload, self.limit))
        if request.get("uid") == self.uid:
            return
        handler = self._handlers.get(kind) if isinstance(kind, RequestType) else None
        if handler is None:
            raise Malformed("unexpected request", str(kind))
        handler(namespace, request)

    def _on_answer(self, namespace: str, payload: bytes) -> None:
        request_id, answer = wire.parse_answer(wire.decode(payload, self.limit))
        pending = self._pending.get(request_id)
        if pending is not None:  # otherwise another node's request: not ours to read
            pending.add(answer)

    def _on_command(self, namespace: str, payload: bytes) -> None:
        kind, request = wire.parse_request(wire.decode(payload, self.limit))
        uid, request_id = request.get("uid"), request.get("requestId")
        if uid == self.uid:
            return
        handler = self.commands.get(kind) if isinstance(kind, str) else None
        if handler is None or not isinstance(uid, str) or not isinstance(request_id, str):
            raise Malformed("unknown command", str(kind)[:40])
        assert self._nursery is not None
        self._nursery.start_soon(self._run_command, handler, request, uid, request_id)

    async def _run_command(self, handler: Command, request: dict[str, Any], uid: str, request_id: str) -> None:
        try:
            fields = await handler(request)
        except Exception as exc:  # noqa: BLE001 -- a bad request is counted, never fatal
            self._count("failed command", exc)
            return
        self.link.publish(self.channels.node(uid), wire.pack({**fields, "requestId": request_id}))

    # -------------------------------------------------- the reference's requests
    def _answer(self, namespace: str, request: dict[str, Any], body: dict[str, Any]) -> None:
        request_id = request.get("requestId")
        if not isinstance(request_id, str):
            raise Malformed("bad request", "no requestId to answer")
        uid = request.get("uid")
        channel = self.channels.response(namespace, uid if isinstance(uid, str) else None)
        self.link.publish(channel, wire.pack({**body, "requestId": request_id}))

    def _targets(self, namespace: str, request: dict[str, Any]) -> list[Member]:
        rooms, exclude, _ = wire.parse_options(request.get("opts"))
        return list(self.hub.members(namespace, rooms, exclude))

    def _one(self, namespace: str, request: dict[str, Any]) -> Member | None:
        sid = request.get("sid")
        return self.hub.member(namespace, sid) if isinstance(sid, str) else None

    def _sockets(self, namespace: str, request: dict[str, Any]) -> None:
        rooms = wire.parse_options({"rooms": request.get("rooms")})[0]
        self._answer(namespace, request, {"sockets": [m.sid for m in self.hub.members(namespace, rooms)]})

    def _all_rooms(self, namespace: str, request: dict[str, Any]) -> None:
        self._answer(namespace, request, {"rooms": list(self.hub.rooms(namespace))})

    def _rooms_of(self, request: dict[str, Any], field: str) -> list[str]:
        return wire.parse_options({"rooms": request.get(field)})[0] or []

    def _remote_join(self, namespace: str, request: dict[str, Any]) -> None:
        self._remote_rooms(namespace, request, lambda member, *rooms: member.join(*rooms))

    def _remote_leave(self, namespace: str, request: dict[str, Any]) -> None:
        self._remote_rooms(namespace, request, lambda member, *rooms: member.leave(*rooms))

    def _remote_rooms(self, namespace: str, request: dict[str, Any], act: Callable[..., None]) -> None:
        """socketsJoin/socketsLeave (``opts``, no answer), or the older form
        for one socket (``sid`` and ``room``, answered)."""
        if "opts" in request:
            rooms = self._rooms_of(request, "rooms")
            for member in self._targets(namespace, request):
                act(member, *rooms)
            return
        member = self._one(namespace, request)
        if member is not None and isinstance(request.get("room"), str):
            act(member, request["room"])
            self._answer(namespace, request, {})

    def _remote_disconnect(self, namespace: str, request: dict[str, Any]) -> None:
        close = request.get("close") is True
        if "opts" in request:
            members = self._targets(namespace, request)
        else:
            member = self._one(namespace, request)
            if member is None:
                return
            members = [member]
        for member in members:
            if close:
                member.close_connection("disconnected by another node")
            else:
                member.disconnect()
        if "opts" not in request:
            self._answer(namespace, request, {})

    def _remote_fetch(self, namespace: str, request: dict[str, Any]) -> None:
        sockets = [{**member.details(), "node": self.uid} for member in self._targets(namespace, request)]
        self._answer(namespace, request, {"sockets": sockets})

    def _server_side_emit(self, namespace: str, request: dict[str, Any]) -> None:
        data = request.get("data")
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise Malformed("bad request", "server-side emit data is [event, ...args]")
        reply = None
        request_id = request.get("requestId")
        if isinstance(request_id, str):

            def reply(value: Any) -> None:
                self._answer(namespace, request, {"type": RequestType.SERVER_SIDE_EMIT.value, "data": value})

        if self.receiver is not None:
            self.receiver.server_side_event(namespace, data, reply)

    def _broadcast_with_ack(self, namespace: str, request: dict[str, Any]) -> None:
        packet_namespace, data = wire.parse_packet(request.get("packet"))
        if packet_namespace != namespace:
            raise Malformed("namespace mismatch", packet_namespace)
        rooms, exclude, flags = wire.parse_options(request.get("opts"))
        timeout = flags.get("timeout")
        seconds = timeout / 1000 if isinstance(timeout, int | float) and 0 < timeout <= 3_600_000 else self.timeout
        if self.receiver is None:
            return

        def on_count(count: int) -> None:
            self._answer(namespace, request, {"type": RequestType.BROADCAST_CLIENT_COUNT.value, "clientCount": count})

        def on_ack(value: Any) -> None:
            self._answer(namespace, request, {"type": RequestType.BROADCAST_ACK.value, "packet": value})

        self.receiver.remote_broadcast_with_ack(namespace, data, rooms, exclude, seconds, on_count, on_ack)

    # ---------------------------------------------------------------- metrics
    def collector(self) -> Collector:
        return _Metrics(self)


class _Metrics(Collector):
    def __init__(self, bus: RedisBus) -> None:
        self._bus = bus

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        bus, link = self._bus, self._bus.link
        yield GaugeMetricFamily("rtserver_cluster_redis_up", "1 while this node's Redis link is up", value=int(link.up))
        yield CounterMetricFamily("rtserver_cluster_redis_outages", "Times the Redis link was lost", value=link.outages)
        yield CounterMetricFamily("rtserver_cluster_messages_published", "Messages this node sent to Redis", value=link.published)
        yield CounterMetricFamily("rtserver_cluster_messages_received", "Messages this node received from Redis", value=link.received)
        dropped = CounterMetricFamily(
            "rtserver_cluster_messages_dropped", "Cross-node messages not sent, by reason", labels=["reason"]
        )
        for reason in ("disconnected", "backlog", "failed write", "unencodable", "too large"):
            dropped.add_metric([reason], link.dropped[reason])
        yield dropped
        malformed = CounterMetricFamily(
            "rtserver_cluster_messages_malformed", "Messages from Redis ignored as malformed, by kind", labels=["kind"]
        )
        for kind, count in bus.malformed.items():
            malformed.add_metric([kind], count)
        yield malformed
        yield CounterMetricFamily(
            "rtserver_cluster_broadcasts_skipped", "Room broadcasts for rooms with no member on this node", value=bus.skipped
        )

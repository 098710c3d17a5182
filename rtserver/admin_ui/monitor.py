"""Tells the admin namespace what happens on this server.

Every ``stats_interval`` seconds: ``server_stats`` (server id, host name,
pid, uptime, clients, polling clients, sockets per namespace, and the
connections, disconnections, packets and bytes counted since the last one).
At an admin's connect: ``config`` (what the UI may do), and in development
mode ``all_sockets``.  In development mode also, as they happen:
``socket_connected``, ``socket_disconnected`` (followed by ``room_left`` for
each of its rooms, as the reference does), ``room_joined``, ``room_left``,
``event_received``, ``event_sent``, and ``socket_updated`` once a socket's
connection has upgraded to WebSocket (seen at the next stats tick).

The admin namespace's own sockets are listed like any other, in their own
namespace (as the reference lists them), but their events are never reported
as ``event_received``/``event_sent``.  Everything for the admins goes straight
to the hub: not through ``SocketIOServer.emit``, so it never reaches the
observers (no loop), connection state recovery or retention.
"""

from __future__ import annotations

import os
import socket as socket_module
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

import trio

from ..config import AdminUIConfig
from ..engineio.session import Session
from ..hub import Hub
from ..metrics import Stats
from ..presence import iso
from ..socketio.socket import Socket, event_frames
from . import records

#: Most ``event_sent`` messages one emit produces (one per recipient, as the
#: reference reports them), so a broadcast to thousands does not bury the UI.
MAX_SENT_PER_EMIT = 100


class Monitor:
    def __init__(
        self,
        config: AdminUIConfig,
        features: list[str],
        hub: Hub,
        stats: Stats,
        sessions: Callable[[], Collection[Session]],
        hidden_query: frozenset[str],
        secure: bool,
    ) -> None:
        self.namespace = config.namespace
        self.development = config.mode == "development"
        self._interval = config.stats_interval
        self._features = features
        self._hub = hub
        self._stats = stats
        self._sessions = sessions
        self._hidden_query = hidden_query
        self._secure = secure
        host = socket_module.gethostname()
        self._server = {"serverId": config.server_id or host, "hostname": host, "pid": os.getpid()}
        #: Connected admin sockets (nothing is encoded while there are none).
        self._admins: set[Socket] = set()
        #: Sockets last reported on long-polling (development mode).
        self._polling: set[Socket] = set()
        self._before = self._counters()

    # ------------------------------------------------------------ output
    def _tell(self, event: str, *args: Any) -> None:
        """To every admin socket (the reports check first that there is one:
        then nothing is built for nobody)."""
        if self._admins:
            self._hub.publish(self.namespace, event_frames(self.namespace, event, args))

    def _send(self, admin: Socket, event: str, *args: Any) -> None:
        admin.deliver(event_frames(self.namespace, event, args), False)

    def record(self, socket: Socket) -> dict[str, Any]:
        session = socket.client.session
        opened = time.time() - (time.monotonic() - session.opened_at)
        return records.socket_record(
            socket.sid,
            socket.namespace_name,
            session.sid,
            session.transport,
            socket.rooms,
            socket.data,
            records.handshake(session.request, opened, self._secure, self._hidden_query),
        )

    def _all_sockets(self) -> list[dict[str, Any]]:
        return [
            self.record(member)
            for namespace in self._hub.namespaces()
            for member in self._hub.members(namespace)
            if isinstance(member, Socket) and member.connected
        ]

    # -------------------------------------------------- socket listener
    def connected(self, socket: Socket) -> None:
        if socket.namespace_name == self.namespace:
            self._admins.add(socket)
            self._send(socket, "config", {"supportedFeatures": self._features})
            self._send(socket, "server_stats", self._server_stats([]))
            if self.development:
                self._send(socket, "all_sockets", self._all_sockets())
        if not self.development:
            return
        if socket.transport == "polling":
            self._polling.add(socket)
        if self._admins:
            self._tell("socket_connected", self.record(socket), iso(time.time()))

    def disconnected(self, socket: Socket, reason: str) -> None:
        self._admins.discard(socket)
        if not self.development:
            return
        self._polling.discard(socket)
        if not self._admins:
            return
        now = iso(time.time())
        self._tell("socket_disconnected", socket.namespace_name, socket.sid, reason, now)
        for room in socket.rooms:
            self._tell("room_left", socket.namespace_name, room, socket.sid, now)

    # --------------------------------------- observer (development mode)
    def joined(self, socket: Socket, room: str) -> None:
        # A connecting socket's rooms are in its socket_connected record.
        if self._admins and socket.connected:
            self._tell("room_joined", socket.namespace_name, room, socket.sid, iso(time.time()))

    def left(self, socket: Socket, room: str) -> None:
        if self._admins and socket.connected:
            self._tell("room_left", socket.namespace_name, room, socket.sid, iso(time.time()))

    def received(self, socket: Socket, event: str, args: list[Any]) -> None:
        if self._admins and socket.namespace_name != self.namespace:
            self._tell("event_received", socket.namespace_name, socket.sid, [event, *args], iso(time.time()))

    def sent(self, namespace: str, event: str, args: tuple[Any, ...], rooms: list[str] | None) -> None:
        if namespace == self.namespace or not self._admins:
            return
        now = iso(time.time())
        recipients: Iterable[Any] = self._hub.members(namespace, rooms)
        for count, member in enumerate(recipients):
            if count == MAX_SENT_PER_EMIT:
                break
            self._tell("event_sent", namespace, member.sid, [event, *args], now)

    # ------------------------------------------------------------ stats
    def _counters(self) -> records.Counters:
        stats = self._stats
        return records.Counters(
            opened=sum(stats.handshakes.values()),
            open_now=len(self._sessions()),
            packets_in=stats.messages_in,
            bytes_in=stats.bytes_in,
            packets_out=stats.messages_out,
            bytes_out=stats.bytes_out,
        )

    def _server_stats(self, aggregated: list[dict[str, Any]]) -> dict[str, Any]:
        sessions = self._sessions()
        return {
            **self._server,
            "uptime": time.time() - self._stats.started,
            "clientsCount": len(sessions),
            "pollingClientsCount": sum(1 for session in sessions if session.transport == "polling"),
            "aggregatedEvents": aggregated,
            "namespaces": [{"name": name, "socketsCount": count} for name, count in self._hub.namespaces().items()],
        }

    def tick(self) -> None:
        """One stats period is over: report it, and any upgrade since the last."""
        now = self._counters()
        aggregated = records.aggregated_events(self._before, now, int(time.time() * 1000))
        self._before = now
        for socket in [s for s in self._polling if s.transport != "polling"]:
            self._polling.discard(socket)
            self._tell("socket_updated", {"id": socket.sid, "nsp": socket.namespace_name, "transport": socket.transport})
        self._tell("server_stats", self._server_stats(aggregated))

    async def run(self) -> None:
        while True:
            await trio.sleep(self._interval)
            self.tick()

"""Socket.IO protocol v4: socket.io-client 2.x, over an Engine.IO v3 session.

The packets are those of v5 (``packets.py``); what differs is around
connecting, as the reference server does it for ``conn.protocol === 3``:

- The client sends no CONNECT for the root namespace: the server connects
  ``/`` as soon as the session opens (its auth payload is empty; the token
  comes from the handshake's query string, a header or a cookie, whichever
  ``auth.sources`` allows).  An explicit CONNECT for ``/`` is ignored.
- Another namespace's CONNECT carries the socket's ``query`` option in the
  namespace, ``0/chat?token=abc,``: that query becomes the auth payload.
- The CONNECT answer has no payload: the client makes up the socket's id
  itself, ``/chat#<engine sid>`` (the engine sid for ``/``), so the socket
  gets that id here too.
- A refusal is the protocol's ERROR packet (type 4, as CONNECT_ERROR) with
  the error's ``data`` (the message added to it when it is an object), or
  its message when it has none; the client emits ``error`` with it.
- No connection state recovery: no pid, and events arrive without offsets.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

import trio

from .client import Client
from .packets import Packet, PacketType
from .socket import Socket

log = logging.getLogger("rtserver.socketio")


class V2Client(Client):
    recovers = False

    def opened(self) -> None:
        super().opened()
        self._root_done = trio.Event()
        self.session.start_soon(self._connect_root)

    async def _connect_root(self) -> None:
        try:
            await super()._connect(Packet(PacketType.CONNECT, "/"))
        finally:
            self._root_done.set()

    async def message(self, data: str | bytes) -> None:
        # The client sends for "/" as soon as the session is open: its packets
        # wait for the implicit connect (else "/" would not be joined yet).
        if not self._root_done.is_set():
            await self._root_done.wait()
        await super().message(data)

    def _invalid_state(self, packet: Packet) -> None:
        if packet.type is PacketType.CONNECT and packet.namespace == "/":
            log.debug("CONNECT for / from a 2.x client ignored (connected on open)")
            return
        super()._invalid_state(packet)

    async def _connect(self, packet: Packet) -> None:
        if packet.namespace.partition("?")[0] == "/":
            log.debug("CONNECT for / from a 2.x client ignored (connected on open)")
            return
        await super()._connect(packet)

    def _target(self, packet: Packet) -> tuple[str, Any]:
        namespace, _, query = packet.namespace.partition("?")
        auth: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            auth.setdefault(key, value)  # the first of a repeated key, as in Request.query
        return namespace, auth

    def _new_socket(self, namespace: str, auth: Any) -> Socket:
        socket = super()._new_socket(namespace, auth)
        engine_sid = self.session.sid
        socket.sid = engine_sid if namespace == "/" else f"{namespace}#{engine_sid}"
        return socket

    def _connected(self, socket: Socket) -> Packet:
        return Packet(PacketType.CONNECT, socket.namespace_name)

    def _connect_error(self, namespace: str, payload: dict[str, Any]) -> Packet:
        data = payload.get("data")
        if isinstance(data, dict):
            data = {"message": payload["message"], **data}
        elif not isinstance(data, str | list):
            data = payload["message"]  # none, or nothing the 2.x client's parser takes
        return Packet(PacketType.CONNECT_ERROR, namespace, data)

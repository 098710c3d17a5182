"""What the admin UI may do to sockets, as the reference server's admin
namespace takes it (Socket.IO v4 semantics: ``filter`` names a room, a socket
id being the room of that socket; no filter means the whole namespace):

- ``join(nsp, room, filter?)``: those sockets join ``room``;
- ``leave(nsp, room, filter?)``: they leave it;
- ``_disconnect(nsp, close, filter?)``: they are disconnected from ``nsp``;
  with ``close`` their whole connection is (every namespace), and the stock
  client does not reconnect either way;
- ``emit(nsp, filter, event, ...args)``: an event to those sockets.

In read-only mode each is refused (``code: "read_only"``) and the ``config``
message lists none of them, so the UI shows no such buttons.  Arguments of
the wrong type are refused with ``code: "bad_arguments"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..auth.errors import Refusal
from ..socketio.packets import RESERVED_EVENTS
from ..socketio.socket import Socket

if TYPE_CHECKING:
    from ..socketio.server import SocketIOServer

#: The UI's feature names for these operations (Socket.IO v4's set).
FEATURES = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Refusal("bad_arguments", f"{what} must be a non-empty string", 400)
    return value


def _filter(value: Any) -> list[str] | None:
    if value is None or value == "":
        return None
    return [_text(value, "filter")]


def install(sio: SocketIOServer, namespace: str, read_only: bool) -> list[str]:
    """Register the operations on ``namespace``; returns the features to announce."""
    builtins = sio.builtins
    names = ("join", "leave", "_disconnect", "emit")
    if read_only:

        def refuse(socket: Socket, *args: Any) -> None:
            raise Refusal("read_only", "the admin UI is read-only on this server", 403)

        for name in names:
            builtins.on(name, refuse, namespace=namespace)
        return []

    def targets(nsp: Any, filter_: Any) -> list[Socket]:
        members = sio.hub.members(_text(nsp, "namespace"), _filter(filter_))
        return [member for member in members if isinstance(member, Socket) and member.connected]

    def join(socket: Socket, nsp: Any, room: Any, filter_: Any = None) -> None:
        room = _text(room, "room")
        for target in targets(nsp, filter_):
            target.join(room)

    def leave(socket: Socket, nsp: Any, room: Any, filter_: Any = None) -> None:
        room = _text(room, "room")
        for target in targets(nsp, filter_):
            target.leave(room)

    def disconnect(socket: Socket, nsp: Any, close: Any, filter_: Any = None) -> None:
        if not isinstance(close, bool):
            raise Refusal("bad_arguments", "close must be true or false", 400)
        for target in targets(nsp, filter_):
            if not close:
                target.disconnect()
                continue
            client = target.client
            for each in list(client.sockets.values()):
                each.disconnect()
            client.session.close("forced server close")

    def emit(socket: Socket, nsp: Any, filter_: Any, event: Any, *args: Any) -> None:
        event = _text(event, "event")
        if event in RESERVED_EVENTS:
            raise Refusal("bad_arguments", f"{event!r} is a reserved event name", 400)
        sio.emit(event, *args, to=_filter(filter_), namespace=_text(nsp, "namespace"))

    for name, handler in zip(names, (join, leave, disconnect, emit), strict=True):
        builtins.on(name, handler, namespace=namespace)
    return list(FEATURES)

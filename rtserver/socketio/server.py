"""The Socket.IO runtime: binds an App, the hub and the engine sessions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import trio

from ..config import SocketIOConfig
from ..engineio.session import Session
from ..hub import Hub
from .client import Client
from .socket import Socket, event_frames

if TYPE_CHECKING:
    from ..app import App


def _names(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)


class SocketIOServer:
    def __init__(self, config: SocketIOConfig, app: App, hub: Hub, nursery: trio.Nursery) -> None:
        self.config = config
        self.app = app
        self.hub = hub
        #: Runs disconnect handlers, which outlive the session that ended.
        self.nursery = nursery

    def open_client(self, session: Session) -> Client:
        return Client(self, session)

    def namespace_allowed(self, namespace: str) -> bool:
        return namespace in self.config.namespaces or namespace in self.app.namespaces

    def emit(
        self,
        event: str,
        *args: Any,
        to: str | Iterable[str] | None = None,
        namespace: str = "/",
        skip: str | Iterable[str] | None = None,
        volatile: bool = False,
    ) -> int:
        frames = event_frames(namespace, event, args)
        return self.hub.publish(namespace, frames, _names(to), _names(skip) or (), volatile)

    def socket(self, sid: str, namespace: str = "/") -> Socket | None:
        member = self.hub.member(namespace, sid)
        return member if isinstance(member, Socket) else None

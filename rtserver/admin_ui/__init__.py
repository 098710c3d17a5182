"""The server side of the official Socket.IO admin UI (``@socket.io/admin-ui``).

The UI is a static web application that connects, with a stock
socket.io-client, to a namespace of this server (``[admin_ui] namespace``,
``/admin`` by default).  That namespace speaks the reference server's admin
protocol: :mod:`.login` decides who may connect, :mod:`.monitor` reports
sockets, rooms, events and statistics, :mod:`.operations` carries out what
the UI asks (join, leave, disconnect, emit) unless the UI is read-only, and
:mod:`.records` shapes what is reported, leaving credentials out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import trio

from ..config import Config
from ..engineio.session import Session
from ..faults import supervise
from ..metrics import Stats
from ..socketio.server import SocketIOServer
from . import operations
from .login import Login
from .monitor import Monitor

#: Announced in every mode: ``server_stats`` carries aggregated counts.
AGGREGATED_EVENTS = "AGGREGATED_EVENTS"
#: Announced in development mode: every socket, room and event is reported.
ALL_EVENTS = "ALL_EVENTS"


def install(
    config: Config, sio: SocketIOServer, sessions: Callable[[], Collection[Session]], stats: Stats, nursery: trio.Nursery
) -> Monitor:
    """Serve the admin namespace on ``sio`` (``config.admin_ui`` is enabled)."""
    settings = config.admin_ui
    features = operations.install(sio, settings.namespace, settings.read_only) + [AGGREGATED_EVENTS]
    if settings.mode == "development":
        features.append(ALL_EVENTS)
    sio.guard.namespace_logins[settings.namespace] = Login(settings)
    # The token never shows: neither the configured query parameter nor the usual one.
    hidden_query = frozenset({config.auth.query_param, "token"})
    monitor = Monitor(settings, features, sio.hub, stats, sessions, hidden_query, config.tls.enabled)
    sio.listeners.append(monitor)
    if monitor.development:
        sio.observers.append(monitor)
    nursery.start_soon(supervise, stats.faults, "admin UI statistics", monitor.run)
    return monitor

"""Start everything: listener, HTTP front, Engine.IO, Socket.IO, hub."""

from __future__ import annotations

import logging
import signal
from typing import Any

import trio

from .app import App
from .config import Config
from .engineio.server import EngineServer
from .http.server import HttpServer
from .hub import Hub
from .routes import Router
from .socketio.server import SocketIOServer

log = logging.getLogger("rtserver")


class RunningServer:
    """What :func:`serve` hands its caller once listening."""

    def __init__(self, port: int, engine: EngineServer, sio: SocketIOServer, scope: trio.CancelScope) -> None:
        self.port = port
        self.engine = engine
        self.sio = sio
        self._scope = scope

    def shutdown(self) -> None:
        self._scope.cancel()


async def serve(config: Config, app: App | None = None, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; ``task_status.started`` gets a :class:`RunningServer`."""
    app = app if app is not None else App()
    hub = Hub()
    listeners = await trio.open_tcp_listeners(config.server.port, host=config.server.host)
    port = listeners[0].socket.getsockname()[1]
    try:
        async with trio.open_nursery() as nursery:
            sio = SocketIOServer(config.socketio, app, hub, nursery)
            engine = EngineServer(config.engineio, sio.open_client, nursery)
            http = HttpServer(config.http, Router(engine, config.engineio.paths))
            app.bind(sio)
            await nursery.start(trio.serve_listeners, http.handle_connection, listeners)
            log.info(
                "listening",
                extra={"fields": {"url": f"http://{config.server.host}:{port}", "paths": ",".join(config.engineio.paths)}},
            )
            task_status.started(RunningServer(port, engine, sio, nursery.cancel_scope))
    finally:
        app.bind(None)


async def serve_until_signal(config: Config, app: App | None = None) -> None:
    """Run :func:`serve` until SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            running: RunningServer = await nursery.start(serve, config, app)
            async for signum in signals:
                log.info("shutting down", extra={"fields": {"signal": signal.Signals(signum).name}})
                running.shutdown()
                break

"""Start everything: listener, HTTP front, Engine.IO, Socket.IO, hub."""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from . import admin_ui, channels, dashboard, features, systemd
from .api.router import ApiRouter
from .app import App
from .auth.guard import Guard
from .auth.keys import KeyRing, KeySetupError, generated_secret_path
from .cluster.bus import RedisBus
from .cluster.history import SharedRecovery
from .cluster.presence import ClusterPresence
from .config import Config, ConfigError
from .engineio.server import EngineServer
from .faults import supervise
from .http.handoff import Handoff
from .http.server import HttpServer
from .hub import Hub
from .metrics import Stats
from .nodeinfo import describe
from .presence import Presence
from .recovery import Recovery
from .retained import Retained
from .retention import Retention
from .routes import Router
from .socketio.server import SocketIOServer
from .socketio.socket import event_frames
from .store import SqliteStore, Store
from .store.redis import RedisStore
from .supervisor import WorkerSpec
from .tls import TlsSetupError, load_context

log = logging.getLogger("rtserver")


class ListenError(Exception):
    """The listening socket cannot be opened (address in use, no permission)."""


class RunningServer:
    """What :func:`serve` hands its caller once listening."""

    def __init__(
        self,
        port: int,
        engine: EngineServer,
        sio: SocketIOServer,
        http: HttpServer,
        scope: trio.CancelScope,
        accept_scope: trio.CancelScope,
    ) -> None:
        self.port = port
        self.engine = engine
        self.sio = sio
        self.http = http
        self.guard = sio.guard
        self._scope = scope
        self._accept_scope = accept_scope

    async def reload_keys(self) -> bool:
        """Re-read the key files; connections stay, old keys stay on error."""
        keys = self.guard.keys
        if keys is None:
            return True
        try:
            await trio.to_thread.run_sync(keys.reload)
        except KeySetupError as exc:
            log.error("key reload failed, keeping the previous keys: %s", exc)
            return False
        log.info("keys reloaded")
        return True

    async def reload(self, config: Config) -> bool:
        """SIGHUP: log level, limits, keys and the TLS certificate from ``config``;
        no connection is dropped, and what fails to load keeps its old value."""
        logging.getLogger("rtserver").setLevel(config.server.log_level.upper())
        self.guard.set_limits(config.limits)
        ok = await self.reload_keys()
        try:
            self.http.tls = await trio.to_thread.run_sync(load_context, config.tls)
        except TlsSetupError as exc:
            log.error("TLS reload failed, keeping the previous certificate: %s", exc)
            ok = False
        return ok

    def shutdown(self) -> None:
        """Stop at once: every connection is cancelled."""
        self._scope.cancel()

    def busy(self) -> bool:
        """Whether any event handler is still running."""
        return any(session.handler is not None and session.handler.busy() for session in self.engine.sessions.values())

    async def drain(self, grace: float) -> None:
        """Stop accepting, let running handlers finish, close every session,
        wait up to ``grace`` s in all, then stop.

        Sessions are closed as a transport close, so stock clients reconnect
        by themselves (to this server once restarted, or to another node).
        """
        systemd.notify("STOPPING=1")
        self._accept_scope.cancel()
        with trio.move_on_after(grace) as scope:
            while self.busy():
                await trio.sleep(0.01)
            sessions = list(self.engine.sessions.values())
            for session in sessions:
                session.close("server shutting down")
            for session in sessions:
                await session.finished.wait()
            await self.sio.recovery.flush()  # the sessions kept for recovery
        if scope.cancelled_caught:
            log.warning("drain timed out; cancelling what is left")
        self.shutdown()


@asynccontextmanager
async def _lingering_nursery(grace: float) -> AsyncIterator[trio.Nursery]:
    """A nursery whose tasks get ``grace`` more seconds once the block ends.

    Disconnect handlers run here: they start as connections end, including
    when the server shuts down, and must not be cancelled with them.
    """
    async with trio.open_nursery() as nursery:
        try:
            yield nursery
        finally:
            nursery.cancel_scope.deadline = trio.current_time() + grace


def announce_generated_secret(config: Config) -> None:
    log.warning(
        "generated a JWT secret (set auth.secret_file or RTSERVER_JWT_SECRET to use your own)",
        extra={
            "fields": {
                "path": str(generated_secret_path(config.server.data_dir)),
                "mint": "rtserver token --config <this config> --sub alice --tenant acme",
            }
        },
    )


async def _join_cluster(
    config: Config, sio: SocketIOServer, guard: Guard, presence: Presence, stats: Stats,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Connect this node to the others through Redis (or start degraded while
    Redis is unreachable) and serve the bus until cancelled."""
    namespaces = set(config.socketio.namespaces) | sio.app.namespaces | sio.builtins.namespaces
    bus = RedisBus(config.cluster, sio.hub, namespaces, config.engineio.max_payload, stats.faults)
    bus.receiver = sio

    async def revoke(request: dict[str, Any]) -> dict[str, Any]:
        user, version = request.get("user"), request.get("version")
        if not isinstance(user, str) or not user or not isinstance(version, int) or isinstance(version, bool):
            raise ValueError("revoke needs a user and an integer version")
        _, kicked = await guard.revoke(user, version)
        return {"disconnected": kicked}

    async def node(request: dict[str, Any]) -> dict[str, Any]:
        return {"node": describe(bus.uid, stats)}

    bus.commands["revoke"] = revoke
    bus.commands["node"] = node  # for the dashboard's list of nodes
    if config.presence.enabled:
        shared = ClusterPresence(bus.link, config.cluster.prefix, bus.uid, config.cluster.node_timeout, presence)
        bus.listen(shared.channel, shared.on_message)
        presence.join_cluster(shared)
    if config.recovery.enabled:
        history = _shared_history(config, sio, bus)
    stats.registry.register(bus.collector())
    sio.bus = bus
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(bus.run)
            if config.presence.enabled:
                nursery.start_soon(supervise, stats.faults, "cluster presence", shared.run)
            if config.recovery.enabled:
                nursery.start_soon(supervise, stats.faults, "shared history", history.run)
            task_status.started()
    finally:
        sio.bus = None


def _shared_history(config: Config, sio: SocketIOServer, bus: RedisBus) -> SharedRecovery:
    """Recovery across nodes: the history in a Redis stream, sessions in Redis."""
    history = SharedRecovery(config.recovery, bus.link, config.cluster.prefix, bus.uid, config.engineio.max_payload)
    history.deliver = sio.history_entry
    history.encode = event_frames

    async def release(request: dict[str, Any]) -> dict[str, Any]:
        pid = request.get("pid")
        if not isinstance(pid, str):
            raise TypeError("recovery-release needs a pid")
        released = sio.release(pid)
        if released:
            await history.saved(pid)
        return {"released": released}

    async def ask_release(pid: str) -> None:
        await bus.command("recovery-release", {"pid": pid})

    bus.commands["recovery-release"] = release
    history.release = ask_release
    sio.recovery = history
    return history


def _gauges(engine: EngineServer, hub: Hub, guard: Guard) -> dict[str, dict[str, int]]:
    transports: dict[str, int] = {"polling": 0, "websocket": 0}
    for session in engine.sessions.values():
        transports[session.transport] += 1
    return {"connections": transports, "sockets": hub.namespaces(), "counted": guard.counted()}


async def serve(
    config: Config, app: App | None = None, *, worker: WorkerSpec | None = None, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled; ``task_status.started`` gets a :class:`RunningServer`.

    ``worker``: this process is one of a supervisor's workers (``serve --workers``).
    """
    app = app if app is not None else App()
    dashboard.check(config)
    stats = Stats()
    hub = Hub(stats)
    local = await SqliteStore.open(config.server.data_dir)
    store: Store = local
    if config.cluster.enabled:
        store = RedisStore(config.cluster.redis_url, config.cluster.prefix, stats.faults)
        stats.registry.register(store.collector())
    keys = None
    if config.auth.enabled:
        keys = KeyRing(config.auth, config.server.data_dir)
        await trio.to_thread.run_sync(keys.reload)
        if keys.generated:
            announce_generated_secret(config)
    guard = Guard(config, keys, store)
    retained = Retained(store)
    store.mirrors += [guard, retained]
    recovery = Recovery(config.recovery, local)
    if config.recovery.enabled and not config.cluster.enabled:
        await recovery.load()
    tls = await trio.to_thread.run_sync(load_context, config.tls)
    try:
        if worker is not None:
            listeners = worker.listeners()
        else:
            listeners = systemd.inherited_listeners() or await trio.open_tcp_listeners(
                config.server.port, host=config.server.host
            )
    except OSError as exc:
        await local.close()
        raise ListenError(f"cannot listen on {config.server.host}:{config.server.port}: {exc.strerror}") from None
    port = listeners[0].socket.getsockname()[1]
    try:
        async with _lingering_nursery(config.server.shutdown_grace) as handlers, trio.open_nursery() as nursery:
            await nursery.start(store.run)  # the mirrors loaded (a shared store: degraded while Redis is down)
            sio = SocketIOServer(config.socketio, app, hub, guard, handlers, recovery)
            channels.install(sio.builtins, guard, config.channels)
            presence = Presence(config.presence, app, guard, store, nursery, stats.faults)
            presence.install(sio.builtins)
            sio.listeners.append(presence)
            engine = EngineServer(
                config.engineio, sio.open_client, nursery, guard, stats, None if worker is None else worker.index
            )
            stats.bind_gauges(lambda: _gauges(engine, hub, guard))
            nursery.start_soon(stats.watch_loop)
            if config.admin_ui.enabled:
                admin_ui.install(config, sio, engine.sessions.values, stats, nursery)
            api = ApiRouter(guard, store, sio, presence, stats, engine.sessions.values)
            if config.retention.latest or config.retention.inbox:
                retention = Retention(config.retention, retained, sio)
                sio.retention = retention
                sio.listeners.append(retention)
                nursery.start_soon(supervise, stats.faults, "retention writer", retention.run)
            features.install_all(
                features.Context(config, sio.builtins, app, sio, guard, presence, store, retained, api)
            )
            dashboard.install(config, sio, presence, store, retained, stats, api, nursery)
            if config.cluster.enabled:
                await nursery.start(_join_cluster, config, sio, guard, presence, stats)
            engine_paths = config.engineio.paths + dashboard.engine_paths(config)
            http = HttpServer(config.http, Router(engine, engine_paths, api, stats, sio.bus, store), stats.faults)
            http.tls = tls
            if worker is not None:
                http.handoff = Handoff(worker.directory, worker.index)
                stats.registry.register(http.handoff.collector())
            app.bind(sio)
            accept_scope = trio.CancelScope()

            async def accept(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                with accept_scope:
                    async with trio.open_nursery() as acceptors:
                        if http.handoff is not None:
                            # Connections other workers hand to this one.
                            await acceptors.start(http.handoff.receive, http.handle_connection, nursery)
                        await acceptors.start(
                            functools.partial(trio.serve_listeners, http.handle_connection, listeners, handler_nursery=nursery)
                        )
                        task_status.started()

            await nursery.start(accept)
            if config.recovery.enabled and not config.cluster.enabled:
                nursery.start_soon(supervise, stats.faults, "recovery flush", recovery.run)
            scheme = "https" if tls else "http"
            log.info(
                "listening",
                extra={"fields": {"url": f"{scheme}://{config.server.host}:{port}", "paths": ",".join(engine_paths)}},
            )
            systemd.notify(f"READY=1\nSTATUS=listening on port {port}")
            nursery.start_soon(
                supervise, stats.faults, "systemd watchdog",
                functools.partial(systemd.keep_alive, lambda: f"{len(engine.sessions)} connections"),
            )
            task_status.started(RunningServer(port, engine, sio, http, nursery.cancel_scope, accept_scope))
    finally:
        app.bind(None)
        with trio.CancelScope(shield=True):
            # Every connection has closed (and its session was kept): write them.
            await recovery.flush()
            await local.close()


async def serve_until_signal(
    config: Config,
    app: App | None = None,
    reload_config: Callable[[], Config] | None = None,
    worker: WorkerSpec | None = None,
) -> None:
    """Run :func:`serve` until SIGINT or SIGTERM (drain; a second one stops at
    once).  SIGHUP re-reads the configuration through ``reload_config``."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                await serve(config, app, worker=worker, task_status=task_status)
                nursery.cancel_scope.cancel()

            running: RunningServer = await nursery.start(run)
            if worker is not None:
                nursery.start_soon(_leave_with_supervisor, os.getppid())
            draining = False
            async for signum in signals:
                if signum == signal.SIGHUP:
                    nursery.start_soon(_reload, running, reload_config or (lambda: config))
                    continue
                if draining:
                    log.info("second signal: stopping now")
                    running.shutdown()
                    break
                draining = True
                log.info("shutting down", extra={"fields": {"signal": signal.Signals(signum).name}})
                nursery.start_soon(running.drain, config.server.shutdown_grace)


async def _leave_with_supervisor(supervisor: int) -> None:
    """A worker whose supervisor is gone (killed) drains and exits, as if
    told to by SIGTERM, rather than serving on unsupervised."""
    while os.getppid() == supervisor:
        await trio.sleep(1)
    log.warning("the supervisor is gone, shutting down")
    os.kill(os.getpid(), signal.SIGTERM)


async def _reload(running: RunningServer, reload_config: Callable[[], Config]) -> None:
    try:
        config = await trio.to_thread.run_sync(reload_config)
    except ConfigError as exc:
        log.error("reload refused, the configuration has errors: %s", "; ".join(exc.problems))
        return
    if await running.reload(config):
        log.info("configuration reloaded")

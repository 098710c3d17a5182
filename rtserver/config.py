"""Configuration: config.toml structured by cattrs into frozen attrs classes.

Every problem is reported as one line naming the key (``server.port: ...``);
the CLI prints them and exits with status 2.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import cattrs
from attrs import validators as v

from .validation import describe, strict_converter

_positive = v.gt(0)


def _leading_slash(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"'{attribute.name}' needs at least one entry", attribute)
    for item in value:
        if not item.startswith("/"):
            raise ValueError(f"'{attribute.name}' entry {item!r} must start with '/'", attribute)


@attrs.frozen
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = attrs.field(default=3000, validator=[v.ge(0), v.le(65535)])
    log_level: str = attrs.field(default="info", validator=v.in_(["debug", "info", "warning", "error"]))
    log_format: str = attrs.field(default="text", validator=v.in_(["text", "json"]))
    #: Seconds a shutdown waits for connections to close before cancelling them.
    shutdown_grace: float = attrs.field(default=2.0, validator=v.ge(0))
    #: Directory for the generated JWT secret and the SQLite store.
    data_dir: str = "data"
    #: Worker processes on the one port (``serve --workers``); more than one
    #: needs ``[cluster]``: each worker is a node.
    workers: int = attrs.field(default=1, validator=[v.ge(1), v.le(64)])


@attrs.frozen
class TlsConfig:
    """In-process TLS (``https://``/``wss://`` without a proxy); re-read on SIGHUP."""

    cert_file: str = ""
    key_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


@attrs.frozen
class HttpConfig:
    max_header_bytes: int = attrs.field(default=16384, validator=[v.ge(1024), v.le(1 << 20)])
    #: Seconds to receive a whole request head and body.
    read_timeout: float = attrs.field(default=15.0, validator=_positive)
    #: Seconds an idle keep-alive connection is kept open.
    keepalive_timeout: float = attrs.field(default=60.0, validator=_positive)


@attrs.frozen
class EngineIOConfig:
    paths: tuple[str, ...] = attrs.field(default=("/socket.io/",), validator=_leading_slash)
    ping_interval: float = attrs.field(default=25.0, validator=_positive)
    ping_timeout: float = attrs.field(default=20.0, validator=_positive)
    max_payload: int = attrs.field(default=1_000_000, validator=[v.ge(1024), v.le(100_000_000)])
    #: Origins allowed for cross-origin browser requests; empty means no CORS
    #: headers are sent and cross-origin browser requests are refused.
    cors_origins: tuple[str, ...] = ()
    #: Frames queued for one connection before it counts as a slow consumer.
    outbox_size: int = attrs.field(default=1024, validator=[v.ge(8), v.le(1_000_000)])
    #: Seconds one write to a client may take before the connection is dropped.
    write_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Serve Engine.IO v3 clients (socket.io-client 2.x), as the reference
    #: server's ``allowEIO3``; off: ``EIO=3`` gets 400 "Unsupported protocol version".
    allow_eio3: bool = False

    #: Name of a cookie carrying the session id, set on the handshake's answer
    #: for load balancers that keep a session on one node by cookie (the
    #: reference server's ``cookie`` option); empty: no cookie.
    cookie: str = attrs.field(default="", validator=v.matches_re(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]*"))


@attrs.frozen
class SocketIOConfig:
    namespaces: tuple[str, ...] = attrs.field(default=("/",), validator=_leading_slash)
    #: Seconds a new connection has to send its first Socket.IO CONNECT.
    connect_timeout: float = attrs.field(default=45.0, validator=_positive)
    #: Default seconds a server-to-client call waits for the client's ack.
    ack_timeout: float = attrs.field(default=10.0, validator=_positive)
    max_attachments: int = attrs.field(default=10, validator=[v.ge(0), v.le(1000)])
    #: Event handlers one connection may have running at once; further
    #: events wait, which pushes back on the client.
    handler_concurrency: int = attrs.field(default=16, validator=[v.ge(1), v.le(10_000)])


@attrs.frozen
class ClaimsConfig:
    """Claim names (dotted paths reach into nested objects: ``realm.roles``)."""

    user: str = "sub"
    tenant: str = "tenantId"
    roles: str = "roles"
    devices: str = "devices"
    token_version: str = "tokenVersion"
    session: str = "sid"


_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def _algorithms(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("'algorithms' needs at least one entry", attribute)
    for alg in value:
        if alg not in _ALGORITHMS:
            raise ValueError(f"'algorithms' entry {alg!r} is not one of {', '.join(_ALGORITHMS)}", attribute)


@attrs.frozen
class AuthConfig:
    #: False: connections need no token and carry an anonymous identity.
    enabled: bool = True
    #: Where a token is looked for, in this order; leave one out to switch it off.
    sources: tuple[str, ...] = attrs.field(
        default=("auth", "header", "query", "cookie"),
        validator=v.deep_iterable(v.in_(["auth", "header", "query", "cookie"])),
    )
    auth_field: str = "token"
    query_param: str = "token"
    cookie_name: str = "token"
    algorithms: tuple[str, ...] = attrs.field(default=("HS256",), validator=_algorithms)
    #: HMAC secret: literal, file, or environment variable name (first set wins:
    #: RTSERVER_JWT_SECRET, secret_env, secret_file, secret).  None of them:
    #: a random secret is generated into ``server.data_dir`` on first start.
    secret: str = ""
    secret_file: str = ""
    secret_env: str = ""
    #: PEM public key, or a local JWKS file (keys chosen by ``kid``).
    public_key_file: str = ""
    jwks_file: str = ""
    issuer: str = ""
    audience: str = ""
    #: Seconds of clock skew tolerated for exp/nbf/iat.
    leeway: float = attrs.field(default=30.0, validator=[v.ge(0), v.le(3600)])
    require_exp: bool = True
    claims: ClaimsConfig = ClaimsConfig()
    admin_roles: tuple[str, ...] = ("admin",)
    #: Check a token's version claim against the store (revocation).
    revocation: bool = True
    #: Refuse users not in the store's user table.
    check_user_exists: bool = False
    #: Query parameter / auth field naming the device a connection speaks for.
    device_field: str = "deviceId"
    #: Event sent to a socket before it is closed for an auth reason.
    error_event: str = "error"
    #: Keys for the HTTP API (server-to-server); RTSERVER_API_KEY adds one.
    api_keys: tuple[str, ...] = ()
    #: Event name -> roles allowed to emit it (others get code "forbidden").
    event_roles: dict[str, tuple[str, ...]] = attrs.Factory(dict)


@attrs.frozen
class LimitsConfig:
    #: Events per second a connection may send (token bucket), and its burst.
    events_per_second: float = attrs.field(default=50.0, validator=_positive)
    event_burst: int = attrs.field(default=100, validator=v.ge(1))
    #: Refused events within a minute after which the socket is disconnected.
    abuse_threshold: int = attrs.field(default=200, validator=v.ge(1))
    max_connections_per_user: int = attrs.field(default=50, validator=v.ge(1))
    max_connections_per_address: int = attrs.field(default=1000, validator=v.ge(1))
    max_rooms_per_socket: int = attrs.field(default=100, validator=v.ge(1))
    #: New Engine.IO sessions per second per remote address, and the burst.
    handshakes_per_second: float = attrs.field(default=50.0, validator=_positive)
    handshake_burst: int = attrs.field(default=500, validator=v.ge(1))


@attrs.frozen
class ChannelsConfig:
    """Built-in events with which clients join and leave channels (rooms)
    under the room rules; an empty name switches that event off."""

    subscribe_event: str = "subscribe"
    unsubscribe_event: str = "unsubscribe"
    #: Field of the auth payload (or query parameter) listing channels to
    #: join at connect time.
    connect_field: str = "channels"


@attrs.frozen
class PresenceConfig:
    enabled: bool = True
    #: Seconds a user (or device) whose last connection closed stays online,
    #: so a quick reconnect does not flap offline/online.
    grace: float = attrs.field(default=5.0, validator=[v.ge(0), v.le(3600)])
    #: Pairs of (online, offline) event names sent to the user's tenant room
    #: with ``{userId, status, timestamp}``; several pairs serve several clients.
    user_events: tuple[tuple[str, str], ...] = (("user:online", "user:offline"),)
    #: Event sent to the tenant room with ``{deviceId, status, timestamp, lastSeen}``.
    device_event: str = "device_status"
    #: Built-in socket events: query online users (ack), set one's status text.
    query_event: str = "presence"
    status_event: str = "presence:status"


def name_test(names: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether an event name is among configured ``names`` ("*": every name)."""
    if "*" in names:
        return lambda _name: True
    return frozenset(names).__contains__


@attrs.frozen
class RecoveryConfig:
    """Socket.IO connection state recovery (socket.io-client 4.6+)."""

    #: On: every emitted event carries an offset as its last argument, and a
    #: client that reconnects within ``max_disconnection`` seconds gets its
    #: id, rooms and every missed event back (``socket.recovered`` is true).
    enabled: bool = False
    max_disconnection: float = attrs.field(default=120.0, validator=[v.gt(0), v.le(86400)])
    #: Event names kept in the history (numbered, replayed); "*" is every event.
    events: tuple[str, ...] = ("*",)
    #: Events kept for replay (the oldest go first).
    history_size: int = attrs.field(default=10000, validator=[v.ge(1), v.le(10_000_000)])
    #: Seconds between writes of new history and sessions to the store, so a
    #: restart (even a crash, less this interval) still recovers clients.
    flush_interval: float = attrs.field(default=0.2, validator=[v.gt(0), v.le(60)])


@attrs.frozen
class RetentionConfig:
    """Which events the server keeps, by name, for any publisher or app."""

    #: The latest payload per (room, event) is kept in the store and sent to a
    #: socket when it joins that room (at connect too, for its own rooms).
    latest: tuple[str, ...] = ()
    #: Sent to a user (room ``user:{u}``) while none of their sockets is
    #: connected: kept and delivered, in order, when they next connect.
    inbox: tuple[str, ...] = ()
    inbox_size: int = attrs.field(default=100, validator=[v.ge(1), v.le(100_000)])


FEATURE_NAMES = ("deployments", "actions", "signage", "chat", "notifications")


@attrs.frozen
class FeaturesConfig:
    """The seed applications' vocabularies (rtserver/features/); each table is
    checked by its feature module (``rtserver.features.settings_for``), which
    the CLI runs after this module has structured the rest."""

    enabled: tuple[str, ...] = attrs.field(default=(), validator=v.deep_iterable(v.in_(FEATURE_NAMES)))
    deployments: dict[str, Any] = attrs.Factory(dict)
    actions: dict[str, Any] = attrs.Factory(dict)
    signage: dict[str, Any] = attrs.Factory(dict)
    chat: dict[str, Any] = attrs.Factory(dict)
    notifications: dict[str, Any] = attrs.Factory(dict)


_REDIS_SCHEMES = ("redis", "rediss", "unix")
_NODE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _redis_url(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value:
        return  # no cluster: a single node
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError as exc:
        raise ValueError(f"'redis_url' {value!r} is not a URL: {exc}", attribute) from None
    if url.scheme not in _REDIS_SCHEMES:
        raise ValueError(f"'redis_url' must start with redis://, rediss:// or unix://, not {value!r}", attribute)
    if url.scheme == "unix" and not url.path:
        raise ValueError(f"'redis_url' {value!r} names no socket path (unix:///run/redis/redis.sock)", attribute)
    if url.scheme != "unix" and not url.hostname:
        raise ValueError(f"'redis_url' {value!r} names no host (redis://host:6379/0)", attribute)
    if port == 0:
        raise ValueError(f"'redis_url' {value!r} has port 0", attribute)


def _node_id(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value and (not _NODE_ID.match(value) or value == "emitter"):
        # "emitter" is what @socket.io/redis-emitter calls itself on the channels.
        raise ValueError(f"'node_id' {value!r}: 1 to 64 letters, digits, '_', '.', '-', and not 'emitter'", attribute)


def _prefix(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value or "#" in value:
        raise ValueError("'prefix' is a non-empty name without '#'", attribute)


@attrs.frozen
class ClusterConfig:
    """Several nodes as one server through Redis, wire-compatible with
    ``@socket.io/redis-adapter`` 8 and ``@socket.io/redis-emitter`` 5."""

    #: ``redis://[user:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
    #: ``unix:///path/to/redis.sock``; empty: one node, no Redis.
    redis_url: str = attrs.field(default="", validator=_redis_url)
    #: Channel prefix, the reference adapter's and emitter's ``key`` option.
    prefix: str = attrs.field(default="socket.io", validator=_prefix)
    #: This node's name on the channels (its ``uid``); generated when empty.
    node_id: str = attrs.field(default="", validator=_node_id)
    #: Seconds a cross-node request (fetch_sockets, server_side_emit with
    #: acks, revocation) waits for every other node's answer.
    request_timeout: float = attrs.field(default=5.0, validator=[v.gt(0), v.le(600)])
    #: Seconds a node's heartbeat key lives in Redis (refreshed every third of
    #: it): a node that stops refreshing it (killed, cut off Redis) has its
    #: users and devices announced offline by the others within about 4/3 of it.
    node_timeout: float = attrs.field(default=15.0, validator=[v.ge(0.3), v.le(3600)])

    @property
    def enabled(self) -> bool:
        return bool(self.redis_url)


#: A bcrypt hash as ``rtserver hash-password`` (or any bcrypt library) writes it.
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")


def _admin_namespace(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value.startswith("/") or value == "/":
        raise ValueError(f"'{attribute.name}' must be a namespace of its own, like \"/admin\"", attribute)


def _admin_credentials(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    """Runs once every field is set: checks the hash, and that basic auth has credentials."""
    if value and not _BCRYPT_HASH.match(value):
        raise ValueError(
            f"'{attribute.name}' is not a bcrypt hash (\"$2b$12$...\", 60 characters): make one with `rtserver hash-password`",
            attribute,
        )
    if instance.enabled and instance.auth == "basic" and not (instance.username and value):
        raise ValueError(
            'auth = "basic" needs username and password_hash (`rtserver hash-password` makes the hash); '
            'auth = "none" runs the admin namespace without authentication',
            attribute,
        )


@attrs.frozen
class AdminUIConfig:
    """The server side of the official Socket.IO admin UI (``@socket.io/admin-ui``)."""

    enabled: bool = False
    #: The namespace the UI connects to (its "namespace" field).
    namespace: str = attrs.field(default="/admin", validator=_admin_namespace)
    #: ``basic``: the UI's username and password, checked against a bcrypt
    #: hash; ``none`` (explicitly): no authentication at all.
    auth: str = attrs.field(default="basic", validator=v.in_(["basic", "none"]))
    #: No operations (join, leave, disconnect, emit): the UI only watches.
    read_only: bool = False
    #: ``development``: every socket, room and event, as they happen;
    #: ``production``: server statistics and aggregated counts only.
    mode: str = attrs.field(default="development", validator=v.in_(["development", "production"]))
    #: Names this server in the UI (default: the host name).
    server_id: str = ""
    #: Seconds between ``server_stats`` messages.
    stats_interval: float = attrs.field(default=2.0, validator=[v.ge(0.1), v.le(3600)])
    username: str = ""
    #: Last, so that its check (which reads the fields above) runs after theirs.
    password_hash: str = attrs.field(default="", validator=_admin_credentials)


def _mount_path(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not (value.startswith("/") and value.endswith("/") and len(value) > 1):
        raise ValueError(f"'{attribute.name}' must start and end with '/', like \"/dashboard/\"", attribute)


@attrs.frozen
class DashboardConfig:
    """The operator's console (``rtserver/dashboard/``); off unless enabled."""

    enabled: bool = False
    #: Where the page lives; its session cookie is limited to this path and
    #: its Socket.IO connection uses the Engine.IO mount ``{path}socket.io/``.
    path: str = attrs.field(default="/dashboard/", validator=_mount_path)
    #: The admin-only namespace the page talks on (admin JWT, API key or the
    #: dashboard's session cookie).
    namespace: str = attrs.field(default="/rtserver-dashboard", validator=v.matches_re(r"/.+"))
    #: Seconds a login lasts (a token's own expiry ends it sooner).
    session_ttl: float = attrs.field(default=28800.0, validator=[v.ge(60), v.le(30 * 86400)])
    #: Seconds between samples for the plots, and seconds of samples kept.
    sample_interval: float = attrs.field(default=5.0, validator=[v.ge(0.1), v.le(600)])
    history: float = attrs.field(default=3600.0, validator=[v.ge(60), v.le(7 * 86400)])
    #: Characters of an event's payload the event tail shows.
    payload_chars: int = attrs.field(default=300, validator=[v.ge(16), v.le(100_000)])
    #: Events one watcher's tail receives per second at most (the rest are counted as dropped).
    tail_rate: int = attrs.field(default=200, validator=[v.ge(1), v.le(100_000)])


@attrs.frozen
class AppConfig:
    #: ``package.module:attribute`` of an :class:`rtserver.App` to load.
    module: str = ""


@attrs.frozen
class Config:
    server: ServerConfig = ServerConfig()
    http: HttpConfig = HttpConfig()
    tls: TlsConfig = TlsConfig()
    engineio: EngineIOConfig = EngineIOConfig()
    socketio: SocketIOConfig = SocketIOConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    channels: ChannelsConfig = ChannelsConfig()
    presence: PresenceConfig = PresenceConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    retention: RetentionConfig = RetentionConfig()
    features: FeaturesConfig = FeaturesConfig()
    cluster: ClusterConfig = ClusterConfig()
    admin_ui: AdminUIConfig = AdminUIConfig()
    dashboard: DashboardConfig = DashboardConfig()
    app: AppConfig = AppConfig()


class ConfigError(Exception):
    """Raised with one line per problem; ``str()`` joins them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_CONVERTER = strict_converter()

#: Environment variables that override a key: ``RTSERVER_PORT=8080``.
ENV_OVERRIDES = {
    "RTSERVER_HOST": ("server", "host", str),
    "RTSERVER_PORT": ("server", "port", int),
    "RTSERVER_LOG_LEVEL": ("server", "log_level", str),
    "RTSERVER_DATA_DIR": ("server", "data_dir", str),
}


def unstructure(config: Config) -> dict[str, Any]:
    return _CONVERTER.unstructure(config)


def structure(data: Mapping[str, Any]) -> Config:
    """Turn parsed TOML into a :class:`Config`, or raise :class:`ConfigError`."""
    try:
        config = _CONVERTER.structure(data, Config)
    except cattrs.BaseValidationError as exc:
        raise ConfigError(describe(exc)) from None
    problems = _across_sections(config)
    if problems:
        raise ConfigError(problems)
    return config


#: The largest request head a worker can hand to another (rtserver.http.handoff).
MAX_HANDOFF_HEAD = 128 * 1024


def _across_sections(config: Config) -> list[str]:
    """What no single key's check can see."""
    problems = []
    workers = config.server.workers
    if workers > 1 and not config.cluster.enabled:
        problems.append(f"server.workers: {workers} workers need [cluster] redis_url (each worker is a node of the cluster)")
    if workers > 1 and config.http.max_header_bytes > MAX_HANDOFF_HEAD:
        # A request head and one read after it must fit one hand-off datagram.
        problems.append(f"http.max_header_bytes: at most {MAX_HANDOFF_HEAD} with several workers")
    if workers > 1 and config.tls.enabled:
        problems.append(
            f"server.workers: {workers} workers cannot share in-process TLS connections; terminate TLS in a proxy in front"
        )
    return problems


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Return ``data`` with the ``RTSERVER_*`` environment overrides applied."""
    problems = []
    for name, (section, key, kind) in ENV_OVERRIDES.items():
        if name not in environ:
            continue
        raw = environ[name]
        try:
            value = kind(raw)
        except ValueError:
            problems.append(f"{section}.{key}: {name}={raw!r} is not a valid {kind.__name__}")
            continue
        table = data.get(section, {})
        if isinstance(table, dict):  # otherwise structure() reports the section
            data = {**data, section: {**table, key: value}}
    if problems:
        raise ConfigError(problems)
    return data


def load(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read a config file (only defaults when ``path`` is None) plus env overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    return structure(apply_env(data, os.environ if environ is None else environ))

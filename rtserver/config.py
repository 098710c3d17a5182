"""Configuration: config.toml structured by cattrs into frozen attrs classes.

Every problem is reported as one line naming the key (``server.port: ...``);
the CLI prints them and exits with status 2.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from attrs import validators as v

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
class AppConfig:
    #: ``package.module:attribute`` of an :class:`rtserver.App` to load.
    module: str = ""


@attrs.frozen
class Config:
    server: ServerConfig = ServerConfig()
    http: HttpConfig = HttpConfig()
    engineio: EngineIOConfig = EngineIOConfig()
    socketio: SocketIOConfig = SocketIOConfig()
    app: AppConfig = AppConfig()


class ConfigError(Exception):
    """Raised with one line per problem; ``str()`` joins them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _strict(kind: type) -> Any:
    """A structure hook that refuses what TOML would not have typed as ``kind``."""

    def structure(value: Any, _: type) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return structure


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind in (int, float, str, bool):
        conv.register_structure_hook(kind, _strict(kind))
    return conv


_CONVERTER = _converter()

#: Environment variables that override a key: ``RTSERVER_PORT=8080``.
ENV_OVERRIDES = {
    "RTSERVER_HOST": ("server", "host", str),
    "RTSERVER_PORT": ("server", "port", int),
    "RTSERVER_LOG_LEVEL": ("server", "log_level", str),
}


def _format(exc: BaseException, kind: type | None) -> str:
    # attrs validators raise ValueError(message, attribute, ...): keep the
    # attribute's name so the reported path ends with it.
    if len(exc.args) > 1 and isinstance(exc.args[1], attrs.Attribute):
        return f"{exc.args[1].name}\0{exc.args[0]}"
    if isinstance(exc, (ValueError, TypeError)) and exc.args:
        return str(exc)
    return cattrs.v.format_exception(exc, kind)


#: attrs' number and choice validators name the field first: "'port' must be ...".
_NAMED = re.compile(r"'(\w+)' must")


def _describe(exc: cattrs.BaseValidationError) -> list[str]:
    problems = []
    for line in cattrs.transform_error(exc, path="$", format_exception=_format):
        message, _, where = line.rpartition(" @ ")
        where = where.removeprefix("$").removeprefix(".")
        if "\0" in message:
            name, message = message.split("\0", 1)
        else:
            named = _NAMED.match(message)
            name = named.group(1) if named else ""
        if name:
            where = f"{where}.{name}" if where else name
        problems.append(f"{where or 'config'}: {message}")
    return problems


def unstructure(config: Config) -> dict[str, Any]:
    return _CONVERTER.unstructure(config)


def structure(data: Mapping[str, Any]) -> Config:
    """Turn parsed TOML into a :class:`Config`, or raise :class:`ConfigError`."""
    try:
        return _CONVERTER.structure(data, Config)
    except cattrs.BaseValidationError as exc:
        raise ConfigError(_describe(exc)) from None


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
        data = {**data, section: {**data.get(section, {}), key: value}}
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

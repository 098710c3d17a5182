"""Command line: serve, check-config, token, revoke, publish, users, hash-password."""

from __future__ import annotations

import argparse
import gc
import getpass
import importlib
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import trio

from . import config as config_mod
from . import features, logs
from .admin_ui.login import hash_password
from .app import App
from .auth import tokens
from .auth.identity import set_claim
from .auth.keys import KeyRing, KeySetupError
from .cluster.link import ClusterSetupError
from .dashboard import DashboardSetupError
from .server import ListenError, announce_generated_secret, serve_until_signal
from .store import SqliteStore, Store, StoreError, StoreUnavailable
from .store.redis import RedisStore
from .supervisor import WorkerSpec, supervise
from .tls import TlsSetupError, load_context

EXIT_CONFIG = 2

T = TypeVar("T")
CONFIG_ENV = "RTSERVER_CONFIG"
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def load_app(spec: str) -> App:
    """Import ``package.module:attribute`` and return the :class:`App` it names."""
    module_name, _, attr = spec.partition(":")
    if "" not in sys.path and "." not in sys.path:
        # Like other servers' --app options: modules in the working directory load.
        sys.path.insert(0, "")
    module = importlib.import_module(module_name)
    app = getattr(module, attr or "app")
    if not isinstance(app, App):
        raise TypeError(f"{spec} is a {type(app).__name__}, not an rtserver.App")
    return app


def duration(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 1h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def worker_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers from 1 to 64")
    return int(text)


def bcrypt_rounds(text: str) -> int:
    if not text.isdigit() or not 4 <= int(text) <= 31:
        raise argparse.ArgumentTypeError(f"{text!r} is not a bcrypt cost from 4 to 31")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, default=os.environ.get(CONFIG_ENV), help=f"config file (or ${CONFIG_ENV}; default: built-in defaults)")
        return p

    run = with_config(sub.add_parser("serve", help="run the server"))
    run.add_argument("--app", help="package.module:attribute of an rtserver.App (overrides app.module)")
    run.add_argument("--host", help="override server.host")
    run.add_argument("--port", type=int, help="override server.port")
    run.add_argument("--workers", type=worker_count, help="override server.workers: worker processes on the one port (more than one needs [cluster])")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config", type=Path)

    token = with_config(sub.add_parser("token", help="mint a development token with the configured key"))
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--tenant", help="tenant id")
    token.add_argument("--role", action="append", default=[], help="a role (repeatable)")
    token.add_argument("--device", action="append", default=[], help="an owned device id (repeatable)")
    token.add_argument("--token-version", type=int, help="token version claim")
    token.add_argument("--claim", action="append", default=[], metavar="NAME=JSON", help="an extra claim (repeatable)")
    token.add_argument("--ttl", type=duration, default=3600, help="lifetime, e.g. 15m, 1h, 7d (default 1h)")
    token.add_argument("--private-key", type=Path, help="PEM private key for RS/ES/EdDSA algorithms")
    token.add_argument("--alg", help="algorithm (default: the first of auth.algorithms)")

    revoke = with_config(sub.add_parser("revoke", help="revoke a user's tokens and end their live sockets"))
    revoke.add_argument("--user", required=True)
    revoke.add_argument("--url", help="server base URL (default: from server.host and server.port)")

    publish = with_config(sub.add_parser("publish", help="emit an event through the running server's HTTP API"))
    publish.add_argument("--event", required=True)
    publish.add_argument("--data", help="the event's argument, as JSON")
    publish.add_argument("--room", help="a room")
    publish.add_argument("--user", help="a user (room user:U)")
    publish.add_argument("--device", help="a device (room device:D)")
    publish.add_argument("--tenant", help="a tenant (room tenant:T)")
    publish.add_argument("--broadcast", action="store_true", help="the whole namespace")
    publish.add_argument("--except", dest="exclude", action="append", default=[], help="a room or socket id to leave out")
    publish.add_argument("--namespace", default="/")
    publish.add_argument("--url", help="server base URL (default: from server.host and server.port)")

    users = with_config(sub.add_parser("users", help="manage the known-users table"))
    users_sub = users.add_subparsers(dest="users_command", required=True)
    # --config is also accepted after the subcommand (`users add alice --config F`);
    # SUPPRESS keeps the one given before it when it is not repeated.
    config_after = argparse.ArgumentParser(add_help=False)
    config_after.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    add = users_sub.add_parser("add", parents=[config_after])
    add.add_argument("user")
    add.add_argument("--tenant")
    remove = users_sub.add_parser("remove", parents=[config_after])
    remove.add_argument("user")
    users_sub.add_parser("list", parents=[config_after])

    hashing = sub.add_parser(
        "hash-password",
        help="print a bcrypt hash for [admin_ui] password_hash (the password is read from the terminal, or one line of stdin)",
    )
    hashing.add_argument("--rounds", type=bcrypt_rounds, default=12, help="bcrypt cost, 4 to 31 (default 12)")
    return parser


def _load_config(args: argparse.Namespace) -> config_mod.Config:
    config = config_mod.load(args.config)
    if args.command == "serve" and (args.host or args.port is not None or args.workers is not None):
        server = config_mod.unstructure(config)["server"]
        server["host"] = args.host or config.server.host
        server["port"] = args.port if args.port is not None else config.server.port
        server["workers"] = args.workers or config.server.workers
        config = config_mod.structure(config_mod.unstructure(config) | {"server": server})
    worker = WorkerSpec.from_environ()
    if args.command == "serve" and worker is not None:
        # Each worker is a node of the cluster, with a node id of its own.
        cluster = config_mod.unstructure(config)["cluster"] | {"node_id": worker.node_id(config.cluster.node_id)}
        config = config_mod.structure(config_mod.unstructure(config) | {"cluster": cluster})
    features.settings_for(config)  # the feature tables, checked by the layer that owns them
    return config


def _preflight(config: config_mod.Config) -> None:
    """Open the store and read the keys once, so a bad setup fails before serving."""
    SqliteStore.open_sync(config.server.data_dir)
    if config.auth.enabled:
        keys = KeyRing(config.auth, config.server.data_dir)
        keys.reload()
        if keys.generated:
            announce_generated_secret(config)
    load_context(config.tls)


def tune_gc() -> None:
    """Fewer cyclic-GC passes for a long-running server.

    Each connection allocates thousands of small objects; with CPython's
    default thresholds (700, 10, 10) the collector ran ~750 times during 2,000
    handshakes and took a third of the server's CPU (make bench, connect
    scenario: 1.3 s of 4.6 s).  With the start-up objects frozen and a larger
    first generation it ran 8 times and handshakes/s rose by ~25%; memory
    grows by at most one larger generation of garbage before it is freed.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _serve(args: argparse.Namespace, config: config_mod.Config) -> int:
    worker = WorkerSpec.from_environ()
    if worker is None:
        logs.setup(config.server.log_level, config.server.log_format)
    else:
        logs.setup(config.server.log_level, config.server.log_format, {"worker": worker.index})
    app = None
    spec = args.app or config.app.module
    if spec:
        try:
            app = load_app(spec)
        except (ImportError, AttributeError, TypeError) as exc:
            print(f"cannot load app {spec!r}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    _preflight(config)
    if worker is None and config.server.workers > 1:
        return _supervise(args, config)
    tune_gc()
    problems: list[str] = []
    try:
        trio.run(serve_until_signal, config, app, lambda: _load_config(args), worker)
    except* (ListenError, KeySetupError, StoreError, TlsSetupError, ClusterSetupError, DashboardSetupError) as group:
        problems = [str(exc) for exc in _leaves(group)]
    for problem in problems:
        print(f"start-up error: {problem}", file=sys.stderr)
    return EXIT_CONFIG if problems else 0


def _supervise(args: argparse.Namespace, config: config_mod.Config) -> int:
    """Start ``server.workers`` copies of this very command and look after them."""
    command = [sys.executable, "-m", "rtserver", *args.argv]
    try:
        return trio.run(supervise, config.server.workers, command, config.server.host, config.server.port)
    except OSError as exc:
        print(f"start-up error: cannot listen on {config.server.host}:{config.server.port}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    """The exceptions in ``group`` and the groups nested in it (a start-up
    error raised in a nursery inside the server's own comes wrapped twice)."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


def _claims(args: argparse.Namespace, config: config_mod.Config) -> dict[str, Any]:
    names = config.auth.claims
    claims: dict[str, Any] = {}
    set_claim(claims, names.user, args.sub)
    for path, value in (
        (names.tenant, args.tenant),
        (names.roles, args.role),
        (names.devices, args.device),
        (names.token_version, args.token_version),
    ):
        if value:
            set_claim(claims, path, value)
    if config.auth.issuer:
        claims["iss"] = config.auth.issuer
    if config.auth.audience:
        claims["aud"] = config.auth.audience
    for item in args.claim:
        name, _, raw = item.partition("=")
        try:
            claims[name] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            claims[name] = raw
    return claims


def _token(args: argparse.Namespace, config: config_mod.Config) -> int:
    keys = KeyRing(config.auth, config.server.data_dir)
    keys.reload()
    algorithm = args.alg or config.auth.algorithms[0]
    private_key = args.private_key.read_bytes() if args.private_key else None
    try:
        print(tokens.mint(keys, _claims(args, config), args.ttl, private_key, algorithm))
    except ValueError as exc:
        print(f"cannot mint: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _admin_credential(config: config_mod.Config) -> str:
    """An API key if one is configured, else a one-minute admin token."""
    if os.environ.get("RTSERVER_API_KEY"):
        return os.environ["RTSERVER_API_KEY"]
    if config.auth.api_keys:
        return config.auth.api_keys[0]
    keys = KeyRing(config.auth, config.server.data_dir)
    keys.reload()
    names = config.auth.claims
    claims: dict[str, Any] = {}
    set_claim(claims, names.user, "rtserver-cli")
    set_claim(claims, names.roles, [config.auth.admin_roles[0]])
    return tokens.mint(keys, claims, 60)


def _post(config: config_mod.Config, base_url: str | None, path: str, body: dict[str, Any]) -> tuple[int, str]:
    """POST JSON to the running server's API; (status, body text).  Raises OSError
    when the server cannot be reached."""
    host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = (base_url or f"http://{host}:{config.server.port}").rstrip("/") + path
    request = urllib.request.Request(
        url,
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {_admin_credential(config)}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError as exc:
        raise OSError(str(exc.reason)) from None


def _revoke(args: argparse.Namespace, config: config_mod.Config) -> int:
    try:
        status, text = _post(config, args.url, "/api/v1/admin/revoke", {"user": args.user})
    except OSError:
        # Not running: raise the version in the store; it applies at the next start.
        version = trio.run(_in_store, config, lambda store: store.bump_token_version(args.user))
        print(orjson.dumps({"user": args.user, "tokenVersion": version, "disconnected": 0, "server": "not running"}).decode())
        return 0
    return _report(status, text)


def _report(status: int, text: str) -> int:
    if status >= 400:
        print(f"server refused: {status} {text}", file=sys.stderr)
        return 1
    print(text)
    return 0


def _publish(args: argparse.Namespace, config: config_mod.Config) -> int:
    try:
        data = orjson.loads(args.data) if args.data is not None else None
    except orjson.JSONDecodeError:
        print("--data is not valid JSON", file=sys.stderr)
        return EXIT_CONFIG
    body: dict[str, Any] = {"event": args.event, "namespace": args.namespace, "data": data}
    for field in ("room", "user", "device", "tenant"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    if args.exclude:
        body["except"] = args.exclude
    if args.broadcast:
        body["broadcast"] = True
    try:
        status, text = _post(config, args.url, "/api/v1/emit", body)
    except OSError as exc:
        print(f"cannot reach the server: {exc}", file=sys.stderr)
        return 1
    return _report(status, text)


async def _in_store(config: config_mod.Config, use: Callable[[Store], Awaitable[T]]) -> T:
    """``use`` the configured store: the cluster's Redis, or the SQLite file."""
    if not config.cluster.enabled:
        store = await SqliteStore.open(config.server.data_dir)
        try:
            return await use(store)
        finally:
            await store.close()
    shared = RedisStore(config.cluster.redis_url, config.cluster.prefix)
    async with trio.open_nursery() as nursery:
        await nursery.start(shared.run)
        try:
            return await use(shared)
        finally:
            nursery.cancel_scope.cancel()


def _users(args: argparse.Namespace, config: config_mod.Config) -> int:
    try:
        if args.users_command == "add":
            trio.run(_in_store, config, lambda store: store.add_user(args.user, args.tenant))
        elif args.users_command == "remove":
            if not trio.run(_in_store, config, lambda store: store.remove_user(args.user)):
                print(f"no such user: {args.user}", file=sys.stderr)
                return 1
        else:
            for entry in trio.run(_in_store, config, lambda store: store.list_users()):
                print(f"{entry['user']}\t{entry['tenant'] or ''}")
    except StoreUnavailable as exc:
        print(f"the store is unavailable: {exc}", file=sys.stderr)
        return 1
    return 0


def _hash_password(args: argparse.Namespace) -> int:
    """Never from the command line, where other users could read it (ps)."""
    if sys.stdin.isatty():
        password = getpass.getpass("admin UI password: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("an empty password is not accepted", file=sys.stderr)
        return 1
    print(hash_password(password, args.rounds))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command == "hash-password":
        return _hash_password(args)
    try:
        config = _load_config(args)
    except config_mod.ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(f"{args.config}: ok")
        return 0
    commands = {"serve": _serve, "token": _token, "revoke": _revoke, "publish": _publish, "users": _users}
    try:
        return commands[args.command](args, config)
    except (KeySetupError, StoreError, TlsSetupError) as exc:
        print(f"start-up error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

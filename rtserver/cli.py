"""Command line: ``rtserver serve`` and ``rtserver check-config``."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import trio

from . import config as config_mod
from . import logs
from .app import App
from .server import serve_until_signal

EXIT_CONFIG = 2


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the server")
    run.add_argument("--config", type=Path, help="config file (default: built-in defaults)")
    run.add_argument("--app", help="package.module:attribute of an rtserver.App (overrides app.module)")
    run.add_argument("--host", help="override server.host")
    run.add_argument("--port", type=int, help="override server.port")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = config_mod.load(args.config)
        if args.command == "serve" and (args.host or args.port is not None):
            overrides = {"host": args.host or config.server.host}
            overrides["port"] = args.port if args.port is not None else config.server.port
            config = config_mod.structure(
                config_mod.unstructure(config) | {"server": config_mod.unstructure(config)["server"] | overrides}
            )
    except config_mod.ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(f"{args.config}: ok")
        return 0
    logs.setup(config.server.log_level, config.server.log_format)
    app = None
    spec = args.app or config.app.module
    if spec:
        try:
            app = load_app(spec)
        except (ImportError, AttributeError, TypeError) as exc:
            print(f"cannot load app {spec!r}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    trio.run(serve_until_signal, config, app)
    return 0

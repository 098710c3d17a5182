"""The seed applications' real-time vocabularies, one module each.

A feature is a module with a ``Settings`` attrs class (its ``[features.NAME]``
table, structured strictly) and ``install(ctx, settings)``, which registers
built-in socket handlers (``ctx.handlers``), HTTP routes (``ctx.api``) and
socket listeners.  Features know nothing of transports: they work through the
hub, the guard's rules, presence and retained state.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs
import cattrs

from ..config import FEATURE_NAMES, Config, ConfigError
from ..validation import describe, strict_converter

if TYPE_CHECKING:
    from ..api.router import ApiRouter
    from ..app import App
    from ..auth.guard import Guard
    from ..presence import Presence
    from ..retained import Retained
    from ..socketio.server import SocketIOServer
    from ..store import Store

_CONVERTER = strict_converter()


@attrs.frozen
class Context:
    config: Config
    #: Built-in handlers (the application's own handlers take precedence).
    handlers: App
    #: The application's App: emit from here.
    app: App
    sio: SocketIOServer
    guard: Guard
    presence: Presence
    store: Store
    retained: Retained
    api: ApiRouter


def module(name: str) -> ModuleType:
    if name not in FEATURE_NAMES:
        raise KeyError(name)
    return importlib.import_module(f"{__name__}.{name}")


def settings_for(config: Config) -> dict[str, Any]:
    """Each enabled feature's settings; ConfigError naming the bad key otherwise."""
    settings = {}
    problems = []
    for name in FEATURE_NAMES:
        table = getattr(config.features, name)
        if name not in config.features.enabled and not table:
            continue
        try:
            settings[name] = _CONVERTER.structure(table, module(name).Settings)
        except cattrs.BaseValidationError as exc:
            # describe() gives "key: message", or ": message" for the table itself.
            problems += [f"features.{name}{'' if line.startswith(':') else '.'}{line}" for line in describe(exc, root="")]
    if problems:
        raise ConfigError(problems)
    return {name: s for name, s in settings.items() if name in config.features.enabled}


def install_all(ctx: Context) -> None:
    for name, settings in settings_for(ctx.config).items():
        module(name).install(ctx, settings)

"""The operator's console at ``[dashboard] path`` (``/dashboard/``), off by default.

A page served by rtserver itself (no CDN: it works on a LAN without the
internet) that shows the node live and lets an admin act on it:

- :mod:`.pages`: the page, its script and style, login and logout;
- :mod:`.sessions`: operators and their server-side login sessions;
- :mod:`.live`: the admin-only namespace the page talks on;
- :mod:`.views`: overview, devices, users, rooms;
- :mod:`.samples`: the last hour of figures for the plots;
- :mod:`.activity`: each room's last event, where gone devices were;
- :mod:`.tail`: the live event tail (an observer only while watched);
- :mod:`.actions`: disconnect, revoke, push a layout or a notification,
  all through the HTTP API;
- :mod:`.redaction`: secrets masked and payloads cut before anything is shown.

The page speaks Socket.IO itself over a WebSocket (``static/dashboard.js``)
on the Engine.IO mount ``{path}socket.io/``, which is added to the server's
paths while the dashboard is enabled, so the session cookie (limited to the
dashboard's path) reaches it.
"""

from __future__ import annotations

import functools
import secrets
import time
from typing import TYPE_CHECKING

import trio

from .. import features
from ..api.common import CallerAuth, api_keys
from ..config import Config
from ..faults import supervise
from .actions import Actions
from .activity import Activity
from .live import Live
from .pages import Pages
from .samples import Sample, Samples
from .sessions import LoginSessions
from .tail import Tail
from .views import Views

if TYPE_CHECKING:
    from ..api.router import ApiRouter
    from ..hub import Hub
    from ..metrics import Stats
    from ..presence import Presence
    from ..retained import Retained
    from ..socketio.server import SocketIOServer
    from ..store import Store


class DashboardSetupError(Exception):
    """The dashboard is enabled in a way that would leave it open."""


def check(config: Config) -> None:
    """Refuse a dashboard nobody could log in to but everyone could reach:
    with authentication off only an API key can open it, so one is required."""
    if config.dashboard.enabled and not config.auth.enabled and not api_keys(config.auth):
        raise DashboardSetupError(
            "dashboard.enabled with auth.enabled = false needs an API key (auth.api_keys or RTSERVER_API_KEY) to log in with"
        )


def engine_paths(config: Config) -> tuple[str, ...]:
    """The Engine.IO mounts the dashboard adds (its page's connection)."""
    return (config.dashboard.path + "socket.io/",) if config.dashboard.enabled else ()


def install(
    config: Config,
    sio: SocketIOServer,
    presence: Presence,
    store: Store,
    retained: Retained,
    stats: Stats,
    api: ApiRouter,
    nursery: trio.Nursery,
) -> None:
    """Serve the dashboard (when enabled) and keep its samples in ``nursery``."""
    settings = config.dashboard
    if not settings.enabled:
        return
    check(config)
    signage = features.settings_for(config).get("signage")
    layout_event = signage.layout_event if signage is not None else None
    layout_route = "/" + signage.path_prefix.strip("/") + "/layout-update" if signage is not None else None

    samples = Samples(settings.sample_interval, settings.history)
    activity = Activity(sio, settings.namespace)
    sio.listeners.append(activity)
    views = Views(
        sio, presence, store, retained, stats, samples, activity, secrets.token_hex(4), settings.namespace, layout_event
    )
    tail = Tail(sio, settings.namespace, settings.payload_chars, settings.tail_rate, nursery, stats.faults)
    caller_auth = CallerAuth(sio.guard)
    sessions = LoginSessions(settings.session_ttl)
    live = Live(config, caller_auth, sessions, views, tail, Actions(api, sio, layout_route))
    sio.guard.namespace_logins[settings.namespace] = live.authenticate
    live.install(sio.builtins)
    sio.listeners.append(live)

    pages = Pages(config, caller_auth, sessions)
    path = settings.path
    api.add("GET", path, pages.index, "public")
    api.add("GET", path + "static/*", pages.asset, "public")
    api.add("GET", path + "login", pages.login_form, "public")
    api.add("POST", path + "login", pages.login, "public")
    api.add("POST", path + "logout", pages.logout, "public")
    nursery.start_soon(supervise, stats.faults, "dashboard samples", functools.partial(_sample, samples, stats, activity, sio.hub))


async def _sample(samples: Samples, stats: Stats, activity: Activity, hub: Hub) -> None:
    while True:
        connections = stats.gauges().get("connections", {})
        samples.take(Sample(
            time.time(), sum(connections.values()), stats.messages_in, stats.messages_out,
            sum(stats.refusals.values()), stats.overflows,
        ))
        activity.prune(hub)
        await trio.sleep(samples.interval)

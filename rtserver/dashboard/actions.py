"""Operator actions, made through the HTTP API itself.

Each action becomes one or more requests to the server's own API router
(:meth:`ApiRouter.handle`), carrying the credential the operator logged in
with as ``Authorization: Bearer``.  So an action is exactly the API call an
operator could make with curl: the same validation, the same access checks
(an admin token pushes layouts to its own tenant only, as the signage route
decides), the same effects, and a credential revoked or expired since the
login is refused there too.  Every action is logged at INFO with who made it.

=================  =========================================================
``disconnect``     ``{sid, namespace}``, ``{user}`` or ``{device}``:
                   ``POST /api/v1/disconnect`` (a protocol disconnect: stock
                   clients stay away), once per namespace the target is in
``revoke``         ``{user}``: ``POST /api/v1/admin/revoke``
``layout``         ``{tenant, device?, layoutId, layoutData}``: the signage
                   feature's ``layout-update`` (device absent: the tenant)
``notify``         ``{tenant | device, event, data}``: ``POST /api/v1/emit``
=================  =========================================================
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs
import orjson
from attrs import validators as v

from ..http.messages import Request

if TYPE_CHECKING:
    from ..api.router import ApiRouter
    from ..socketio.server import SocketIOServer
    from .sessions import Operator

log = logging.getLogger("rtserver.dashboard")

_NAME = [v.min_len(1), v.max_len(256)]
_V1 = "/api/v1/"


def _optional_name(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and not 0 < len(value) <= 256:
        raise ValueError(f"'{attribute.name}' is 1 to 256 characters", attribute)


@attrs.frozen
class Disconnect:
    sid: str | None = attrs.field(default=None, validator=_optional_name)
    namespace: str = "/"
    user: str | None = attrs.field(default=None, validator=_optional_name)
    device: str | None = attrs.field(default=None, validator=_optional_name)

    def __attrs_post_init__(self) -> None:
        if sum(x is not None for x in (self.sid, self.user, self.device)) != 1:
            raise ValueError("name exactly one of sid, user or device")


@attrs.frozen
class Revoke:
    user: str = attrs.field(validator=_NAME)


@attrs.frozen
class Layout:
    tenant: str = attrs.field(validator=_NAME)
    layoutId: str = attrs.field(validator=_NAME)
    device: str | None = attrs.field(default=None, validator=_optional_name)
    layoutData: Any = None


@attrs.frozen
class Notify:
    event: str = attrs.field(validator=_NAME)
    tenant: str | None = attrs.field(default=None, validator=_optional_name)
    device: str | None = attrs.field(default=None, validator=_optional_name)
    data: Any = None

    def __attrs_post_init__(self) -> None:
        if (self.tenant is None) == (self.device is None):
            raise ValueError("name either a tenant or a device")


KINDS: dict[str, type] = {"disconnect": Disconnect, "revoke": Revoke, "layout": Layout, "notify": Notify}


class Actions:
    def __init__(self, api: ApiRouter, sio: SocketIOServer, layout_route: str | None) -> None:
        self._api = api
        self._sio = sio
        #: The signage feature's layout-update route, when that feature runs.
        self._layout_route = layout_route

    def requests(self, action: Any) -> list[tuple[str, dict[str, Any]]]:
        """The API calls (path, JSON body) that make ``action``."""
        if isinstance(action, Disconnect):
            if action.sid is not None:
                return [(_V1 + "disconnect", {"room": action.sid, "namespace": action.namespace})]
            field, name = ("user", action.user) if action.user is not None else ("device", action.device)
            room = f"{field}:{name}"
            namespaces = sorted(n for n in self._sio.hub.namespaces() if self._sio.hub.members(n, [room])) or ["/"]
            return [(_V1 + "disconnect", {field: name, "namespace": n}) for n in namespaces]
        if isinstance(action, Revoke):
            return [(_V1 + "admin/revoke", {"user": action.user})]
        if isinstance(action, Layout):
            if self._layout_route is None:
                raise ValueError("layouts are the signage feature's: it is not enabled")
            body: dict[str, Any] = {"layoutId": action.layoutId, "layoutData": action.layoutData, "tenantId": action.tenant}
            if action.device is not None:
                body["deviceIds"] = [action.device]
            return [(self._layout_route, body)]
        assert isinstance(action, Notify)
        target = {"tenant": action.tenant} if action.tenant is not None else {"device": action.device}
        return [(_V1 + "emit", {"event": action.event, "data": action.data, **target})]

    async def run(self, operator: Operator, remote: str, kind: str, action: Any) -> dict[str, Any]:
        """Make ``action`` as ``operator``; ``{ok, results: [{status, body}]}``."""
        results = []
        for path, body in self.requests(action):
            request = Request(
                "POST", path, path, {},
                {"authorization": f"Bearer {operator.credential}", "content-type": "application/json"},
                remote, orjson.dumps(body),
            )
            response = await self._api.handle(request)
            results.append({"status": response.status, "body": orjson.loads(response.body) if response.body else None})
        ok = all(r["status"] < 300 for r in results)
        log.info(
            "dashboard action",
            extra={"fields": {
                "operator": operator.who, "action": kind, "target": _target(action),
                "ok": ok, "status": ",".join(str(r["status"]) for r in results),
            }},
        )
        return {"ok": ok, "results": results}


def _target(action: Any) -> str:
    fields = attrs.asdict(action)
    return " ".join(f"{k}={fields[k]}" for k in ("sid", "user", "device", "tenant", "layoutId", "event") if fields.get(k))

"""Which handler answers which path on the one listening socket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import trio
from prometheus_client import CONTENT_TYPE_LATEST

from .api.router import PREFIX, ApiRouter
from .cluster.bus import RedisBus
from .engineio.server import EngineServer
from .http.messages import Request, Response, error_response, json_response
from .http.server import PeerGone
from .metrics import Stats
from .store import Store

_SMALL_BODY = 64 * 1024


def _mount(path: str) -> str:
    """``/realtime`` and ``/realtime/`` both serve requests for ``/realtime/``."""
    return path.rstrip("/") + "/"


class Router:
    def __init__(
        self,
        engine: EngineServer,
        engine_paths: tuple[str, ...],
        api: ApiRouter,
        stats: Stats,
        cluster: RedisBus | None = None,
        store: Store | None = None,
    ) -> None:
        self._engine = engine
        self._store = store
        self._api = api
        self._stats = stats
        self._cluster = cluster
        self._engine_paths = frozenset(_mount(p) for p in engine_paths)

    def _is_engine(self, request: Request) -> bool:
        return _mount(request.path) in self._engine_paths

    def _is_api(self, request: Request) -> bool:
        """``/api/...``, or a route a feature added outside it (``/console/``)."""
        return request.path.startswith(PREFIX) or self._api.serves(request.path)

    def body_limit(self, request: Request) -> int:
        if self._is_engine(request) or self._is_api(request):
            return self._engine.body_limit()
        return _SMALL_BODY

    def owner(self, request: Request) -> int | None:
        return self._engine.owner(request) if self._is_engine(request) else None

    async def handle(self, request: Request, peer_gone: PeerGone | None = None) -> Response:
        if self._is_engine(request):
            # Its own rules for every method (HEAD is not a poll: it would take frames).
            return await self._engine.handle_http(request, peer_gone)
        if request.method == "HEAD":
            # Answered as GET; the HTTP front sends the head only.
            request = attrs.evolve(request, method="GET")
        if self._is_api(request):
            return await self._api.handle(request)
        if request.path == "/metrics":
            if request.method != "GET":
                return error_response(405, "method_not_allowed", "use GET", [("Allow", "GET, HEAD")])
            return Response(200, self._stats.render(), (), CONTENT_TYPE_LATEST)
        if request.path == "/healthz":
            if request.method != "GET":
                return error_response(405, "method_not_allowed", "use GET", [("Allow", "GET, HEAD")])
            return json_response(200, self.health())
        return error_response(404, "not_found", f"no route for {request.path}")

    def health(self) -> dict[str, object]:
        """``ok``; ``degraded`` while the cluster's Redis is unreachable, for
        its messages or for the shared store (this node still serves its own
        clients and answers from what it knows, so the answer stays 200)."""
        if self._cluster is None:
            return {"status": "ok"}
        cluster = self._cluster.health()
        store = self._store.health() if self._store is not None else None
        up = cluster["redis"] == "up" and (store is None or store["store"] == "up")
        return {"status": "ok" if up else "degraded", "cluster": cluster, **({"store": store} if store else {})}

    def websocket_handler(self, request: Request) -> Response | Callable[[trio.abc.Stream], Awaitable[None]]:
        if self._is_engine(request):
            return self._engine.websocket_handler(request)
        return error_response(404, "not_found", f"no WebSocket endpoint at {request.path}")

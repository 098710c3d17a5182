"""The guard: authentication, authorization and limits applied to sockets.

One object the Engine.IO and Socket.IO layers consult at each decision point:
a new session (handshake rate and connections per address), a Socket.IO
CONNECT (token, identity, revocation, connections per user, automatic rooms),
each client event (rate limit, event roles) and each client-requested join
(room rules, rooms per socket).  It also keeps the index that lets a
revocation or an expiry end live sockets at once.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from ..config import Config, LimitsConfig
from ..http.messages import Request
from ..store import StoreUnavailable
from . import rules, tokens
from .errors import Refusal
from .identity import Identity, anonymous, from_claims
from .keys import KeyRing
from .limits import KeyedBuckets, Tally, TokenBucket

if TYPE_CHECKING:
    from ..socketio.socket import Socket
    from ..store import Store

log = logging.getLogger("rtserver.auth")

_ABUSE_WINDOW = 60.0
#: Revocations announced by the store whose kicks wait to be counted.
_KICKS_KEPT = 1000


def remote_host(request: Request) -> str:
    host, _, _ = request.remote.rpartition(":")
    return host or request.remote


class Guard:
    def __init__(
        self,
        config: Config,
        keys: KeyRing | None,
        store: Store | None,
    ) -> None:
        self.config = config
        self.auth = config.auth
        self.limits = config.limits
        self.keys = keys
        self.store = store
        #: Mirrors of the store's (see :meth:`store_reloaded`).
        self._token_versions: dict[str, int] = {}
        self._device_tenants: dict[str, str | None] = {}
        #: (user, version) -> sockets kicked when the store announced that revocation.
        self._kicked_on_notice: dict[tuple[str, int], int] = {}
        self._handshakes = KeyedBuckets(self.limits.handshakes_per_second, self.limits.handshake_burst)
        self._per_address = Tally()
        self._per_user = Tally()
        self._sockets_by_user: dict[str, set[Socket]] = defaultdict(set)
        #: Namespaces whose connections log in their own way instead of with
        #: a token (the admin UI's username and password): namespace ->
        #: ``await login(socket)``, which returns the identity or raises Refusal.
        #: Event roles (``auth.event_roles``) do not apply there.
        self.namespace_logins: dict[str, Callable[[Socket], Awaitable[Identity]]] = {}

    def set_limits(self, limits: LimitsConfig) -> None:
        """New limits (SIGHUP); counts already kept stay, buckets start afresh."""
        self.limits = limits
        self._handshakes = KeyedBuckets(limits.handshakes_per_second, limits.handshake_burst)

    # ------------------------------------------------------ engine level
    def admit(self, request: Request) -> Refusal | None:
        """Before a new Engine.IO session: handshake rate and address cap."""
        host = remote_host(request)
        if self._per_address[host] >= self.limits.max_connections_per_address:
            return Refusal("too_many_connections", "too many connections from this address", 429)
        if not self._handshakes.take(host):
            return Refusal("rate_limited", "too many new connections from this address", 429)
        self._per_address.add(host)
        return None

    def release(self, request: Request) -> None:
        self._per_address.remove(remote_host(request))

    def counted(self) -> dict[str, int]:
        """What the connection caps count now: Engine.IO sessions by address,
        sockets by user (both back to 0 when every client has left)."""
        return {"sessionsByAddress": self._per_address.total(), "socketsByUser": self._per_user.total()}

    # ------------------------------------------------------ socket level
    async def authenticate(self, socket: Socket) -> Identity:
        """Identify a connecting socket or raise :class:`Refusal`."""
        request = socket.handshake
        login = self.namespace_logins.get(socket.namespace_name)
        if login is not None:
            identity = await login(socket)
        elif not self.auth.enabled:
            identity = anonymous(socket.sid)
        else:
            assert self.keys is not None
            token = tokens.extract_token(self.auth, socket.auth, request)
            if token is None:
                raise Refusal("auth_required", "a token is required")
            identity = await self.identify(token)
        if self._per_user[identity.user] >= self.limits.max_connections_per_user:
            raise Refusal("too_many_connections", "too many connections for this user", 429)
        device = self._presented_device(socket, request)
        if device is not None:
            if device not in identity.devices:
                raise Refusal("forbidden", "rule device: the token does not own this device", 403)
            if self._device_tenants.get(device, identity.tenant) != identity.tenant:
                # Device ids are global rooms: the first tenant to register one keeps it.
                raise Refusal("forbidden", "rule device: this device is registered elsewhere", 403)
            identity = attrs.evolve(identity, device=device)
        return identity

    async def identify(self, token: str) -> Identity:
        """Verify a token and apply revocation and the user check; raises Refusal."""
        if self.keys is None:
            raise Refusal("token_invalid", "tokens are not accepted: authentication is off")
        identity = from_claims(tokens.verify(token, self.keys, self.auth), self.auth.claims)
        if self.auth.revocation and identity.token_version < self._token_versions.get(identity.user, 0):
            raise Refusal("token_revoked", "token has been revoked")
        if self.auth.check_user_exists and self.store is not None:
            try:
                known = await self.store.user_exists(identity.user)
            except StoreUnavailable:
                raise Refusal("store_unavailable", "the user table cannot be read right now; try again", 503) from None
            if not known:
                raise Refusal("user_unknown", "user is not known")
        return identity

    def _presented_device(self, socket: Socket, request: Request) -> str | None:
        field = self.auth.device_field
        value: Any = socket.auth.get(field) if isinstance(socket.auth, dict) else None
        value = value or request.query.get(field)
        return value if isinstance(value, str) and value else None

    def attach(self, socket: Socket, identity: Identity) -> None:
        """Record a connected socket: indexes, automatic rooms, expiry."""
        socket.identity = identity
        self._per_user.add(identity.user)
        self._sockets_by_user[identity.user].add(socket)
        socket.join(f"user:{identity.user}")
        if identity.tenant:
            socket.join(f"tenant:{identity.tenant}")
        if identity.device:
            socket.join(f"device:{identity.device}")
            self._device_tenants[identity.device] = identity.tenant
        if self.auth.enabled and identity.expires_at is not None:
            delay = max(0.0, identity.expires_at + self.auth.leeway - time.time())
            socket.expiry = socket.client.session.call_later(delay, functools.partial(self._expired, socket))

    def detach(self, socket: Socket) -> None:
        identity = socket.identity
        if identity is None:
            return
        if socket.expiry is not None:
            socket.expiry.cancel()
            socket.expiry = None
        self._per_user.remove(identity.user)
        sockets = self._sockets_by_user.get(identity.user)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._sockets_by_user[identity.user]

    def _expired(self, socket: Socket) -> None:
        if socket.connected:
            self.kick(socket, Refusal("token_expired", "token has expired"))

    def kick(self, socket: Socket, refusal: Refusal) -> None:
        """Tell the socket why, then drop its connection (the client reconnects
        with a fresh token, or sees the refusal in ``connect_error``)."""
        socket.emit(self.auth.error_event, refusal.as_dict())
        log.info("socket kicked", extra={"fields": {"sid": socket.sid, "code": refusal.code}})
        socket.close_connection(refusal.code)

    @property
    def device_tenants(self) -> Mapping[str, str | None]:
        """Every known device and the tenant it is registered to (read-only)."""
        return MappingProxyType(self._device_tenants)

    def sockets_of(self, user: str) -> set[Socket]:
        return set(self._sockets_by_user.get(user, ()))

    async def revoke(self, user: str, version: int | None = None) -> tuple[int, int]:
        """Raise the user's token version (to at least ``version``, another
        node's revocation, when given); end their live sockets here now.
        Returns (the version, sockets kicked)."""
        if self.store is not None:
            if version is None:
                version = await self.store.bump_token_version(user)
            else:
                version = await self.store.raise_token_version(user, version)
        else:
            current = self._token_versions.get(user, 0)
            version = current + 1 if version is None else max(version, current)
        self._token_versions[user] = version
        return version, self._kick_revoked(user, version) + self._kicked_on_notice.pop((user, version), 0)

    def _kick_revoked(self, user: str, version: int) -> int:
        kicked = 0
        for socket in self.sockets_of(user):
            if socket.identity is not None and socket.identity.token_version < version:
                self.kick(socket, Refusal("token_revoked", "token has been revoked"))
                kicked += 1
        return kicked

    # ------------------------------------------------------ store mirror
    def store_changed(self, kind: str, args: list[Any]) -> None:
        """Another node revoked a user's tokens, or registered a device."""
        if kind == "token":
            user, version = args
            if version > self._token_versions.get(user, 0):
                self._token_versions[user] = version
                kicked = self._kick_revoked(user, version)
                if kicked:
                    # Counted in the answer to the revoking node's request, if it comes.
                    self._kicked_on_notice[(user, version)] = kicked
                    while len(self._kicked_on_notice) > _KICKS_KEPT:
                        del self._kicked_on_notice[next(iter(self._kicked_on_notice))]
        elif kind == "device":
            device, tenant = args
            self._device_tenants[device] = tenant

    async def store_reloaded(self, store: Store) -> None:
        """Take the store's token versions and device tenants; a higher
        version known here (written while the store had lost it) is written
        back, so a revocation is never undone."""
        stored = await store.token_versions()
        for user, version in list(self._token_versions.items()):
            if version > stored.get(user, 0):
                stored[user] = await store.raise_token_version(user, version)
        for user, version in stored.items():
            self.store_changed("token", [user, version])
        self._device_tenants.update(await store.device_tenants())

    # ------------------------------------------------------- event level
    def new_event_bucket(self) -> TokenBucket:
        return TokenBucket(self.limits.events_per_second, self.limits.event_burst)

    def check_event(self, socket: Socket, event: Any, bucket: TokenBucket) -> Refusal | None:
        """Rate limit and event roles for one client event."""
        if not bucket.take():
            return Refusal("rate_limited", "too many events; slow down", 429)
        if isinstance(event, str) and socket.identity is not None and socket.namespace_name not in self.namespace_logins:
            try:
                rules.check_event(socket.identity, event, self.auth.event_roles)
            except Refusal as exc:
                return exc
        return None

    def abusive(self, refusals: deque[float]) -> bool:
        """Record one refused event in ``refusals``; True once there are too
        many in the abuse window."""
        now = time.monotonic()
        refusals.append(now)
        while now - refusals[0] > _ABUSE_WINDOW:
            refusals.popleft()
        return len(refusals) > self.limits.abuse_threshold

    def room_for(self, socket: Socket, channel: Any) -> str:
        """The room a client may join for ``channel``, or raise :class:`Refusal`."""
        if not isinstance(channel, str):
            raise Refusal("invalid_room", "a channel name is a string", 400)
        identity = socket.identity
        assert identity is not None
        room = rules.qualify(identity, channel)
        rules.check_room(identity, room, self.auth.admin_roles, self._device_tenants.get)
        if room != socket.sid and socket.client.server.hub.member(socket.namespace_name, room) is not None:
            # Another socket's own room carries its direct messages.
            raise Refusal("forbidden", "rule sid: a socket's own room is private", 403)
        if room not in socket.rooms and len(socket.rooms) >= self.limits.max_rooms_per_socket:
            raise Refusal("too_many_rooms", f"at most {self.limits.max_rooms_per_socket} rooms per socket", 429)
        return room

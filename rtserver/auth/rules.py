"""Who may join which room and emit which event: one function each.

Room names carry their scope:

- ``tenant:{t}`` and ``tenant:{t}:...``: members of tenant ``t`` only;
- ``user:{u}`` and ``user:{u}:...``: user ``u`` only;
- ``device:{d}``: the device's owner (its id in the token's devices claim), or
  an admin of the tenant the device is registered to;
- any other name is a custom channel, always scoped to the caller's tenant:
  :func:`qualify` turns ``alerts`` into ``tenant:{t}:alerts``, so two tenants
  using the same channel name never meet.

Refusals say which rule refused and never name another tenant.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import Refusal
from .identity import Identity

_MAX_ROOM_LENGTH = 256


def qualify(identity: Identity, channel: str) -> str:
    """The room a client-requested channel name stands for."""
    if channel.startswith(("tenant:", "user:", "device:")):
        return channel
    return f"tenant:{identity.tenant}:{channel}" if identity.tenant else channel


def check_room(
    identity: Identity,
    room: str,
    admin_roles: tuple[str, ...],
    device_tenant: Callable[[str], str | None],
) -> None:
    """Raise :class:`Refusal` unless ``identity`` may join ``room`` (already qualified)."""
    if not room or len(room) > _MAX_ROOM_LENGTH:
        raise Refusal("invalid_room", f"room names are 1 to {_MAX_ROOM_LENGTH} characters", 400)
    scope, _, rest = room.partition(":")
    if scope == "tenant":
        tenant = rest.split(":", 1)[0]
        if identity.tenant is None or tenant != identity.tenant:
            raise Refusal("forbidden", "rule tenant: only members of a tenant may join its rooms", 403)
    elif scope == "user":
        if rest.split(":", 1)[0] != identity.user:
            raise Refusal("forbidden", "rule user: only the user may join their own rooms", 403)
    elif scope == "device":
        device = rest
        if device in identity.devices:
            return
        if identity.has_role(admin_roles) and identity.tenant is not None and device_tenant(device) == identity.tenant:
            return
        raise Refusal("forbidden", "rule device: only the device's owner or a tenant admin may join", 403)


def check_event(identity: Identity, event: str, event_roles: dict[str, tuple[str, ...]]) -> None:
    """Raise :class:`Refusal` unless ``identity`` may emit ``event``."""
    roles = event_roles.get(event)
    if roles is not None and not identity.has_role(roles):
        raise Refusal("forbidden", f"rule roles: {event!r} needs one of the roles {', '.join(roles)}", 403)

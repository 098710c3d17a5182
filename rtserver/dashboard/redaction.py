"""What the dashboard may show of client data: secrets masked, payloads cut short.

Values under a key that names a credential (``token``, ``authorization``,
``cookie``, ``password``, ``secret``, an API key...) are replaced by
``"[redacted]"`` at any depth, and anything shaped like a JWT, wherever it
appears in the text, by ``"[token]"``.  Then the JSON text is cut to the
configured length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"token|authori[sz]ation|cookie|passw|secret|api[-_]?key|credential|session[-_]?key", re.IGNORECASE
)
#: A JWT's header always starts with '{"' (base64url "eyJ"): three dot-separated base64url parts.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
_MAX_DEPTH = 8


def secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(name))


def redact(value: Any, depth: int = 0) -> Any:
    """``value`` with the values of credential-named keys masked (a copy)."""
    if depth > _MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if secret_key(str(k)) else redact(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return value


def preview(value: Any, limit: int) -> str:
    """Redacted JSON text of ``value``, at most ``limit`` characters (an
    ellipsis marks a cut)."""
    text = mask_tokens(orjson.dumps(redact(value), default=str).decode())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mask_tokens(text: str) -> str:
    """``text`` with anything shaped like a JWT replaced."""
    return _JWT.sub("[token]", text)

"""The error answers of the reference Engine.IO server, as HTTP responses."""

from __future__ import annotations

import enum


class EngineError(enum.IntEnum):
    UNKNOWN_TRANSPORT = 0
    UNKNOWN_SID = 1
    BAD_HANDSHAKE_METHOD = 2
    BAD_REQUEST = 3
    FORBIDDEN = 4
    UNSUPPORTED_PROTOCOL_VERSION = 5

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def status(self) -> int:
        return 403 if self is EngineError.FORBIDDEN else 400


_MESSAGES = {
    EngineError.UNKNOWN_TRANSPORT: "Transport unknown",
    EngineError.UNKNOWN_SID: "Session ID unknown",
    EngineError.BAD_HANDSHAKE_METHOD: "Bad handshake method",
    EngineError.BAD_REQUEST: "Bad request",
    EngineError.FORBIDDEN: "Forbidden",
    EngineError.UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}

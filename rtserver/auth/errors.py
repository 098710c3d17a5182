"""The machine-readable refusal every auth, rule and limit check raises."""

from __future__ import annotations

from typing import Any


class Refusal(Exception):
    """A refusal with a stable ``code`` (``token_expired``, ``forbidden``, ...).

    Messages never carry key material, claims or other tenants' names.
    """

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    def connect_error(self) -> dict[str, Any]:
        """The CONNECT_ERROR payload: the client's Error gets ``message`` and ``data``."""
        return {"message": self.message, "data": {"code": self.code}}

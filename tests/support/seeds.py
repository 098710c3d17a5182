"""A seed document's example configuration (examples/<name>.toml), run with
test credentials, and the HTTP API its back end calls."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest

from rtserver import config as config_mod
from rtserver import features

from . import wire

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
WAIT = 10.0
_OWN_KEY: Any = object()


class Seed:
    """``examples/<feature>.toml`` with ``secret`` and ``api_key``; tokens
    name ``tenant`` unless told otherwise."""

    def __init__(self, feature: str, secret: str, api_key: str, tenant: str) -> None:
        self.feature = feature
        self.secret = secret
        self.api_key = api_key
        self.tenant = tenant
        self.path = EXAMPLES / f"{feature}.toml"
        self.example: dict[str, Any] = tomllib.loads(self.path.read_text())

    def token(self, sub: str, tenant: str | None = _OWN_KEY, **claims: Any) -> str:
        """An HS256 JWT for ``sub`` in ``tenant`` (none: no tenant claim), valid 10 minutes."""
        payload: dict[str, Any] = {"sub": sub, "iat": int(time.time()), "exp": int(time.time()) + 600, **claims}
        tenant = self.tenant if tenant is _OWN_KEY else tenant
        if tenant is not None:
            payload["tenantId"] = tenant
        return jwt.encode(payload, self.secret, algorithm="HS256")

    def sections(self, grace: float = 0.3, **feature: Any) -> dict[str, Any]:
        """The example config's sections, with the test secret and API key, a
        short presence grace and ``feature`` merged into the feature's table."""
        example = self.example
        sections = {k: v for k, v in example.items() if k != "server"}
        sections["auth"] = {**example["auth"], "secret": self.secret, "secret_env": "", "api_keys": [self.api_key]}
        sections["presence"] = {**example["presence"], "grace": grace}
        if feature:
            features = example["features"]
            sections["features"] = {**features, self.feature: {**features[self.feature], **feature}}
        return sections

    def problems(self, feature: dict[str, Any]) -> list[str]:
        """The problems the config check finds with ``feature`` as the feature's table."""
        data = {**self.example, "features": {"enabled": [self.feature], self.feature: feature}}
        with pytest.raises(config_mod.ConfigError) as exc:
            features.settings_for(config_mod.structure(data))
        return exc.value.problems

    async def http(self, port: int, method: str, target: str, body: Any = None, key: str | None = _OWN_KEY,
                   bearer: str | None = None) -> tuple[int, Any]:
        """One API request with the API key (``key``: another, or None for
        none) and/or a Bearer ``bearer``; (status, decoded JSON)."""
        raw = b"" if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        key = self.api_key if key is _OWN_KEY else key
        headers = []
        if key:
            headers.append(("X-Api-Key", key))
        if bearer:
            headers.append(("Authorization", f"Bearer {bearer}"))
        status, _, data = await wire.request(port, method, target, raw, headers, sized=None, timeout=WAIT)
        return status, orjson.loads(data)

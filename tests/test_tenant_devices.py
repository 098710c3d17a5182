"""Device ids are global room names: one tenant cannot take over another's device."""

from __future__ import annotations

import pytest
from socketio import exceptions as socketio_exceptions
from support.clients import LiveClient, auth_section, http, token

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def test_a_device_registered_to_one_tenant_is_refused_to_another(start_server):
    server = await start_server(None, auth=auth_section())
    screen = await LiveClient(server.port).connect(
        {"token": token("screen-owner", "acme", devices=["screen-1"]), "deviceId": "screen-1"}
    )
    intruder = LiveClient(server.port)
    with pytest.raises(socketio_exceptions.ConnectionError):
        await intruder.connect({"token": token("mallory", "globex", devices=["screen-1"]), "deviceId": "screen-1"})
    refusal = await intruder.next("connect_error")
    assert refusal["data"] == {"code": "forbidden"}
    assert "acme" not in refusal["message"]
    # The owner's screen still gets what is meant for it, and only it.
    status, body = await http(server.port, "POST", "/api/v1/emit", {"device": "screen-1", "event": "layout", "data": 1})
    assert body == {"delivered": 1}
    assert await screen.next("layout") == 1
    await screen.disconnect()

"""A small rtserver application: echo with ack, rooms, broadcast.

Run it with ``rtserver serve --app examples.echo_app:app`` from the project
root (or put ``module = "examples.echo_app:app"`` under ``[app]``).
"""

from __future__ import annotations

from typing import Any

import rtserver

app = rtserver.App()


@app.on("connect")
async def connect(socket: rtserver.Socket, auth: dict[str, Any]) -> None:
    socket.data["name"] = auth.get("name", "anonymous") if isinstance(auth, dict) else "anonymous"


@app.on("echo")
async def echo(socket: rtserver.Socket, *args: Any) -> tuple[Any, ...]:
    """Returns its arguments: the client's ack callback receives them back."""
    return args


@app.on("join")
def join(socket: rtserver.Socket, room: str) -> list[str]:
    socket.join(room)
    return sorted(socket.rooms)


@app.on("leave")
def leave(socket: rtserver.Socket, room: str) -> list[str]:
    socket.leave(room)
    return sorted(socket.rooms)


@app.on("say")
def say(socket: rtserver.Socket, room: str, text: str) -> int:
    """Broadcast to a room except the sender; the ack is how many got it."""
    return app.emit("said", {"from": socket.data["name"], "text": text}, to=room, skip=socket.sid)

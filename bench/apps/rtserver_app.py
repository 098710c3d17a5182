"""The benchmark app on rtserver (served by ``rtserver serve --app rtserver_app:app``).

The same tiny app as bench/peers/*: the token was already verified by
rtserver's guard (auth.enabled = true in bench/apps/rtserver.toml) before
``connect`` runs; ``join`` joins a room and acks; ``publish`` (from the load
generator's control socket) emits to a room; ``echo`` acks its arguments.
"""

from __future__ import annotations

from typing import Any

import rtserver

app = rtserver.App()


@app.on("join")
def join(socket: rtserver.Socket, room: str) -> str:
    socket.join(room)
    return "ok"


@app.on("publish")
def publish(socket: rtserver.Socket, room: str, data: Any) -> None:
    app.emit("msg", data, to=room)


@app.on("echo")
def echo(socket: rtserver.Socket, *args: Any) -> tuple[Any, ...]:
    return args

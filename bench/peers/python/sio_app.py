"""The benchmark app on python-socketio 5 (the peer of bench/apps/rtserver_app.py).

Usage: python sio_app.py {aiohttp|uvicorn} PORT SECRET
Both run on uvloop, python-socketio's fastest asyncio set-ups.
"""

from __future__ import annotations

import inspect
import sys

import jwt
import socketio

mode, port, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]

sio = socketio.AsyncServer(
    async_mode="aiohttp" if mode == "aiohttp" else "asgi",
    ping_interval=10,
    ping_timeout=20,
    max_http_buffer_size=1_000_000,
    logger=False,
    engineio_logger=False,
)


async def _maybe(value):
    if inspect.isawaitable(value):
        await value


@sio.event
async def connect(sid, environ, auth):
    token = auth.get("token") if isinstance(auth, dict) else None
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp"]})
    except Exception:
        raise socketio.exceptions.ConnectionRefusedError("token_invalid")
    await sio.save_session(sid, {"user": claims.get("sub")})


@sio.event
async def join(sid, room):
    await _maybe(sio.enter_room(sid, room))
    return "ok"


@sio.event
async def publish(sid, room, data):
    await sio.emit("msg", data, room=room)


@sio.event
async def echo(sid, *args):
    return args


if mode == "aiohttp":
    import asyncio

    import uvloop
    from aiohttp import web

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = web.Application()
    sio.attach(app)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
else:
    import uvicorn

    app = socketio.ASGIApp(sio)
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", ws="websockets",
                log_level="warning", access_log=False, ws_per_message_deflate=False)

"""Observers see rooms joined and left and events in and out, with the real
Node client driving the socket."""

from __future__ import annotations

from typing import Any

from support.nodes import acks, run_scripted

from rtserver import App


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def joined(self, socket, room):
        self.seen.append(("joined", socket.sid == room, room))

    def left(self, socket, room):
        self.seen.append(("left", room))

    def received(self, socket, event, args):
        self.seen.append(("received", event, args))

    def sent(self, namespace, event, args, rooms):
        self.seen.append(("sent", namespace, event, args, rooms))


async def test_observer_sees_rooms_and_events(start_server, node):
    app = App()

    @app.on("enter")
    def enter(socket, room):
        socket.join(room)
        socket.leave(room + "-never-joined")  # not a member: no "left"
        app.emit("entered", room, to=room)
        return "in"

    @app.on("exit")
    def exit_(socket, room):
        socket.leave(room)
        socket.emit("bye", room)
        return "out"

    server = await start_server(app)
    recorder = Recorder()
    server.sio.observers.append(recorder)
    result = await run_scripted(
        node,
        server,
        options={"transports": ["websocket"]},
        steps=[{"emit": ["enter", "lobby"], "ack": True}, {"wait": "entered"}, {"emit": ["exit", "lobby"], "ack": True}, {"wait": "bye"}],
    )
    assert acks(result, "enter") == [["in"]] and acks(result, "exit") == [["out"]]
    sid = next(s for s in recorder.seen if s[0] == "sent" and s[2] == "bye")[4][0]
    automatic, *rest = recorder.seen
    assert automatic[:2] == ("joined", False) and automatic[2].startswith("user:anonymous:")
    assert rest == [
        ("received", "enter", ["lobby"]),
        ("joined", False, "lobby"),
        ("sent", "/", "entered", ("lobby",), ["lobby"]),
        ("received", "exit", ["lobby"]),
        ("left", "lobby"),
        ("sent", "/", "bye", ("lobby",), [sid]),
    ]

"""Room membership and fan-out in the hub, without sockets or I/O."""

from __future__ import annotations

from typing import Any

from rtserver.hub import Hub


class Member:
    """Stands in for a Socket.IO socket: records what it is given."""

    def __init__(self, sid: str, namespace: str = "/") -> None:
        self.sid = sid
        self.namespace_name = namespace
        self.rooms: set[str] = set()
        self.got: list[Any] = []

    def deliver(self, item: Any, volatile: bool) -> bool:
        self.got.append(item.frames)
        return True


def test_a_socket_is_in_its_own_room() -> None:
    hub = Hub()
    a, b = Member("a"), Member("b")
    hub.add(a)
    hub.add(b)
    assert a.rooms == {"a"}
    assert hub.publish("/", ("4x",), rooms=["a"]) == 1
    assert a.got == [("4x",)] and b.got == []
    assert hub.members("/", ["a", "b"]) == {a, b}
    assert hub.rooms("/") == {"a": 1, "b": 1}


def test_leaving_its_own_room_is_ignored_and_remove_forgets_all() -> None:
    hub = Hub()
    a = Member("a")
    hub.add(a)
    hub.join(a, "lobby")
    hub.leave(a, "a")
    assert a.rooms == {"a", "lobby"}
    assert hub.publish("/", ("4x",), rooms=["a"]) == 1
    hub.remove(a)
    assert a.rooms == set()
    assert hub.rooms("/") == {}
    assert hub.publish("/", ("4x",), rooms=["a"]) == 0


def test_a_room_named_like_a_sid_holds_its_socket_and_those_put_there() -> None:
    # The server side may put anyone in any room, even one named like a sid.
    hub = Hub()
    a, b = Member("a"), Member("b")
    hub.add(a)
    hub.add(b)
    hub.join(b, "a")
    assert hub.publish("/", ("4x",), rooms=["a"]) == 2
    assert hub.members("/", ["a"]) == {a, b}
    assert hub.members("/", None, exclude=["a"]) == set()
    assert hub.rooms("/")["a"] == 2


def test_exclude_and_namespaces_are_apart() -> None:
    hub = Hub()
    a, b, c = Member("a"), Member("b"), Member("c", "/chat")
    for member in (a, b, c):
        hub.add(member)
        hub.join(member, "lobby")
    assert hub.members("/", ["lobby"], exclude=["b"]) == {a}
    assert hub.publish("/", ("4x",), rooms=["lobby"], exclude=["a"]) == 1
    assert b.got == [("4x",)] and a.got == [] and c.got == []
    assert hub.namespaces() == {"/": 2, "/chat": 1}

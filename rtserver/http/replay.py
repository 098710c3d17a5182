"""A stream that first replays bytes already read from the socket."""

from __future__ import annotations

import trio


class ReplayStream(trio.abc.Stream):
    """Wraps ``stream``; ``receive_some`` returns ``prefix`` before new bytes.

    The HTTP front parses a request head itself before it knows the request
    is a WebSocket upgrade; this hands the WebSocket library the connection as
    if nothing had been read yet.
    """

    def __init__(self, prefix: bytes, stream: trio.abc.Stream) -> None:
        self._prefix = prefix
        self._stream = stream

    @property
    def inner(self) -> trio.abc.Stream:
        return self._stream

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()

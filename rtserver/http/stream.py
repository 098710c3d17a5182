"""The stream a WebSocket connection is served on: the single owner of its bytes."""

from __future__ import annotations

import os

import trio


class ConnectionStream(trio.abc.Stream):
    """Wraps an accepted connection for the WebSocket library and for us.

    Reading: ``receive_some`` first returns ``prefix``, the request head the
    HTTP front already read, so the library sees the connection as new.

    Writing: every byte goes through this object, one write at a time, so
    the library's own frames (handshake, pongs, close) and ours never
    interleave.  :meth:`write_nowait` lets a publisher put a pre-built frame
    straight on an idle socket without a task switch (see
    :meth:`rtserver.engineio.session.Session.send`).
    """

    def __init__(self, prefix: bytes, stream: trio.abc.Stream) -> None:
        self._prefix = prefix
        self._stream = stream
        self._send_lock = trio.StrictFIFOLock()
        # Direct writes need the plain socket; over TLS everything is queued.
        self._fd: int | None = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None

    @property
    def busy(self) -> bool:
        """Whether a write is in progress (then nothing may jump ahead of it)."""
        return self._send_lock.locked()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._send_lock:
            await self._stream.send_all(data)

    def write_nowait(self, data: bytes) -> int:
        """Write what the socket takes now without blocking; how many bytes.

        0 when a write is in progress or the stream cannot be written
        directly; raises ``trio.BrokenResourceError`` if the peer is gone.
        """
        if self._fd is None or self._send_lock.locked():
            return 0
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._fd = None
            raise trio.BrokenResourceError(str(exc)) from exc

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self._fd = None  # the descriptor may be reused once closed
        await self._stream.aclose()

"""The stream a connection is served on: the single owner of its bytes."""

from __future__ import annotations

import os

import trio

_READ_SIZE = 65536


def _read(fd: int, size: int) -> bytes | None:
    """What the socket has now (b"" at its end), or None when nothing is there yet."""
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise trio.BrokenResourceError(str(exc)) from exc


class ConnectionStream(trio.abc.Stream):
    """Wraps an accepted connection for the HTTP front, the WebSocket and us.

    On a plain socket it reads and writes the socket itself, as trio's
    socket layer does (try the call, else wait until the socket is ready):
    an idle WebSocket waits in that read for its whole life, and the three
    coroutine frames of ``SocketStream.receive_some`` and trio's socket
    wrapper cost about 0.9 KiB of every idle connection; a long-polling
    answer goes out in one ``write`` without trio's send machinery.  Over TLS
    everything goes through the wrapped stream.

    Reading: ``receive_some`` first returns what :meth:`push_back` gave it,
    the bytes the HTTP front read past an upgrade request's head.

    Writing: every byte goes through this object, one write at a time, so
    the library's own frames (handshake, pongs, close) and ours never
    interleave.  :meth:`write_nowait` lets a publisher put a pre-built frame
    straight on an idle socket without a task switch (see
    :meth:`rtserver.engineio.session.Session.send`).
    """

    __slots__ = ("_fd", "_prefix", "_send_lock", "_stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._prefix = b""
        self._stream = stream
        self._send_lock = trio.StrictFIFOLock()
        # Direct reads and writes need the plain socket.
        self._fd: int | None = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None

    def push_back(self, data: bytes) -> None:
        """Bytes already read from the connection, for the next reads to return first."""
        self._prefix = data + self._prefix

    @property
    def socket(self) -> trio.socket.SocketType | None:
        """The plain socket under this stream (None over TLS)."""
        return self._stream.socket if isinstance(self._stream, trio.SocketStream) else None

    @property
    def pending(self) -> bytes:
        """What :meth:`push_back` gave that has not been read yet."""
        return self._prefix

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
        fd = self._fd
        if fd is None:
            return await self._stream.receive_some(max_bytes)
        size = max_bytes or _READ_SIZE
        await trio.lowlevel.checkpoint_if_cancelled()
        data = _read(fd, size)
        if data is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        while data is None:  # woken without data happens: wait again
            await trio.lowlevel.wait_readable(fd)
            if self._fd is None:
                raise trio.ClosedResourceError("the stream was closed")
            data = _read(fd, size)
        return data

    async def peer_gone(self) -> bool:
        """Wait until the peer sends something or goes away, without reading
        anything it sends: True once it is gone (end of stream, reset),
        False when bytes arrived (kept for the next read).  A stream that
        cannot be watched this way (TLS, bytes already pushed back) answers
        False at once.  A long poll waits in here for its client's close."""
        fd = self._fd
        if fd is None or self._prefix:
            return False
        while True:
            await trio.lowlevel.wait_readable(fd)
            if self._fd is None:
                return True  # closed meanwhile
            try:
                data = _read(fd, _READ_SIZE)
            except trio.BrokenResourceError:
                return True
            if data == b"":
                return True
            if data is not None:
                self.push_back(data)
                return False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._fd is None or self._send_lock.locked():
            async with self._send_lock:
                await self._stream.send_all(data)
            return
        await trio.lowlevel.checkpoint_if_cancelled()
        # Held from before the first byte: nothing may write between the
        # direct write and the rest of it.
        self._send_lock.acquire_nowait()
        try:
            written = self._write(data)
            if written < len(data):
                await self._stream.send_all(memoryview(data)[written:])
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._send_lock.release()

    def write_nowait(self, data: bytes) -> int:
        """Write what the socket takes now without blocking; how many bytes.

        0 when a write is in progress or the stream cannot be written
        directly; raises ``trio.BrokenResourceError`` if the peer is gone.
        """
        if self._fd is None or self._send_lock.locked():
            return 0
        return self._write(data)

    def _write(self, data: bytes | bytearray | memoryview) -> int:
        assert self._fd is not None
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

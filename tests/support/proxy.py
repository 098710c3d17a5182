"""A TCP proxy on loopback whose connections a test can cut, to drop the
network under a real client without it closing anything itself."""

from __future__ import annotations

import trio


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._pairs: list[tuple[trio.SocketStream, trio.SocketStream]] = []
        #: Server-side streams kept open (unread) after a client-side-only cut.
        self.held: list[trio.SocketStream] = []
        self._cancel = trio.CancelScope()

    async def serve(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        with self._cancel:
            await trio.serve_listeners(self._handle, listeners, task_status=task_status)

    async def _pipe(self, source: trio.SocketStream, sink: trio.SocketStream) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        except OSError:
            await client.aclose()
            return
        pair = (client, server)
        self._pairs.append(pair)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pipe, client, server)
            nursery.start_soon(self._pipe, server, client)
        await client.aclose()
        if server not in self.held:
            await server.aclose()

    async def cut(self, server_side: bool = True) -> None:
        """Drop every proxied connection.  With ``server_side=False`` only the
        client sees it: the server keeps a silent, half-dead transport."""
        pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            if not server_side:
                self.held.append(server)
            await client.aclose()
            if server_side:
                await server.aclose()

    def close(self) -> None:
        self._cancel.cancel()

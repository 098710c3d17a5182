"""Several machines: Debian's nginx with ``ip_hash`` (deploy/nginx/rtserver.conf,
as the README documents it) in front of two rtserver nodes on a real
redis-server, and stock polling-first clients through it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import trio
from support.clients import API_KEY, http
from support.crowd import Crowd
from support.redis import free_port, needs_redis
from test_cluster import start_node

from rtserver import App

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
SITE = Path(__file__).parent.parent / "deploy" / "nginx" / "rtserver.conf"

pytestmark = [
    needs_redis,
    pytest.mark.skipif(NGINX is None and not os.environ.get("CI"), reason="nginx is not installed (CI installs nginx-light)"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

#: Client addresses in four /24s (ip_hash hashes the first three bytes); on
#: loopback a client may connect from any 127.x.y.z.
SOURCES = ["127.0.0.1", "127.0.1.1", "127.0.2.1", "127.0.3.1"]


def site(ports: list[int], listen: int) -> str:
    """The documented site file with these nodes and this port."""
    text = SITE.read_text()
    nodes = "".join(f"    server 127.0.0.1:{port};\n" for port in ports)
    text, count = re.subn(r"(    server 10\.0\.0\.\d+:3000;\n)+", nodes, text)
    assert count == 1
    text, count = re.subn(r"listen 80;", f"listen 127.0.0.1:{listen};", text)
    assert count == 1
    return text


async def start_nginx(nursery: trio.Nursery, directory: Path, ports: list[int]) -> tuple[trio.Process, int]:
    """nginx in the foreground with a configuration of its own in ``directory``."""
    listen = free_port()
    directory.mkdir()
    (directory / "rtserver.conf").write_text(site(ports, listen))
    (directory / "nginx.conf").write_text(
        f"""daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/rtserver.conf;
}}
"""
    )
    process = await trio.lowlevel.open_process(
        [NGINX, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-e", str(directory / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    with trio.fail_after(10):
        while True:
            assert process.poll() is None, (directory / "error.log").read_text()
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", listen)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return process, listen


async def test_stock_polling_first_clients_through_nginx_ip_hash_reach_both_nodes(start_server, redis, tmp_path, nursery):
    sections = {"auth": {"enabled": False, "api_keys": [API_KEY]}}
    apps = [App(), App()]
    nodes = [await start_node(start_server, redis, tmp_path, name, app, **sections) for name, app in zip("ab", apps, strict=True)]
    nginx, port = await start_nginx(nursery, tmp_path / "nginx", [node.port for node in nodes])
    crowd = None
    try:
        crowd = await Crowd.start(nursery, f"http://127.0.0.1:{port}", 100, localAddresses=SOURCES)
        state = await crowd.until(lambda s: s["connected"] == 100 and s["upgraded"] == 100)
        # Every long-polling request of a client reached the node holding its
        # session: no request refused, no client dropped.
        assert (state["errors"], state["disconnects"], state["connects"]) == ({}, 0, 100), state
        on_a, on_b = (len(app.sockets()) for app in apps)
        assert on_a + on_b == 100 and on_a > 0 and on_b > 0, (on_a, on_b)
        # A broadcast through nginx to one node reaches the clients of both.
        status, body = await http(port, "POST", "/api/v1/emit", {"event": "news", "data": {"round": 1}, "broadcast": True})
        assert status == 200 and body["delivered"] in (on_a, on_b), body
        await crowd.until(lambda s: s["received"].get("1") == 100)
        await crowd.process.stdin.aclose()
        with trio.fail_after(10):
            await crowd.process.wait()
    finally:
        if crowd is not None and crowd.process.returncode is None:
            crowd.process.kill()
        nginx.terminate()
        with trio.fail_after(10):
            await nginx.wait()

"""Transports and lifecycle of the daemon: TCP v4/v6, Unix sockets, asyncio serving."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import remoteobj
from remoteobj.errors import CommunicationError, DaemonError
from tests.procs import wait_for


@remoteobj.expose
class Echo:
    def echo(self, x: object) -> object:
        return x


def serve_in_thread(daemon: remoteobj.Daemon) -> threading.Thread:
    thread = threading.Thread(target=daemon.request_loop, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def running() -> Iterator[tuple[remoteobj.Daemon, str]]:
    daemon = remoteobj.Daemon("127.0.0.1", 0)
    uri = daemon.register(Echo(), "echo")
    thread = serve_in_thread(daemon)
    yield daemon, str(uri)
    daemon.close()
    thread.join(5)
    assert not thread.is_alive()


def test_register_binds_and_returns_a_uri_with_the_real_port() -> None:
    with remoteobj.Daemon("127.0.0.1", 0) as daemon:
        uri = daemon.register(Echo(), "echo")
        assert uri.host == "127.0.0.1"
        assert uri.port == daemon.sock.getsockname()[1] != 0
        assert daemon.uri_for("echo") == uri
        assert str(uri) == f"PYRO:echo@{daemon.location}"


def test_the_constructor_does_not_bind() -> None:
    daemon = remoteobj.Daemon("127.0.0.1", 0)
    assert daemon._sock is None
    daemon.close()


def test_registering_an_id_twice_is_refused_unless_forced() -> None:
    with remoteobj.Daemon("127.0.0.1", 0) as daemon:
        daemon.register(Echo(), "echo")
        with pytest.raises(DaemonError, match="already registered"):
            daemon.register(Echo(), "echo")
        daemon.register(Echo(), "echo", force=True)


def test_objects_that_expose_nothing_are_refused() -> None:
    class Bare:
        def hidden(self) -> None: ...

    with remoteobj.Daemon("127.0.0.1", 0) as daemon, pytest.raises(DaemonError, match="@expose"):
        daemon.register(Bare())


def test_unregister_makes_the_object_unreachable(running: tuple[remoteobj.Daemon, str]) -> None:
    daemon, uri = running
    with remoteobj.Proxy(uri) as p:
        assert p.echo(1) == 1
    daemon.unregister("echo")
    assert "echo" not in daemon.registered()
    with remoteobj.Proxy(uri) as p, pytest.raises(CommunicationError, match="unknown object"):
        p._bind()


def test_builtin_daemon_object_answers(running: tuple[remoteobj.Daemon, str]) -> None:
    daemon, uri = running
    with remoteobj.Proxy(uri.replace("echo", "Pyro.Daemon")) as d:
        assert set(d.registered()) == {"Pyro.Daemon", "echo"}
        assert d.ping() is None
        assert daemon.location in d.info()
        meta = d.get_metadata("echo")
        assert meta["methods"] == {"echo"}
        assert not meta["oneway"] and not meta["attrs"]  # serpent sends empty sets as ()


def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    daemon = remoteobj.Daemon(unixsocket=path)
    uri = daemon.register(Echo(), "echo")
    assert str(uri) == f"PYRO:echo@./u:{path}"
    thread = serve_in_thread(daemon)
    try:
        with remoteobj.Proxy(uri) as p:
            assert p.echo("over unix") == "over unix"

        async def via_async() -> object:
            async with remoteobj.AsyncProxy(uri) as ap:
                return await ap.echo("async unix")

        assert asyncio.run(via_async()) == "async unix"
        from Pyro5.api import Proxy as Pyro5Proxy

        with Pyro5Proxy(str(uri)) as p5:
            assert p5.echo("pyro5 unix") == "pyro5 unix"
    finally:
        daemon.close()
        thread.join(5)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback() -> None:
    daemon = remoteobj.Daemon("::1", 0)
    uri = daemon.register(Echo(), "echo")
    assert str(uri).startswith("PYRO:echo@[::1]:")
    thread = serve_in_thread(daemon)
    try:
        with remoteobj.Proxy(uri) as p:
            assert p.echo("v6") == "v6"
    finally:
        daemon.close()
        thread.join(5)


def test_asyncio_serving_with_async_with_and_shutdown() -> None:
    async def main() -> object:
        daemon = remoteobj.Daemon("127.0.0.1", 0)
        uri = daemon.register(Echo(), "echo")
        async with daemon:
            server = asyncio.create_task(daemon.serve())
            async with remoteobj.AsyncProxy(uri) as p:
                result = await p.echo("served by asyncio")
            daemon.shutdown()
            await asyncio.wait_for(server, 5)
        return result

    assert asyncio.run(main()) == "served by asyncio"


def test_shutdown_from_another_thread_ends_request_loop(
    running: tuple[remoteobj.Daemon, str],
) -> None:
    daemon, uri = running
    with remoteobj.Proxy(uri) as p:
        assert p.echo(2) == 2
    daemon.shutdown()  # the fixture then checks the loop thread ended


def test_a_client_that_speaks_http_gets_refused_and_the_daemon_serves_on(
    running: tuple[remoteobj.Daemon, str],
) -> None:
    daemon, uri = running
    host, port = daemon.sock.getsockname()[:2]
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = s.recv(4096)
        assert reply.startswith(b"PYRO")  # a CONNECTFAIL frame
        assert s.recv(4096) == b""  # then the daemon closes
    with remoteobj.Proxy(uri) as p:
        assert p.echo(3) == 3


def test_accepted_connections_get_nodelay_keepalive_and_user_timeout() -> None:
    cfg = remoteobj.Config(keepalive=(61, 11, 4), tcp_user_timeout=12.5)
    daemon = remoteobj.Daemon("127.0.0.1", 0, config=cfg)
    uri = daemon.register(Echo(), "echo")
    # Connected before the daemon serves: the kernel accepts it into the backlog
    # at once, so the options must already be on the listening socket.
    early = socket.create_connection(daemon.sock.getsockname()[:2])
    thread = serve_in_thread(daemon)
    try:
        with remoteobj.Proxy(uri) as p:
            assert p.echo(1) == 1
            assert daemon._server is not None
            conns = wait_for(lambda: len(daemon._server._conns) == 2 and daemon._server._conns, 5)
            tcp = socket.IPPROTO_TCP
            for conn in conns.values():
                assert conn.sock.getsockopt(tcp, socket.TCP_NODELAY)
                assert conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
                got = [conn.sock.getsockopt(tcp, o) for o in
                       (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)]  # fmt: skip
                assert got == [61, 11, 4]
                assert conn.sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT) == 12500
    finally:
        early.close()
        daemon.close()
        thread.join(5)

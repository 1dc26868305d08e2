"""Name service interop with Pyro5 5.17, both ways, and discovery by broadcast on loopback."""

from __future__ import annotations

import asyncio
import socket

import Pyro5.api

import remoteobj
from remoteobj.naming import locate_ns
from tests.procs import LOOPBACK, Proc, free_port, start, start_nameserver

#: A Pyro5 daemon serving Echo and registering it in the name server at argv[1].
PYRO5_DAEMON = r"""
import sys
import Pyro5.api

@Pyro5.api.expose
class Echo:
    def echo(self, value):
        return ["pyro5", value]

daemon = Pyro5.api.Daemon(host="127.0.0.1")
uri = daemon.register(Echo, "echo")
ns = Pyro5.api.locate_ns(host="127.0.0.1", port=int(sys.argv[1]))
ns.register("interop.pyro5", uri, metadata={"interop", "lang:pyro5"})
print("READY", uri, flush=True)
daemon.requestLoop()
"""

#: A remoteobj daemon whose LeaseKeeper registers it in the name server at argv[1].
OUR_DAEMON = r"""
import sys
import remoteobj
from remoteobj.naming import LeaseKeeper

@remoteobj.expose
class Echo:
    def echo(self, value):
        return ["remoteobj", value]

config = remoteobj.Config.from_env()
daemon = remoteobj.Daemon("127.0.0.1", 0, config=config)
uri = daemon.register(Echo(), "echo")
keeper = LeaseKeeper(sys.argv[1], config)
keeper.add("interop.ours", uri, metadata={"interop"})
keeper.start()
print("READY", uri, "leases" if keeper.leases else "no-leases", flush=True)
daemon.request_loop()
"""


def port_of(uri: str) -> int:
    return int(uri.rsplit(":", 1)[1])


def test_pyro5_daemon_in_our_ns_found_by_pyroname() -> None:
    ns_proc, ns_uri = start_nameserver()
    port = port_of(ns_uri)
    pyro_daemon: Proc | None = None
    try:
        pyro_daemon = start(["python", "-c", PYRO5_DAEMON, str(port)])
        pyro_daemon.wait_for_line("^READY ")
        with remoteobj.Proxy(f"PYRONAME:interop.pyro5@{LOOPBACK}:{port}") as echo:
            assert echo.echo(42) == ["pyro5", 42]
        with remoteobj.Proxy(f"PYROMETA:lang:pyro5,interop@{LOOPBACK}:{port}") as echo:
            assert echo.echo("meta") == ["pyro5", "meta"]

        async def through_async_proxy() -> object:
            async with remoteobj.AsyncProxy(f"PYRONAME:interop.pyro5@{LOOPBACK}:{port}") as e:
                return await e.echo("async")

        assert asyncio.run(through_async_proxy()) == ["pyro5", "async"]
        # The Pyro5 client side of the same name server works too.
        with Pyro5.api.Proxy(f"PYRONAME:interop.pyro5@{LOOPBACK}:{port}") as echo:
            assert echo.echo(1) == ["pyro5", 1]
    finally:
        if pyro_daemon is not None:
            pyro_daemon.kill()
        ns_proc.kill()


def test_our_daemon_in_pyro5_ns_found_by_pyro5_proxy() -> None:
    ns_proc, ns_uri = start_nameserver(pyro5=True)
    port = port_of(ns_uri)
    daemon: Proc | None = None
    try:
        daemon = start(["python", "-c", OUR_DAEMON, ns_uri])
        ready = daemon.wait_for_line("^READY ")
        assert ready.string.endswith("no-leases")  # Pyro5's name server: plain registration
        with Pyro5.api.Proxy(f"PYRONAME:interop.ours@{LOOPBACK}:{port}") as echo:
            assert echo.echo(7) == ["remoteobj", 7]
        with Pyro5.api.Proxy(f"PYROMETA:interop@{LOOPBACK}:{port}") as echo:
            assert echo.echo(8) == ["remoteobj", 8]
        # ... and by our own PYRONAME resolution against Pyro5's name server.
        with remoteobj.Proxy(f"PYRONAME:interop.ours@{LOOPBACK}:{port}") as echo:
            assert echo.echo(9) == ["remoteobj", 9]
        # Stopping the daemon cleanly unregisters it (SIGTERM -> keeper.stop is the
        # daemon's job; here the registration simply stays, as Pyro5 semantics say).
        daemon.kill()
        with Pyro5.api.locate_ns(LOOPBACK, port) as ns:
            assert "interop.ours" in ns.list()
    finally:
        if daemon is not None:
            daemon.kill()
        ns_proc.kill()


def test_pyro5_locate_ns_finds_ours_by_broadcast_on_loopback() -> None:
    bcport = free_port(socket.SOCK_DGRAM)
    ns_proc = start(
        ["python", "-m", "nameserver", "-n", LOOPBACK, "-p", "0",
         "--bchost", LOOPBACK, "--bcport", str(bcport)]
    )  # fmt: skip
    try:
        ns_uri = ns_proc.wait_for_line(r"^URI = (\S+)$").group(1)
        closed = free_port()
        # Pyro5's client, told to broadcast to 127.0.0.1 only, after its direct try fails.
        code = (
            "import Pyro5.api; ns = Pyro5.api.locate_ns(); ns.ping(); print('FOUND', ns._pyroUri)"
        )
        client = start(
            ["python", "-c", code],
            env={"PYRO_NS_PORT": str(closed), "PYRO_NS_BCPORT": str(bcport),
                 "PYRO_BROADCAST_ADDRS": LOOPBACK},
        )  # fmt: skip
        assert client.wait(20) == 0, client.output
        assert client.wait_for_line("^FOUND ").string == f"FOUND {ns_uri}"
        # Our locate_ns, same way.
        config = remoteobj.Config(ns_port=closed, ns_bcport=bcport)
        with locate_ns(config=config, broadcast_addrs=[LOOPBACK]) as ns:
            assert str(ns._uri) == ns_uri
            ns.ping()
    finally:
        ns_proc.kill()

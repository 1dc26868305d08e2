"""PYRONAME/PYROMETA resolution and locate_ns, against name servers and daemons
served from threads of this process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import remoteobj
from nameserver.daemon import NameServerDaemon
from remoteobj import naming
from remoteobj.errors import NamingError
from tests.procs import LOOPBACK, free_port, start_nameserver, wait_for


class Served:
    """A daemon served by a thread until :meth:`stop`."""

    def __init__(self, daemon: remoteobj.Daemon) -> None:
        self.daemon = daemon
        daemon.bind()
        self.thread = threading.Thread(target=daemon.request_loop, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.daemon.shutdown(0)
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.daemon.close()
        # Daemon.close() leaves the listening socket open once serve() has run
        # (reported); close it here so the test leaks nothing.
        leftover = getattr(self.daemon, "_sock", None)
        if leftover is not None:
            leftover.close()


@remoteobj.expose
class Who:
    def __init__(self, name: str) -> None:
        self.name = name

    def who(self) -> str:
        return self.name


@pytest.fixture
def ns() -> Iterator[NameServerDaemon]:
    served = Served(NameServerDaemon(LOOPBACK, 0))
    assert isinstance(served.daemon, NameServerDaemon)
    yield served.daemon
    served.stop()


@pytest.fixture
def objects(ns: NameServerDaemon) -> Iterator[dict[str, str]]:
    """Two daemons, each serving one Who, registered under names and a shared tag."""
    served = []
    uris = {}
    for name in ("one", "two"):
        daemon = remoteobj.Daemon(LOOPBACK, 0)
        uri = daemon.register(Who(name), f"who.{name}")
        ns.nameserver.register(f"who.{name}", uri, metadata={"who", f"only:{name}"})
        served.append(Served(daemon))
        uris[name] = str(uri)
    yield uris
    for s in served:
        s.stop()


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    naming._proxies.clear()
    naming._resolutions = naming._Resolutions()
    yield
    naming._proxies.clear()
    naming._resolutions = naming._Resolutions()


#: Proxies that ask the name server every time (Pyro5's way).
ASK_EVERY_TIME = remoteobj.Config(ns_cache_ttl=0)


def at(ns: NameServerDaemon) -> str:
    return ns.location


def test_pyroname(ns: NameServerDaemon, objects: dict[str, str]) -> None:
    with remoteobj.Proxy(f"PYRONAME:who.one@{at(ns)}") as p:
        assert p.who() == "one"
    assert str(naming.resolve(f"PYRONAME:who.two@{at(ns)}")) == objects["two"]
    with pytest.raises(NamingError, match=r"^unknown name: who\.three\n"):
        naming.resolve(f"PYRONAME:who.three@{at(ns)}")
    plain = remoteobj.URI(objects["one"])
    assert naming.resolve(plain) is plain


def test_pyrometa_picks_at_random(ns: NameServerDaemon, objects: dict[str, str]) -> None:
    seen = set()
    for _ in range(40):
        with remoteobj.Proxy(f"PYROMETA:who@{at(ns)}") as p:
            seen.add(p.who())
    assert seen == {"one", "two"}
    with remoteobj.Proxy(f"PYROMETA:who,only:two@{at(ns)}") as p:
        assert p.who() == "two"
    with pytest.raises(NamingError, match="no registrations available"):
        naming.resolve(f"PYROMETA:who,nobody@{at(ns)}")


def test_one_name_server_connection_is_reused(
    ns: NameServerDaemon, objects: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    located: list[Any] = []
    real = naming.locate_ns

    def counting(*args: Any, **kwargs: Any) -> remoteobj.Proxy:
        located.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(naming, "locate_ns", counting)
    for _ in range(25):
        with remoteobj.Proxy(f"PYRONAME:who.one@{at(ns)}", config=ASK_EVERY_TIME) as p:
            assert p.who() == "one"
    assert len(located) == 1


def count_lookups(ns: NameServerDaemon, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names the name server is asked to look up from now on."""
    asked: list[str] = []
    real = ns.nameserver.lookup

    def lookup(name: str, return_metadata: bool = False) -> Any:
        asked.append(name)
        return real(name, return_metadata)

    monkeypatch.setattr(ns.nameserver, "lookup", lookup)
    return asked


def test_proxies_reuse_a_resolution_for_ns_cache_ttl_seconds(
    ns: NameServerDaemon, objects: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = count_lookups(ns, monkeypatch)
    brief = remoteobj.Config(ns_cache_ttl=0.3)
    for _ in range(10):
        with remoteobj.Proxy(f"PYRONAME:who.one@{at(ns)}", config=brief) as p:
            assert p.who() == "one"
    assert asked == ["who.one"]
    deadline = time.monotonic() + 0.3
    wait_for(lambda: time.monotonic() >= deadline, 1.0, message="the TTL to run out")
    with remoteobj.Proxy(f"PYRONAME:who.one@{at(ns)}", config=brief) as p:
        assert p.who() == "one"
    assert asked == ["who.one", "who.one"]
    for _ in range(3):
        with remoteobj.Proxy(f"PYRONAME:who.one@{at(ns)}", config=ASK_EVERY_TIME) as p:
            assert p.who() == "one"
    assert len(asked) == 5
    assert str(naming.resolve(f"PYRONAME:who.one@{at(ns)}")) == objects["one"]
    assert len(asked) == 6  # resolve() itself always asks


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_kept_resolution_that_refuses_is_looked_up_again_at_once(
    kind: str, ns: NameServerDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = count_lookups(ns, monkeypatch)
    keep_long = remoteobj.Config(ns_cache_ttl=60)
    name = f"PYRONAME:who.moving@{at(ns)}"

    def call() -> str:
        if kind == "sync":
            with remoteobj.Proxy(name, config=keep_long) as p:
                return str(p.who())

        async def main() -> str:
            async with remoteobj.AsyncProxy(name, config=keep_long) as p:
                return str(await p.who())

        return asyncio.run(main())

    first = remoteobj.Daemon(LOOPBACK, 0)
    ns.nameserver.register("who.moving", first.register(Who("first"), "who.moving"))
    served = Served(first)
    assert call() == "first"
    served.stop()  # the daemon is gone: its port refuses connections
    second = remoteobj.Daemon(LOOPBACK, 0)
    ns.nameserver.register("who.moving", second.register(Who("second"), "who.moving"))
    served = Served(second)
    try:
        assert call() == "second"  # not 60 s later: at once
        assert asked == ["who.moving", "who.moving"]
    finally:
        served.stop()


def test_name_server_restart_is_survived(objects: dict[str, str]) -> None:
    port = free_port()
    uri = f"PYRONAME:who.one@{LOOPBACK}:{port}"
    for _ in range(2):  # the second time, the kept connection is to a dead process
        proc, ns_uri = start_nameserver("-p", str(port))
        try:
            with remoteobj.Proxy(ns_uri) as ns:
                ns.register("who.one", objects["one"])
            # The kept connection is dead after a restart; the lookup is retried once.
            assert str(naming.resolve(uri)) == objects["one"]
        finally:
            proc.kill()


def test_async_resolution_reuses_per_loop(
    ns: NameServerDaemon, objects: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    located: list[Any] = []
    real = naming._locate_ns_async

    async def counting(*args: Any) -> remoteobj.AsyncProxy:
        located.append(args)
        return await real(*args)

    monkeypatch.setattr(naming, "_locate_ns_async", counting)

    async def main() -> list[str]:
        async def one(name: str) -> str:
            uri = f"PYRONAME:who.{name}@{at(ns)}"
            async with remoteobj.AsyncProxy(uri, config=ASK_EVERY_TIME) as p:
                return str(await p.who())

        return await asyncio.gather(*(one(n) for n in ["one", "two"] * 10))

    assert asyncio.run(main()) == ["one", "two"] * 10
    assert len(located) == 1  # one connection for the burst
    assert asyncio.run(main()) == ["one", "two"] * 10
    assert len(located) == 2  # a new loop, a new connection


def test_locate_ns(ns: NameServerDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    port = int(at(ns).rsplit(":", 1)[1])
    with naming.locate_ns(LOOPBACK, port) as proxy:
        proxy.ping()
        assert str(proxy._uri) == f"PYRO:Pyro.NameServer@{LOOPBACK}:{port}"
    # REMOTEOBJ_NS_HOST/PORT are honoured when no config is given.
    monkeypatch.setenv("REMOTEOBJ_NS_HOST", LOOPBACK)
    monkeypatch.setenv("REMOTEOBJ_NS_PORT", str(port))
    with naming.locate_ns(broadcast=False) as proxy:
        assert proxy.count() == 1
    with pytest.raises(NamingError, match=r"^Failed to locate the nameserver$"):
        naming.locate_ns(LOOPBACK, free_port())


def test_locate_ns_by_broadcast() -> None:
    daemon = NameServerDaemon(LOOPBACK, 0)
    _, bcport = daemon.enable_broadcast(LOOPBACK, 0)  # before serving, as the CLI does
    served = Served(daemon)
    try:
        config = remoteobj.Config(ns_port=free_port(), ns_bcport=bcport)
        with naming.locate_ns(config=config, broadcast_addrs=[LOOPBACK]) as proxy:
            assert str(proxy._uri) == str(daemon.uri)
        assert daemon.responder is not None
        assert daemon.responder.answered >= 1
        assert naming.discover_ns(free_port(), [LOOPBACK], rounds=1, timeout=0.2) is None
    finally:
        served.stop()


def test_bad_registrations_over_the_wire(ns: NameServerDaemon) -> None:
    cases: list[tuple[tuple[str, str], dict[str, Any], str]] = [
        (("x", "PYRO:o@127.0.0.1:1"), {"metadata": [1, 2]}, "metadata must be strings"),
        (("x" * 300, "PYRO:o@127.0.0.1:1"), {}, "name too long"),
        (("x", "PYRO:o"), {}, "invalid uri"),
        (("x", "PYRO:o@127.0.0.1:1"), {"lease": -1}, "lease must be a positive number"),
    ]
    with naming.locate_ns(LOOPBACK, int(at(ns).rsplit(":", 1)[1])) as proxy:
        for args, kwargs, message in cases:
            with pytest.raises(NamingError, match=message):
                proxy.register(*args, **kwargs)
        with pytest.raises(TypeError, match="metadata should not be a str"):
            proxy.register("x", "PYRO:o@127.0.0.1:1", metadata="abc")
        assert proxy.count() == 1  # nothing stored

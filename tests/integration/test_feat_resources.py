"""Limits and resource tracking of a daemon served in this process, over loopback.

Session instances, tracked resources and streams must be released when their
client disconnects (streams after ``iter_stream_linger``), streams must expire
after ``iter_stream_lifetime``, and ``max_streams``/``max_batch`` must hold.
Finalizers and ``finally`` blocks are observed directly, which needs the daemon
in this process (served in a thread, on a real socket).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import remoteobj
from remoteobj.errors import CommunicationError, DaemonError, ProtocolError, RemoteObjError
from tests.integration.feat_support import serving
from tests.procs import LOOPBACK, always, wait_for


class Tracker:
    """Names of the things that were finished/closed/finalized, thread-safe."""

    def __init__(self) -> None:
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def mark(self, name: str) -> None:
        with self._lock:
            self._done.add(name)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._done

    def wait(self, name: str, timeout: float = 5.0) -> None:
        wait_for(lambda: name in self, timeout, message=f"{name} finished")


class Resource:
    def __init__(self, tracker: Tracker, name: str) -> None:
        self.tracker, self.name = tracker, name

    def close(self) -> None:
        self.tracker.mark(self.name)


def make_service(tracker: Tracker) -> Any:
    @remoteobj.expose
    class Service:
        def __init__(self) -> None:
            self.kept: list[Resource] = []

        def count(self, name: str, n: int) -> Iterator[int]:
            try:
                yield from range(n)
            finally:
                tracker.mark(name)

        async def acount(self, name: str, n: int) -> AsyncIterator[int]:
            try:
                for i in range(n):
                    await asyncio.sleep(0)
                    yield i
            finally:
                tracker.mark(name)

        def track(self, name: str) -> None:
            resource = Resource(tracker, name)
            self.kept.append(resource)  # the daemon only holds a weak reference
            remoteobj.track_resource(resource)

        def add(self, a: int, b: int) -> int:
            return a + b

        async def coro(self) -> int:
            return 1

    return Service()


@pytest.fixture
def tracker() -> Tracker:
    return Tracker()


def serve_with(tracker: Tracker, **config: Any) -> Any:
    daemon = remoteobj.Daemon(LOOPBACK, 0, config=remoteobj.Config(**config))
    daemon.register(make_service(tracker), "svc")
    return serving(daemon)


def test_session_instances_are_finalized_when_the_client_disconnects(tracker: Tracker) -> None:
    @remoteobj.expose
    @remoteobj.behavior(instance_mode="session")
    class PerSession:
        def __init__(self) -> None:
            weakref.finalize(self, tracker.mark, f"session-{id(self)}")

        def me(self) -> int:
            return id(self)

    with serving(remoteobj.Daemon(LOOPBACK, 0)) as daemon:
        uri = daemon.register(PerSession, "per.session")
        with remoteobj.Proxy(uri) as a, remoteobj.Proxy(uri) as b:
            ida, idb = a.me(), b.me()
            assert ida != idb and a.me() == ida
            a._release()
            tracker.wait(f"session-{ida}")
            assert f"session-{idb}" not in tracker  # the other client's instance lives on
        tracker.wait(f"session-{idb}")


def test_tracked_resources_are_closed_when_the_client_disconnects(tracker: Tracker) -> None:
    with serve_with(tracker) as daemon, remoteobj.Proxy(daemon.uri_for("svc")) as p:
        p.track("r1")
        always(lambda: "r1" not in tracker, 0.1, message="resource open while connected")
        p._release()
        tracker.wait("r1")


def test_track_resource_outside_a_call_is_refused() -> None:
    with pytest.raises(DaemonError):
        remoteobj.track_resource(Resource(Tracker(), "x"))


def test_streams_close_with_their_connection_when_linger_is_zero(tracker: Tracker) -> None:
    with (
        serve_with(tracker, iter_stream_linger=0) as daemon,
        remoteobj.Proxy(daemon.uri_for("svc")) as p,
    ):
        stream = p.count("s1", 100)
        assert next(stream) == 0
        p._release()
        tracker.wait("s1")
        with pytest.raises(RemoteObjError, match="item stream terminated"):
            next(stream)  # reconnects, but the stream is gone


def test_streams_linger_for_a_reconnect_then_expire(tracker: Tracker) -> None:
    with (
        serve_with(tracker, iter_stream_linger=0.3) as daemon,
        remoteobj.Proxy(daemon.uri_for("svc")) as p,
    ):
        stream = p.count("resumed", 3)
        assert next(stream) == 0
        p._release()
        assert list(stream) == [1, 2]  # picked up again by the new connection
        abandoned = p.count("abandoned", 100)
        assert next(abandoned) == 0
        p._release()
        always(lambda: "abandoned" not in tracker, 0.15, message="stream lingers")
        tracker.wait("abandoned", timeout=3)  # closed by the linger timer, unasked
        assert len(daemon._streams) == 0


def test_streams_expire_after_their_lifetime(tracker: Tracker) -> None:
    with (
        serve_with(tracker, iter_stream_lifetime=0.3) as daemon,
        remoteobj.Proxy(daemon.uri_for("svc")) as p,
    ):
        stream = p.count("old", 100)
        assert next(stream) == 0
        tracker.wait("old", timeout=3)
        with pytest.raises(RemoteObjError, match="item stream terminated"):
            next(stream)


def test_max_streams(tracker: Tracker) -> None:
    with serve_with(tracker, max_streams=2) as daemon, remoteobj.Proxy(daemon.uri_for("svc")) as p:
        first, second = p.count("a", 10), p.count("b", 10)
        assert next(first) == 0  # started: closing it runs its finally block
        with pytest.raises(DaemonError, match="too many open streams"):
            p.count("c", 10)
        assert len(daemon._streams) == 2  # the refused one is not kept
        first.close()
        tracker.wait("a")
        wait_for(lambda: len(daemon._streams) == 1, 5, message="stream a closed")
        assert list(p.count("d", 2)) == [0, 1]
        assert next(second) == 0


def test_async_generators_stream_and_close_early(tracker: Tracker) -> None:
    with serve_with(tracker) as daemon, remoteobj.Proxy(daemon.uri_for("svc")) as p:
        assert list(p.acount("done", 3)) == [0, 1, 2]
        tracker.wait("done")
        with p.acount("early", 100) as stream:
            assert next(stream) == 0
        tracker.wait("early")

        async def main() -> list[int]:
            async with remoteobj.AsyncProxy(daemon.uri_for("svc")) as ap:
                return [x async for x in await ap.acount("async-client", 2)]

        assert asyncio.run(main()) == [0, 1]


def test_stopping_the_daemon_closes_its_streams(tracker: Tracker) -> None:
    with serve_with(tracker) as daemon, remoteobj.Proxy(daemon.uri_for("svc")) as p:
        stream = p.count("at-stop", 100)
        assert next(stream) == 0
    tracker.wait("at-stop")


def test_max_batch_and_unbatchable_methods(tracker: Tracker) -> None:
    with serve_with(tracker, max_batch=3) as daemon, remoteobj.Proxy(daemon.uri_for("svc")) as p:
        batch = remoteobj.BatchProxy(p)
        for i in range(4):
            batch.add(i, i)
        with pytest.raises(ProtocolError, match="batch too long"):
            batch()
        batch.coro()
        with pytest.raises(Exception, match="cannot be batched"):
            batch()
        batch.add(1, 1)
        assert list(batch()) == [2]  # the connection is fine


def test_instance_creator_must_make_an_instance_of_the_class() -> None:
    @remoteobj.expose
    @remoteobj.behavior(instance_mode="percall", instance_creator=lambda cls: object())
    class Wrong:
        def me(self) -> int:
            return 1

    with (
        serving(remoteobj.Daemon(LOOPBACK, 0)) as daemon,
        remoteobj.Proxy(daemon.register(Wrong)) as p,
        pytest.raises(TypeError),
    ):
        p.me()


# --- handshakes ----------------------------------------------------------------------


class Guarded(remoteobj.Daemon):
    """Accepts only clients whose handshake data is the token."""

    def validate_handshake(self, session: Any, data: Any) -> Any:
        if data != {"token": "s3cret"}:
            raise remoteobj.errors.SecurityError("bad handshake")
        return "welcome"


@remoteobj.expose
class WhoAmI:
    def handshake(self) -> Any:
        return remoteobj.current_context().handshake

    def address(self) -> Any:
        return list(remoteobj.current_context().client_address)


def test_custom_handshake_validation_with_both_clients() -> None:
    from Pyro5.api import Proxy as PyroProxy
    from Pyro5.errors import CommunicationError as PyroCommunicationError

    with serving(Guarded(LOOPBACK, 0)) as daemon:
        uri = daemon.register(WhoAmI(), "who")
        good = remoteobj.Config(handshake={"token": "s3cret"})
        with remoteobj.Proxy(uri, config=good) as p:
            assert p.handshake() == {"token": "s3cret"}
            host, port = p.address()
            assert host == LOOPBACK and isinstance(port, int) and port > 0
        with remoteobj.Proxy(uri) as p, pytest.raises(CommunicationError, match="bad handshake"):
            p._bind()
        with PyroProxy(str(uri)) as pp:
            pp._pyroHandshake = {"token": "s3cret"}
            assert pp.handshake() == {"token": "s3cret"}
        refused = pytest.raises(PyroCommunicationError, match="bad handshake")
        with PyroProxy(str(uri)) as pp, refused:
            pp._pyroBind()


def test_our_proxy_against_a_pyro5_daemon_that_checks_handshakes() -> None:
    from Pyro5.api import Daemon as PyroDaemon
    from Pyro5.api import expose as pyro_expose
    from Pyro5.errors import SecurityError as PyroSecurityError

    @pyro_expose
    class Echo:
        def echo(self, x: Any) -> Any:
            return x

    class Checking(PyroDaemon):  # type: ignore[misc]
        def validateHandshake(self, conn: Any, data: Any) -> Any:
            if data != "let me in":
                raise PyroSecurityError("bad handshake")
            return "ok"

    daemon = Checking(host=LOOPBACK)
    uri = daemon.register(Echo())
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        with remoteobj.Proxy(str(uri), config=remoteobj.Config(handshake="let me in")) as p:
            assert p.echo(5) == 5
        with remoteobj.Proxy(str(uri)) as p, pytest.raises(CommunicationError, match="bad"):
            p._bind()
    finally:
        daemon.shutdown()
        thread.join(10)

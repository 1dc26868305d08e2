"""Pyro5 features across processes, both directions between remoteobj and Pyro5.

One remoteobj peer and one Pyro5 peer (``feat_peer.py``) serve the same objects;
each test runs remoteobj clients against both, and Pyro5 clients against the
remoteobj peer: batches, remote iterators, autoproxies, callbacks, instance
modes, remote attributes, call context, blobs and custom class hooks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import remoteobj
from remoteobj.errors import RemoteObjError
from tests.integration.feat_peer import Point, dict_to_point, point_to_dict
from tests.integration.feat_support import (
    call_context,
    counts,
    object_uri,
    serving,
    start_peers,
    wait_count,
)
from tests.procs import LOOPBACK, wait_for

IMPLS = ["remoteobj", "pyro5"]


@pytest.fixture(scope="module")
def peers() -> Iterator[dict[str, str]]:
    started = start_peers([("remoteobj", ()), ("pyro5", ())])
    try:
        yield {"remoteobj": started[0][1], "pyro5": started[1][1]}
    finally:
        for proc, _ in started:
            proc.kill()


@pytest.fixture(params=IMPLS)
def server(request: pytest.FixtureRequest, peers: dict[str, str]) -> str:
    """The service URI of each peer in turn."""
    return peers[request.param]


@pytest.fixture
def ours(peers: dict[str, str]) -> str:
    """The remoteobj peer (for Pyro5 clients)."""
    return peers["remoteobj"]


# --- batches ---------------------------------------------------------------------


def test_batch_runs_in_order_and_stops_at_the_first_exception(server: str) -> None:
    with remoteobj.Proxy(server) as p:
        batch = remoteobj.BatchProxy(p)
        batch.add(1, 2)
        batch.echo("x")
        batch.fail("stop here")
        batch.record("never")  # after the failure: must not run
        assert len(batch) == 4
        results = batch()
        assert len(batch) == 0  # cleared for reuse
        assert next(results) == 3
        assert next(results) == "x"
        with pytest.raises(ValueError, match="stop here"):
            next(results)
        with pytest.raises(StopIteration):
            next(results)
        assert "never" not in p.recorded()
        batch.add(5, 5)  # the batch proxy is reusable
        assert list(batch()) == [10]


def test_oneway_batch_returns_at_once_and_runs(server: str) -> None:
    token = uuid.uuid4().hex
    with remoteobj.Proxy(server) as p:
        batch = remoteobj.BatchProxy(p)
        for i in range(3):
            batch.record(f"{token}-{i}")
        assert batch(oneway=True) is None
        wait_for(
            lambda: {f"{token}-{i}" for i in range(3)} <= set(p.recorded()),
            5,
            message="oneway batch ran",
        )


def test_async_batch(server: str) -> None:
    async def main() -> list[Any]:
        async with remoteobj.AsyncProxy(server) as p:
            batch = remoteobj.AsyncBatchProxy(p)
            batch.add(1, 1)
            batch.add(2, b=2)
            results = await batch()
            assert results is not None
            return list(results)

    assert asyncio.run(main()) == [2, 4]


def test_batch_of_an_unexposed_method_is_refused_before_sending(server: str) -> None:
    with remoteobj.Proxy(server) as p:
        batch = remoteobj.BatchProxy(p)
        batch.add(1, 1)
        batch.nonexistent()
        with pytest.raises(AttributeError, match="nonexistent"):
            batch()
        assert len(batch) == 2  # nothing was sent or lost


def test_pyro5_batch_proxy_against_our_daemon(ours: str) -> None:
    from Pyro5.api import BatchProxy, Proxy

    token = uuid.uuid4().hex
    with Proxy(ours) as p:
        batch = BatchProxy(p)
        batch.add(2, 3)
        batch.fail("pyro5 batch")
        batch.add(1, 1)
        results = batch()
        assert next(results) == 5
        with pytest.raises(ValueError, match="pyro5 batch"):
            next(results)
        batch.record(token)
        assert batch(oneway=True) is None
        wait_for(lambda: token in p.recorded(), 5, message="Pyro5 oneway batch ran")


# --- remote iterators -------------------------------------------------------------------


def test_streamed_results(server: str) -> None:
    with remoteobj.Proxy(server) as p:
        stream = p.count(5)
        assert isinstance(stream, remoteobj.StreamIterator)
        assert list(stream) == [0, 1, 2, 3, 4]
        assert list(p.plain_iterator(3)) == [0, 1, 2]  # any iterator, not only generators
        assert list(p.letters) == ["a", "b", "c"]  # a property may return a stream
        assert list(p.count(0)) == []


def test_stream_that_fails_half_way(server: str) -> None:
    with remoteobj.Proxy(server) as p:
        stream = p.fail_after(2)
        assert next(stream) == 0
        assert next(stream) == 1
        with pytest.raises(ValueError, match="failed after 2"):
            next(stream)
        with pytest.raises(StopIteration):
            next(stream)  # a failed stream is over, as a failed generator is


def test_async_proxy_streams_as_async_iterators(server: str) -> None:
    async def main() -> tuple[list[int], list[str]]:
        async with remoteobj.AsyncProxy(server) as p:
            stream = await p.count(4)
            assert isinstance(stream, remoteobj.AsyncStreamIterator)
            numbers = [x async for x in stream]
            letters = [x async for x in await p.letters]
            return numbers, letters

    assert asyncio.run(main()) == ([0, 1, 2, 3], ["a", "b", "c"])


def test_closing_a_stream_early_runs_the_generators_finally(server: str) -> None:
    before = counts(server)["closed_gens"]
    with remoteobj.Proxy(server) as p:
        with p.count(1000) as stream:
            assert next(stream) == 0
        wait_count(server, "closed_gens", before + 1)
        # A dropped iterator is closed by the proxy's next call (never from a finalizer).
        stream2 = p.count(1000)
        assert next(stream2) == 0
        del stream2
        assert p.add(1, 1) == 2
        wait_count(server, "closed_gens", before + 2)


def test_async_stream_closed_early(server: str) -> None:
    before = counts(server)["closed_gens"]

    async def main() -> None:
        async with remoteobj.AsyncProxy(server) as p, await p.count(1000) as stream:
            assert await stream.__anext__() == 0

    asyncio.run(main())
    wait_count(server, "closed_gens", before + 1)


def test_stream_survives_a_reconnect_within_the_linger_time(server: str) -> None:
    with remoteobj.Proxy(server) as p:
        stream = p.count(4)
        assert next(stream) == 0
        p._release()  # the connection goes; the daemon keeps the stream (linger)
        assert list(stream) == [1, 2, 3]  # the next item reconnects


def test_pyro5_client_reads_our_streams(ours: str) -> None:
    from Pyro5.api import Proxy

    before = counts(ours)["closed_gens"]
    with Proxy(ours) as p:
        assert list(p.count(3)) == [0, 1, 2]
        assert list(p.letters) == ["a", "b", "c"]
        stream = p.count(100)
        assert next(stream) == 0
        stream.close()  # Pyro5 sends close_stream oneway
        wait_count(ours, "closed_gens", before + 2)
        with pytest.raises(ValueError):
            list(p.fail_after(1))


# --- autoproxy and callbacks ------------------------------------------------------------


def test_returned_registered_object_arrives_as_a_proxy(server: str) -> None:
    with remoteobj.Proxy(server) as p:
        child = p.child("c1")
        assert isinstance(child, remoteobj.Proxy)
        assert child._preset_meta is not None and "hello" in child._preset_meta.methods
        with child:
            assert child.hello() == "hello from c1"


def test_pyro5_client_gets_a_full_proxy_from_our_daemon(ours: str) -> None:
    from Pyro5.api import Proxy
    from Pyro5.client import Proxy as PyroProxy

    with Proxy(ours) as p:
        child = p.child("c2")
    assert isinstance(child, PyroProxy)
    assert child._pyroMethods == {"hello"}  # the metadata came with it: no round trip yet
    assert child._pyroConnection is None
    with child:
        assert child.hello() == "hello from c2"


@remoteobj.expose
class Listener:
    """A callback object living in the test process's own daemon."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def notify(self, value: Any) -> str:
        self.got.append(value)
        return f"got {value}"

    @remoteobj.callback
    def explode(self) -> None:
        raise ValueError("callback failed")


@pytest.fixture
def callback_daemon() -> Iterator[remoteobj.Daemon]:
    with serving(remoteobj.Daemon(LOOPBACK, 0)) as daemon:
        yield daemon


def test_callback_through_a_proxy_for_a_client_side_object(
    server: str, callback_daemon: remoteobj.Daemon
) -> None:
    listener = Listener()
    callback_daemon.register(listener)
    with remoteobj.Proxy(server) as p:
        assert p.call_back(callback_daemon.proxy_for(listener), 1) == "got 1"
        with callback_daemon.autoproxy():  # pass the object itself: it travels as a proxy
            assert p.call_back(listener, 2) == "got 2"
    assert listener.got == [1, 2]


@remoteobj.expose
class Relay:
    """Passes an object of its own daemon to another daemon, from inside a call."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def relay(self, server_uri: str, value: Any) -> Any:
        with remoteobj.Proxy(server_uri) as server:
            return server.call_back(self.listener, value)  # no autoproxy() block needed


def test_registered_objects_passed_from_inside_a_call_travel_as_proxies(
    server: str, callback_daemon: remoteobj.Daemon
) -> None:
    listener = Listener()
    callback_daemon.register(listener)
    with remoteobj.Proxy(callback_daemon.register(Relay(listener))) as relay:
        assert relay.relay(server, "hop") == "got hop"
    assert listener.got == ["hop"]


def test_callback_errors_reach_the_caller_and_are_logged_on_the_callback_side(
    server: str, callback_daemon: remoteobj.Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    listener = Listener()
    callback_daemon.register(listener)
    caplog.set_level(logging.WARNING, logger="remoteobj.daemon")
    with remoteobj.Proxy(server) as p:
        result = p.call_back_error(callback_daemon.proxy_for(listener))
        assert result == "caught ValueError: callback failed"
        assert any(
            "exception in callback explode" in r.getMessage() and r.exc_info for r in caplog.records
        )
        # The callback side keeps serving (Pyro5 would drop that connection).
        assert p.call_back(callback_daemon.proxy_for(listener), 3) == "got 3"


def test_pyro5_client_passes_its_callback_to_our_daemon(ours: str) -> None:
    from Pyro5.api import Daemon, Proxy, expose

    @expose
    class PyroListener:
        def __init__(self) -> None:
            self.got: list[Any] = []

        def notify(self, value: Any) -> str:
            self.got.append(value)
            return f"pyro5 got {value}"

    listener = PyroListener()
    daemon = Daemon(host=LOOPBACK)
    daemon.register(listener)
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        with Proxy(ours) as p:
            # Pyro5 replaces the registered object by a Pyro5.client.Proxy dict.
            assert p.call_back(listener, "x") == "pyro5 got x"
    finally:
        daemon.shutdown()
        thread.join(10)
    assert listener.got == ["x"]


# --- instance modes and resource tracking ---------------------------------------------------


def test_instance_modes(server: str) -> None:
    def ids(object_id: str, calls: int) -> list[int]:
        with remoteobj.Proxy(object_uri(server, object_id)) as p:
            return [p.whoami() for _ in range(calls)]

    session_a = ids("feat.session", 2)
    assert session_a[0] == session_a[1]
    single_a, single_b = ids("feat.single", 2), ids("feat.single", 2)
    assert len(set(single_a + single_b)) == 1
    with remoteobj.Proxy(object_uri(server, "feat.percall")) as p:
        p.put("lost")
        assert p.get() is None  # a fresh instance for every call
    session = object_uri(server, "feat.session")
    with remoteobj.Proxy(session) as p1, remoteobj.Proxy(session) as p2:
        p1.put("one")
        p2.put("two")
        assert (p1.get(), p2.get()) == ("one", "two")  # one instance per connection
    with remoteobj.Proxy(object_uri(server, "feat.created")) as p:
        assert p.get() == "made by creator"


def test_session_instances_are_released_when_the_client_disconnects(server: str) -> None:
    wait_for(lambda: counts(server)["live"] <= 1, 5, message="earlier sessions released")
    base = counts(server)["live"]  # the 'single' instance may be alive
    proxies = [remoteobj.Proxy(object_uri(server, "feat.session")) for _ in range(3)]
    for proxy in proxies:
        proxy.whoami()
    assert counts(server)["live"] == base + 3
    for proxy in proxies:
        proxy._release()
    wait_count(server, "live", base)


# --- remote attributes ------------------------------------------------------------------


def test_remote_attributes_from_the_async_proxy(server: str) -> None:
    async def main() -> tuple[int, int]:
        async with remoteobj.AsyncProxy(server) as p:
            await p._set("value", 12)
            first = await p.value
            await p._set("value", 1)
            return first, await p.value

    assert asyncio.run(main()) == (12, 1)


def test_pyro5_client_cannot_write_a_read_only_property(ours: str) -> None:
    from Pyro5.api import Proxy

    with Proxy(ours) as p:
        p._pyroBind()
        with pytest.raises(AttributeError):
            p._pyroInvoke("__setattr__", ("letters", "x"), None)
        assert p.value in (1, 12)


# --- call context -----------------------------------------------------------------------


@pytest.mark.parametrize("second", IMPLS)
@pytest.mark.parametrize("first", IMPLS)
def test_correlation_id_is_kept_across_hops(peers: dict[str, str], first: str, second: str) -> None:
    corr = uuid.uuid4()
    with call_context(correlation_id=corr), remoteobj.Proxy(peers[first]) as p:
        result = p.forward_context(peers[second])
    assert result["here"] == str(corr)
    assert result["there"]["corr"] == str(corr)
    assert result["there"]["impl"] == second


def test_pyro5_client_correlation_id_through_our_daemon(peers: dict[str, str]) -> None:
    from Pyro5.api import Proxy, current_context

    corr = uuid.uuid4()
    current_context.correlation_id = corr
    try:
        with Proxy(peers["remoteobj"]) as p:
            result = p.forward_context(peers["pyro5"])
    finally:
        current_context.correlation_id = None
    assert result["here"] == result["there"]["corr"] == str(corr)


def test_without_a_correlation_id_the_daemon_makes_one(server: str) -> None:
    with remoteobj.Proxy(server) as p:
        first, second = p.context()["corr"], p.context()["corr"]
    assert first != second
    assert uuid.UUID(first) and uuid.UUID(second)


def test_annotations_travel_both_ways(server: str) -> None:
    with call_context(annotations={"XTRA": b"hello"}) as ctx, remoteobj.Proxy(server) as p:
        result = p.context()
        assert result["ann"]["XTRA"] == "hello"
        impl = result["impl"]
        assert ctx.response_annotations["RESP"] == b"reply-" + impl.encode()
        p.add(1, 1)
        assert "RESP" not in ctx.response_annotations  # each reply replaces them


def test_a_daemons_own_annotations_ride_on_every_reply(server: str) -> None:
    with call_context() as ctx, remoteobj.Proxy(server) as p:
        result = p.context()  # its RESP, and the daemon's DMON merged over it
        impl = result["impl"]
        assert ctx.response_annotations["DMON"] == impl.encode()
        assert ctx.response_annotations["RESP"] == b"reply-" + impl.encode()
        p.add(1, 1)
        assert ctx.response_annotations == {"DMON": impl.encode()}
        with pytest.raises(ValueError):
            p.fail("boom")  # errors carry them too
        assert ctx.response_annotations == {"DMON": impl.encode()}


def test_pyro5_client_annotations_with_our_daemon(ours: str) -> None:
    from Pyro5.api import Proxy, current_context

    current_context.annotations = {"XTRA": b"from-pyro5"}
    try:
        with Proxy(ours) as p:
            assert p.context()["ann"]["XTRA"] == "from-pyro5"
            assert current_context.response_annotations["RESP"] == b"reply-remoteobj"
            assert current_context.response_annotations["DMON"] == b"remoteobj"
    finally:
        current_context.annotations = {}
        current_context.response_annotations = {}


# --- SerializedBlob --------------------------------------------------------------------------


@pytest.mark.parametrize("target", IMPLS)
@pytest.mark.parametrize("dispatcher", IMPLS)
def test_blob_passes_through_a_dispatcher(
    peers: dict[str, str], dispatcher: str, target: str
) -> None:
    data = [1, "two", {"three": [3.0]}]
    with remoteobj.Proxy(peers[dispatcher]) as d:
        d.set_next(peers[target])
        result = d.dispatch(remoteobj.SerializedBlob("blob-info", data))
    assert result == [target, "blob-info", data]


def test_pyro5_client_sends_a_blob_through_our_dispatcher(peers: dict[str, str]) -> None:
    from Pyro5.api import Proxy, SerializedBlob

    with Proxy(peers["remoteobj"]) as d:
        d.set_next(peers["pyro5"])
        result = d.dispatch(SerializedBlob(("info", 7), [b"raw".hex(), None]))
    assert result == ["pyro5", ("info", 7), [b"raw".hex(), None]]


def test_blob_reencoded_for_a_proxy_of_another_serializer(peers: dict[str, str]) -> None:
    cfg = remoteobj.Config(serializer="json")
    with remoteobj.Proxy(peers["remoteobj"], config=cfg) as d:
        d.set_next(peers["pyro5"])  # the dispatcher's proxy speaks serpent: re-encoded
        assert d.dispatch(remoteobj.SerializedBlob("j", {"k": [1, 2]})) == [
            "pyro5",
            "j",
            {"k": [1, 2]},
        ]


# --- custom class (de)serialization hooks ----------------------------------------------------


@pytest.fixture
def point_hooks() -> Iterator[None]:
    remoteobj.register_class_to_dict(Point, point_to_dict)
    remoteobj.register_dict_to_class("feat.Point", dict_to_point)
    try:
        yield
    finally:
        from remoteobj import serializers

        serializers.unregister_class_to_dict(Point)
        serializers.unregister_dict_to_class("feat.Point")


@pytest.mark.usefixtures("point_hooks")
@pytest.mark.parametrize("serializer", ["serpent", "json", "msgpack"])
def test_custom_class_hooks_across_the_wire(server: str, serializer: str) -> None:
    with remoteobj.Proxy(server, config=remoteobj.Config(serializer=serializer)) as p:
        moved = p.shift(Point(1, 2), 3)
    assert isinstance(moved, Point)
    assert (moved.x, moved.y) == (4, 2)


def test_pyro5_client_custom_class_with_our_daemon(ours: str) -> None:
    from Pyro5.api import Proxy, SerializerBase

    SerializerBase.register_class_to_dict(Point, point_to_dict)
    SerializerBase.register_dict_to_class("feat.Point", dict_to_point)
    try:
        with Proxy(ours) as p:
            moved = p.shift(Point(5, 6), -5)
    finally:
        SerializerBase.unregister_class_to_dict(Point)
        SerializerBase.unregister_dict_to_class("feat.Point")
    assert (moved.x, moved.y) == (0, 6)


def test_unknown_stream_id_is_terminated(server: str) -> None:
    with remoteobj.Proxy(server) as p:
        p._bind()
        with pytest.raises(RemoteObjError, match="item stream terminated"):
            p._invoke("get_next_stream_item", ("no-such-stream",), {}, object_id="Pyro.Daemon")

"""A new connection's first call travels with its CONNECT when the metadata is known.

The first proxy for a URI connects, gets the metadata, then calls: two round
trips. Later proxies for the same URI (or ones made from a proxy that carried
metadata) send CONNECT and the first INVOKE in one write: one round trip. The
daemon reads the INVOKE only after accepting the CONNECT, so a refused
connection runs nothing -- remoteobj's daemon and Pyro5's alike. ``Proxy`` and
``AsyncProxy`` both do it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

import remoteobj
from remoteobj import protocol as p
from remoteobj.client import RemoteMeta, _known_meta
from remoteobj.errors import CommunicationError
from tests.integration.feat_support import start_peer
from tests.procs import Proc, wait_for
from tests.toxiproxy import ToxiProxy

UP_LATENCY = 0.3


@pytest.fixture(params=["remoteobj", "pyro5"])
def peer(request: pytest.FixtureRequest) -> Iterator[tuple[Proc, str]]:
    proc, uri = start_peer(request.param, "--handshake", "friend")
    try:
        yield proc, uri
    finally:
        proc.kill()


FRIEND = remoteobj.Config(handshake="friend")


def frames(data: bytes) -> list[int]:
    """The message types in ``data``."""
    reader = p.MessageReader(1 << 20)
    reader.feed(data)
    types = []
    while (msg := reader.next_message()) is not None:
        types.append(msg.type)
    return types


def test_the_first_call_of_a_later_proxy_shares_the_connects_round_trip(
    peer: tuple[Proc, str],
) -> None:
    _, uri = peer
    port = int(uri.rsplit(":", 1)[1])
    with ToxiProxy(("127.0.0.1", port), record=True) as toxi:
        via = uri.replace(f":{port}", f":{toxi.port}")
        with remoteobj.Proxy(via, config=FRIEND) as first:
            assert first.add(1, 2) == 3  # connect, metadata, then the call
        toxi.recorded.clear()
        toxi.add("latency", "up", latency=UP_LATENCY)
        started = time.monotonic()
        with remoteobj.Proxy(via, config=FRIEND) as later:
            assert later.add(2, 3) == 5
        took = time.monotonic() - started
        up = [data for direction, data in toxi.recorded if direction == "up"]
    assert frames(up[0]) == [p.MSG_CONNECT, p.MSG_INVOKE]
    # One trip up, not two: the INVOKE did not wait for the CONNECTOK.
    assert UP_LATENCY <= took < 2 * UP_LATENCY


def test_a_refused_connection_runs_the_call_that_came_with_it_nowhere(
    peer: tuple[Proc, str],
) -> None:
    _, uri = peer
    with remoteobj.Proxy(uri, config=FRIEND) as friend:
        assert friend.recorded() == []  # metadata now known for this URI
    stranger = remoteobj.Proxy(uri, config=remoteobj.Config(handshake="stranger"))
    with pytest.raises(CommunicationError, match="bad handshake"):
        stranger.echo("sent behind a refused CONNECT")
    with pytest.raises(CommunicationError, match="bad handshake"):
        stranger.record("oneway, sent behind a refused CONNECT")
    with remoteobj.Proxy(uri, config=FRIEND) as friend:
        friend.record("let in")  # oneway, sent with its CONNECT
        wait_for(lambda: friend.recorded() == ["let in"], 5, message="the oneway call")


def test_a_method_the_known_metadata_lacks_is_asked_for(peer: tuple[Proc, str]) -> None:
    _, uri = peer
    # Metadata from an older daemon at this address: no "add", and a "gone" method.
    _known_meta[uri] = RemoteMeta(frozenset({"echo", "gone"}), frozenset(), frozenset())
    with remoteobj.Proxy(uri, config=FRIEND) as proxy:
        assert proxy.add(1, 1) == 2  # not in the stale entry: connected first, then found
    _known_meta[uri] = RemoteMeta(frozenset({"echo", "gone"}), frozenset(), frozenset())
    with remoteobj.Proxy(uri, config=FRIEND) as proxy:
        with pytest.raises(Exception, match="gone"):
            proxy.gone()  # sent on the stale word; the daemon refuses it
        assert proxy.echo(7) == 7  # the connection is fine
        with pytest.raises(AttributeError):
            proxy.gone  # noqa: B018 - the fresh metadata says so now


# --- AsyncProxy ----------------------------------------------------------------------------


def test_an_async_proxys_first_call_shares_the_connects_round_trip(
    peer: tuple[Proc, str],
) -> None:
    _, uri = peer
    port = int(uri.rsplit(":", 1)[1])

    async def calls(via: str) -> tuple[int, int, float]:
        async with remoteobj.AsyncProxy(via, config=FRIEND) as first:
            one = await first.add(1, 2)  # connect, metadata, then the call
        toxi.recorded.clear()
        toxi.add("latency", "up", latency=UP_LATENCY)
        started = time.monotonic()
        async with remoteobj.AsyncProxy(via, config=FRIEND) as later:
            two = await later.add(2, 3)
        return one, two, time.monotonic() - started

    with ToxiProxy(("127.0.0.1", port), record=True) as toxi:
        one, two, took = asyncio.run(calls(uri.replace(f":{port}", f":{toxi.port}")))
        up = [data for direction, data in toxi.recorded if direction == "up"]
    assert (one, two) == (3, 5)
    assert frames(up[0]) == [p.MSG_CONNECT, p.MSG_INVOKE]
    assert UP_LATENCY <= took < 2 * UP_LATENCY


def test_an_async_call_behind_a_refused_connect_runs_nowhere(peer: tuple[Proc, str]) -> None:
    _, uri = peer

    async def scenario() -> list[str]:
        async with remoteobj.AsyncProxy(uri, config=FRIEND) as friend:
            assert await friend.recorded() == []  # metadata now known for this URI
        stranger = remoteobj.AsyncProxy(uri, config=remoteobj.Config(handshake="stranger"))
        with pytest.raises(CommunicationError, match="bad handshake"):
            await stranger.echo("sent behind a refused CONNECT")
        with pytest.raises(CommunicationError, match="bad handshake"):
            await stranger.record("oneway, sent behind a refused CONNECT")
        assert stranger._pending == {}  # nothing left waiting
        async with remoteobj.AsyncProxy(uri, config=FRIEND) as friend:
            await friend.record("let in")  # oneway, sent with its CONNECT
            for _ in range(250):  # poll the daemon for up to 5 s: the oneway call runs detached
                if await friend.recorded():
                    break
                await asyncio.sleep(0.02)
            recorded: list[str] = await friend.recorded()
            return recorded

    assert asyncio.run(scenario()) == ["let in"]


def test_an_async_proxy_asks_for_a_method_the_known_metadata_lacks(
    peer: tuple[Proc, str],
) -> None:
    _, uri = peer

    async def scenario() -> None:
        _known_meta[uri] = RemoteMeta(frozenset({"echo", "gone"}), frozenset(), frozenset())
        async with remoteobj.AsyncProxy(uri, config=FRIEND) as proxy:
            assert await proxy.add(1, 1) == 2  # not in the stale entry: connected first
        _known_meta[uri] = RemoteMeta(frozenset({"echo", "gone"}), frozenset(), frozenset())
        async with remoteobj.AsyncProxy(uri, config=FRIEND) as proxy:
            with pytest.raises(Exception, match="gone"):
                await proxy.gone()  # sent on the stale word; the daemon refuses it
            assert await proxy.echo(7) == 7  # the connection is fine
            with pytest.raises(AttributeError):
                await proxy.gone()  # the fresh metadata says so now

    asyncio.run(scenario())


def test_an_async_call_that_cannot_be_encoded_leaves_nothing_waiting(
    peer: tuple[Proc, str],
) -> None:
    _, uri = peer

    async def scenario() -> None:
        async with remoteobj.AsyncProxy(uri, config=FRIEND) as proxy:
            assert await proxy.echo(1) == 1
            with pytest.raises(remoteobj.errors.SerializeError):
                await proxy.echo(object())  # refused before it is sent
            assert proxy._pending == {}
            assert await proxy.echo(2) == 2

    asyncio.run(scenario())

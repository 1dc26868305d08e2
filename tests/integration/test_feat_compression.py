"""Compression on the wire, per message, between remoteobj and Pyro5 (COMPRESSION=True).

A :class:`~tests.integration.wiretap.WireTap` sits between client and daemon and
records the raw header flags, so the tests see which frames really travel
compressed: payloads over 100 bytes from a side that has compression on; small
ones and those from a side without it, never.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import remoteobj
from remoteobj import protocol as p
from remoteobj.errors import CommunicationError
from tests.integration.feat_support import serving, start_peers
from tests.integration.wiretap import Frame, WireTap
from tests.procs import LOOPBACK

BIG = 20_000


@pytest.fixture(scope="module")
def peers() -> Iterator[dict[str, str]]:
    started = start_peers([("remoteobj", ("--compression",)), ("pyro5", ("--compression",))])
    try:
        yield {"remoteobj": started[0][1], "pyro5": started[1][1]}
    finally:
        for proc, _ in started:
            proc.kill()


@pytest.fixture(params=["remoteobj", "pyro5"])
def tap(request: pytest.FixtureRequest, peers: dict[str, str]) -> Iterator[WireTap]:
    uri = remoteobj.URI(peers[request.param])
    assert uri.host is not None and uri.port is not None
    with WireTap((uri.host, uri.port)) as t:
        yield t


def invokes(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.direction == "c2s" and f.type == p.MSG_INVOKE]


def results(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.direction == "s2c" and f.type == p.MSG_RESULT]


def compressed(frame: Frame) -> bool:
    return bool(frame.flags & p.FLAGS_COMPRESSED)


def test_our_proxy_compresses_both_ways(tap: WireTap) -> None:
    cfg = remoteobj.Config(compression=True)
    with remoteobj.Proxy(tap.uri("feat.service"), config=cfg) as proxy:
        assert proxy.length("y" * BIG) == BIG
        assert proxy.big(BIG) == "x" * BIG
        assert proxy.add(1, 2) == 3
    frames = tap.snapshot()
    big_call, small_call, tiny_call = invokes(frames)
    assert compressed(big_call) and big_call.data_size < BIG // 10
    assert not compressed(small_call) and not compressed(tiny_call)  # payloads under 100 bytes
    replies = results(frames)
    assert compressed(replies[1]) and replies[1].data_size < BIG // 10
    assert not compressed(replies[0]) and not compressed(replies[2])  # small replies


def test_pyro5_proxy_with_compression_against_our_daemon(peers: dict[str, str]) -> None:
    from Pyro5.api import Proxy, config

    uri = remoteobj.URI(peers["remoteobj"])
    assert uri.host is not None and uri.port is not None
    saved = config.COMPRESSION
    config.COMPRESSION = True
    try:
        with WireTap((uri.host, uri.port)) as tap, Proxy(tap.uri("feat.service")) as proxy:
            assert proxy.length("y" * BIG) == BIG
            assert proxy.big(BIG) == "x" * BIG
            frames = tap.snapshot()
    finally:
        config.COMPRESSION = saved
    big_call = invokes(frames)[0]
    assert compressed(big_call) and big_call.data_size < BIG // 10
    assert compressed(results(frames)[1])


def test_async_proxy_compresses(tap: WireTap) -> None:
    async def main() -> None:
        cfg = remoteobj.Config(compression=True)
        async with remoteobj.AsyncProxy(tap.uri("feat.service"), config=cfg) as proxy:
            assert await proxy.length("z" * BIG) == BIG
            assert await proxy.big(BIG) == "x" * BIG

    asyncio.run(main())
    frames = tap.snapshot()
    assert compressed(invokes(frames)[0])
    assert compressed(results(frames)[1])


def test_proxy_without_compression_reads_compressed_replies(tap: WireTap) -> None:
    with remoteobj.Proxy(tap.uri("feat.service")) as proxy:
        assert proxy.length("y" * BIG) == BIG
        assert proxy.big(BIG) == "x" * BIG
    frames = tap.snapshot()
    assert not any(compressed(f) for f in invokes(frames))  # this side has it off
    assert compressed(results(frames)[1])  # the daemon has it on


def test_streams_and_batches_are_compressed_too(tap: WireTap) -> None:
    cfg = remoteobj.Config(compression=True)
    with remoteobj.Proxy(tap.uri("feat.service"), config=cfg) as proxy:
        batch = remoteobj.BatchProxy(proxy)
        batch.big(BIG)
        batch.big(BIG)
        assert list(batch()) == ["x" * BIG] * 2
        assert list(proxy.count(3)) == [0, 1, 2]
    batch_reply = next(f for f in results(tap.snapshot()) if f.flags & p.FLAGS_BATCH)
    assert compressed(batch_reply)


@remoteobj.expose
class Sizes:
    def length(self, s: str) -> int:
        return len(s)


def test_daemon_without_compression_refuses_compressed_frames_and_keeps_serving() -> None:
    with serving(remoteobj.Daemon(LOOPBACK, 0)) as daemon:
        uri = daemon.register(Sizes(), "sizes")
        compressing = remoteobj.Config(compression=True)
        with remoteobj.Proxy(uri, config=compressing) as proxy, pytest.raises(CommunicationError):
            proxy.length("y" * BIG)
        with remoteobj.Proxy(uri) as plain:
            assert plain.length("y" * BIG) == BIG  # others are served as before

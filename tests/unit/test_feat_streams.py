"""Remote iterators without sockets: the server-side registry and the client's reading
of Pyro5's ITEMSTREAMRESULT replies (frames made by Pyro5's own protocol module)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from Pyro5 import protocol as pyro_protocol
from Pyro5 import serializers as pyro_serializers
from Pyro5.errors import ProtocolError as PyroProtocolError

from remoteobj import URI, Config
from remoteobj import protocol as p
from remoteobj.client import CallCore
from remoteobj.errors import DaemonError, ProtocolError, RemoteObjError
from remoteobj.streams import StreamRef, StreamRegistry, is_stream


class Owner:
    """Stands in for a daemon Session."""

    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.closed = False


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Gen:
    """A generator whose closing is observable."""

    def __init__(self, n: int = 10) -> None:
        self.closed = False
        self.it = self._run(n)

    def _run(self, n: int) -> Iterator[int]:
        try:
            yield from range(n)
        finally:
            self.closed = True


def registry(**cfg: Any) -> tuple[StreamRegistry, Clock]:
    clock = Clock()
    return StreamRegistry(Config(**cfg), clock=clock), clock


def started(gen: Gen) -> Gen:
    assert next(gen.it) == 0  # a generator only runs its finally block once started
    return gen


# --- what is a stream -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        iter([1]),
        (x for x in [1]),
        map(str, [1]),
        enumerate("a"),
        zip("a", "b", strict=True),
        iter(range(3)),
    ],
)
def test_iterators_and_generators_are_streams(value: Any) -> None:
    assert is_stream(value)


async def agen() -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize(
    "value", [None, 1, "s", b"b", [1], (1,), {1: 2}, {1}, range(3), {}.keys(), bytearray()]
)
def test_values_and_iterables_are_not_streams(value: Any) -> None:
    assert not is_stream(value)


def test_async_generators_are_streams() -> None:
    gen = agen()
    assert is_stream(gen)


# --- the registry --------------------------------------------------------------------------


def test_items_until_exhausted_then_the_stream_is_gone() -> None:
    reg, _ = registry()
    owner = Owner()
    sid = reg.open(iter([1, 2]), owner)
    assert owner.streams == {sid} and sid in reg
    assert reg.next_item(sid, owner) == 1
    assert reg.next_item(sid, owner) == 2
    with pytest.raises(StopIteration):
        reg.next_item(sid, owner)
    assert sid not in reg and owner.streams == set()
    with pytest.raises(RemoteObjError, match="item stream terminated"):
        reg.next_item(sid, owner)


def test_a_failing_iterator_ends_its_stream() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("bad")

    reg, _ = registry()
    sid = reg.open(failing(), Owner())
    assert reg.next_item(sid, None) == 1
    with pytest.raises(ValueError, match="bad"):
        reg.next_item(sid, None)
    assert len(reg) == 0


def test_close_closes_the_generator_and_ignores_unknown_ids() -> None:
    reg, _ = registry()
    gen = started(Gen())
    sid = reg.open(gen.it, Owner())
    reg.close(sid)
    assert gen.closed and len(reg) == 0
    reg.close(sid)
    reg.close("unknown")
    reg.close(42)  # type: ignore[arg-type]  # a hostile id: ignored


def test_bad_stream_ids_are_refused() -> None:
    reg, _ = registry()
    with pytest.raises(TypeError):
        reg.next_item(["not", "a", "string"], None)  # type: ignore[arg-type]


def test_max_streams_refuses_and_closes_the_extra_iterator() -> None:
    reg, _ = registry(max_streams=2)
    reg.open(iter([1]), Owner())
    reg.open(iter([1]), Owner())
    extra = iter([1])
    with pytest.raises(DaemonError, match="too many open streams"):
        reg.open(extra, Owner())
    assert len(reg) == 2


def test_lifetime_counts_from_creation() -> None:
    reg, clock = registry(iter_stream_lifetime=10)
    gen = started(Gen())
    sid = reg.open(gen.it, Owner())
    clock.now += 9
    assert reg.next_item(sid, None) == 1  # reading does not renew it (as in Pyro5)
    clock.now += 2
    with pytest.raises(RemoteObjError, match="item stream terminated"):
        reg.next_item(sid, None)
    assert gen.closed


def test_release_with_linger_keeps_streams_for_a_new_connection() -> None:
    reg, clock = registry(iter_stream_linger=5)
    first, second = Owner(), Owner()
    sid = reg.open(iter([1, 2, 3]), first)
    reg.release(first)
    assert first.streams == set() and sid in reg
    clock.now += 4
    assert reg.next_item(sid, second) == 1  # adopted by the reconnected client
    assert second.streams == {sid}
    reg.release(second)
    clock.now += 6
    assert reg.sweep() == 1
    assert sid not in reg


def test_release_without_linger_closes_at_once() -> None:
    reg, _ = registry(iter_stream_linger=0)
    owner = Owner()
    gen = started(Gen())
    reg.open(gen.it, owner)
    reg.release(owner)
    assert gen.closed and len(reg) == 0


def test_a_stream_opened_after_its_connection_closed_lingers() -> None:
    # The client left while the call that returned the iterator was running.
    reg, clock = registry(iter_stream_linger=5)
    owner = Owner()
    reg.release(owner)
    sid = reg.open(iter([1]), owner)
    assert owner.streams == set()
    clock.now += 6
    assert reg.sweep() == 1 and sid not in reg


def test_without_linger_such_a_stream_goes_at_the_next_sweep() -> None:
    reg, _ = registry(iter_stream_linger=0)
    owner = Owner()
    reg.release(owner)
    gen = started(Gen())
    reg.open(gen.it, owner)
    assert reg.sweep() == 1 and gen.closed


def test_release_leaves_other_connections_streams_alone() -> None:
    reg, _ = registry(iter_stream_linger=0)
    mine, theirs = Owner(), Owner()
    reg.open(iter([1]), mine)
    kept = reg.open(iter([1]), theirs)
    reg.release(mine)
    assert list(reg._streams) == [kept]


def test_close_all() -> None:
    reg, _ = registry()
    gens = [started(Gen()) for _ in range(3)]
    for gen in gens:
        reg.open(gen.it, Owner())
    reg.close_all()
    assert len(reg) == 0 and all(g.closed for g in gens)


def test_async_iterators_need_a_serving_daemon() -> None:
    reg, _ = registry()
    with pytest.raises(DaemonError, match="serving daemon"):
        reg.open(agen(), Owner())


# --- the client side of the wire -------------------------------------------------------------


def core() -> CallCore:
    return CallCore(URI("PYRO:thing@127.0.0.1:1"), Config())


def pyro5_reply(flags: int, annotations: dict[str, bytes], payload: Any) -> p.Message:
    """A RESULT frame as Pyro5 5.17's daemon sends it, read back by our reader."""
    ser = pyro_serializers.serializers["serpent"]
    msg = pyro_protocol.SendingMessage(
        pyro_protocol.MSG_RESULT, flags, 7, ser.serializer_id, ser.dumps(payload), annotations
    )
    reader = p.MessageReader(1 << 20)
    reader.feed(msg.data)
    got = reader.next_message()
    assert got is not None
    return got


def test_itemstreamresult_is_read_before_the_exception_flag() -> None:
    msg = pyro5_reply(
        pyro_protocol.FLAGS_EXCEPTION | pyro_protocol.FLAGS_ITEMSTREAMRESULT,
        {"STRM": b"0f1e2d3c-stream"},
        PyroProtocolError("result of call is an iterator"),
    )
    assert core().result(msg) == StreamRef("0f1e2d3c-stream")


def test_itemstreamresult_without_a_stream_id_is_a_clear_error() -> None:
    msg = pyro5_reply(
        pyro_protocol.FLAGS_EXCEPTION | pyro_protocol.FLAGS_ITEMSTREAMRESULT,
        {},
        PyroProtocolError("result of call is an iterator"),
    )
    with pytest.raises(ProtocolError, match="not stream"):
        core().result(msg)


def test_our_stream_reply_is_what_a_pyro5_client_expects() -> None:
    from remoteobj.serializers import get_serializer

    ser = get_serializer("serpent")
    data = ser.dumps(ProtocolError("result of call is an iterator"))
    frame = p.encode(
        p.Message(
            p.MSG_RESULT,
            ser.serializer_id,
            3,
            data,
            p.FLAGS_EXCEPTION | p.FLAGS_ITEMSTREAMRESULT,
            {"STRM": b"abc"},
            bytes(range(16)),
        )
    )

    class Conn:  # what Pyro5's recv_stub reads from: exactly `size` bytes per recv
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def recv(self, size: int) -> bytes:
            chunk = self.data[self.pos : self.pos + size]
            self.pos += size
            return chunk

    msg = pyro_protocol.recv_stub(Conn(frame), [pyro_protocol.MSG_RESULT])
    assert msg.flags & pyro_protocol.FLAGS_ITEMSTREAMRESULT
    assert msg.annotations["STRM"] == b"abc"
    exc = pyro_serializers.serializers["serpent"].loads(msg.data)
    assert isinstance(exc, PyroProtocolError) and "iterator" in str(exc)

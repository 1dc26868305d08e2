"""Large frames: received in place by a worker that keeps a connection, sent in parts.

A daemon worker that keeps a busy connection receives a large body straight into
one buffer of the announced size (``recv(MSG_WAITALL)``) and reuses that buffer
for the next large body; a proxy sends a large payload beside its header
(``sendmsg``) instead of copying both into one frame. These tests check both
ends against real peers, and the edges: bodies that trickle in slower than one
kernel wait, annotations in front of the payload, bodies that never complete,
clients that vanish mid-body, and blobs, which must keep their payload.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import remoteobj
from remoteobj import protocol as p
from remoteobj.client import _sendall_parts
from remoteobj.receiving import receive_body
from remoteobj.serializers import get_serializer, tobytes
from remoteobj.server import BODY_WAIT, MAX_KEPT
from tests.integration.hard_peer import RawConn, proc_status, seconds_until_closed, start_peer
from tests.procs import Proc, start, wait_for

MiB = 1024 * 1024
LIMIT = 4 * MiB  # Config.max_message_size default
DEADLINE = 1.0
SWEEP_SLACK = 0.6  # as in test_hard_wire: the sweep's period, plus scheduling
#: The worker keeps a connection this long after each call, so a test's next frame is
#: read by the worker (in place), not by the loop.
KEPT = {
    "REMOTEOBJ_FIRST_FRAME_TIMEOUT": str(DEADLINE),
    "REMOTEOBJ_FRAME_TIMEOUT": str(DEADLINE),
    "REMOTEOBJ_WORKER_LINGER": "30",
}
SERPENT = get_serializer("serpent")
SIZES = [300_000, MiB, 2 * MiB + 3, 300_000]


def payload(size: int) -> bytes:
    return os.urandom(size)


def as_bytes(value: Any) -> bytes:
    """Bytes that went through serpent come back as Pyro5's base64 dict."""
    return tobytes(value) if isinstance(value, dict) else value


# --- the two socket steps, on a socket pair ------------------------------------------------


def test_receive_body_fills_the_view_and_leaves_the_socket_non_blocking() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.setblocking(False)
        data = payload(200_000)
        sender = threading.Thread(target=left.sendall, args=(data,))
        sender.start()
        buf = bytearray(len(data))
        with memoryview(buf) as view:
            got = receive_body(right, view, 5.0)
        sender.join()
        assert got == len(data) and buf == data
        assert right.gettimeout() == 0.0  # as the event loop needs it


def test_receive_body_returns_what_came_within_the_wait_then_minus_one_then_zero() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.setblocking(False)
        left.sendall(b"abc")
        buf = bytearray(10)
        with memoryview(buf) as view:
            started = time.monotonic()
            assert receive_body(right, view, 0.1) == 3  # a part: the wait ran out
            assert time.monotonic() - started >= 0.09
            assert receive_body(right, view[3:], 0.05) == -1  # nothing came
            left.close()
            assert receive_body(right, view[3:], 1.0) == 0  # the end of the stream
        assert buf[:3] == b"abc"
        assert right.gettimeout() == 0.0


def test_sendall_parts_delivers_every_byte_through_partial_writes() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        head, body = b"H" * 40, payload(3 * MiB)
        received = bytearray()

        def slow_reader() -> None:
            while len(received) < len(head) + len(body):
                received.extend(right.recv(7000))

        reader = threading.Thread(target=slow_reader)
        reader.start()
        _sendall_parts(left, (head, memoryview(body)))
        reader.join(10)
        assert received == head + body


# --- proxies against both daemons ----------------------------------------------------------


@pytest.fixture(scope="module", params=["remoteobj", "pyro5"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    from tests.procs import free_port

    impl = request.param
    proc = start(["python", "tests/integration/peers.py", impl, str(free_port()), "msgpack"])
    try:
        yield impl, proc.wait_for_line(r"READY (\S+)", timeout=15).group(1)
    finally:
        proc.kill()


@pytest.mark.parametrize("serializer", ["msgpack", "serpent"])
def test_large_arguments_in_parts_reach_either_daemon_intact(
    server: tuple[str, str], serializer: str
) -> None:
    _, uri = server
    cfg = remoteobj.Config(serializer=serializer)
    with remoteobj.Proxy(uri, config=cfg) as proxy:
        for size in SIZES:
            data = payload(size)
            assert as_bytes(proxy.echo(data)) == data


@pytest.mark.parametrize("serializer", ["msgpack", "serpent"])
def test_pyro5_proxies_send_large_arguments_to_our_daemon(serializer: str) -> None:
    from Pyro5 import api, config

    from tests.procs import free_port

    proc = start(["python", "tests/integration/peers.py", "remoteobj", str(free_port())])
    try:
        uri = proc.wait_for_line(r"READY (\S+)", timeout=15).group(1)
        config.SERIALIZER = serializer
        try:
            with api.Proxy(uri) as proxy:
                for size in SIZES:
                    data = payload(size)
                    assert as_bytes(proxy.echo(data)) == data
        finally:
            config.SERIALIZER = "serpent"
    finally:
        proc.kill()


# --- a connection a worker keeps: bodies received in place ---------------------------------


@pytest.fixture
def kept_peer() -> Iterator[tuple[Proc, str, int]]:
    proc, uri, port = start_peer(KEPT)
    try:
        yield proc, uri, port
    finally:
        proc.kill()


def kept(port: int) -> RawConn:
    """A connection that has made one call, so a worker keeps reading it."""
    raw = RawConn(port)
    assert raw.connect().type == p.MSG_CONNECTOK
    raw.invoke("echo", ("warm",))
    reply = raw.read()
    assert reply is not None and SERPENT.loads(reply.data) == "warm"
    return raw


def echo_frame(data: bytes, seq: int, annotations: dict[str, bytes] | None = None) -> bytes:
    body = SERPENT.dumps_call("hard", "echo", (data,), {})
    return p.encode(p.Message(p.MSG_INVOKE, 1, seq, body, annotations=annotations or {}))


def echoed(raw: RawConn, seq: int) -> Any:
    reply = raw.read()
    assert reply is not None and reply.seq == seq
    return as_bytes(SERPENT.loads(reply.data))


def test_bodies_that_trickle_in_slower_than_one_wait_arrive_whole(
    kept_peer: tuple[Proc, str, int],
) -> None:
    _, _, port = kept_peer
    with kept(port) as raw:
        data = payload(MiB)
        frame = echo_frame(data, 2, {"ABCD": b"in front of the payload"})
        pieces = [frame[:100], frame[100:5000], frame[5000 : MiB // 2], frame[MiB // 2 :]]
        for piece in pieces:
            raw.send(piece)
            time.sleep(3 * BODY_WAIT)  # the worker's kernel wait runs out in between
        assert echoed(raw, 2) == data
        for seq, size in enumerate([400_000, 2 * MiB, 300_000], start=3):  # its buffer, reused
            data = payload(size)
            raw.send(echo_frame(data, seq))
            assert echoed(raw, seq) == data


def test_a_blob_read_in_place_keeps_its_payload(kept_peer: tuple[Proc, str, int]) -> None:
    _, uri, _ = kept_peer
    with remoteobj.Proxy(uri) as proxy:
        assert proxy.echo("warm") == "warm"
        for size in (MiB, 2 * MiB):
            data = payload(size)
            info, back = proxy.unwrap(remoteobj.SerializedBlob("info", data))
            assert (info, as_bytes(back)) == ("info", data)


def test_bodies_that_never_complete_are_closed_at_the_frame_deadline_within_bounded_memory(
    kept_peer: tuple[Proc, str, int],
) -> None:
    proc, _, port = kept_peer
    count = MAX_KEPT + 2  # more than workers may keep: the rest are read by the loop
    raws = [kept(port) for _ in range(count)]
    before = proc_status(proc.pid)
    try:
        socks = []
        for raw in raws:
            header = echo_frame(b"", 9)[: p.HEADER_SIZE]
            lie = bytearray(header)
            lie[12:16] = (LIMIT - 1).to_bytes(4, "big")  # the payload length field
            started = time.monotonic()
            raw.send(bytes(lie) + b"x" * 1024)
            socks.append((raw.sock, started))
        closed_after = seconds_until_closed(socks, DEADLINE + SWEEP_SLACK + 1)
        growth = (proc_status(proc.pid)["VmHWM"] - before["VmHWM"]) / 1024
        print(f"closed after {min(closed_after):.2f}-{max(closed_after):.2f} s, +{growth:.1f} MiB")
        assert min(closed_after) >= DEADLINE - 0.05
        assert max(closed_after) <= DEADLINE + SWEEP_SLACK
        assert growth <= MAX_KEPT * LIMIT / MiB + 16  # what was announced, for kept ones only
    finally:
        for raw in raws:
            raw.close()
    with kept(port) as raw:  # still serving
        raw.send(echo_frame(b"after", 2))
        assert echoed(raw, 2) == b"after"


def test_a_client_gone_mid_body_is_closed_and_others_are_served(
    kept_peer: tuple[Proc, str, int],
) -> None:
    proc, _, port = kept_peer
    with kept(port):
        pass  # the daemon's own descriptors exist from the first connection on
    base = proc_status(proc.pid)["sockets"]
    raw = kept(port)
    raw.send(echo_frame(payload(MiB), 2)[: MiB // 2])
    raw.close()
    wait_for(lambda: proc_status(proc.pid)["sockets"] <= base, 5, message="the connection closed")
    with kept(port) as other:
        data = payload(MiB)
        other.send(echo_frame(data, 2))
        assert echoed(other, 2) == data


def test_large_arguments_over_a_unix_socket_sync_and_async(tmp_path: Path) -> None:
    @remoteobj.expose
    class Echo:
        def echo(self, x: object) -> object:
            return x

    daemon = remoteobj.Daemon(
        unixsocket=str(tmp_path / "big.sock"),
        config=remoteobj.Config(accepted_serializers=frozenset({"serpent", "msgpack"})),
    )
    uri = daemon.register(Echo(), "echo")
    thread = threading.Thread(target=daemon.request_loop, daemon=True)
    thread.start()
    try:
        cfg = remoteobj.Config(serializer="msgpack")
        with remoteobj.Proxy(uri, config=cfg) as proxy:  # kept by a worker after the first
            for size in SIZES:
                data = payload(size)
                assert proxy.echo(data) == data

        async def via_async() -> None:
            async with remoteobj.AsyncProxy(uri, config=cfg) as aproxy:
                for size in SIZES:
                    data = payload(size)
                    assert await aproxy.echo(data) == data

        asyncio.run(via_async())
    finally:
        daemon.close()
        thread.join(5)


def test_large_compressed_bodies_read_in_place_are_inflated() -> None:
    proc, uri, _ = start_peer({**KEPT, "REMOTEOBJ_COMPRESSION": "1"})
    try:
        cfg = remoteobj.Config(compression=True)
        with remoteobj.Proxy(uri, config=cfg) as proxy:
            assert proxy.echo("warm") == "warm"
            for size in (MiB, 300_000):  # random bytes: they stay large when compressed
                data = payload(size)
                assert as_bytes(proxy.echo(data)) == data
    finally:
        proc.kill()


def test_a_large_result_the_socket_takes_in_pieces_arrives_whole() -> None:
    @remoteobj.expose
    class Echo:
        def echo(self, x: object) -> object:
            return x

    cfg = remoteobj.Config(accepted_serializers=frozenset({"msgpack"}))
    daemon = remoteobj.Daemon("127.0.0.1", 0, config=cfg)
    uri = daemon.register(Echo(), "echo")
    # Accepted sockets inherit a small send buffer: a reply in parts (header, then the
    # payload) is taken a few KiB at a time, the rest waits in the daemon's buffer.
    daemon.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024)
    thread = threading.Thread(target=daemon.request_loop, daemon=True)
    thread.start()
    try:
        with remoteobj.Proxy(uri, config=remoteobj.Config(serializer="msgpack")) as proxy:
            for size in (2 * MiB, 300_000, 3 * MiB):
                data = payload(size)
                assert proxy.echo(data) == data
    finally:
        daemon.close()
        thread.join(5)


def test_a_large_reply_that_stops_coming_ends_at_the_calls_deadline() -> None:
    ser = get_serializer("serpent")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def stalling_daemon() -> None:
        conn, _ = listener.accept()
        reader = p.MessageReader(1 << 20)
        meta = {"methods": ["echo"], "oneway": [], "attrs": []}
        with conn:
            while not stop.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                reader.feed(data)
                while (msg := reader.next_message()) is not None:
                    if msg.type == p.MSG_CONNECT:
                        ok = ser.dumps({"meta": meta, "handshake": None})
                        conn.sendall(p.encode(p.Message(p.MSG_CONNECTOK, 1, msg.seq, ok)))
                    else:  # announce a 1 MiB reply, send a little of it, then nothing
                        reply = p.encode(p.Message(p.MSG_RESULT, 1, msg.seq, b"x" * MiB))
                        conn.sendall(reply[:5000])

    thread = threading.Thread(target=stalling_daemon, daemon=True)
    thread.start()
    try:
        with remoteobj.Proxy(f"PYRO:obj@127.0.0.1:{port}") as proxy:
            proxy._timeout = 0.5
            started = time.monotonic()
            with pytest.raises(remoteobj.errors.TimeoutError):
                proxy.echo("the reply will never be whole")
            assert 0.45 <= time.monotonic() - started < 2.0
    finally:
        stop.set()
        listener.close()

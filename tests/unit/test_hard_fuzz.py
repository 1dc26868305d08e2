"""In-process parser fuzz (THREATS.md G2, with hypothesis at CI size): the frame reader,
the decoders and the daemon's handshake/dispatch raise only the errors they document,
whatever the bytes; no input takes long. ``RO_FUZZ_EXAMPLES`` raises the example count.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remoteobj import Config, Daemon
from remoteobj import protocol as p
from remoteobj.daemon import Call, Session
from remoteobj.errors import ProtocolError, SecurityError, SerializeError
from remoteobj.serializers import DecodeLimits, get_serializer

EXAMPLES = int(os.environ.get("RO_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMIT = 64 * 1024
SLOW = 1.0  # seconds: no single input may take longer

HEADER = struct.Struct("!4sHBBHHII16sHH")


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """Mostly well-formed headers with one or more fields mutated, plus raw junk."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    data = draw(st.binary(max_size=200))
    ann = draw(st.binary(max_size=40))
    fields = {
        "tag": draw(st.sampled_from([b"PYRO", b"PYRX", b"pyro"])),
        "version": draw(st.sampled_from([502, 502, 502, 501, 0xFFFF])),
        "type": draw(st.integers(0, 8)),
        "ser": draw(st.integers(0, 6)),
        "flags": draw(st.integers(0, 0xFFFF)),
        "seq": draw(st.integers(0, 0xFFFF)),
        "data_len": draw(st.sampled_from([len(data), len(data) + 1, 0, LIMIT + 1, 2**32 - 1])),
        "ann_len": draw(st.sampled_from([len(ann), 0, 7, 2**32 - 1])),
        "magic": draw(st.sampled_from([p.MAGIC, p.MAGIC, 0])),
    }
    header = HEADER.pack(
        fields["tag"],
        fields["version"],
        fields["type"],
        fields["ser"],
        fields["flags"],
        fields["seq"],
        fields["data_len"],
        fields["ann_len"],
        bytes(16),
        0,
        fields["magic"],
    )
    return header + ann + data


@FUZZ
@given(stream=st.lists(frames(), min_size=1, max_size=4), cuts=st.lists(st.integers(1, 64)))
def test_message_reader_raises_only_protocol_errors(stream: list[bytes], cuts: list[int]) -> None:
    data = b"".join(stream)
    reader = p.MessageReader(LIMIT, allow_compressed=True)
    pos = 0
    started = time.monotonic()
    try:
        for cut in [*cuts, len(data)]:
            reader.feed(data[pos : pos + cut])
            pos += cut
            while (msg := reader.next_message()) is not None:
                assert isinstance(msg, p.Message)
                assert len(msg.data) <= LIMIT
            assert reader.buffered <= len(data)
    except ProtocolError:
        pass
    assert time.monotonic() - started < SLOW


@pytest.mark.parametrize("name", ["serpent", "json", "msgpack", "marshal"])
@FUZZ
@given(data=st.binary(max_size=400))
def test_decoders_raise_only_their_documented_errors(name: str, data: bytes) -> None:
    ser = get_serializer(name)
    limits = DecodeLimits(max_elements=1000, max_nesting=20)
    started = time.monotonic()
    for decode in (ser.loads, ser.loads_call):
        with contextlib.suppress(SerializeError, SecurityError):
            decode(data, limits)
    assert time.monotonic() - started < SLOW


def _payload(draw: st.DrawFn) -> Any:
    leaf = st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.binary(max_size=20)
    )
    return draw(
        st.recursive(
            leaf,
            lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids),
            max_leaves=12,
        )
    )


@st.composite
def connect_payloads(draw: st.DrawFn) -> tuple[int, bytes]:
    ser_id = draw(st.sampled_from([1, 2, 3, 4, 5, 0]))
    if draw(st.booleans()):
        return ser_id, draw(st.binary(max_size=200))
    value = {
        "handshake": _payload(draw),
        "object": draw(st.sampled_from(["Pyro.Daemon", "", "x", "__class__"]) | st.text()),
        "auth": draw(st.none() | st.just({"scheme": "hmac-sha256-v1"}) | st.text()),
    }
    if draw(st.booleans()):
        value = _payload(draw)
    name = {1: "serpent", 2: "marshal", 3: "json", 4: "msgpack"}.get(ser_id, "serpent")
    try:
        return ser_id, get_serializer(name).dumps(value)
    except SerializeError:
        return ser_id, b""


@pytest.fixture(scope="module")
def daemons() -> Any:
    plain = Daemon("127.0.0.1", 0)
    authed = Daemon("127.0.0.1", 0, config=Config(auth_secret="x"))
    yield plain, authed
    plain.close()
    authed.close()


@FUZZ
@given(payload=connect_payloads(), flags=st.integers(0, 0xFFFF))
def test_handshake_never_raises(daemons: Any, payload: tuple[int, bytes], flags: int) -> None:
    ser_id, data = payload
    for daemon in daemons:
        session = Session(("127.0.0.1", 1))
        frame, accepted = daemon.handle_connect(
            session, p.Message(p.MSG_CONNECT, ser_id, 0, data, flags)
        )
        assert isinstance(frame, bytes) and isinstance(accepted, bool)


@st.composite
def invoke_payloads(draw: st.DrawFn) -> tuple[int, bytes, int]:
    ser_id = draw(st.sampled_from([1, 3, 4, 2, 9]))
    flags = draw(st.sampled_from([0, p.FLAGS_ONEWAY, p.FLAGS_BATCH, p.FLAGS_KEEPSERIALIZED]))
    if draw(st.booleans()):
        return ser_id, draw(st.binary(max_size=200)), flags
    method = draw(
        st.sampled_from(
            [
                "registered",
                "ping",
                "info",
                "__getattr__",
                "__setattr__",
                "<batch>",
                "_daemon",
                "__init__",
                "get_metadata",
                "get_next_stream_item",
            ]
        )
        | st.text(max_size=10)
    )
    obj = draw(st.sampled_from(["Pyro.Daemon", "nope"]) | st.text(max_size=5))
    args = draw(st.lists(st.text(max_size=5) | st.integers(), max_size=3))
    name = {1: "serpent", 3: "json", 4: "msgpack"}.get(ser_id, "serpent")
    try:
        return ser_id, get_serializer(name).dumps_call(obj, method, args, {}), flags
    except SerializeError:
        return ser_id, b"", flags


@FUZZ
@given(payload=invoke_payloads())
def test_prepare_never_raises(daemons: Any, payload: tuple[int, bytes, int]) -> None:
    ser_id, data, flags = payload
    daemon = daemons[0]
    session = Session(("127.0.0.1", 1))
    session.handshaken = True
    result = daemon.prepare(session, p.Message(p.MSG_INVOKE, ser_id, 1, data, flags))
    assert result is None or isinstance(result, (bytes, Call))
    if isinstance(result, Call) and result.func.__name__ in ("registered", "ping", "info"):
        reply = daemon.run_sync(result)  # harmless built-in calls may run
        assert reply is None or isinstance(reply, bytes)

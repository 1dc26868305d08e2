"""The sans-IO framing of protocol 502: what goes in as bytes comes out as messages."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remoteobj import protocol as p
from remoteobj.errors import MessageTooLargeError, ProtocolError

LIMIT = 64 * 1024

# Produced by Pyro5 5.17 itself (see PYRO5-WIRE.md 2.1): INVOKE, serpent, seq 1,
# annotation XYZW=b"abc", payload b"payload".
PYRO5_INVOKE = bytes.fromhex(
    "5059524f01f6040100000001000000070000000b" + "00" * 16 + "00004dc5"
    "58595a5700000003616263"
    "7061796c6f6164"
)


def read_all(data: bytes, chunk: int = 1, limit: int = LIMIT) -> list[p.Message]:
    reader = p.MessageReader(limit)
    out = []
    for i in range(0, len(data), chunk):
        reader.feed(data[i : i + chunk])
        while (msg := reader.next_message()) is not None:
            out.append(msg)
    assert not reader.in_frame
    return out


messages = st.builds(
    p.Message,
    type=st.sampled_from(sorted(p.MESSAGE_TYPES)),
    serializer_id=st.integers(0, 255),
    seq=st.integers(0, 0xFFFF),
    data=st.binary(max_size=2000),
    flags=st.sampled_from([0, p.FLAGS_EXCEPTION, p.FLAGS_ONEWAY, p.FLAGS_BATCH]),
    annotations=st.dictionaries(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=4, max_size=4),
        st.binary(max_size=50),
        max_size=3,
    ),
    corr_id=st.one_of(st.just(p.NO_CORR_ID), st.binary(min_size=16, max_size=16)),
)


def test_encodes_exactly_what_pyro5_sends() -> None:
    msg = p.Message(p.MSG_INVOKE, 1, 1, b"payload", annotations={"XYZW": b"abc"})
    assert p.encode(msg) == PYRO5_INVOKE


def test_reads_pyro5_frame_fed_one_byte_at_a_time() -> None:
    (msg,) = read_all(PYRO5_INVOKE, chunk=1)
    assert (msg.type, msg.serializer_id, msg.seq, msg.data) == (p.MSG_INVOKE, 1, 1, b"payload")
    assert msg.annotations == {"XYZW": b"abc"}
    assert msg.corr_id == p.NO_CORR_ID


@given(st.lists(messages, min_size=1, max_size=5), st.integers(1, 97))
@settings(max_examples=200)
def test_any_messages_survive_any_chunking(msgs: list[p.Message], chunk: int) -> None:
    stream = b"".join(p.encode(m) for m in msgs)
    got = read_all(stream, chunk)
    assert len(got) == len(msgs)
    for sent, received in zip(msgs, got, strict=True):
        assert received.data == sent.data
        assert received.annotations == sent.annotations
        assert received.corr_id == sent.corr_id
        assert (received.type, received.serializer_id, received.seq) == (
            sent.type,
            sent.serializer_id,
            sent.seq,
        )
        expected_flags = sent.flags | (p.FLAGS_CORR_ID if sent.corr_id != p.NO_CORR_ID else 0)
        assert received.flags == expected_flags


def test_compressed_payload_round_trips_and_flag_is_cleared() -> None:
    data = b"abc" * 1000
    frame = p.encode(p.Message(p.MSG_RESULT, 1, 7, data), compress=True)
    assert len(frame) < len(data)
    (msg,) = read_all(frame, chunk=len(frame))
    assert msg.data == data
    assert not msg.flags & p.FLAGS_COMPRESSED


def test_short_payloads_are_not_compressed() -> None:
    frame = p.encode(p.Message(p.MSG_RESULT, 1, 7, b"x" * 100), compress=True)
    assert frame.endswith(b"x" * 100)


@pytest.mark.parametrize(
    ("prefix", "error"),
    [
        (b"GET / HTTP/1.1\r\n", "not a Pyro protocol message"),
        (b"\x16\x03\x01\x02\x00\x01", "not a Pyro protocol message"),  # TLS ClientHello
        (b"PYRO\x01\xf5", "invalid protocol version: 501"),
        (b"PYRO\x00\x30", "invalid protocol version: 48"),  # Pyro4's version 48
    ],
)
def test_foreign_bytes_are_refused_before_a_header_is_complete(prefix: bytes, error: str) -> None:
    reader = p.MessageReader(LIMIT)
    with pytest.raises(ProtocolError, match=error):
        for i in range(len(prefix)):
            reader.feed(prefix[i : i + 1])


def header(**fields: int | bytes) -> bytes:
    values = dict(
        tag=b"PYRO",
        version=502,
        type=4,
        ser=1,
        flags=0,
        seq=1,
        data_len=0,
        ann_len=0,
        corr=bytes(16),
        reserved=0,
        magic=0x4DC5,
    )
    values.update(fields)
    return p.HEADER.pack(*values.values())


def test_bad_magic_is_refused() -> None:
    reader = p.MessageReader(LIMIT)
    reader.feed(header(magic=0x1234))
    with pytest.raises(ProtocolError, match="magic"):
        reader.next_message()


def test_unknown_message_type_is_refused() -> None:
    reader = p.MessageReader(LIMIT)
    reader.feed(header(type=9))
    with pytest.raises(ProtocolError, match="message type 9"):
        reader.next_message()


def test_oversize_length_is_refused_as_soon_as_the_header_is_in() -> None:
    reader = p.MessageReader(LIMIT)
    reader.feed(header(data_len=1000 * 1024 * 1024))  # claims 1000 MiB, sends nothing
    with pytest.raises(MessageTooLargeError, match="too large"):
        reader.next_message()
    assert reader.buffered == p.HEADER_SIZE  # nothing was allocated for the body


def test_annotation_lengths_that_lie_are_refused() -> None:
    chunk = struct.pack("!4sI", b"ABCD", 50) + b"x" * 5  # claims 50 bytes, has 5
    reader = p.MessageReader(LIMIT)
    reader.feed(header(ann_len=len(chunk)) + chunk)
    with pytest.raises(ProtocolError, match="annotations"):
        reader.next_message()


def test_truncated_annotation_chunk_header_is_refused() -> None:
    reader = p.MessageReader(LIMIT)
    reader.feed(header(ann_len=3) + b"ABC")
    with pytest.raises(ProtocolError, match="truncated"):
        reader.next_message()


def test_compression_bomb_is_refused_without_inflating_it() -> None:
    bomb = zlib.compress(b"\0" * (50 * 1024 * 1024), 9)  # ~50 KiB that would become 50 MiB
    frame = header(data_len=len(bomb), flags=p.FLAGS_COMPRESSED) + bomb
    reader = p.MessageReader(LIMIT)
    reader.feed(frame)
    with pytest.raises(MessageTooLargeError, match="after decompression"):
        reader.next_message()


def test_compressed_frames_are_refused_when_compression_is_off() -> None:
    frame = p.encode(p.Message(p.MSG_INVOKE, 1, 1, b"y" * 500), compress=True)
    reader = p.MessageReader(LIMIT, allow_compressed=False)
    reader.feed(frame)
    with pytest.raises(ProtocolError, match="compression is not enabled"):
        reader.next_message()


def test_corrupt_compressed_data_is_a_protocol_error() -> None:
    reader = p.MessageReader(LIMIT)
    reader.feed(header(data_len=10, flags=p.FLAGS_COMPRESSED) + b"not zlib!!")
    with pytest.raises(ProtocolError, match="compressed"):
        reader.next_message()


@given(st.binary(min_size=p.HEADER_SIZE, max_size=200), st.integers(0, 39), st.integers(0, 255))
@settings(max_examples=500)
def test_mutated_headers_raise_only_protocol_errors(tail: bytes, pos: int, byte: int) -> None:
    frame = bytearray(PYRO5_INVOKE)
    frame[pos] = byte
    reader = p.MessageReader(LIMIT)
    try:
        reader.feed(bytes(frame) + tail)
        while reader.next_message() is not None:
            pass
    except ProtocolError:
        pass


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    reader = p.MessageReader(LIMIT)
    try:
        reader.feed(data)
        while reader.next_message() is not None:
            pass
    except ProtocolError:
        pass


def test_encode_rejects_bad_annotation_keys_and_correlation_ids() -> None:
    with pytest.raises(ValueError, match="4 ASCII"):
        p.encode(p.Message(p.MSG_INVOKE, 1, 1, b"", annotations={"TOOLONG": b""}))
    with pytest.raises(ValueError, match="16 bytes"):
        p.encode(p.Message(p.MSG_INVOKE, 1, 1, b"", corr_id=b"short"))


def test_errors_after_the_header_carry_the_frames_seq_and_serializer() -> None:
    frame = p.encode(p.Message(p.MSG_INVOKE, 3, 1234, b"z" * 500), compress=True)
    reader = p.MessageReader(LIMIT, allow_compressed=False)
    reader.feed(frame)
    with pytest.raises(ProtocolError) as info:
        reader.next_message()
    assert (info.value.seq, info.value.serializer_id) == (1234, 3)


def test_oversize_error_carries_the_seq_too() -> None:
    reader = p.MessageReader(LIMIT)
    reader.feed(header(data_len=LIMIT + 1, seq=77))
    with pytest.raises(MessageTooLargeError) as info:
        reader.next_message()
    assert info.value.seq == 77


def test_recv_size_asks_for_the_rest_of_a_big_frame_but_not_more_than_a_mib() -> None:
    reader = p.MessageReader(8 * 1024 * 1024)
    assert reader.recv_size() == p.SMALL_READ
    frame = p.encode(p.Message(p.MSG_RESULT, 1, 1, b"x" * 300_000))
    reader.feed(frame[:1000])
    assert reader.next_message() is None
    assert reader.recv_size() == len(frame) - 1000
    big = p.encode(p.Message(p.MSG_RESULT, 1, 1, b"x" * 3_000_000))
    reader = p.MessageReader(8 * 1024 * 1024)
    reader.feed(big[:100])
    assert reader.next_message() is None
    assert reader.recv_size() == p.LARGE_READ


# --- large bodies, kept as the chunks received -------------------------------------------

BIG_LIMIT = 8 * 1024 * 1024


def large_then_small(
    size: int, annotations: dict[str, bytes]
) -> tuple[p.Message, p.Message, bytes]:
    """A large INVOKE and a small RESULT, and the stream of both."""
    payload = bytes(range(256)) * (size // 256) + b"!" * (size % 256)
    msg = p.Message(p.MSG_INVOKE, 4, 9, payload, annotations=annotations)
    after = p.Message(p.MSG_RESULT, 4, 10, b"next")
    return msg, after, p.encode(msg) + p.encode(after)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(p.CHUNKED_BODY, p.CHUNKED_BODY + 3 * p.LARGE_READ),
    first=st.integers(p.HEADER_SIZE, 4096),
    sizes=st.lists(st.integers(1, 400_000), max_size=20),
    annotations=st.dictionaries(st.sampled_from(["CORR", "ABCD"]), st.binary(max_size=20)),
)
def test_a_large_body_fed_in_any_pieces_is_the_same_message(
    size: int, first: int, sizes: list[int], annotations: dict[str, bytes]
) -> None:
    msg, after, stream = large_then_small(size, annotations)
    reader = p.MessageReader(BIG_LIMIT)
    reader.feed(stream[:first])  # what a first small read gets: the header and a bit
    assert reader.next_message() is None
    pos, got = first, []
    for piece in [*sizes, len(stream)]:  # the last piece holds the rest, the next frame too
        assert reader.recv_size() <= p.LARGE_READ
        reader.feed(stream[pos : pos + piece])
        pos += piece
        while (m := reader.next_message()) is not None:
            got.append(m)
        if pos >= len(stream):
            break
    assert got == [msg, after]
    assert type(got[0].data) is bytes
    assert not reader.in_frame


def test_a_frame_announced_huge_but_sent_slowly_holds_only_what_was_sent() -> None:
    reader = p.MessageReader(64 * 1024 * 1024)
    frame = p.encode(p.Message(p.MSG_INVOKE, 1, 1, b"z" * (60 * 1024 * 1024)))
    reader.feed(frame[:100])
    assert reader.next_message() is None
    for i in range(3):
        reader.feed(frame[100 + 10 * i : 110 + 10 * i])
        assert reader.next_message() is None
    assert reader.buffered == 100 - p.HEADER_SIZE + 30
    assert sum(map(len, reader._chunks or [])) == reader.buffered  # nothing held ahead
    assert reader.recv_size() == p.LARGE_READ  # asked for in steps, not all at once


def test_garbage_right_after_a_large_body_is_refused() -> None:
    frame = p.encode(p.Message(p.MSG_RESULT, 1, 1, b"w" * p.CHUNKED_BODY))
    reader = p.MessageReader(BIG_LIMIT)
    reader.feed(frame[:1000])
    assert reader.next_message() is None
    reader.feed(frame[1000:] + b"GET / HTTP/1.1\r\n")
    with pytest.raises(ProtocolError, match="not a Pyro protocol message"):
        reader.next_message()


# --- large bodies, received in place (a daemon worker's reads) ----------------------------


def fill(view: memoryview, data: bytes) -> int:
    """What ``sock.recv_into(view)`` does when ``data`` has arrived: copy what fits."""
    count = min(len(view), len(data))
    view[:count] = data[:count]
    return count


def receive_in_place(reader: p.MessageReader, frame: bytes, first: int) -> p.Message:
    """``frame`` read as a worker reads it: ``first`` bytes fed, the body in place, then
    whatever follows it fed again."""
    reader.feed(frame[:first])
    assert reader.next_message() is None
    view = reader.body_buffer()
    assert view is not None
    with view:
        count = fill(view, frame[first:])
    reader.body_received(count)
    reader.feed(frame[first + count :])
    msg = reader.next_message()
    assert msg is not None
    return msg


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(p.CHUNKED_BODY, p.CHUNKED_BODY + 2 * p.LARGE_READ),
    first=st.integers(p.HEADER_SIZE, 4096),
    pieces=st.lists(st.tuples(st.booleans(), st.integers(1, 400_000)), max_size=12),
    annotations=st.dictionaries(st.sampled_from(["CORR", "ABCD"]), st.binary(max_size=20)),
    spare=st.sampled_from([None, 0, p.CHUNKED_BODY, 3 * p.LARGE_READ]),
)
def test_a_large_body_received_in_place_in_any_pieces_is_the_same_message(
    size: int,
    first: int,
    pieces: list[tuple[bool, int]],
    annotations: dict[str, bytes],
    spare: int | None,
) -> None:
    msg, after, stream = large_then_small(size, annotations)
    reader = p.MessageReader(BIG_LIMIT)
    if spare is not None:  # the buffer of an earlier message, handed back
        reader.recycle(p.Message(p.MSG_INVOKE, 4, 1, bytearray(b"s" * spare)))
    reader.feed(stream[:first])
    assert reader.next_message() is None
    pos = first
    # In place, or fed (the loop reading the same frame after a worker let go of it).
    for in_place, piece in [*pieces, (True, len(stream))]:
        view = reader.body_buffer()
        if in_place and view is not None:
            with view:
                count = fill(view, stream[pos : pos + piece])
            reader.body_received(count)
        else:
            count = min(piece, len(stream) - pos)
            reader.feed(stream[pos : pos + count])
        pos += count
        if reader.body_buffer() is None:  # the body is complete
            break
    reader.feed(stream[pos:])  # the rest: the next frame
    got = reader.next_message()
    assert got == msg
    assert got is not None and type(got.data) is bytearray
    assert reader.next_message() == after
    assert not reader.in_frame


def test_a_small_frame_is_never_received_in_place() -> None:
    reader = p.MessageReader(BIG_LIMIT)
    frame = p.encode(p.Message(p.MSG_INVOKE, 4, 1, b"q" * (p.CHUNKED_BODY - 100)))
    assert reader.body_buffer() is None  # no header yet
    reader.feed(frame[:500])
    assert reader.next_message() is None
    assert reader.body_buffer() is None
    reader.feed(frame[500:])
    assert reader.next_message() is not None


def test_a_body_buffer_is_the_announced_size_and_counts_are_checked() -> None:
    reader = p.MessageReader(BIG_LIMIT)
    frame = p.encode(p.Message(p.MSG_INVOKE, 4, 1, b"q" * p.CHUNKED_BODY))
    reader.feed(frame[:1000])
    assert reader.next_message() is None
    view = reader.body_buffer()
    assert view is not None and len(view) == len(frame) - 1000
    assert reader.buffered == 1000 - p.HEADER_SIZE
    assert reader.recv_size() == min(len(frame) - 1000, p.LARGE_READ)
    view.release()
    with pytest.raises(ValueError, match="room for fewer"):
        reader.body_received(len(frame))


def test_garbage_right_after_a_body_received_in_place_is_refused() -> None:
    frame = p.encode(p.Message(p.MSG_RESULT, 1, 1, b"w" * p.CHUNKED_BODY))
    with pytest.raises(ProtocolError, match="not a Pyro protocol message"):
        receive_in_place(p.MessageReader(BIG_LIMIT), frame + b"GET / HTTP/1.1\r\n", 1000)


def test_a_recycled_buffer_takes_the_next_body_and_can_be_dropped() -> None:
    reader = p.MessageReader(BIG_LIMIT)
    frame = p.encode(p.Message(p.MSG_INVOKE, 4, 1, b"a" * p.CHUNKED_BODY))
    first = receive_in_place(reader, frame, 100)
    buffer = first.data
    reader.recycle(first)
    assert first.data == b""  # the message no longer refers to the buffer
    second = receive_in_place(reader, frame, 100)
    assert second.data is buffer
    reader.recycle(second)
    reader.drop_spare()
    reader.feed(frame[:100])
    assert reader.next_message() is None
    view = reader.body_buffer()
    assert view is not None
    view.release()
    assert reader._body is not buffer


def test_recycling_leaves_payloads_that_are_not_body_buffers_alone() -> None:
    reader = p.MessageReader(BIG_LIMIT)
    msg = p.Message(p.MSG_INVOKE, 4, 1, b"bytes")
    reader.recycle(msg)
    assert msg.data == b"bytes" and reader._spare is None


# --- frames in parts (a large payload is sent beside its header, not copied into it) ------


@given(messages)
def test_a_frame_in_parts_is_the_same_bytes(msg: p.Message) -> None:
    head, data = p.encode_parts(msg)
    assert head + data == p.encode(msg) == p.joined(p.encode_frame(msg))


def test_only_large_payloads_travel_in_parts() -> None:
    small = p.Message(p.MSG_INVOKE, 4, 1, b"s" * (p.GATHER_PAYLOAD - 1))
    big = p.Message(p.MSG_INVOKE, 4, 1, memoryview(b"b" * p.GATHER_PAYLOAD))
    assert type(p.encode_frame(small)) is bytes
    parts = p.encode_frame(big)
    assert type(parts) is tuple and parts[1] is big.data
    assert p.joined(parts) == p.encode(big)


@given(head=st.binary(min_size=1, max_size=60), payload=st.binary(max_size=200), sent=st.data())
def test_what_is_left_of_a_frame_in_parts_after_a_partial_write(
    head: bytes, payload: bytes, sent: st.DataObject
) -> None:
    took = sent.draw(st.integers(0, len(head) + len(payload)))
    rest = p.unsent((head, payload), took)
    assert b"".join(bytes(part) for part in rest) == (head + payload)[took:]
    assert all(len(part) for part in rest)

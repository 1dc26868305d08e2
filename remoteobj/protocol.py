"""Pyro5 wire protocol 502, without I/O.

A frame is a 40-byte header, then annotation chunks, then the payload::

    !4sHBBHHII16sHH   tag "PYRO", version 502, type, serializer id, flags, seq,
                      payload length, annotations length, correlation id,
                      reserved 0, magic 0x4dc5
    !4sI + bytes      one annotation chunk (repeated)
    bytes             payload (zlib-compressed when FLAGS_COMPRESSED)

:func:`encode` turns a :class:`Message` into bytes. A :class:`MessageReader` is
fed bytes in chunks of any size and hands out whole messages; it judges every
header field the moment the bytes holding it are in, so a hostile peer is
refused before it can make us read or allocate a body.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from .errors import MessageTooLargeError, ProtocolError

__all__ = [
    "FLAGS_BATCH",
    "FLAGS_COMPRESSED",
    "FLAGS_CORR_ID",
    "FLAGS_EXCEPTION",
    "FLAGS_ITEMSTREAMRESULT",
    "FLAGS_KEEPSERIALIZED",
    "FLAGS_ONEWAY",
    "GATHER_PAYLOAD",
    "HEADER_SIZE",
    "MAGIC",
    "MSG_CONNECT",
    "MSG_CONNECTFAIL",
    "MSG_CONNECTOK",
    "MSG_INVOKE",
    "MSG_PING",
    "MSG_RESULT",
    "NO_CORR_ID",
    "PROTOCOL_VERSION",
    "Frame",
    "Message",
    "MessageReader",
    "encode",
    "encode_frame",
    "encode_parts",
    "joined",
    "unsent",
]

TAG = b"PYRO"
PROTOCOL_VERSION = 502
MAGIC = 0x4DC5
HEADER = struct.Struct("!4sHBBHHII16sHH")
HEADER_SIZE = HEADER.size  # 40
ANNOTATION = struct.Struct("!4sI")
NO_CORR_ID = bytes(16)

MSG_CONNECT = 1
MSG_CONNECTOK = 2
MSG_CONNECTFAIL = 3
MSG_INVOKE = 4
MSG_RESULT = 5
MSG_PING = 6
MESSAGE_TYPES = frozenset(range(MSG_CONNECT, MSG_PING + 1))

FLAGS_EXCEPTION = 1 << 0
FLAGS_COMPRESSED = 1 << 1
FLAGS_ONEWAY = 1 << 2
FLAGS_BATCH = 1 << 3
FLAGS_ITEMSTREAMRESULT = 1 << 4
FLAGS_KEEPSERIALIZED = 1 << 5
FLAGS_CORR_ID = 1 << 6

#: Default read size: below glibc's mmap threshold (128 KiB), so reads allocate cheaply.
SMALL_READ = 64 * 1024
#: Largest read, for the body of a big frame.
LARGE_READ = 1024 * 1024
#: Frames whose body (annotations and payload) is at least this big are kept as
#: the chunks received, joined once when complete (see :class:`MessageReader`).
CHUNKED_BODY = 256 * 1024

#: Compressed payloads are measured through a window of this size before inflating.
_INFLATE_WINDOW = 64 * 1024

#: Pyro5 only compresses payloads longer than this.
COMPRESS_THRESHOLD = 100

_VERSION_BYTES = struct.pack("!H", PROTOCOL_VERSION)


@dataclass(slots=True)
class Message:
    """One protocol-502 frame, decoded from or about to become bytes.

    ``data`` is the payload as the serializer produced it (never compressed
    here: compression is a property of the encoding, see :func:`encode`).
    ``corr_id`` is the 16-byte correlation id; ``FLAGS_CORR_ID`` is set by
    :func:`encode` whenever it is not all zeros.
    """

    type: int
    serializer_id: int
    seq: int
    data: bytes | bytearray | memoryview
    flags: int = 0
    annotations: dict[str, bytes] = field(default_factory=dict)
    corr_id: bytes = NO_CORR_ID


#: A frame to send: its bytes, or (for a large payload) its header and annotations
#: and its payload, written together with one gathered write (no copy of the payload).
Frame: TypeAlias = bytes | tuple[bytes, bytes | bytearray | memoryview]

#: Payloads at least this big travel as :data:`Frame` parts (see :func:`encode_frame`).
GATHER_PAYLOAD = 64 * 1024


def encode(msg: Message, *, compress: bool = False) -> bytes:
    """The bytes of ``msg`` on the wire.

    With ``compress`` the payload is zlib-compressed when it is longer than
    100 bytes, as Pyro5 does, and ``FLAGS_COMPRESSED`` is set.
    """
    head, data = encode_parts(msg, compress=compress)
    return head + data


def encode_frame(msg: Message, *, compress: bool = False) -> Frame:
    """``msg`` as a :data:`Frame`: in parts when its payload is large, else as bytes."""
    head, data = encode_parts(msg, compress=compress)
    return (head, data) if len(data) >= GATHER_PAYLOAD else head + data


def joined(frame: Frame) -> bytes:
    """The bytes of a :data:`Frame`."""
    return frame if isinstance(frame, bytes) else b"".join(frame)


def unsent(
    parts: Sequence[bytes | bytearray | memoryview], sent: int
) -> list[bytes | bytearray | memoryview]:
    """What is left of ``parts`` (a frame in parts, say) after a write took ``sent``
    bytes of them; empty parts are dropped."""
    rest: list[bytes | bytearray | memoryview] = []
    for part in parts:
        if sent >= len(part):
            sent -= len(part)
            continue
        rest.append(memoryview(part)[sent:] if sent else part)
        sent = 0
    return rest


def encode_parts(
    msg: Message, *, compress: bool = False
) -> tuple[bytes, bytes | bytearray | memoryview]:
    """``msg`` on the wire as two parts: the header with the annotations, and the payload."""
    data = msg.data
    flags = msg.flags & ~FLAGS_COMPRESSED
    if compress and len(data) > COMPRESS_THRESHOLD:
        data = zlib.compress(data)
        flags |= FLAGS_COMPRESSED
    corr_id = msg.corr_id
    if corr_id != NO_CORR_ID:
        flags |= FLAGS_CORR_ID
    if len(corr_id) != 16:
        raise ValueError("correlation id must be 16 bytes")
    if msg.annotations:
        chunks = []
        for key, value in msg.annotations.items():
            tag = key.encode("ascii")
            if len(tag) != 4:
                raise ValueError(f"annotation key must be 4 ASCII characters, not {key!r}")
            chunks.append(ANNOTATION.pack(tag, len(value)))
            chunks.append(value)
        ann = b"".join(chunks)
    else:
        ann = b""
    header = HEADER.pack(
        TAG,
        PROTOCOL_VERSION,
        msg.type,
        msg.serializer_id,
        flags,
        msg.seq & 0xFFFF,
        len(data),
        len(ann),
        corr_id,
        0,
        MAGIC,
    )
    return (header + ann if ann else header), data


class MessageReader:
    """Turns a byte stream into :class:`Message` objects; does no I/O.

    Feed it whatever the socket gave (:meth:`feed`), then take the messages
    that are complete (:meth:`next_message` until it returns ``None``). Every
    error is a :class:`~remoteobj.errors.ProtocolError`; after one, the
    stream is out of sync and the connection must be closed.

    The body of a large frame is kept as the chunks received and joined once
    when complete: growing one buffer instead copies it again at every
    reallocation (measured: 5 growths and ~0.3 ms per MiB), and allocating the
    announced size up front would let a peer that announces big frames and
    sends little make us hold what it announced, not what it sent.

    A shell that already owns the memory of the frame it reads (a daemon
    worker keeping a connection, see :meth:`body_buffer`) may instead have the
    body received in place, straight into one buffer of the announced size:
    one copy fewer, and no join.

    ``max_message_size`` bounds the body (annotations plus payload) as
    announced by the header *and* the payload after decompression.
    """

    __slots__ = (
        "_body",
        "_buf",
        "_chunks",
        "_filled",
        "_header",
        "_max",
        "_spare",
        "allow_compressed",
    )

    def __init__(self, max_message_size: int, *, allow_compressed: bool = True) -> None:
        self._buf = bytearray()
        self._max = max_message_size
        self._header: tuple[int, int, int, int, int, int, bytes] | None = None
        #: A large frame's body as received so far, and its length.
        self._chunks: list[bytes] | None = None
        #: A large frame's body being received in place (body_buffer), instead of chunks.
        self._body: bytearray | None = None
        #: A body buffer handed back (recycle) for the next large body: no new zeroed allocation.
        self._spare: bytearray | None = None
        self._filled = 0
        self.allow_compressed = allow_compressed

    @property
    def in_frame(self) -> bool:
        """Whether part of a frame is buffered (a frame deadline should be running)."""
        return bool(self._buf) or self._header is not None

    def recv_size(self) -> int:
        """How many bytes to ask the socket for next.

        The rest of the current frame when its header is in (one read for a
        large body instead of many), else :data:`SMALL_READ`. Asking for much
        more than arrives is not free: a 256 KiB ``recv`` makes malloc map and
        unmap a buffer on every call (measured: ~20 us per call).
        """
        header = self._header
        if header is None:
            return SMALL_READ
        if self._chunks is not None or self._body is not None:
            missing = _body_size(header) - self._filled
        else:
            missing = HEADER_SIZE + _body_size(header) - len(self._buf)
        # Capped: a peer that announces a big frame and sends it slowly must not
        # make every read allocate the whole announced size.
        return min(max(missing, SMALL_READ), LARGE_READ)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out as messages."""
        return len(self._buf) + self._filled

    def body_buffer(self) -> memoryview | None:
        """Where the rest of the current frame's body can be received in place, or
        ``None`` when it is not a large frame whose header is in.

        The first call allocates the whole body as announced (at most
        ``max_message_size``), moves what is already buffered into it and
        returns a writable view of the part still missing; receive into it
        (``sock.recv_into``), then report the count with :meth:`body_received`.
        Only for a reader whose shell bounds how many of them can do this at
        once: the memory is taken before the peer sends it.
        """
        header = self._header
        if header is None or self._chunks is not None:
            return None
        size = _body_size(header)
        body = self._body
        if body is None:
            buf = self._buf
            first = len(buf) - HEADER_SIZE
            if size < CHUNKED_BODY or first >= size:
                return None
            spare, self._spare = self._spare, None
            if spare is not None and len(spare) >= size:
                del spare[size:]
                body = self._body = spare
            else:
                body = self._body = bytearray(size)
            with memoryview(buf) as view:
                body[:first] = view[HEADER_SIZE:]
            buf.clear()
            self._filled = first
        return memoryview(body)[self._filled :]

    def recycle(self, msg: Message) -> None:
        """Take back the payload of ``msg``, a message this reader received in place,
        once nothing refers to it any more (decoded, not kept): the next large body
        is received into it instead of a new buffer, which would be zeroed first.
        ``msg.data`` is emptied. Payloads that are not such a buffer are left alone."""
        data = msg.data
        if type(data) is bytearray:
            msg.data = b""
            self._spare = data

    def drop_spare(self) -> None:
        """Let go of a recycled buffer (the shell stops receiving in place for now)."""
        self._spare = None

    def body_received(self, count: int) -> None:
        """``count`` bytes were written into the view :meth:`body_buffer` gave."""
        assert self._body is not None and self._header is not None
        if not 0 <= count <= _body_size(self._header) - self._filled:
            raise ValueError(f"received {count} bytes into a buffer that has room for fewer")
        self._filled += count

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes; checks what it can of a header at once."""
        body = self._body
        if body is not None:  # a body being received in place, fed by the other path
            assert self._header is not None
            taken = min(len(data), _body_size(self._header) - self._filled)
            body[self._filled : self._filled + taken] = data[:taken]
            self._filled += taken
            self._buf += data[taken:]  # the next frame's start: judged when this one is taken
            return
        header = self._header
        chunks = self._chunks
        if chunks is None and header is not None and _body_size(header) >= CHUNKED_BODY:
            chunks = self._start_chunks()
        if chunks is not None:
            assert header is not None
            missing = _body_size(header) - self._filled
            if len(data) <= missing:
                chunks.append(data if type(data) is bytes else bytes(data))
                self._filled += len(data)
                return
            with memoryview(data) as view:  # the body's end, then the next frame's start
                chunks.append(bytes(view[:missing]))
                data = bytes(view[missing:])
            self._filled += missing
        buf = self._buf
        unchecked = header is None and len(buf) < 6  # tag/version not yet all seen
        buf += data
        if unchecked:
            self._check_prefix()

    def next_message(self) -> Message | None:
        """The next complete message, or ``None`` if more bytes are needed."""
        buf = self._buf
        header = self._header
        if header is None:
            if len(buf) < HEADER_SIZE:
                return None
            header = self._header = self._parse_header()
        _, ser_id, _, seq, data_len, ann_len, _ = header
        try:
            if self._body is not None or self._chunks is not None:
                if self._filled < data_len + ann_len:
                    return None
                return self._take_large(header)
            end = HEADER_SIZE + ann_len + data_len
            if len(buf) < end:
                return None  # (a large body goes on as chunks or in place: feed, body_buffer)
            return self._take(header, end)
        except ProtocolError as exc:
            exc.seq, exc.serializer_id = seq, ser_id  # lets the error reply name the request
            raise

    def _start_chunks(self) -> list[bytes]:
        """Keep a large frame's body as chunks from now on, starting with what is in."""
        buf = self._buf
        with memoryview(buf) as view:
            first = bytes(view[HEADER_SIZE:])
        buf.clear()
        chunks = self._chunks = [first] if first else []
        self._filled = len(first)
        return chunks

    def _take_large(self, header: tuple[int, int, int, int, int, int, bytes]) -> Message:
        """The message of a complete large body: received in place, or chunks joined once."""
        body: bytes | bytearray
        if self._body is not None:
            body = self._body
        else:
            assert self._chunks is not None
            chunks = self._chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._body = self._chunks = None
        self._filled = 0
        self._header = None
        ann_len = header[5]
        annotations = {}
        if ann_len:
            annotations = _parse_annotations(body, 0, ann_len)
            if type(body) is bytearray:
                del body[:ann_len]  # CPython moves the start, not the payload
            else:
                body = body[ann_len:]
        if self._buf:
            self._check_prefix()  # the next frame's first bytes came with this one's last
        return self._message(header, body, annotations)

    def _take(self, header: tuple[int, int, int, int, int, int, bytes], end: int) -> Message:
        ann_len = header[5]
        buf = self._buf
        annotations = _parse_annotations(buf, HEADER_SIZE, ann_len) if ann_len else {}
        with memoryview(buf) as view:  # one copy of the payload, not two
            data = bytes(view[HEADER_SIZE + ann_len : end])
        if len(buf) == end:
            buf.clear()
        else:
            del buf[:end]
            self._check_prefix()
        self._header = None
        return self._message(header, data, annotations)

    def _message(
        self,
        header: tuple[int, int, int, int, int, int, bytes],
        data: bytes | bytearray | memoryview,
        annotations: dict[str, bytes],
    ) -> Message:
        msg_type, ser_id, flags, seq, _, _, corr_id = header
        if flags & FLAGS_COMPRESSED:
            if not self.allow_compressed:
                raise ProtocolError("compressed message refused: compression is not enabled")
            data = _bounded_decompress(data, self._max)
            flags &= ~FLAGS_COMPRESSED
        return Message(msg_type, ser_id, seq, data, flags, annotations, corr_id)

    def _check_prefix(self) -> None:
        # Judge the tag and version as soon as their bytes are in, so an HTTP
        # request or a TLS ClientHello is refused after 4-6 bytes.
        buf = self._buf
        n = min(len(buf), 4)
        if buf[:n] != TAG[:n]:
            raise ProtocolError("invalid data: not a Pyro protocol message")
        if len(buf) >= 6 and buf[4:6] != _VERSION_BYTES:
            version = int.from_bytes(buf[4:6], "big")
            raise ProtocolError(
                f"invalid protocol version: {version} (this side speaks {PROTOCOL_VERSION})"
            )

    def _parse_header(self) -> tuple[int, int, int, int, int, int, bytes]:
        (_, _, msg_type, ser_id, flags, seq, data_len, ann_len, corr_id, _, magic) = (
            HEADER.unpack_from(self._buf)
        )
        if magic != MAGIC:
            raise ProtocolError("invalid data: bad magic number")
        error: ProtocolError | None = None
        if msg_type not in MESSAGE_TYPES:
            error = ProtocolError(f"invalid message type {msg_type}")
        elif data_len + ann_len > self._max:
            error = MessageTooLargeError(
                f"message too large: {data_len + ann_len} bytes, limit {self._max}"
            )
        if error is not None:
            error.seq, error.serializer_id = seq, ser_id
            raise error
        return msg_type, ser_id, flags, seq, data_len, ann_len, corr_id


def _body_size(header: tuple[int, int, int, int, int, int, bytes]) -> int:
    """Annotations plus payload: the bytes that follow the header."""
    return header[4] + header[5]


def _parse_annotations(buf: bytes | bytearray, start: int, length: int) -> dict[str, bytes]:
    annotations: dict[str, bytes] = {}
    pos, end = start, start + length
    while pos < end:
        if end - pos < ANNOTATION.size:
            raise ProtocolError("invalid annotations: truncated chunk header")
        key, size = ANNOTATION.unpack_from(buf, pos)
        pos += ANNOTATION.size
        if size > end - pos:
            raise ProtocolError("invalid annotations: chunk longer than the annotations")
        try:
            name = key.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("invalid annotations: key is not ASCII") from None
        annotations[name] = bytes(buf[pos : pos + size])
        pos += size
    return annotations


def _bounded_decompress(data: bytes | bytearray | memoryview, limit: int) -> bytes:
    """Inflate ``data`` if it stays within ``limit`` bytes; refuse it otherwise.

    A small frame can inflate to gigabytes (a zip bomb), and even asking zlib
    for at most ``limit + 1`` bytes holds about twice the limit while it joins
    its output blocks. So the size is measured first through a 64 KiB window,
    keeping nothing; only data known to fit is inflated for real.
    """
    probe = zlib.decompressobj()
    total = 0
    pending = data
    try:
        while True:
            total += len(out := probe.decompress(pending, _INFLATE_WINDOW))
            if total > limit:
                raise MessageTooLargeError(f"message too large after decompression: limit {limit}")
            pending = probe.unconsumed_tail
            if not pending and len(out) < _INFLATE_WINDOW:
                break
        if not probe.eof:
            raise ProtocolError("invalid compressed data: truncated stream")
        return zlib.decompress(data)
    except zlib.error as exc:
        raise ProtocolError(f"invalid compressed data: {exc}") from None

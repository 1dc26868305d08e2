"""``SerializedBlob``: call arguments that travel on without being deserialized.

A dispatcher or gateway that forwards calls it does not need to understand
passes a :class:`SerializedBlob` as the *only* argument of a call. On the wire
(Pyro5 5.17, ``client.py`` ``__serializeBlobArgs``, ``server.py``
``__deserializeBlobArgs``) the INVOKE carries ``FLAGS_KEEPSERIALIZED`` and the
annotation ``BLBI`` = ``marshal.dumps((info, object_id, method))``; the
payload is the ordinary call payload with the blob's data as the arguments.

The receiving daemon reads the object and method from ``BLBI`` and hands the
method a :class:`SerializedBlob` that still holds the raw payload; the method
may look at ``info``, call :meth:`SerializedBlob.deserialized`, or pass the
blob on to another proxy, which sends the same bytes again (re-encoding them
only if that proxy speaks another serializer).

``BLBI`` is marshal whatever the message's serializer. marshal is not safe to
load from strangers, so the annotation is read by :func:`read_marshal`, a small
reader that accepts only ``None``, booleans, ints, floats, ``str``, ``bytes``,
tuples and lists, within size and depth bounds.
"""

from __future__ import annotations

import marshal
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from . import protocol as p
from .errors import ProtocolError, SerializeError
from .serializers import DEFAULT_LIMITS, DecodeLimits, Serializer, get_serializer

__all__ = ["BLOB_ANNOTATION", "SerializedBlob", "read_marshal", "unpack_blob_call"]

#: The annotation that names the blob's info, target object and method.
BLOB_ANNOTATION = "BLBI"
#: The largest ``BLBI`` annotation accepted, and the deepest nesting in it.
MAX_BLOB_INFO = 64 * 1024
MAX_BLOB_DEPTH = 16


class SerializedBlob:
    """Data that stays serialized until someone asks for it.

    ``SerializedBlob(info, data)`` wraps ``data`` (what would have been the
    call's arguments) with a small marshallable ``info`` (an id, a name...).
    Pass it as the only argument of a remote call. A daemon method receiving
    one gets a blob holding the raw message: :attr:`info` is readable at once,
    :meth:`deserialized` decodes the data (with the daemon's decode limits).
    """

    __slots__ = ("_contains_blob", "_data", "_limits", "info")

    def __init__(self, info: Any, data: Any, is_blob: bool = False) -> None:
        if is_blob and not isinstance(data, p.Message):
            raise TypeError("data should be a protocol message if is_blob is true")
        self.info = info
        self._data = data
        self._contains_blob = is_blob
        self._limits = DEFAULT_LIMITS

    @classmethod
    def from_message(
        cls, info: Any, msg: p.Message, limits: DecodeLimits = DEFAULT_LIMITS
    ) -> SerializedBlob:
        """A blob holding a received INVOKE message (what a daemon hands its method)."""
        blob = cls(info, msg, is_blob=True)
        blob._limits = limits
        return blob

    def deserialized(self) -> Any:
        """The wrapped data, decoding the raw payload if this blob holds one."""
        if not self._contains_blob:
            return self._data
        msg: p.Message = self._data
        value = get_serializer(msg.serializer_id).loads(msg.data, self._limits)
        if isinstance(value, Mapping) and "params" in value:  # json's call shape
            return value["params"]
        if isinstance(value, list | tuple) and len(value) == 4:
            return value[2]
        raise SerializeError("invalid blob payload: not a call")

    def payload(self, serializer: Serializer, object_id: str, method: str) -> bytes:
        """The INVOKE payload carrying this blob for a proxy speaking ``serializer``:
        the received bytes unchanged when they are in that serializer already."""
        if self._contains_blob and self._data.serializer_id == serializer.serializer_id:
            data: bytes | bytearray = self._data.data
            return data if type(data) is bytes else bytes(data)
        value = self.deserialized()
        if isinstance(value, list | tuple):
            return serializer.dumps_call(object_id, method, value, {})
        if serializer.name == "json":
            return serializer.dumps(
                {"object": object_id, "method": method, "params": value, "kwargs": {}}
            )
        return serializer.dumps((object_id, method, value, {}))

    def annotation(self, object_id: str, method: str) -> bytes:
        """The ``BLBI`` annotation: ``marshal.dumps((info, object_id, method))``."""
        try:
            return marshal.dumps((self.info, object_id, method))
        except ValueError as exc:
            raise SerializeError(f"blob info must be marshallable: {exc}") from None

    def __repr__(self) -> str:
        state = "serialized" if self._contains_blob else "local"
        return f"<SerializedBlob info={self.info!r} ({state})>"


def blob_call(
    serializer: Serializer,
    object_id: str,
    method: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    *,
    annotations: Mapping[str, bytes],
) -> tuple[bytes, dict[str, bytes]] | None:
    """``(payload, annotations)`` of a call whose first argument is a blob, else ``None``."""
    if not args or not isinstance(args[0], SerializedBlob):
        return None
    if len(args) > 1 or kwargs:
        raise SerializeError("if SerializedBlob is used, it must be the only argument")
    blob = args[0]
    extra = dict(annotations)
    extra[BLOB_ANNOTATION] = blob.annotation(object_id, method)
    return blob.payload(serializer, object_id, method), extra


def unpack_blob_call(
    msg: p.Message, limits: DecodeLimits = DEFAULT_LIMITS
) -> tuple[str, str, tuple[SerializedBlob], dict[str, Any]]:
    """``(object_id, method, (blob,), {})`` of a KEEPSERIALIZED INVOKE (daemon side)."""
    raw = msg.annotations.get(BLOB_ANNOTATION)
    if raw is None:
        raise ProtocolError("KEEPSERIALIZED call without a BLBI annotation")
    value = read_marshal(raw)
    if not isinstance(value, tuple) or len(value) != 3:
        raise ProtocolError("invalid BLBI annotation: expected (info, object id, method)")
    info, object_id, method = value
    if not isinstance(object_id, str) or not isinstance(method, str):
        raise ProtocolError("invalid BLBI annotation: object id and method must be strings")
    return object_id, method, (SerializedBlob.from_message(info, msg, limits),), {}


# =============================================================================
# A marshal reader for plain values only
# =============================================================================

_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")
_F64 = struct.Struct("<d")
_FLAG_REF = 0x80


class _MarshalReader:
    __slots__ = ("data", "pos", "refs")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError("invalid marshal data: truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def i32(self) -> int:
        value: int = _I32.unpack(self.take(4))[0]
        return value

    def size(self) -> int:
        n = self.i32()
        if n < 0 or n > len(self.data) - self.pos:
            raise ProtocolError("invalid marshal data: bad length")
        return n

    def value(self, depth: int) -> Any:
        if depth > MAX_BLOB_DEPTH:
            raise ProtocolError("invalid marshal data: nested too deeply")
        code = self.take(1)[0]
        flag, kind = code & _FLAG_REF, chr(code & ~_FLAG_REF)
        if kind == "r":
            index = self.i32()
            if not 0 <= index < len(self.refs) or self.refs[index] is _PENDING:
                raise ProtocolError("invalid marshal data: bad reference")
            return self.refs[index]
        slot = -1
        if flag:
            slot = len(self.refs)
            self.refs.append(_PENDING)
        value = self.read(kind, depth)
        if flag:
            self.refs[slot] = value
        return value

    def read(self, kind: str, depth: int) -> Any:
        if kind in _CONSTANTS:
            return _CONSTANTS[kind]
        if kind == "i":
            return self.i32()
        if kind == "l":
            ndigits = self.i32()
            if abs(ndigits) > 1000:
                raise ProtocolError("invalid marshal data: integer too long")
            total = 0
            for shift in range(abs(ndigits)):
                total |= _U16.unpack(self.take(2))[0] << (15 * shift)
            return -total if ndigits < 0 else total
        if kind == "g":
            return _F64.unpack(self.take(8))[0]
        if kind == "s":
            return self.take(self.size())
        if kind in "ut":
            try:
                return self.take(self.size()).decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise ProtocolError("invalid marshal data: bad UTF-8") from None
        if kind in "aA":
            return self._ascii(self.size())
        if kind in "zZ":
            return self._ascii(self.take(1)[0])
        if kind in "([":
            return self._items(kind, self.size(), depth)
        if kind == ")":
            return self._items(kind, self.take(1)[0], depth)
        raise ProtocolError(f"invalid marshal data: type {kind!r} is not allowed")

    def _ascii(self, n: int) -> str:
        try:
            return self.take(n).decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("invalid marshal data: bad ASCII") from None

    def _items(self, kind: str, n: int, depth: int) -> Any:
        items = [self.value(depth + 1) for _ in range(n)]
        return items if kind == "[" else tuple(items)


_PENDING = object()
_CONSTANTS: dict[str, Any] = {"N": None, "T": True, "F": False}


def read_marshal(data: bytes) -> Any:
    """Decode marshal data holding only plain values (see the module docstring).

    Raises :class:`~remoteobj.errors.ProtocolError` for anything else: code
    objects, sets, dicts, truncated or trailing data, over-long input.
    """
    if len(data) > MAX_BLOB_INFO:
        raise ProtocolError(f"BLBI annotation too large ({len(data)} bytes)")
    reader = _MarshalReader(bytes(data))
    value = reader.value(0)
    if reader.pos != len(reader.data):
        raise ProtocolError("invalid marshal data: trailing bytes")
    return value

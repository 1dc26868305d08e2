"""SerializedBlob without sockets: frames compared with Pyro5's, and the safe reader of
the marshal ``BLBI`` annotation."""

from __future__ import annotations

import marshal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from Pyro5 import client as pyro_client
from Pyro5 import serializers as pyro_serializers

from remoteobj import URI, Config, SerializedBlob
from remoteobj import protocol as p
from remoteobj.blob import read_marshal, unpack_blob_call
from remoteobj.client import CallCore
from remoteobj.errors import ProtocolError, SerializeError

DATA: list[Any] = [1, "two", {"three": [3.0, None]}, (True, False)]


def our_frame(serializer: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> p.Message:
    core = CallCore(URI("PYRO:target@127.0.0.1:1"), Config(serializer=serializer))
    reader = p.MessageReader(1 << 20)
    reader.feed(core.invoke_frame(1, "receive", args, kwargs))
    msg = reader.next_message()
    assert msg is not None
    return msg


def pyro5_blob_call(serializer: str, blob: Any) -> tuple[bytes, int, dict[str, bytes]]:
    """What Pyro5's proxy sends for ``proxy.receive(blob)`` (payload, flags, annotations)."""
    proxy = pyro_client.Proxy("PYRO:target@127.0.0.1:1")
    annotations: dict[str, bytes] = {}
    data, flags = proxy._Proxy__serializeBlobArgs(
        (blob,), {}, annotations, 0, "target", "receive", pyro_serializers.serializers[serializer]
    )
    return bytes(data), flags, annotations


@pytest.mark.parametrize("serializer", ["serpent", "json", "msgpack"])
def test_blob_call_matches_pyro5(serializer: str) -> None:
    msg = our_frame(serializer, (SerializedBlob("the-info", DATA),), {})
    data, flags, annotations = pyro5_blob_call(
        serializer, pyro_client.SerializedBlob("the-info", DATA)
    )
    assert msg.flags & p.FLAGS_KEEPSERIALIZED and flags & p.FLAGS_KEEPSERIALIZED
    # marshal flags interned strings differently; the values are what matters.
    assert marshal.loads(msg.annotations["BLBI"]) == marshal.loads(annotations["BLBI"])
    assert read_marshal(annotations["BLBI"]) == ("the-info", "target", "receive")
    assert msg.data == data


@pytest.mark.parametrize("serializer", ["serpent", "json", "msgpack"])
def test_daemon_side_unpacks_and_passes_through_unchanged(serializer: str) -> None:
    msg = our_frame(serializer, (SerializedBlob(("info", 2), DATA),), {})
    object_id, method, args, kwargs = unpack_blob_call(msg)
    assert (object_id, method, kwargs) == ("target", "receive", {})
    (blob,) = args
    assert blob.info == ("info", 2)
    as_lists = [1, "two", {"three": [3.0, None]}, [True, False]]  # json/msgpack: no tuples
    assert blob.deserialized() == (DATA if serializer == "serpent" else as_lists)
    # Passed on by a proxy of the same serializer: the very same payload bytes.
    again = our_frame(serializer, (blob,), {})
    assert again.data == msg.data
    assert unpack_blob_call(again)[0:2] == ("target", "receive")


def test_blob_passed_to_a_proxy_of_another_serializer_is_reencoded() -> None:
    msg = our_frame("json", (SerializedBlob("i", {"k": [1, 2]}),), {})
    (blob,) = unpack_blob_call(msg)[2]
    again = our_frame("serpent", (blob,), {})
    assert again.data.startswith(b"# serpent")
    (blob2,) = unpack_blob_call(again)[2]
    assert blob2.deserialized() == {"k": [1, 2]}


def test_blob_must_be_the_only_argument() -> None:
    with pytest.raises(SerializeError, match="only argument"):
        our_frame("serpent", (SerializedBlob("i", 1), 2), {})
    with pytest.raises(SerializeError, match="only argument"):
        our_frame("serpent", (SerializedBlob("i", 1),), {"k": 1})


def test_blob_info_must_be_marshallable() -> None:
    with pytest.raises(SerializeError, match="marshallable"):
        our_frame("serpent", (SerializedBlob(object(), 1),), {})


def test_keepserialized_without_blbi_is_refused() -> None:
    msg = our_frame("serpent", (1,), {})
    with pytest.raises(ProtocolError, match="BLBI"):
        unpack_blob_call(msg)


def test_blbi_with_wrong_shape_is_refused() -> None:
    msg = our_frame("serpent", (1,), {})
    for bad in [marshal.dumps(("info", "obj")), marshal.dumps(("info", 1, "m")), marshal.dumps(7)]:
        msg.annotations["BLBI"] = bad
        with pytest.raises(ProtocolError):
            unpack_blob_call(msg)


# --- the marshal reader ---------------------------------------------------------------

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner),
    max_leaves=20,
)


@given(plain)
def test_reads_what_marshal_writes(value: Any) -> None:
    assert read_marshal(marshal.dumps(value)) == value


@given(plain)
def test_reads_shared_references(value: Any) -> None:
    shared = [value, value, "x", "x"]
    assert read_marshal(marshal.dumps((shared, shared))) == (shared, shared)


@pytest.mark.parametrize(
    "value",
    [
        compile("1", "f", "eval"),  # code objects: never
        {"a": 1},
        {1, 2},
        frozenset({1}),
        1j,
        ...,
    ],
    ids=["code", "dict", "set", "frozenset", "complex", "ellipsis"],
)
def test_refuses_everything_but_plain_values(value: Any) -> None:
    with pytest.raises(ProtocolError, match="not allowed"):
        read_marshal(marshal.dumps(value))


def test_refuses_truncated_trailing_oversized_and_deep_data() -> None:
    good = marshal.dumps(("info", "obj", "method"))
    with pytest.raises(ProtocolError, match=r"truncated|length"):
        read_marshal(good[:-3])
    with pytest.raises(ProtocolError, match="trailing"):
        read_marshal(good + b"N")
    with pytest.raises(ProtocolError, match="too large"):
        read_marshal(marshal.dumps("x" * 70_000))
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ProtocolError, match="deeply"):
        read_marshal(marshal.dumps(deep))
    with pytest.raises(ProtocolError):
        read_marshal(b"(\xff\xff\xff\x7f")  # a tuple claiming 2**31 items
    with pytest.raises(ProtocolError):
        read_marshal(b"r\x05\x00\x00\x00")  # a reference to nothing

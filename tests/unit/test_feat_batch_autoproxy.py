"""Batches and autoproxies on the wire, without sockets: payloads compared with what
Pyro5 5.17's own serializers write and read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from Pyro5 import client as pyro_client
from Pyro5 import serializers as pyro_serializers

from remoteobj import URI, Config, Proxy
from remoteobj import protocol as p
from remoteobj.batch import BATCH_METHOD, BatchProxy, _results
from remoteobj.client import CallCore, RemoteMeta
from remoteobj.serializers import (
    ExceptionWrapper,
    get_serializer,
    push_autoproxy,
    register_class_to_dict,
    reset_autoproxy,
    unregister_class_to_dict,
)

CALLS = [("add", (1, 2), {}), ("echo", ("x",), {"flag": True}), ("ping", (), {})]


# --- batches ----------------------------------------------------------------------------


@pytest.mark.parametrize("serializer", ["serpent", "json", "msgpack"])
def test_batch_payload_is_pyro5s(serializer: str) -> None:
    # Pyro5's BatchProxy: _pyroInvoke("<batch>", calls, None, FLAGS_BATCH)
    theirs = pyro_serializers.serializers[serializer].dumpsCall("obj", "<batch>", CALLS, None)
    ours = get_serializer(serializer).dumps_call("obj", BATCH_METHOD, CALLS, None)
    assert ours == theirs


def test_batch_frame_flags() -> None:
    core = CallCore(URI("PYRO:obj@127.0.0.1:1"), Config())
    frame = core.invoke_frame(3, BATCH_METHOD, CALLS, None, p.FLAGS_BATCH | p.FLAGS_ONEWAY)
    reader = p.MessageReader(1 << 20)
    reader.feed(frame)
    msg = reader.next_message()
    assert msg is not None
    assert msg.flags & p.FLAGS_BATCH and msg.flags & p.FLAGS_ONEWAY
    assert get_serializer("serpent").loads_call(msg.data)[1:] == ("<batch>", CALLS, None)


def test_results_reraise_the_wrapped_exception_in_its_place() -> None:
    results = _results([1, "two", ExceptionWrapper(KeyError("k"))])
    assert next(results) == 1
    assert next(results) == "two"
    with pytest.raises(KeyError):
        next(results)
    with pytest.raises(TypeError, match="invalid batch reply"):
        next(_results(None))


def test_batch_proxy_records_locally() -> None:
    proxy = Proxy("PYRO:obj@127.0.0.1:1")  # never connected
    batch = BatchProxy(proxy)
    batch.add(1, b=2)
    batch.echo()
    assert len(batch) == 2
    assert batch._calls == [("add", (1,), {"b": 2}), ("echo", (), {})]
    with pytest.raises(AttributeError):
        batch._private()  # local names are never recorded
    meta = RemoteMeta(frozenset({"add"}), frozenset(), frozenset())
    with pytest.raises(AttributeError, match="echo"):
        batch._take(meta)
    assert len(batch) == 2  # a refused batch keeps its calls


def test_batch_proxy_refuses_an_async_proxy() -> None:
    from remoteobj import AsyncProxy

    with pytest.raises(TypeError, match="AsyncBatchProxy"):
        BatchProxy(AsyncProxy("PYRO:obj@127.0.0.1:1"))  # type: ignore[arg-type]


# --- autoproxy -------------------------------------------------------------------------------


class Registered:
    def __init__(self) -> None:
        self.secret = "must not travel"


REGISTERED = Registered()
PROXY_DICT: dict[str, Any] = {
    "__class__": "Pyro5.client.Proxy",
    "state": (
        "PYRO:obj_1@127.0.0.1:4242",
        ("fire",),
        ("fire", "hello"),
        ("size",),
        "hello",
        None,
    ),
}


def resolver(obj: Any) -> dict[str, Any] | None:
    return PROXY_DICT if obj is REGISTERED else None


@pytest.fixture
def autoproxy() -> Iterator[None]:
    token = push_autoproxy(resolver)
    try:
        yield
    finally:
        reset_autoproxy(token)


@pytest.mark.usefixtures("autoproxy")
@pytest.mark.parametrize("serializer", ["serpent", "json", "msgpack", "marshal"])
def test_registered_object_travels_as_a_pyro5_proxy(serializer: str) -> None:
    data = get_serializer(serializer).dumps({"result": [REGISTERED]})
    assert b"must not travel" not in data
    theirs = pyro_serializers.serializers[serializer].loads(data)["result"][0]
    assert isinstance(theirs, pyro_client.Proxy)
    assert str(theirs._pyroUri) == "PYRO:obj_1@127.0.0.1:4242"
    assert theirs._pyroMethods == {"fire", "hello"}
    assert theirs._pyroOneway == {"fire"} and theirs._pyroAttrs == {"size"}
    ours = get_serializer(serializer).loads(data)["result"][0]
    assert isinstance(ours, Proxy)
    assert ours._preset_meta == RemoteMeta(
        frozenset({"fire", "hello"}), frozenset({"fire"}), frozenset({"size"})
    )


def test_without_the_context_objects_travel_as_usual() -> None:
    data = get_serializer("serpent").dumps(REGISTERED)
    assert b"must not travel" in data


@pytest.mark.usefixtures("autoproxy")
def test_autoproxy_wins_over_a_class_converter() -> None:
    register_class_to_dict(Registered, lambda obj: {"__class__": "x.Registered", "v": 1})
    try:
        for name in ("serpent", "json"):
            assert b"Pyro5.client.Proxy" in get_serializer(name).dumps(REGISTERED)
            assert b"x.Registered" in get_serializer(name).dumps(Registered())  # another object
    finally:
        unregister_class_to_dict(Registered)


@pytest.mark.usefixtures("autoproxy")
def test_the_context_is_per_thread() -> None:
    seen: list[bytes] = []
    thread = threading.Thread(target=lambda: seen.append(get_serializer("json").dumps(REGISTERED)))
    thread.start()
    thread.join()
    assert b"must not travel" in seen[0]


def test_resolvers_nest() -> None:
    other = Registered()
    outer = push_autoproxy(resolver)
    inner = push_autoproxy(
        lambda obj: (
            {
                "__class__": "Pyro5.client.Proxy",
                "state": ("PYRO:o@h:1", (), ("m",), (), "hello", None),
            }
            if obj is other
            else None
        )
    )
    try:
        assert b"obj_1" in get_serializer("json").dumps(REGISTERED)  # the outer one still applies
        assert b"PYRO:o@h:1" in get_serializer("json").dumps(other)
    finally:
        reset_autoproxy(inner)
        reset_autoproxy(outer)
    assert b"must not travel" in get_serializer("json").dumps(REGISTERED)

"""G7: the access-control matrix. Every name a hostile client could try x every path into
user code: all refused, nothing runs (side-effect counter stays 0), and no error text
names a class or a module.

Names: everything in ``dir(object)`` and ``dir(type)``, private (``_x``), mangled
(``__x``), dotted paths, non-exposed methods and properties, private properties.
Paths: plain call, batch, oneway, ``__getattr__``, ``__setattr__``, and the object id
of the handshake (and of a call). Regression cases for attribute-walk side paths
(CVE-2019-16328 in RPyC: reaching ``__class__``/``__globals__`` through getattr).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import remoteobj
from remoteobj import protocol as p
from remoteobj.serializers import get_serializer
from tests.integration.hard_peer import RawConn
from tests.procs import wait_for

SERPENT = get_serializer("serpent")
# Text that must never appear in an error a client receives: the class, its module,
# the package's own modules, file paths.
LEAKS = ("Target", "test_hard_access", "tests.", "remoteobj.", "daemon.py", ".py", "/work")


class Effects:
    """Counts every execution of a member that must never run remotely."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.forbidden: list[str] = []
        self.allowed = 0

    def hit(self, name: str) -> None:
        with self.lock:
            self.forbidden.append(name)


EFFECTS = Effects()


def _forbidden(name: str) -> Any:
    def member(self: Any, *args: Any, **kwargs: Any) -> Any:
        EFFECTS.hit(name)
        return name

    member.__name__ = name
    return member


class Target:
    """An exposed class whose every non-exposed member records that it ran."""

    def __init__(self) -> None:
        self._ready = True

    @remoteobj.expose
    def echo(self, value: Any) -> Any:
        with EFFECTS.lock:
            EFFECTS.allowed += 1
        return value

    @remoteobj.expose
    @remoteobj.oneway
    def ping(self) -> None:
        with EFFECTS.lock:
            EFFECTS.allowed += 1

    @remoteobj.expose
    @property
    def readonly(self) -> int:
        return 1

    def not_exposed(self) -> None:
        EFFECTS.hit("not_exposed")

    @property
    def plain_property(self) -> int:
        EFFECTS.hit("plain_property")
        return 1

    @plain_property.setter
    def plain_property(self, value: int) -> None:
        EFFECTS.hit("plain_property=")

    @property
    def _private_property(self) -> int:
        EFFECTS.hit("_private_property")
        return 1

    def _private(self) -> None:
        EFFECTS.hit("_private")

    def __mangled(self) -> None:
        EFFECTS.hit("__mangled")

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_ready", False):
            EFFECTS.hit(f"__setattr__ {name}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        EFFECTS.hit("__delattr__")


# Dunders user classes commonly define: each one records a hit if it ever runs.
for _name in (
    "__call__",
    "__len__",
    "__getitem__",
    "__setitem__",
    "__iter__",
    "__contains__",
    "__reduce__",
    "__reduce_ex__",
    "__getstate__",
    "__setstate__",
    "__format__",
    "__dir__",
    "__sizeof__",
    "__enter__",
    "__exit__",
    "__bool__",
    "__repr__",
    "__str__",
):
    setattr(Target, _name, _forbidden(_name))


NAMES = sorted(
    set(dir(object))
    | set(dir(type))
    | {n for n in dir(Target) if n not in ("echo", "ping", "readonly")}
    | {
        "_x",
        "__x",
        "__mangled",
        "_Target__mangled",
        "_private",
        "_private_property",
        "not_exposed",
        "plain_property",
        "echo.__class__",
        "echo.__globals__",
        "echo.__func__",
        "__class__.__subclasses__",
        "__init__.__globals__",
        "_pyroDaemon",
        "_pyroId",
        "__getattr__",
        "__setattr__",
        "<batch>",
        "",
        " echo",
        "echo ",
        "ECHO",
        "echo\x00",
    }
)


@pytest.fixture(scope="module")
def daemon() -> Iterator[tuple[remoteobj.Daemon, int]]:
    d = remoteobj.Daemon("127.0.0.1", 0)
    d.register(Target(), "target")
    port = d.sock.getsockname()[1]
    thread = threading.Thread(target=d.request_loop, daemon=True)
    thread.start()
    try:
        yield d, port
    finally:
        d.shutdown(0)
        thread.join(10)
        d.close()


def error_of(reply: p.Message | None) -> str:
    """The text a client sees for a refused request: message, notes, raw payload."""
    assert reply is not None, "silent close"
    assert reply.flags & p.FLAGS_EXCEPTION, f"not refused: {reply.data[:200]!r}"
    exc = SERPENT.loads(reply.data)
    assert isinstance(exc, Exception), exc
    return "\n".join([str(exc), *getattr(exc, "__notes__", []), reply.data.decode()])


def assert_no_leak(text: str, name: str) -> None:
    # The requested name itself may be echoed back (it is the client's own input).
    cleaned = text.replace(repr(name), "").replace(name, "") if name else text
    leaked = [word for word in LEAKS if word in cleaned]
    assert not leaked, f"{name!r}: error text leaks {leaked}: {text[:500]}"


@pytest.fixture(autouse=True)
def no_effects() -> Iterator[None]:
    EFFECTS.forbidden.clear()
    yield
    assert EFFECTS.forbidden == [], f"forbidden members ran: {EFFECTS.forbidden}"


def test_positive_control_exposed_members_work(daemon: tuple[remoteobj.Daemon, int]) -> None:
    with remoteobj.Proxy(f"PYRO:target@127.0.0.1:{daemon[1]}") as proxy:
        before = EFFECTS.allowed
        assert proxy.echo(5) == 5
        assert proxy.readonly == 1
        assert EFFECTS.allowed == before + 1
        assert proxy._meta.methods == {"echo", "ping"}
        assert proxy._meta.attrs == {"readonly"}


@pytest.mark.parametrize("path", ["call", "batch", "getattr", "setattr", "call object id"])
def test_every_name_is_refused_on_every_path(
    daemon: tuple[remoteobj.Daemon, int], path: str
) -> None:
    refused = 0
    with RawConn(daemon[1]) as raw:
        assert raw.connect("target").type == p.MSG_CONNECTOK
        for n, name in enumerate(NAMES, 1):
            seq = n & 0xFFFF
            if path == "call":
                raw.invoke(name, (1,), seq, object_id="target")
            elif path == "batch":
                calls = [("echo", (1,), {}), (name, (1,), {})]
                raw.invoke("<batch>", calls, seq, p.FLAGS_BATCH, object_id="target")
            elif path == "getattr":
                raw.invoke("__getattr__", (name,), seq, object_id="target")
            elif path == "setattr":
                raw.invoke("__setattr__", (name, 1), seq, object_id="target")
            else:
                raw.invoke("echo", (1,), seq, object_id=f"target.{name}" if name else "")
            reply = raw.read()
            assert reply is not None and reply.seq == seq
            text = error_of(reply)
            assert_no_leak(text, name)
            refused += 1
    assert refused == len(NAMES)
    print(f"access matrix [{path}]: {refused}/{len(NAMES)} names refused")


def test_batch_refusal_runs_nothing_of_the_batch(daemon: tuple[remoteobj.Daemon, int]) -> None:
    # The whole batch is checked before any of it runs: the allowed echo before the
    # refused name must not have run either.
    before = EFFECTS.allowed
    with RawConn(daemon[1]) as raw:
        raw.connect("target")
        raw.invoke(
            "<batch>",
            [("echo", (1,), {}), ("__len__", (), {})],
            1,
            p.FLAGS_BATCH,
            object_id="target",
        )
        error_of(raw.read())
    assert EFFECTS.allowed == before


def test_oneway_refusals_run_nothing(daemon: tuple[remoteobj.Daemon, int]) -> None:
    before = EFFECTS.allowed
    with RawConn(daemon[1]) as raw:
        raw.connect("target")
        for name in NAMES:
            raw.invoke(name, (1,), 0, p.FLAGS_ONEWAY, object_id="target")
            raw.invoke("__getattr__", (name,), 0, p.FLAGS_ONEWAY, object_id="target")
            raw.invoke("__setattr__", (name, 1), 0, p.FLAGS_ONEWAY, object_id="target")
        # A legitimate oneway call after them all: once it ran, every one before it
        # has been handled (the connection is read in order).
        raw.invoke("ping", (), 0, p.FLAGS_ONEWAY, object_id="target")
        wait_for(lambda: EFFECTS.allowed == before + 1, 5, message="the control oneway call")
        raw.invoke("echo", ("alive",), 7, object_id="target")
        reply = raw.read()
        assert reply is not None and SERPENT.loads(reply.data) == "alive"
    time.sleep(0.05)  # let any (wrongly) detached oneway worker finish before the check


def test_handshake_object_ids_are_refused_without_leaks(
    daemon: tuple[remoteobj.Daemon, int],
) -> None:
    for name in NAMES:
        for object_id in (name, f"target.{name}", f"Pyro.Daemon.{name}"):
            if object_id == "":
                continue
            with RawConn(daemon[1]) as raw:
                reply = raw.connect(object_id)
                assert reply.type == p.MSG_CONNECTFAIL, object_id
                text = str(SERPENT.loads(reply.data))
                assert_no_leak(text, object_id)


def test_metadata_and_daemon_object_do_not_open_side_paths(
    daemon: tuple[remoteobj.Daemon, int],
) -> None:
    with RawConn(daemon[1]) as raw:
        raw.connect("Pyro.Daemon")
        for seq, object_id in enumerate(["nope", "target.__class__", "__class__"], 1):
            raw.invoke("get_metadata", (object_id,), seq, object_id="Pyro.Daemon")
            assert_no_leak(error_of(raw.read()), object_id)
        # The daemon object's own private members are as closed as anyone's.
        for seq, name in enumerate(["_daemon", "__init__", "__class__", "_Daemon__x"], 10):
            raw.invoke(name, (), seq, object_id="Pyro.Daemon")
            assert_no_leak(error_of(raw.read()), name)
            raw.invoke("__getattr__", (name,), seq, object_id="Pyro.Daemon")
            assert_no_leak(error_of(raw.read()), name)


def test_getattr_and_setattr_argument_shapes(daemon: tuple[remoteobj.Daemon, int]) -> None:
    shapes: list[tuple[str, Any]] = [
        ("__getattr__", ()),
        ("__getattr__", ("readonly", "default")),
        ("__getattr__", (1,)),
        ("__getattr__", (["readonly"],)),
        ("__setattr__", ("readonly",)),
        ("__setattr__", ("readonly", 2)),  # read-only property: refused
        ("__setattr__", ("readonly", 2, 3)),
        ("__setattr__", ({"a": 1}, 2)),
    ]
    with RawConn(daemon[1]) as raw:
        raw.connect("target")
        for seq, (method, args) in enumerate(shapes, 1):
            raw.invoke(method, args, seq, object_id="target")
            assert_no_leak(error_of(raw.read()), "readonly")

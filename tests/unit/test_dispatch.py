"""Handshake, dispatch and replies without sockets: the daemon and the proxy core
talk through protocol frames handed across by hand."""

from __future__ import annotations

from typing import Any

import pytest

import remoteobj
from remoteobj import protocol as p
from remoteobj.client import CallCore
from remoteobj.config import Config
from remoteobj.daemon import Call, Daemon, Session
from remoteobj.errors import CommunicationError, DaemonError, SerializeError
from remoteobj.uri import URI


@remoteobj.expose
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int = 1) -> int:
        self.n += k
        return self.n

    def fail(self) -> None:
        raise KeyError("missing")

    @remoteobj.oneway
    def poke(self) -> None:
        self.n += 100

    async def later(self) -> int:
        return self.n

    @property
    def value(self) -> int:
        return self.n

    def _secret(self) -> str:
        return "s"


def decode(frame: bytes) -> p.Message:
    reader = p.MessageReader(1 << 20)
    reader.feed(frame)
    msg = reader.next_message()
    assert msg is not None
    return msg


class Pair:
    """A daemon and a proxy core for object ``counter``; frames are handed across by hand."""

    def __init__(self, config: Config | None = None, target: Any = None) -> None:
        self.daemon = Daemon("127.0.0.1", 0, config=config)
        self.target = target if target is not None else Counter()
        self.daemon.add(self.target, "counter")
        self.core = CallCore(URI("PYRO:counter@127.0.0.1:1"), config or Config())
        self.session = Session(("127.0.0.1", 5555))
        self.seq = 0

    def connect(self) -> p.Message:
        reply, _accepted = self.daemon.handle_connect(
            self.session, decode(self.core.connect_frame())
        )
        msg = decode(reply)
        self.core.on_connect_reply(msg)
        return msg

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.seq += 1
        flags = p.FLAGS_ONEWAY if self.core.is_oneway(method) else 0
        frame = self.core.invoke_frame(self.seq, method, args, kwargs, flags)
        prepared = self.daemon.prepare(self.session, decode(frame))
        if not isinstance(prepared, Call):
            return None if prepared is None else self.core.result(decode(prepared))
        reply = self.daemon.run_sync(prepared)
        return None if reply is None else self.core.result(decode(reply))


def test_adding_objects_does_not_bind() -> None:
    pair = Pair()
    assert pair.daemon._sock is None


def test_handshake_returns_metadata_pyro5_clients_need() -> None:
    pair = Pair()
    msg = pair.connect()
    assert msg.type == p.MSG_CONNECTOK
    assert msg.seq == 0
    assert msg.flags & p.FLAGS_CORR_ID and msg.corr_id != p.NO_CORR_ID
    assert pair.core.meta is not None
    assert pair.core.meta.methods == {"add", "fail", "poke", "later"}
    assert pair.core.meta.oneway == {"poke"}
    assert pair.core.meta.attrs == {"value"}
    assert pair.core.handshake_response == "hello"


def test_an_id_registered_again_for_another_class_answers_with_the_new_metadata() -> None:
    @remoteobj.expose
    class Other:
        def other(self) -> None: ...

    pair = Pair()
    pair.connect()
    assert pair.core.meta is not None and "add" in pair.core.meta.methods
    pair.daemon.unregister("counter")
    pair.daemon.add(Other(), "counter")
    pair.connect()
    assert pair.core.meta is not None and pair.core.meta.methods == {"other"}


def test_a_subclass_metadata_hook_and_each_handshake_response_are_honoured() -> None:
    class Tailored(Daemon):
        def validate_handshake(self, session: Session, data: Any) -> Any:
            return f"hello {data}"

        def metadata(self, object_id: str) -> dict[str, set[str]]:
            meta = super().metadata(object_id)
            meta["methods"].discard("fail")
            return meta

    pair = Pair()
    pair.daemon = Tailored("127.0.0.1", 0)
    pair.daemon.add(pair.target, "counter")
    for name in ("ann", "bob"):
        pair.core.handshake = name
        pair.connect()
        assert pair.core.handshake_response == f"hello {name}"
        assert pair.core.meta is not None and "fail" not in pair.core.meta.methods


def test_handshake_for_an_unknown_object_fails_with_connectfail() -> None:
    pair = Pair()
    pair.core.object_id = "nothing"
    with pytest.raises(CommunicationError, match="unknown object"):
        pair.connect()


def test_validate_handshake_can_refuse() -> None:
    class Picky(Daemon):
        def validate_handshake(self, session: Session, data: Any) -> Any:
            if data != "let me in":
                raise PermissionError("wrong handshake")
            return "welcome"

    pair = Pair()
    pair.daemon = Picky("127.0.0.1", 0)
    pair.daemon.add(pair.target, "counter")
    with pytest.raises(CommunicationError, match="wrong handshake"):
        pair.connect()
    pair.core.handshake = "let me in"
    pair.connect()
    assert pair.core.handshake_response == "welcome"
    assert pair.session.handshake == "let me in"


def test_calls_results_and_keyword_arguments() -> None:
    pair = Pair()
    pair.connect()
    assert pair.call("add") == 1
    assert pair.call("add", k=5) == 6
    assert pair.call("__getattr__", "value") == 6


def test_remote_exceptions_come_back_as_their_type_with_a_traceback_note() -> None:
    pair = Pair()
    pair.connect()
    with pytest.raises(KeyError) as info:
        pair.call("fail")
    assert any("raise KeyError" in note for note in info.value.__notes__)


def test_tracebacks_can_be_withheld() -> None:
    pair = Pair(Config(send_tracebacks=False))
    pair.connect()
    with pytest.raises(KeyError) as info:
        pair.call("fail")
    assert not getattr(info.value, "__notes__", [])


def test_oneway_calls_produce_no_reply_but_run() -> None:
    pair = Pair()
    pair.connect()
    assert pair.call("poke") is None
    assert pair.target.n == 100


@pytest.mark.parametrize("name", ["_secret", "__init__", "__class__", "__dict__", "missing",
                                  "add.__globals__"])  # fmt: skip
def test_unexposed_names_are_refused_without_naming_the_class(name: str) -> None:
    pair = Pair()
    pair.connect()
    with pytest.raises((AttributeError, remoteobj.errors.SecurityError)) as info:
        pair.call(name)
    assert "Counter" not in str(info.value)
    assert pair.target.n == 0


def test_coroutine_methods_are_handed_to_the_loop() -> None:
    pair = Pair()
    pair.connect()
    frame = pair.core.invoke_frame(1, "later", (), {})
    prepared = pair.daemon.prepare(pair.session, decode(frame))
    assert isinstance(prepared, Call)
    assert prepared.is_coroutine


def test_unknown_object_in_a_call_is_a_daemon_error() -> None:
    pair = Pair()
    pair.connect()
    pair.core.object_id = "gone"
    with pytest.raises(DaemonError, match="unknown object"):
        pair.call("add")


def test_serializers_not_accepted_are_refused_with_an_error_reply() -> None:
    pair = Pair(Config(accepted_serializers=frozenset({"json"})))
    with pytest.raises(CommunicationError, match="not accepted"):
        pair.connect()


def test_reply_echoes_seq_serializer_and_correlation_id() -> None:
    pair = Pair()
    pair.connect()
    msg = p.Message(p.MSG_INVOKE, 1, 77, pair.core.serializer.dumps_call("counter", "add", (), {}),
                    corr_id=b"C" * 16)  # fmt: skip
    prepared = pair.daemon.prepare(pair.session, decode(p.encode(msg)))
    assert isinstance(prepared, Call)
    reply = decode(pair.daemon.run_sync(prepared) or b"")
    assert (reply.seq, reply.serializer_id, reply.corr_id) == (77, 1, b"C" * 16)
    assert reply.flags & p.FLAGS_CORR_ID


def test_a_reply_in_another_serializer_is_refused_by_the_client() -> None:
    pair = Pair()
    pair.connect()
    wrong = p.Message(p.MSG_RESULT, 3, 1, b"1")
    with pytest.raises(SerializeError, match="invalid serializer"):
        pair.core.result(wrong)


def test_session_instances_are_per_connection() -> None:
    pair = Pair(target=Counter)  # a class: one instance per session
    pair.connect()
    assert pair.call("add") == 1
    assert pair.call("add") == 2
    pair.session = Session(("127.0.0.1", 6666))
    pair.connect()
    assert pair.call("add") == 1


# --- Daemon.annotations(): Pyro5's hook for annotations on every reply ------------------------


def annotated_pair(hook: Any) -> Pair:
    class Annotated(Daemon):
        def annotations(self) -> dict[str, bytes]:
            result: dict[str, bytes] = hook()
            return result

    pair = Pair()
    pair.daemon = Annotated("127.0.0.1", 0)
    pair.daemon.add(pair.target, "counter")
    return pair


def test_a_daemons_annotations_go_with_connect_answers_pongs_results_and_errors() -> None:
    pair = annotated_pair(lambda: {"DMON": b"d"})
    assert pair.connect().annotations == {"DMON": b"d"}
    for method, seq in (("add", 1), ("fail", 2)):
        frame = pair.core.invoke_frame(seq, method, (), {})
        prepared = pair.daemon.prepare(pair.session, decode(frame))
        assert isinstance(prepared, Call)
        reply = pair.daemon.run_sync(prepared)
        assert isinstance(reply, bytes) and decode(reply).annotations == {"DMON": b"d"}
    pong = pair.daemon.pong(p.Message(p.MSG_PING, 42, 3, b"ping"))
    assert decode(pong).annotations == {"DMON": b"d"}
    assert decode(pair.daemon.connect_fail(0, "no")).annotations == {"DMON": b"d"}
    unknown = p.Message(p.MSG_INVOKE, 1, 4, b"")
    assert decode(pair.daemon.error_reply(unknown, KeyError("x"))).annotations == {"DMON": b"d"}


@pytest.mark.parametrize(
    "hook",
    [lambda: 1 / 0, lambda: {"TOOLONG": b"x"}, lambda: {"ABCD": "not bytes"}, lambda: None],
    ids=["raises", "long key", "str value", "not a dict"],
)
def test_a_failing_annotations_hook_is_left_out_and_the_reply_still_goes(
    hook: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pair = annotated_pair(hook)
    assert pair.connect().type == p.MSG_CONNECTOK
    assert pair.call("add", 2) == 2
    assert "Daemon.annotations() failed" in caplog.text


def test_unsendable_response_annotations_give_the_caller_an_error() -> None:
    @remoteobj.expose
    class Sloppy:
        def note(self) -> int:
            remoteobj.current_context().response_annotations["TOO-LONG"] = b"x"
            return 1

    pair = Pair(target=Sloppy())
    pair.connect()
    with pytest.raises(Exception, match="invalid response annotations"):
        pair.call("note")

"""remoteobj.auth without sockets: the exchange, and every way to get it wrong."""

from __future__ import annotations

from typing import Any

import pytest

from remoteobj import Config, Daemon
from remoteobj import protocol as p
from remoteobj.auth import (
    CHALLENGE_PREFIX,
    SCHEME,
    ClientAuth,
    ServerAuth,
    is_authenticated,
    require_authenticated,
)
from remoteobj.context import CallContext, set_context
from remoteobj.daemon import Session
from remoteobj.errors import SecurityError
from remoteobj.serializers import get_serializer

SECRET = "s3cret"
SERPENT = get_serializer("serpent")


def exchange(
    client_secret: str, server_secret: str, object_id: str = "obj", answer_for: str = "obj"
) -> tuple[ClientAuth, ServerAuth, str | None]:
    client = ClientAuth(client_secret, answer_for)
    server = ServerAuth(server_secret)
    step, nonce = server.step(client.hello(), None, object_id)
    assert step.challenge is not None and nonce is not None
    answer = client.answer(step.challenge)
    step2, kept = server.step(answer, nonce, object_id)
    assert kept is None
    return client, server, step2.proof


def test_the_exchange_authenticates_both_sides() -> None:
    client, _, proof = exchange(SECRET, SECRET)
    client.verify_server(proof)  # no error: the daemon knows the secret too


def test_a_wrong_secret_is_refused_either_way() -> None:
    with pytest.raises(SecurityError, match="authentication failed"):
        exchange("wrong", SECRET)
    # A daemon with another secret: its proof does not verify on the client.
    client = ClientAuth(SECRET, "obj")
    evil = ServerAuth("other")
    step, nonce = evil.step(client.hello(), None, "obj")
    assert step.challenge is not None
    answer = client.answer(step.challenge)
    with pytest.raises(SecurityError):
        evil.step(answer, nonce, "obj")  # the client's MAC was made with the real secret


def test_an_answer_is_bound_to_its_object_and_its_nonce() -> None:
    with pytest.raises(SecurityError):
        exchange(SECRET, SECRET, object_id="obj", answer_for="other")
    client = ClientAuth(SECRET, "obj")
    server = ServerAuth(SECRET)
    step, nonce = server.step(client.hello(), None, "obj")
    assert step.challenge is not None and nonce is not None
    answer = client.answer(step.challenge)
    with pytest.raises(SecurityError):
        server.step(answer, bytes(32), "obj")  # another connection's nonce: a replay


def test_the_daemons_proof_cannot_stand_in_for_the_clients_mac() -> None:
    client = ClientAuth(SECRET, "obj")
    server = ServerAuth(SECRET)
    step, nonce = server.step(client.hello(), None, "obj")
    assert step.challenge is not None and nonce is not None
    answer = client.answer(step.challenge)
    assert answer is not None
    _, proof = exchange(SECRET, SECRET)[1:]
    reflected = dict(answer, mac=proof)
    with pytest.raises(SecurityError):
        server.step(reflected, nonce, "obj")


@pytest.mark.parametrize(
    "offered",
    [
        "a string",
        {"scheme": "plain", "secret": SECRET},
        {"scheme": SCHEME, "cnonce": "zz" * 32, "mac": "00"},
        {"scheme": SCHEME, "cnonce": "00" * 31, "mac": "00"},
        {"scheme": SCHEME, "cnonce": "00" * 32, "mac": 12},
        {"scheme": SCHEME, "cnonce": None, "mac": None},
    ],
)
def test_malformed_answers_are_refused(offered: Any) -> None:
    with pytest.raises(SecurityError):
        ServerAuth(SECRET).step(offered, bytes(32), "obj")


def test_no_auth_entry_is_refused_or_admitted_per_daemon() -> None:
    with pytest.raises(SecurityError, match="authentication required"):
        ServerAuth(SECRET).step(None, None, "obj")
    step, nonce = ServerAuth(SECRET, required=False).step(None, None, "obj")
    assert (step.challenge, step.proof, step.authenticated, nonce) == (None, None, False, None)
    with pytest.raises(SecurityError, match="not answered"):
        ServerAuth(SECRET, required=False).step(None, bytes(32), "obj")


def test_client_side_refusals() -> None:
    client = ClientAuth(SECRET, "obj")
    assert client.answer("connection refused: something else") is None
    with pytest.raises(SecurityError, match="unsupported"):
        client.answer(f"{CHALLENGE_PREFIX} md5 {'00' * 32}")
    with pytest.raises(SecurityError, match="invalid"):
        client.answer(f"{CHALLENGE_PREFIX} {SCHEME} nothex")
    assert client.answer(f"{CHALLENGE_PREFIX} {SCHEME} {'ab' * 32}") is not None
    with pytest.raises(SecurityError, match="twice"):
        client.answer(f"{CHALLENGE_PREFIX} {SCHEME} {'ab' * 32}")
    with pytest.raises(SecurityError, match="did not prove"):
        ClientAuth(SECRET, "obj").verify_server(None)
    with pytest.raises(SecurityError, match="wrong"):
        client.verify_server("00" * 32)


def test_empty_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        ServerAuth("")
    with pytest.raises(ValueError, match="auth_secret"):
        Config(auth_secret="")


def test_the_daemon_handshake_with_a_challenge_keeps_the_session_open() -> None:
    daemon = Daemon("127.0.0.1", 0, config=Config(auth_secret=SECRET))
    try:
        session = Session(("127.0.0.1", 1))
        client = ClientAuth(SECRET, "Pyro.Daemon")
        hello = {"handshake": "hi", "object": "Pyro.Daemon", "auth": client.hello()}
        frame, accepted = daemon.handle_connect(
            session, p.Message(p.MSG_CONNECT, 1, 0, SERPENT.dumps(hello))
        )
        assert not accepted and session.auth_nonce is not None  # the server keeps it open
        reader = p.MessageReader(1 << 20)
        reader.feed(frame)
        msg = reader.next_message()
        assert msg is not None and msg.type == p.MSG_CONNECTFAIL
        answer = client.answer(SERPENT.loads(msg.data))
        data = dict(hello, auth=answer)
        frame, accepted = daemon.handle_connect(
            session, p.Message(p.MSG_CONNECT, 1, 1, SERPENT.dumps(data))
        )
        assert accepted and session.authenticated and session.auth_nonce is None
        reader.feed(frame)
        ok = reader.next_message()
        assert ok is not None and ok.type == p.MSG_CONNECTOK
        client.verify_server(SERPENT.loads(ok.data)["auth"])
        assert session.handshake == "hi"
    finally:
        daemon.close()


def test_require_authenticated_reads_the_calls_connection() -> None:
    session = Session(("127.0.0.1", 1))
    set_context(CallContext(connection=session))
    assert not is_authenticated()
    with pytest.raises(SecurityError, match="register requires authentication"):
        require_authenticated("register")
    session.authenticated = True
    require_authenticated("register")
    set_context(CallContext())
    assert not is_authenticated()

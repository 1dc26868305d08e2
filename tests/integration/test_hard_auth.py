"""Authentication: the shared-secret challenge-response in the CONNECT handshake
(remoteobj.auth), for daemons and the name server, with Pyro5 peers on both sides.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import remoteobj
from remoteobj import Config
from remoteobj import protocol as p
from remoteobj.auth import CHALLENGE_PREFIX, SCHEME, ClientAuth
from remoteobj.errors import CommunicationError, SecurityError
from remoteobj.serializers import get_serializer
from tests.integration.hard_peer import RawConn, start_peer
from tests.procs import Proc, start, start_nameserver
from tests.toxiproxy import ToxiProxy

SECRET = "correct horse battery staple"
SERPENT = get_serializer("serpent")


@pytest.fixture(scope="module")
def auth_peer() -> Iterator[tuple[Proc, str, int]]:
    proc, uri, port = start_peer(
        {"REMOTEOBJ_AUTH_SECRET": SECRET, "REMOTEOBJ_FIRST_FRAME_TIMEOUT": "1"}
    )
    try:
        yield proc, uri, port
    finally:
        proc.kill()


def pyro5_call(uri: str, tmp_path: Path, method: str = "echo", arg: str = "'hi'") -> Proc:
    script = tmp_path / "pyro5_client.py"
    script.write_text(
        "import sys\n"
        "from Pyro5 import api, errors\n"
        "try:\n"
        "    with api.Proxy(sys.argv[1]) as p:\n"
        f"        print('RESULT', repr(p.{method}({arg})))\n"
        "except errors.PyroError as exc:\n"
        "    print('ERROR', type(exc).__name__, exc)\n"
    )
    return start(["python", str(script), uri])


def test_clients_with_the_secret_are_served(auth_peer: tuple[Proc, str, int]) -> None:
    cfg = Config(auth_secret=SECRET)
    with remoteobj.Proxy(auth_peer[1], config=cfg) as proxy:
        assert proxy.echo("in") == "in"

    async def acall() -> object:
        async with remoteobj.AsyncProxy(auth_peer[1], config=cfg) as aproxy:
            return await aproxy.echo("async in")

    assert asyncio.run(acall()) == "async in"


@pytest.mark.parametrize("secret", [None, "wrong secret"], ids=["no secret", "wrong secret"])
def test_clients_without_the_secret_are_refused_with_connectfail(
    auth_peer: tuple[Proc, str, int], secret: str | None
) -> None:
    with pytest.raises(CommunicationError) as info:
        remoteobj.Proxy(auth_peer[1], config=Config(auth_secret=secret))._bind()
    text = str(info.value)
    assert ("authentication required" if secret is None else "authentication failed") in text
    assert SECRET not in text
    with remoteobj.Proxy(auth_peer[1], config=Config(auth_secret=SECRET)) as proxy:
        assert proxy.echo("still serving") == "still serving"


def test_pyro5_client_is_refused_by_an_auth_daemon_and_served_by_a_plain_one(
    auth_peer: tuple[Proc, str, int], tmp_path: Path
) -> None:
    refused = pyro5_call(auth_peer[1], tmp_path)
    try:
        line = refused.wait_for_line(r"^(RESULT|ERROR)", timeout=20).string
    finally:
        refused.kill()
    assert line.startswith("ERROR CommunicationError") and "authentication required" in line
    proc, uri, _ = start_peer()
    try:
        served = pyro5_call(uri, tmp_path)
        try:
            assert served.wait_for_line(r"^RESULT 'hi'$", timeout=20)
        finally:
            served.kill()
    finally:
        proc.kill()


def test_a_client_with_a_secret_refuses_a_daemon_that_cannot_prove_it() -> None:
    proc, uri, _ = start_peer()  # no secret: it ignores the auth entry and says CONNECTOK
    try:
        with pytest.raises(SecurityError, match="did not prove"):
            remoteobj.Proxy(uri, config=Config(auth_secret=SECRET))._bind()
    finally:
        proc.kill()


def test_the_secret_never_travels_and_answers_do_not_replay(
    auth_peer: tuple[Proc, str, int],
) -> None:
    port = auth_peer[2]
    with ToxiProxy(("127.0.0.1", port), record=True) as toxi:
        via = auth_peer[1].replace(f":{port}", f":{toxi.port}")
        with remoteobj.Proxy(via, config=Config(auth_secret=SECRET)) as proxy:
            assert proxy.echo(1) == 1
        wire = b"".join(data for _, data in toxi.recorded)
    assert SECRET.encode() not in wire
    assert b"hmac-sha256" in wire  # the exchange did pass through here
    # Record a full answer on one connection, replay it on another: refused.
    with RawConn(port) as first:
        hello = {"handshake": "hello", "object": "hard", "auth": {"scheme": SCHEME}}
        first.send(p.encode(p.Message(p.MSG_CONNECT, 1, 0, SERPENT.dumps(hello))))
        challenge = first.read()
        assert challenge is not None and challenge.type == p.MSG_CONNECTFAIL
        reason = SERPENT.loads(challenge.data)
        assert reason.startswith(CHALLENGE_PREFIX)
        answer = ClientAuth(SECRET, "hard").answer(reason)
        good = {"handshake": "hello", "object": "hard", "auth": answer}
        first.send(p.encode(p.Message(p.MSG_CONNECT, 1, 1, SERPENT.dumps(good))))
        ok = first.read()
        assert ok is not None and ok.type == p.MSG_CONNECTOK
    with RawConn(port) as second:
        second.send(p.encode(p.Message(p.MSG_CONNECT, 1, 0, SERPENT.dumps(hello))))
        assert second.read() is not None  # its own, different challenge
        second.send(p.encode(p.Message(p.MSG_CONNECT, 1, 1, SERPENT.dumps(good))))
        refused = second.read()
        assert refused is not None and refused.type == p.MSG_CONNECTFAIL
        assert "authentication failed" in SERPENT.loads(refused.data)
        assert second.closed_within(1.0)


def test_protocol_abuse_of_the_exchange(auth_peer: tuple[Proc, str, int]) -> None:
    port = auth_peer[2]
    hello = {"handshake": "hello", "object": "hard", "auth": {"scheme": SCHEME}}
    cases = {
        "answer without challenge": {"scheme": SCHEME, "cnonce": "00" * 32, "mac": "00" * 32},
        "unknown scheme": {"scheme": "plaintext", "secret": SECRET},
        "not a dict": "let me in",
    }
    for name, entry in cases.items():
        with RawConn(port) as raw:
            data = {"handshake": "hello", "object": "hard", "auth": entry}
            raw.send(p.encode(p.Message(p.MSG_CONNECT, 1, 0, SERPENT.dumps(data))))
            reply = raw.read()
            assert reply is not None and reply.type == p.MSG_CONNECTFAIL, name
            assert raw.closed_within(1.0), name
    # Two challenges on one connection: the second hello is refused.
    with RawConn(port) as raw:
        frame = p.encode(p.Message(p.MSG_CONNECT, 1, 0, SERPENT.dumps(hello)))
        raw.send(frame)
        assert raw.read() is not None
        raw.send(frame)
        reply = raw.read()
        assert reply is not None and "one challenge" in SERPENT.loads(reply.data)
        assert raw.closed_within(1.0)
    # Challenged, then silent: closed at the first-frame deadline (1 s here).
    with RawConn(port) as raw:
        raw.send(p.encode(p.Message(p.MSG_CONNECT, 1, 0, SERPENT.dumps(hello))))
        assert raw.read() is not None
        t0 = time.monotonic()
        assert raw.closed_within(3.0)
        assert time.monotonic() - t0 <= 1.6
    # Having authenticated, a connection cannot invoke before... it is simply served.
    with remoteobj.Proxy(auth_peer[1], config=Config(auth_secret=SECRET)) as proxy:
        assert proxy.echo("ok") == "ok"


def test_tls_and_auth_together(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    env = {
        "REMOTEOBJ_SSL": "1",
        "REMOTEOBJ_SSL_CERTFILE": str(cert),
        "REMOTEOBJ_AUTH_SECRET": SECRET,
    }
    proc, uri, _ = start_peer(env)
    try:
        cfg = Config(ssl=True, ssl_cafile=str(ca_file), auth_secret=SECRET)
        with remoteobj.Proxy(uri, config=cfg) as proxy:
            assert proxy.echo("both") == "both"
        with pytest.raises(CommunicationError, match="authentication required"):
            remoteobj.Proxy(uri, config=cfg.replace(auth_secret=None))._bind()
    finally:
        proc.kill()


# --- the name server: lookups open, mutations need the secret ---------------------------


@pytest.fixture(scope="module")
def auth_ns() -> Iterator[str]:
    proc, uri = start_nameserver(env={"REMOTEOBJ_AUTH_SECRET": SECRET})
    try:
        yield uri
    finally:
        proc.kill()


def test_name_server_lookups_are_open_and_mutations_need_the_secret(auth_ns: str) -> None:
    with remoteobj.Proxy(auth_ns, config=Config(auth_secret=SECRET)) as ns:
        ns.register("auth.test.name", "PYRO:x@127.0.0.1:1")
        ns.set_metadata("auth.test.name", {"tag"})
    with remoteobj.Proxy(auth_ns) as anonymous:
        assert str(anonymous.lookup("auth.test.name")) == "PYRO:x@127.0.0.1:1"
        assert "auth.test.name" in anonymous.list()
        for mutation in (
            lambda: anonymous.register("auth.test.evil", "PYRO:y@127.0.0.1:1"),
            lambda: anonymous.remove("auth.test.name"),
            lambda: anonymous.set_metadata("auth.test.name", {"evil"}),
        ):
            with pytest.raises(SecurityError, match="requires authentication"):
                mutation()
        assert str(anonymous.lookup("auth.test.name")) == "PYRO:x@127.0.0.1:1"
        with pytest.raises(remoteobj.errors.NamingError):
            anonymous.lookup("auth.test.evil")


def test_pyro5_client_can_look_up_but_not_register_on_an_auth_name_server(
    auth_ns: str, tmp_path: Path
) -> None:
    with remoteobj.Proxy(auth_ns, config=Config(auth_secret=SECRET)) as ns:
        ns.register("auth.test.pyro5", "PYRO:z@127.0.0.1:1")
    looked = pyro5_call(auth_ns, tmp_path, "lookup", "'auth.test.pyro5'")
    try:
        assert looked.wait_for_line(r"^RESULT .*PYRO:z@127.0.0.1:1", timeout=20)
    finally:
        looked.kill()
    registered = pyro5_call(auth_ns, tmp_path, "register", "'auth.test.p5', 'PYRO:w@127.0.0.1:1'")
    try:
        line = registered.wait_for_line(r"^(RESULT|ERROR)", timeout=20).string
    finally:
        registered.kill()
    assert line.startswith("ERROR SecurityError") and "requires authentication" in line


def test_a_daemon_with_the_secret_registers_itself_in_an_auth_name_server(
    auth_ns: str,
) -> None:
    ns_uri = remoteobj.URI(auth_ns)
    cfg = Config(auth_secret=SECRET, ns_host=str(ns_uri.host), ns_port=int(ns_uri.port or 0))
    daemon = remoteobj.Daemon("127.0.0.1", 0, config=cfg)
    try:

        @remoteobj.expose
        class Thing:
            def hello(self) -> str:
                return "hi"

        daemon.register(Thing(), "thing", name="auth.test.leased", ns=auth_ns)
        with remoteobj.Proxy(auth_ns) as anonymous:
            assert "auth.test.leased" in anonymous.list()
    finally:
        daemon.close()
    with remoteobj.Proxy(auth_ns) as anonymous:
        assert "auth.test.leased" not in anonymous.list()  # removed by close(), with auth

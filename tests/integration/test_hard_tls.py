"""TLS (G21): server and client TLS, mutual TLS, wrong CAs and hostnames, and silent
pre-ClientHello connections that must not block anyone (the Pyro5 SSL server's
accept loop stalls on one). Certificates are made per test run with trustme.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

import remoteobj
from remoteobj import Config
from remoteobj.errors import CommunicationError
from tests.integration.hard_peer import (
    Canary,
    proc_status,
    seconds_until_closed,
    soak_scale,
    start_peer,
)
from tests.procs import Proc

HANDSHAKE_TIMEOUT = 1.0


@dataclass
class Pki:
    ca: str
    server: str  # key + chain
    client: str  # key + chain, signed by ca
    other_ca: str
    other_client: str  # signed by other_ca
    localhost_only: str  # a server cert naming "localhost" only


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()

    def write(name: str, blob: trustme.Blob) -> str:
        path = base / name
        blob.write_to_path(str(path))
        return str(path)

    return Pki(
        ca=write("ca.pem", ca.cert_pem),
        server=write("server.pem", ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem),
        client=write("client.pem", ca.issue_cert("client.test").private_key_and_cert_chain_pem),
        other_ca=write("other-ca.pem", other.cert_pem),
        other_client=write(
            "other-client.pem", other.issue_cert("client.test").private_key_and_cert_chain_pem
        ),
        localhost_only=write(
            "localhost.pem", ca.issue_cert("localhost").private_key_and_cert_chain_pem
        ),
    )


def tls_env(pki: Pki, *, mutual: bool = False, cert: str | None = None) -> dict[str, str]:
    env = {
        "REMOTEOBJ_SSL": "1",
        "REMOTEOBJ_SSL_CERTFILE": cert or pki.server,
        "REMOTEOBJ_SSL_HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT),
        "REMOTEOBJ_FIRST_FRAME_TIMEOUT": "1",
    }
    if mutual:
        env["REMOTEOBJ_SSL_CAFILE"] = pki.ca
        env["REMOTEOBJ_SSL_REQUIRE_CLIENT_CERT"] = "1"
    return env


def client(pki: Pki, **fields: object) -> Config:
    values: dict[str, object] = {"ssl": True, "ssl_cafile": pki.ca, "connect_timeout": 5.0}
    values.update(fields)
    return Config(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tls_peer(pki: Pki) -> Iterator[tuple[Proc, str, int]]:
    proc, uri, port = start_peer(tls_env(pki))
    try:
        yield proc, uri, port
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def mtls_peer(pki: Pki) -> Iterator[tuple[Proc, str, int]]:
    proc, uri, port = start_peer(tls_env(pki, mutual=True))
    try:
        yield proc, uri, port
    finally:
        proc.kill()


def test_tls_calls_sync_async_concurrent_and_large(
    pki: Pki, tls_peer: tuple[Proc, str, int]
) -> None:
    uri = tls_peer[1]
    cfg = client(pki)
    with remoteobj.Proxy(uri, config=cfg) as proxy:
        assert proxy.echo("over tls") == "over tls"
        big = "x" * (3 * 1024 * 1024)  # many TLS records, partial writes both ways
        assert proxy.echo(big) == big
        assert len(proxy.text(2 * 1024 * 1024)) == 2 * 1024 * 1024
        # One connection shared by threads: worker replies go through the loop.
        results: list[object] = []
        lock = threading.Lock()

        def call(i: int) -> None:
            value = proxy.echo({"i": i, "pad": "p" * (i * 100)})
            with lock:
                results.append(value)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(r["i"] for r in results) == list(range(50))  # type: ignore[index]

    async def acalls() -> list[int]:
        async with remoteobj.AsyncProxy(uri, config=cfg) as aproxy:
            return list(await asyncio.gather(*(aproxy.asleep(0.01 * (i % 3)) for i in range(30))))

    assert len(asyncio.run(acalls())) == 30


def test_plain_client_to_tls_daemon_fails_fast_and_daemon_keeps_serving(
    pki: Pki, tls_peer: tuple[Proc, str, int]
) -> None:
    t0 = time.monotonic()
    with pytest.raises(CommunicationError):
        remoteobj.Proxy(tls_peer[1], config=Config(connect_timeout=5))._bind()
    assert time.monotonic() - t0 < 2.0
    with remoteobj.Proxy(tls_peer[1], config=client(pki)) as proxy:
        assert proxy.echo(1) == 1


def test_tls_client_to_plain_daemon_fails(pki: Pki) -> None:
    proc, uri, _ = start_peer()
    try:
        t0 = time.monotonic()
        with pytest.raises(CommunicationError, match="TLS"):
            remoteobj.Proxy(uri, config=client(pki))._bind()
        assert time.monotonic() - t0 < 2.0
    finally:
        proc.kill()


def test_wrong_ca_and_wrong_hostname_are_refused(pki: Pki, tls_peer: tuple[Proc, str, int]) -> None:
    with pytest.raises(CommunicationError, match="certificate verify failed"):
        remoteobj.Proxy(tls_peer[1], config=client(pki, ssl_cafile=pki.other_ca))._bind()
    proc, uri, _ = start_peer(tls_env(pki, cert=pki.localhost_only))
    try:
        with pytest.raises(CommunicationError, match="certificate verify failed"):
            remoteobj.Proxy(uri, config=client(pki))._bind()  # URI says 127.0.0.1
        relaxed = client(pki, ssl_check_hostname=False)
        with remoteobj.Proxy(uri, config=relaxed) as proxy:
            assert proxy.echo(2) == 2
    finally:
        proc.kill()


def test_mutual_tls_requires_a_client_certificate_from_the_right_ca(
    pki: Pki, mtls_peer: tuple[Proc, str, int]
) -> None:
    uri = mtls_peer[1]
    with remoteobj.Proxy(uri, config=client(pki, ssl_certfile=pki.client)) as proxy:
        assert proxy.echo("mutual") == "mutual"

    async def acall() -> object:
        async with remoteobj.AsyncProxy(uri, config=client(pki, ssl_certfile=pki.client)) as ap:
            return await ap.echo("mutual async")

    assert asyncio.run(acall()) == "mutual async"
    # TLS 1.3 reports a refused client certificate after the handshake, at the first read.
    for refused in (client(pki), client(pki, ssl_certfile=pki.other_client)):
        with pytest.raises(CommunicationError), remoteobj.Proxy(uri, config=refused) as proxy:
            proxy.echo("nope")
    with remoteobj.Proxy(uri, config=client(pki, ssl_certfile=pki.client)) as proxy:
        assert proxy.echo("still serving") == "still serving"


def silent_tls(pki: Pki, silent: int, partial: int) -> None:
    proc, uri, port = start_peer(tls_env(pki))
    try:
        env = {"REMOTEOBJ_SSL": "1", "REMOTEOBJ_SSL_CAFILE": pki.ca}
        with Canary(uri, env=env) as canary:
            base = proc_status(proc.pid)
            socks: list[tuple[socket.socket, float]] = []
            for i in range(silent + partial):
                sock = socket.create_connection(("127.0.0.1", port))
                if i >= silent:
                    sock.sendall(bytes.fromhex("1603010200010001fc0303"))  # half a ClientHello
                socks.append((sock, time.monotonic()))
            closed_after = seconds_until_closed(socks, HANDSHAKE_TIMEOUT + 2)
            time.sleep(0.2)
            after = proc_status(proc.pid)
        print(
            f"silent TLS: {silent} pre-ClientHello + {partial} half-ClientHello connections; "
            f"closed after {min(closed_after):.2f}-{max(closed_after):.2f} s (handshake timeout "
            f"{HANDSHAKE_TIMEOUT} s); sockets {base['sockets']} -> {after['sockets']}; "
            f"{canary.report()}"
        )
        assert max(closed_after) <= HANDSHAKE_TIMEOUT + 0.5
        assert canary.errors == []
        assert canary.p99() <= 0.050
        assert after["sockets"] <= base["sockets"]
    finally:
        proc.kill()


def test_silent_tls_clients_do_not_block_accepting(pki: Pki) -> None:
    silent_tls(pki, silent=50, partial=20)


@pytest.mark.soak
def test_silent_tls_clients_soak(pki: Pki) -> None:
    silent_tls(pki, silent=int(500 * soak_scale()) or 1, partial=int(200 * soak_scale()))


def test_pyro5_ssl_client_talks_to_a_remoteobj_tls_daemon(
    pki: Pki, tls_peer: tuple[Proc, str, int], tmp_path: Path
) -> None:
    code = (
        "import sys\n"
        "from Pyro5 import config, api\n"
        "config.SSL = True\n"
        f"config.SSL_CACERTS = {pki.ca!r}\n"
        "with api.Proxy(sys.argv[1]) as p:\n"
        "    print('RESULT', p.echo('pyro5 over tls'))\n"
    )
    script = tmp_path / "pyro5_tls_client.py"
    script.write_text(code)
    from tests.procs import start

    proc = start(["python", str(script), tls_peer[1]])
    try:
        assert proc.wait_for_line(r"^RESULT pyro5 over tls$", timeout=20)
    finally:
        proc.kill()


def test_tls_pipelined_requests_beyond_the_in_flight_limit(
    pki: Pki, tls_peer: tuple[Proc, str, int]
) -> None:
    import ssl

    from remoteobj import protocol as p
    from remoteobj.serializers import get_serializer

    serpent = get_serializer("serpent")
    ctx = ssl.create_default_context(cafile=pki.ca)
    call = serpent.dumps_call("hard", "track", (0.01,), {})
    hello = serpent.dumps({"handshake": "hello", "object": "hard"})
    frames = [p.encode(p.Message(p.MSG_CONNECT, 1, 0, hello))]
    frames += [p.encode(p.Message(p.MSG_INVOKE, 1, seq, call)) for seq in range(1, 301)]
    replies = []
    with (
        socket.create_connection(("127.0.0.1", tls_peer[2]), timeout=20) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"".join(frames))  # 300 calls in a few TLS records
        reader = p.MessageReader(1 << 20)
        while len(replies) < 301:
            data = sock.recv(65536)
            assert data, "closed"
            reader.feed(data)
            while (msg := reader.next_message()) is not None:
                replies.append(msg)
    assert replies[0].type == p.MSG_CONNECTOK
    assert sorted(m.seq for m in replies[1:]) == list(range(1, 301))
    assert not any(m.flags & p.FLAGS_EXCEPTION for m in replies[1:])

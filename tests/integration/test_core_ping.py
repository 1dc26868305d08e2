"""Idle proxy connections to a hung daemon are found dead by a background ping."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

import remoteobj
from tests.procs import Proc, always, free_port, start, wait_for


def start_peer() -> tuple[Proc, str]:
    """A remoteobj peer on a free port: (process, URI of its object)."""
    proc = start(["python", "tests/integration/peers.py", "remoteobj", str(free_port())])
    try:
        return proc, proc.wait_for_line(r"READY (\S+)", timeout=15).group(1)
    except BaseException:
        proc.kill()
        raise


@pytest.fixture
def peer() -> Iterator[tuple[Proc, str]]:
    proc, uri = start_peer()
    try:
        yield proc, uri
    finally:
        proc.send_signal(signal.SIGCONT)  # some tests stop it
        proc.kill()


def test_an_idle_connection_to_a_hung_daemon_is_marked_dead_and_recovers(
    peer: tuple[Proc, str],
) -> None:
    proc, uri = peer
    cfg = remoteobj.Config(ping_interval=0.3, ping_timeout=0.5, commtimeout=5)
    with remoteobj.Proxy(uri, config=cfg) as p:
        assert p.add(1, 1) == 2
        conn = p._conn
        assert conn is not None
        # Idle past the interval: pings go out and are answered; nothing changes.
        always(lambda: conn.broken is None, 0.8, message="the live connection")
        proc.send_signal(signal.SIGSTOP)
        hung_at = time.monotonic()
        # Dead within interval + timeout (+ the pinger's period), while nobody calls.
        wait_for(lambda: conn.broken is not None, 3.0, message="the ping to notice")
        assert time.monotonic() - hung_at < 0.3 + 0.5 + 0.5
        proc.send_signal(signal.SIGCONT)
        assert p.add(2, 2) == 4  # a fresh connection
        assert p._conn is not conn


def test_pings_can_be_turned_off(peer: tuple[Proc, str]) -> None:
    _, uri = peer
    with remoteobj.Proxy(uri, config=remoteobj.Config(ping_interval=0)) as p:
        assert p.add(1, 1) == 2
        assert p._conn not in remoteobj.client._PINGER._conns


def test_a_short_interval_is_honoured_while_the_pinger_sleeps_for_a_long_one(
    peer: tuple[Proc, str],
) -> None:
    proc, uri = peer
    # A default connection (30 s interval) first: the pinger then sleeps 5 s.
    with remoteobj.Proxy(uri) as slow:
        assert slow.add(1, 1) == 2
        cfg = remoteobj.Config(ping_interval=0.3, ping_timeout=0.5)
        with remoteobj.Proxy(uri, config=cfg) as fast:
            assert fast.add(1, 1) == 2
            conn = fast._conn
            assert conn is not None
            proc.send_signal(signal.SIGSTOP)
            hung_at = time.monotonic()
            wait_for(lambda: conn.broken is not None, 8.0, message="the ping to notice")
            assert time.monotonic() - hung_at < 0.3 + 0.5 + 0.5
        proc.send_signal(signal.SIGCONT)


def test_one_hung_daemon_does_not_hold_up_the_pings_of_another() -> None:
    peers = [start_peer(), start_peer()]
    procs, uris = [p for p, _ in peers], [u for _, u in peers]
    try:
        cfg = remoteobj.Config(ping_interval=0.3, ping_timeout=2.0)
        with remoteobj.Proxy(uris[0], config=cfg) as a, remoteobj.Proxy(uris[1], config=cfg) as b:
            assert a.add(1, 1) == b.add(1, 1) == 2
            conns = [a._conn, b._conn]
            for proc in procs:
                proc.send_signal(signal.SIGSTOP)
            hung_at = time.monotonic()
            # Pinged one after the other, the second would be found dead only after
            # both timeouts (4 s); in parallel both are found within one.
            wait_for(lambda: all(c is not None and c.broken for c in conns), 8.0)
            assert time.monotonic() - hung_at < 0.3 + 2.0 + 0.8
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
            proc.kill()


def test_short_lived_proxies_share_one_pinger_thread(peer: tuple[Proc, str]) -> None:
    _, uri = peer
    threads = set()
    for _ in range(5):
        with remoteobj.Proxy(uri) as p:
            assert p.add(1, 1) == 2
        threads.add(remoteobj.client._PINGER._thread)
    assert len(threads) == 1 and None not in threads

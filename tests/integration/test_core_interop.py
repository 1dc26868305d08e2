"""Calls across processes on 127.0.0.1, both directions between remoteobj and Pyro5.

Each test talks to a real server process (``peers.py``) over loopback: a Pyro5
client against a remoteobj daemon, and remoteobj proxies (sync and async)
against both daemons.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import remoteobj
from remoteobj.errors import CommunicationError
from tests.procs import LOOPBACK, Proc, free_port, start

VALUES: list[Any] = [
    None,
    True,
    0,
    -7,
    2**70,
    1.5,
    "héllo ✓",
    "",
    [1, "a", [2.0]],
    (1, 2),
    {"k": [1, {"n": None}]},
    {1, 2, 3},
]


@pytest.fixture(scope="module", params=["remoteobj", "pyro5"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    impl = request.param
    port = free_port()
    proc = start(["python", "tests/integration/peers.py", impl, str(port)])
    try:
        uri = proc.wait_for_line(r"READY (\S+)", timeout=15).group(1)
        yield impl, uri
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def our_daemon() -> Iterator[str]:
    port = free_port()
    proc = start(["python", "tests/integration/peers.py", "remoteobj", str(port)])
    try:
        yield proc.wait_for_line(r"READY (\S+)", timeout=15).group(1)
    finally:
        proc.kill()


# --- remoteobj proxies against both daemons ---------------------------------------


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_round_trip(server: tuple[str, str], value: Any) -> None:
    with remoteobj.Proxy(server[1]) as p:
        assert p.echo(value) == value


def test_keyword_arguments(server: tuple[str, str]) -> None:
    with remoteobj.Proxy(server[1]) as p:
        assert p.add(2, b=3) == 5


def test_remote_exception_is_raised_as_its_type_with_the_remote_traceback(
    server: tuple[str, str],
) -> None:
    with remoteobj.Proxy(server[1]) as p, pytest.raises(ValueError) as info:
        p.fail("boom")
    assert info.value.args == ("boom", 42)
    assert any("Traceback" in note and "raise ValueError" in note for note in info.value.__notes__)


def test_oneway_returns_at_once_and_runs(server: tuple[str, str]) -> None:
    with remoteobj.Proxy(server[1]) as p:
        assert p.record("x1") is None
        deadline = time.monotonic() + 5
        while "x1" not in p.recorded():
            assert time.monotonic() < deadline, "oneway call never ran"


def test_properties_read_and_write(server: tuple[str, str]) -> None:
    with remoteobj.Proxy(server[1]) as p:
        p.value = 41
        assert p.value == 41


def test_unknown_and_private_names_are_refused_locally(server: tuple[str, str]) -> None:
    with remoteobj.Proxy(server[1]) as p:
        with pytest.raises(AttributeError):
            p.nonexistent()
        with pytest.raises(AttributeError):
            p._private()


def test_async_proxy_against_both(server: tuple[str, str]) -> None:
    async def main() -> None:
        async with remoteobj.AsyncProxy(server[1]) as p:
            results = await asyncio.gather(*(p.add(i, 1) for i in range(50)))
            assert results == [i + 1 for i in range(50)]
            with pytest.raises(ValueError):
                await p.fail("async boom")
            assert await p.value in (1, 41)

    asyncio.run(main())


def test_connecting_to_an_unknown_object_fails_clearly(server: tuple[str, str]) -> None:
    uri = server[1].replace("test.service", "no.such.object")
    with remoteobj.Proxy(uri) as p, pytest.raises(CommunicationError, match="unknown object"):
        p._bind()


# --- Pyro5 client against the remoteobj daemon --------------------------------------


@pytest.mark.parametrize("serializer", ["serpent", "json", "marshal", "msgpack"])
def test_pyro5_proxy_calls_our_daemon(our_daemon: str, serializer: str) -> None:
    from Pyro5.api import Proxy

    with Proxy(our_daemon) as p:
        p._pyroSerializer = serializer
        for value in ([1, "two", 3.0], {"a": 1}, "text", None):
            assert p.echo(value) == value
        assert p.add(1, b=2) == 3
        with pytest.raises(ValueError) as info:
            p.fail("from pyro5")
        assert info.value.args == ("from pyro5", 42)
        assert "".join(info.value._pyroTraceback)


def test_pyro5_proxy_oneway_and_properties(our_daemon: str) -> None:
    from Pyro5.api import Proxy

    with Proxy(our_daemon) as p:
        p.record("from-pyro5")
        p.value = 7
        assert p.value == 7
        deadline = time.monotonic() + 5
        while "from-pyro5" not in p.recorded():
            assert time.monotonic() < deadline


def test_pyro5_proxy_cannot_reach_private_names_on_the_wire(our_daemon: str) -> None:
    from Pyro5.api import Proxy
    from Pyro5.errors import SecurityError as PyroSecurityError

    with Proxy(our_daemon) as p:
        p._pyroBind()
        for name in ("_private", "__init__", "__class__", "__dict__", "__len__", "hidden"):
            with pytest.raises((PyroSecurityError, AttributeError)) as info:
                p._pyroInvoke(name, (), {})
            assert name in str(info.value)
            assert "Service" not in str(info.value)  # no class names leak


def run_overlapping(call: Callable[[], object], n: int = 8) -> list[tuple[float, float]]:
    """Run ``call`` in ``n`` threads released together; each call's (start, end)."""
    barrier = threading.Barrier(n)
    spans: list[tuple[float, float]] = []

    def worker() -> None:
        barrier.wait(10)
        started = time.monotonic()
        call()
        spans.append((started, time.monotonic()))

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(spans) == n, "some calls did not finish"
    return spans


def assert_all_ran_at_once(spans: list[tuple[float, float]]) -> None:
    # Concurrent means every call started before any of them ended: with a
    # 0.5 s method, serial execution would put the last start 3.5 s after the first end.
    last_start = max(s for s, _ in spans)
    first_end = min(e for _, e in spans)
    assert last_start < first_end, f"calls ran one after another: {spans}"


def test_eight_pyro5_clients_of_a_blocking_method_finish_together(our_daemon: str) -> None:
    from Pyro5.api import Proxy

    proxies = [Proxy(our_daemon) for _ in range(8)]
    for p in proxies:
        p._pyroBind()
    pool = iter(proxies)
    lock = threading.Lock()

    def call() -> None:
        with lock:
            p = next(pool)
        p._pyroClaimOwnership()
        p.sleep(0.5)

    try:
        assert_all_ran_at_once(run_overlapping(call))
    finally:
        for p in proxies:
            p._pyroClaimOwnership()
            p._pyroRelease()


def test_one_proxy_shared_by_eight_threads_runs_their_calls_concurrently(our_daemon: str) -> None:
    with remoteobj.Proxy(our_daemon) as p:
        p._bind()
        assert_all_ran_at_once(run_overlapping(lambda: p.sleep(0.5)))


def test_shared_proxy_keeps_replies_apart_under_load(our_daemon: str) -> None:
    errors: list[str] = []
    with remoteobj.Proxy(our_daemon) as p:

        def call(n: int) -> None:
            for i in range(200):
                token = f"{n}-{i}"
                got = p.echo(token)
                if got != token:
                    errors.append(f"{token} -> {got}")

        threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert errors == []


def test_coroutine_methods_run_on_the_daemon_loop(our_daemon: str) -> None:
    async def main() -> None:
        async with remoteobj.AsyncProxy(our_daemon) as p:
            assert await asyncio.gather(*(p.coro(i) for i in range(20))) == [
                i * 2 for i in range(20)
            ]

    asyncio.run(main())
    with remoteobj.Proxy(our_daemon) as p:
        assert p.coro(21) == 42


def test_timeout_raises_our_and_the_builtin_timeout_error(our_daemon: str) -> None:
    with remoteobj.Proxy(our_daemon) as p:
        p._timeout = 0.3
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            p.sleep(2)
        assert time.monotonic() - started < 1.0
        p._timeout = 5
        assert p.add(1, 1) == 2  # the connection is still usable


# --- restarts -------------------------------------------------------------------------


def test_proxy_reconnects_after_the_daemon_restarts() -> None:
    port = free_port()

    def serve() -> Proc:
        proc = start(["python", "tests/integration/peers.py", "remoteobj", str(port)])
        proc.wait_for_line("READY", timeout=15)
        return proc

    proc = serve()
    try:
        with remoteobj.Proxy(f"PYRO:test.service@{LOOPBACK}:{port}") as p:
            assert p.add(1, 2) == 3
            proc.kill()
            proc = serve()
            assert p.add(2, 2) == 4  # the idle connection was found dead before sending
    finally:
        proc.kill()


def test_a_quick_call_is_not_held_up_behind_a_slow_one_on_the_same_connection(
    our_daemon: str,
) -> None:
    # After a first call a worker keeps the connection and runs the next call
    # itself; the loop must take reading back so the quick call runs meanwhile.
    with remoteobj.Proxy(our_daemon) as p:
        assert p.add(1, 1) == 2
        done: list[str] = []
        slow = threading.Thread(target=lambda: done.append(f"slow {p.sleep(1.0)}"))
        slow.start()
        started = time.monotonic()
        assert p.add(2, 2) == 4
        quick = time.monotonic() - started
        done.append("quick")
        slow.join(10)
    assert done == ["quick", "slow 1.0"]
    assert quick < 0.5

"""Busy-polling before sleeping: quick answers are caught, slow ones stop costing CPU.

A proxy with one call in flight polls for its reply (``Config.reply_spin``),
threads sharing a proxy wait awake for the reader to hand them their replies
(the same budget), and a worker keeping a connection polls for the next
request (``Config.request_spin``).
Both give up polling where it does not pay (:mod:`remoteobj.spinning`), which
these tests measure as CPU time: polling on every call would cost at least
``CALLS * SPIN`` seconds of CPU, the backoff a handful of budgets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import remoteobj
from remoteobj.client import HANDOFF_SPIN_FACTOR
from remoteobj.spinning import SocketWatch, Spinner
from tests.integration.feat_support import serving

LOOPBACK = "127.0.0.1"
SPIN = 0.004  # each budget; 40 calls polling every time would burn 160 ms of CPU
CALLS = 40
PAUSE = 0.01  # slower than SPIN: the workload's own think time, not a wait for a condition
#: CPU the calls may use in all with the backoff: a few budgets plus the calls' own work.
CPU_BOUND = 0.08


@remoteobj.expose
class Service:
    def echo(self, x: object) -> object:
        return x

    def slow(self) -> None:
        time.sleep(PAUSE)


@pytest.fixture
def daemon_uri(request: pytest.FixtureRequest) -> Iterator[str]:
    """A daemon serving :class:`Service`; ``request.param``: its Config fields
    (default: no busy-polling of its own)."""
    fields = getattr(request, "param", {"request_spin": 0.0})
    daemon = remoteobj.Daemon(LOOPBACK, 0, config=remoteobj.Config(**fields))
    uri = daemon.register(Service(), "spin.service")
    with serving(daemon):
        yield str(uri)


class CountingSpinner(Spinner):
    """A spinner that records what each of its waits returned."""

    def __init__(self, budget: float) -> None:
        super().__init__(budget)
        self.outcomes: list[bool] = []

    def wait(self, ready: Callable[[], object]) -> bool:
        caught = super().wait(ready)
        self.outcomes.append(caught)
        return caught


def counting(owner: object, attr: str) -> list[bool]:
    """Swap ``owner``'s spinner ``attr`` for one that counts its waits from here on."""
    old: Spinner = getattr(owner, attr)
    spinner = CountingSpinner(old._budget)
    setattr(owner, attr, spinner)
    return spinner.outcomes


def socket_watch(proxy: remoteobj.Proxy) -> SocketWatch:
    """The poll of ``proxy``'s connection (now open) for its replies."""
    assert proxy._conn is not None
    watch = proxy._conn._socket_watch
    assert watch is not None
    return watch


def handoffs(proxy: remoteobj.Proxy) -> list[bool]:
    """Count the waits for replies handed on by another thread of ``proxy``."""
    assert proxy._conn is not None
    return counting(proxy._conn, "_handoff_spinner")


def test_a_proxy_catches_quick_replies_by_polling(daemon_uri: str) -> None:
    with remoteobj.Proxy(daemon_uri, config=remoteobj.Config(reply_spin=0.01)) as proxy:
        proxy._bind()
        outcomes = counting(socket_watch(proxy), "spinner")
        for i in range(CALLS):
            assert proxy.echo(i) == i
    assert len(outcomes) >= CALLS
    assert outcomes.count(True) >= CALLS * 0.8, outcomes


def test_a_proxy_stops_polling_for_replies_that_come_slowly(daemon_uri: str) -> None:
    with remoteobj.Proxy(daemon_uri, config=remoteobj.Config(reply_spin=SPIN)) as proxy:
        proxy._bind()
        started = time.thread_time()
        for _ in range(CALLS):
            proxy.slow()
        used = time.thread_time() - started
    assert used < CPU_BOUND, f"{used * 1000:.0f} ms of CPU for {CALLS} slow calls"


def test_reply_polling_can_be_turned_off(daemon_uri: str) -> None:
    with remoteobj.Proxy(daemon_uri, config=remoteobj.Config(reply_spin=0)) as proxy:
        proxy._bind()
        assert proxy._conn is not None
        assert proxy._conn._socket_watch is None  # no poll object at all
        outcomes = handoffs(proxy)
        assert [proxy.echo(i) for i in range(5)] == list(range(5))
    assert not any(outcomes)


def test_threads_sharing_a_proxy_take_their_replies_awake(daemon_uri: str) -> None:
    config = remoteobj.Config(reply_spin=0.01)
    with remoteobj.Proxy(daemon_uri, config=config) as proxy:
        proxy._bind()
        outcomes = handoffs(proxy)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(proxy.echo, range(200)))
    assert results == list(range(200))
    assert outcomes, "no thread waited for another to hand it its reply"
    assert outcomes.count(True) >= len(outcomes) * 0.5, outcomes


def test_threads_sharing_a_proxy_stop_waiting_awake_for_slow_replies(daemon_uri: str) -> None:
    def cpu_for_slow_calls(reply_spin: float) -> float:
        with remoteobj.Proxy(daemon_uri, config=remoteobj.Config(reply_spin=reply_spin)) as proxy:
            proxy._bind()
            started = time.process_time()  # the in-process daemon's few ms count too
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda _: proxy.slow(), range(2 * CALLS)))
            return time.process_time() - started

    # The same calls without waiting awake, just before: what five threads passing
    # replies around cost on this machine now, polling or not.
    base = cpu_for_slow_calls(0.0)
    used = cpu_for_slow_calls(SPIN / HANDOFF_SPIN_FACTOR)  # they wait SPIN
    extra = used - base
    print(f"{2 * CALLS} slow calls, 4 threads: {used * 1000:.0f} ms CPU, {base * 1000:.0f} without")
    # A few missed budgets per thread (7-28 ms measured); 119-132 ms without the backoff.
    assert extra < 15 * SPIN, f"waiting awake cost {extra * 1000:.0f} ms more CPU"


# A worker keeps the connection through the pauses (linger > PAUSE), so each request
# is a follow-up the worker polls for, and each poll misses: the backoff must act.
@pytest.mark.parametrize(
    "daemon_uri", [{"request_spin": SPIN, "worker_linger": 5 * PAUSE}], indirect=True
)
def test_a_daemon_stops_polling_for_requests_that_come_slowly(daemon_uri: str) -> None:
    config = remoteobj.Config(reply_spin=0)  # only the daemon polls here
    with remoteobj.Proxy(daemon_uri, config=config) as proxy:
        proxy._bind()
        process, client = time.process_time(), time.thread_time()
        for i in range(CALLS):
            assert proxy.echo(i) == i
            time.sleep(PAUSE)  # a client with think time between its calls
        used = (time.process_time() - process) - (time.thread_time() - client)
    assert used < CPU_BOUND, f"the daemon used {used * 1000:.0f} ms of CPU for {CALLS} calls"

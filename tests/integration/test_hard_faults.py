"""Faults (THREATS.md §4, goals G12-G15, G19, G20): peers that die, hang or restart, and
graceful shutdown. Nothing hangs, nothing runs twice, resources come back.

Real processes on 127.0.0.1, killed/stopped by PID; a pure-Python Toxiproxy
(tests/toxiproxy.py) for a blackholed network.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from json import loads as json_loads
from pathlib import Path
from typing import Any

import pytest

import remoteobj
from remoteobj import Config
from remoteobj.errors import CommunicationError, ConnectionClosedError
from remoteobj.errors import TimeoutError as RemoteTimeout
from remoteobj.server import MAX_KEPT
from tests.integration.hard_peer import Canary, proc_status, soak_scale, start_peer
from tests.procs import start, wait_for
from tests.toxiproxy import ToxiProxy


def stats(uri: str) -> dict[str, int]:
    with remoteobj.Proxy(uri) as proxy:
        result: dict[str, int] = proxy.stats()
        return result


def in_threads(count: int, target: Callable[[int], Any]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    return threads


# --- G12: client killed mid-call ----------------------------------------------------------


def client_killed(rounds: int, per_round: int) -> None:
    proc, uri, _ = start_peer()
    sess_uri = uri.replace("PYRO:hard@", "PYRO:sess@")
    try:
        with Canary(uri) as canary:
            stats(uri)
            base = proc_status(proc.pid)
            base_stats = stats(uri)
            for _ in range(rounds):
                caller = start(
                    [
                        "python",
                        "tests/integration/hard_peer.py",
                        "caller",
                        sess_uri,
                        str(per_round),
                        "2.0",
                    ]
                )
                try:
                    caller.wait_for_line("CALLER READY", timeout=15)
                    wait_for(lambda: stats(uri)["active"] >= per_round, 5, message="calls running")
                finally:
                    caller.kill()
            killed_at = time.monotonic()

            seen: list[object] = []

            def back() -> bool:
                now = stats(uri)
                status = proc_status(proc.pid)
                seen[:] = [now, status["sockets"], status["pollers"]]
                return (
                    status["sockets"] <= base["sockets"]
                    and status["pollers"] <= base["pollers"] + MAX_KEPT
                    and now["connections"] == base_stats["connections"]
                    and now["sessions"] == base_stats["sessions"]
                    and now["tasks"] <= base_stats["tasks"]
                    and now["inflight"] == base_stats["inflight"]
                )

            wait_for(
                back,
                5,
                message=lambda: (
                    f"baseline {base_stats}, sockets {base['sockets']}, pollers "
                    f"{base['pollers']}; now {seen}"
                ),
            )
            recovered = time.monotonic() - killed_at
            final = stats(uri)
            threads = proc_status(proc.pid)["Threads"]
        print(
            f"client killed mid-call: {rounds} x {per_round} connections SIGKILLed during a "
            f"2 s call; fds/connections/sessions/tasks back to baseline {recovered:.2f} s after "
            f"the last kill; threads {base['Threads']} -> {threads} (pooled workers); "
            f"{canary.report()}"
        )
        assert recovered <= 5.0
        assert final["sessions"] == base_stats["sessions"]
        assert threads <= base["Threads"] + Config().workers
        assert canary.errors == []
    finally:
        proc.kill()


def test_client_killed_mid_call_releases_everything() -> None:
    client_killed(rounds=3, per_round=10)


@pytest.mark.soak
def test_client_killed_mid_call_soak() -> None:
    client_killed(rounds=int(100 * soak_scale()) or 1, per_round=10)


# --- G13: server killed mid-call -----------------------------------------------------------


def test_server_killed_mid_call_fails_every_call_at_once_and_runs_none_twice(
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "effects.log"
    proc, uri, port = start_peer({"HARD_LOG": str(log_file)})
    try:
        proxies = [remoteobj.Proxy(uri) for _ in range(10)]
        for proxy in proxies:
            proxy._bind()
        outcomes: dict[str, tuple[BaseException | None, float]] = {}
        lock = threading.Lock()

        def call(i: int) -> None:
            tag = f"sync-{i}"
            try:
                proxies[i % 10].work(tag, 10.0)
                error: BaseException | None = None
            except BaseException as exc:
                error = exc
            with lock:
                outcomes[tag] = (error, time.monotonic())

        async def async_calls(n: int) -> list[tuple[BaseException | None, float]]:
            async with remoteobj.AsyncProxy(uri) as aproxy:
                await aproxy._bind()

                async def one(i: int) -> tuple[BaseException | None, float]:
                    try:
                        await aproxy.work(f"async-{i}", 10.0)
                        return None, time.monotonic()
                    except BaseException as exc:
                        return exc, time.monotonic()

                tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
                await asyncio.sleep(0)
                started.set()
                return await asyncio.gather(*tasks)

        started = threading.Event()
        async_result: list[Any] = []
        async_thread = threading.Thread(
            target=lambda: async_result.extend(asyncio.run(async_calls(16))), daemon=True
        )
        async_thread.start()
        threads = in_threads(84, call)
        started.wait(5)
        # Every connection's calls are in the daemon (64 workers run, the rest queue).
        wait_for(
            lambda: log_file.exists() and len(log_file.read_text().split()) >= 64,
            10,
            message="64 calls executing",
        )
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        for t in threads:
            t.join(5)
        async_thread.join(5)
        results = list(outcomes.values()) + async_result
        late = [t - killed for _, t in results if t - killed > 1.0]
        kinds = collections.Counter(type(e).__name__ for e, _ in results)
        not_sent = [e for e, _ in results if not getattr(e, "sent", False)]
        worst = max(t - killed for _, t in results)
        # Restart on the same port: nothing is re-sent by the proxies on their own.
        proc.wait(5)
        proc2, _, _ = start_peer({"HARD_LOG": str(log_file)}, port=port)
        try:
            for proxy in proxies:
                assert proxy.echo("back") == "back"
            executed = collections.Counter(log_file.read_text().split())
        finally:
            proc2.kill()
        for proxy in proxies:
            proxy._release()
        print(
            f"server killed mid-call: {len(results)} calls in flight; failed within "
            f"{worst * 1000:.0f} ms: {dict(kinds)}; executions per call max "
            f"{max(executed.values())} ({len(executed)} started before the kill)"
        )
        assert len(results) == 100
        assert set(kinds) == {"ConnectionClosedError"}
        assert not_sent == []  # sent=True: the caller knows it may have run
        assert late == []  # every call failed within 1 s of the kill
        assert max(executed.values()) == 1  # no call ran twice
    finally:
        proc.kill()


# --- G14: hung server / blackhole ---------------------------------------------------------


def timed_failures(uri: str, count: int, timeout: float) -> list[tuple[str, float]]:
    """``count`` calls (sync and async halves) with ``timeout``: (error type, seconds)."""
    out: list[tuple[str, float]] = []
    lock = threading.Lock()
    proxy = remoteobj.Proxy(uri)
    proxy._timeout = timeout

    def call(i: int) -> None:
        t0 = time.monotonic()
        try:
            proxy.echo(i)
            kind = "ok"
        except Exception as exc:
            kind = type(exc).__name__
        with lock:
            out.append((kind, time.monotonic() - t0))

    async def acalls() -> None:
        async with remoteobj.AsyncProxy(uri) as aproxy:
            aproxy._timeout = timeout

            async def one(i: int) -> None:
                t0 = time.monotonic()
                try:
                    await aproxy.echo(i)
                    kind = "ok"
                except Exception as exc:
                    kind = type(exc).__name__
                out.append((kind, time.monotonic() - t0))

            await asyncio.gather(*(one(i) for i in range(count // 2)))

    try:
        threads = in_threads(count - count // 2, call)
        asyncio.run(acalls())
        for t in threads:
            t.join(timeout + 5)
    finally:
        proxy._release()
    return out


def test_hung_server_calls_fail_at_their_timeout_and_recover_after() -> None:
    proc, uri, _ = start_peer()
    try:
        # Connected and idle before the hang, as pooled connections are.
        with remoteobj.Proxy(uri) as idle:
            idle._bind()
            before = proc_status(proc.pid)
            proc.send_signal(signal.SIGSTOP)
            try:
                # A connection made during the hang: TCP connects (the kernel answers),
                # the handshake times out.
                fresh = remoteobj.Proxy(uri, config=Config(connect_timeout=1.0))
                t0 = time.monotonic()
                with pytest.raises(RemoteTimeout):
                    fresh._bind()
                connect_took = time.monotonic() - t0
                results = timed_failures(uri.replace("hard", "hard"), 10, 2.0)
                idle._timeout = 2.0
                t0 = time.monotonic()
                with pytest.raises(RemoteTimeout):
                    idle.echo(1)
                idle_took = time.monotonic() - t0
            finally:
                proc.send_signal(signal.SIGCONT)
            idle._timeout = 5.0
            assert idle.echo("after") == "after"  # the late reply is dropped, not mixed up
            after = stats(uri)
            status = proc_status(proc.pid)
        kinds = collections.Counter(k for k, _ in results)
        spans = [d for _, d in results]
        print(
            f"hung server (SIGSTOP): {len(results)} calls with a 2 s timeout failed after "
            f"{min(spans):.2f}-{max(spans):.2f} s ({dict(kinds)}); handshake timed out after "
            f"{connect_took:.2f} s; idle pooled connection call {idle_took:.2f} s; threads "
            f"{before['Threads']} -> {status['Threads']}, tasks {after['tasks']}"
        )
        assert set(kinds) == {"TimeoutError"}
        assert all(2.0 <= d <= 2.5 for d in spans)
        assert 1.0 <= connect_took <= 1.5
        assert 2.0 <= idle_took <= 2.5
        assert status["Threads"] <= before["Threads"] + 4
    finally:
        proc.kill()


@pytest.fixture
def toxic() -> Iterator[tuple[ToxiProxy, str]]:
    """A fresh peer behind a fault-injecting proxy: (the proxy's toxics, the URI through it)."""
    proc, uri, port = start_peer()
    try:
        with ToxiProxy(("127.0.0.1", port)) as toxi:
            yield toxi, uri.replace(f":{port}", f":{toxi.port}")
    finally:
        proc.kill()


def test_blackholed_network_calls_fail_at_their_timeout(toxic: tuple[ToxiProxy, str]) -> None:
    toxi, via = toxic
    with remoteobj.Proxy(via) as proxy:
        assert proxy.echo(1) == 1
        hole = toxi.add("timeout", timeout=0)
        results = timed_failures(via, 6, 1.0)
        toxi.remove(hole)
        proxy._timeout = 5
        assert proxy.echo(2) == 2
    spans = [d for _, d in results]
    print(
        f"blackhole: {len(results)} calls with 1 s timeout failed after "
        f"{min(spans):.2f}-{max(spans):.2f} s"
    )
    assert {k for k, _ in results} == {"TimeoutError"}
    assert all(1.0 <= d <= 1.5 for d in spans)


def test_reset_peer_fails_calls_with_connection_closed(toxic: tuple[ToxiProxy, str]) -> None:
    toxi, via = toxic
    with remoteobj.Proxy(via) as proxy:
        assert proxy.echo(1) == 1
        toxi.add("reset_peer", timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosedError) as info:
            proxy.sleep(2.0)
        took = time.monotonic() - t0
        assert info.value.sent is True
        toxi.clear()
        assert proxy.echo(2) == 2  # reconnects on the next call
    print(f"reset_peer: in-flight call failed after {took:.2f} s (reset at 0.3 s)")
    assert took <= 1.0


def test_latency_and_slicer_toxics_do_not_break_framing(toxic: tuple[ToxiProxy, str]) -> None:
    toxi, via = toxic
    toxi.add("slicer", size=7, delay=0.0005)
    toxi.add("latency", latency=0.02, jitter=0.01)
    with remoteobj.Proxy(via) as proxy:
        payloads = [{"i": i, "s": "x" * (i * 37)} for i in range(20)]
        assert [proxy.echo(v) for v in payloads] == payloads
    toxi.clear()
    toxi.add("bandwidth", rate=200_000)
    with remoteobj.Proxy(via) as proxy:
        t0 = time.monotonic()
        assert len(proxy.text(100_000)) == 100_000
        took = time.monotonic() - t0
    assert took >= 0.4  # 100 kB at 200 kB/s: the toxic really throttled


# --- G15: proxy reuse after a restart -------------------------------------------------------


def proxy_reuse(restarts: int) -> None:
    proc, uri, port = start_peer()
    errors_per_restart = []
    recover_times = []
    try:
        with remoteobj.Proxy(uri) as proxy, remoteobj.Proxy(uri) as idle:
            assert proxy.echo(0) == 0
            assert idle.echo(0) == 0
            for n in range(restarts):
                proc.kill()
                proc, _, _ = start_peer(port=port)
                up = time.monotonic()
                errors = 0
                while True:
                    try:
                        assert proxy.echo(n) == n
                        break
                    except CommunicationError:
                        errors += 1
                        assert errors <= 1, "more than one error for one restart"
                recover_times.append(time.monotonic() - up)
                errors_per_restart.append(errors)
            assert idle.echo("idle") == "idle"  # idle through all restarts: reconnects
        per_restart = dict(collections.Counter(errors_per_restart))
        print(
            f"proxy reuse: {restarts} restarts, errors per restart {per_restart}, "
            f"first good call {max(recover_times) * 1000:.0f} ms after the daemon was up (worst)"
        )
        assert max(errors_per_restart) <= 1
        assert max(recover_times) <= 1.0
    finally:
        proc.kill()


def test_proxy_reuse_after_restart() -> None:
    proxy_reuse(5)


@pytest.mark.soak
def test_proxy_reuse_after_restart_soak() -> None:
    proxy_reuse(int(50 * soak_scale()) or 1)


# --- G19: graceful shutdown ----------------------------------------------------------------


def graceful(calls: int, grace: float, seconds: float) -> None:
    proc, uri, _ = start_peer({"REMOTEOBJ_SHUTDOWN_GRACE": str(grace)})
    try:
        connections = max(1, calls // 10)
        proxies = [remoteobj.Proxy(uri) for _ in range(connections)]
        for proxy in proxies:
            proxy._bind()
        results: list[tuple[str, float]] = []
        lock = threading.Lock()

        def call(i: int) -> None:
            try:
                proxies[i % connections].track(seconds)
                kind = "ok"
            except Exception as exc:
                kind = type(exc).__name__
            with lock:
                results.append((kind, time.monotonic()))

        threads = in_threads(calls, call)
        wait_for(lambda: stats(uri)["active"] >= min(calls, 64), 5, message="calls running")
        proc.send_signal(signal.SIGTERM)
        stop_at = time.monotonic()
        # New connections are refused at once, not left hanging.
        time.sleep(0.1)
        t0 = time.monotonic()
        with pytest.raises(CommunicationError):
            remoteobj.Proxy(uri, config=Config(connect_timeout=3))._bind()
        refused_in = time.monotonic() - t0
        proc.wait_for_line("^STOPPED", timeout=grace + 5)
        proc.wait(5)
        exited = time.monotonic() - stop_at
        for t in threads:
            t.join(5)
        hung = [t for t in threads if t.is_alive()]
        for proxy in proxies:
            proxy._release()
        kinds = collections.Counter(k for k, _ in results)
        print(
            f"graceful shutdown (grace {grace} s): {calls} x {seconds} s calls in flight -> "
            f"{dict(kinds)}; new connection refused in {refused_in * 1000:.0f} ms; "
            f"exited {exited:.2f} s after SIGTERM"
        )
        assert hung == []
        assert refused_in <= 0.5
        if grace >= seconds * (1 + calls // 64):
            assert kinds == {"ok": calls}
            assert exited <= grace + 1.0
        else:
            assert exited <= grace + 1.0
            assert "ok" not in kinds or kinds["ok"] < calls
            assert set(kinds) <= {"ok", "ConnectionClosedError"}
    finally:
        proc.kill()


def test_graceful_shutdown_finishes_calls_in_flight_and_refuses_new() -> None:
    graceful(calls=50, grace=5.0, seconds=1.0)


def test_graceful_shutdown_with_short_grace_ends_calls_and_exits() -> None:
    graceful(calls=50, grace=0.5, seconds=3.0)


@pytest.mark.soak
def test_graceful_shutdown_soak() -> None:
    graceful(calls=200, grace=5.0, seconds=1.0)


# --- G20: deadlines -------------------------------------------------------------------------


def test_call_deadlines_are_kept_sync_and_async() -> None:
    proc, uri, _ = start_peer()
    try:
        with remoteobj.Proxy(uri) as proxy:
            proxy._bind()
            proxy._timeout = 0.5
            t0 = time.monotonic()
            with pytest.raises(RemoteTimeout):
                proxy.sleep(2.0)
            sync_took = time.monotonic() - t0
            proxy._timeout = 5
            assert proxy.echo("next") == "next"  # the late reply is not mistaken for this one

        async def acall() -> float:
            async with remoteobj.AsyncProxy(uri) as aproxy:
                await aproxy._bind()
                aproxy._timeout = 0.5
                t0 = time.monotonic()
                with pytest.raises(RemoteTimeout):
                    await aproxy.asleep(2.0)
                took = time.monotonic() - t0
                aproxy._timeout = 5
                assert await aproxy.echo("next") == "next"
                return took

        async_took = asyncio.run(acall())
        print(
            f"deadlines: 0.5 s timeout on a 2 s call: sync {sync_took:.3f} s, "
            f"async {async_took:.3f} s"
        )
        assert 0.5 <= sync_took <= 0.6
        assert 0.5 <= async_took <= 0.6
        # builtins.TimeoutError catches it too.
        assert issubclass(RemoteTimeout, TimeoutError)
    finally:
        proc.kill()


def test_listening_socket_refuses_when_the_daemon_is_gone() -> None:
    proc, _, port = start_peer()
    proc.kill()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


# --- G22: a real Pyro5 client under load and faults --------------------------------------

PYRO5_CLIENT = """
import json, sys, threading, time
from Pyro5 import api, errors

uri, mode = sys.argv[1], sys.argv[2]
if mode == "load":
    ok, bad, failed = [0], [], []
    lock = threading.Lock()

    def run(i):
        with api.Proxy(uri) as proxy:
            for n in range(int(sys.argv[4])):
                key = f"p5/{i}/{n}"
                try:
                    result = proxy.once(key, {"key": key, "n": n})
                except errors.PyroError as exc:
                    failed.append(repr(exc))
                    continue
                with lock:
                    if list(result) == [key, {"key": key, "n": n}]:
                        ok[0] += 1
                    else:
                        bad.append(key)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(int(sys.argv[3]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("RESULT", json.dumps({"ok": ok[0], "bad": bad, "failed": failed}), flush=True)
else:
    proxy = api.Proxy(uri)
    proxy._pyroBind()
    print("CALLING", flush=True)
    try:
        proxy.work("pyro5-call", 10.0)
        print("RESULT returned", flush=True)
    except errors.ConnectionClosedError:
        print("RESULT ConnectionClosedError", time.monotonic(), flush=True)
    while True:  # the daemon is back: Pyro5 (MAX_RETRIES=0) reconnects on the next call
        try:
            print("AGAIN", proxy.echo("back"), flush=True)
            break
        except errors.CommunicationError:
            time.sleep(0.05)
"""


def test_pyro5_client_under_load_and_daemon_kill(tmp_path: Path) -> None:
    script = tmp_path / "pyro5_client.py"
    script.write_text(PYRO5_CLIENT)
    log_file = tmp_path / "effects.log"
    proc, uri, port = start_peer({"HARD_LOG": str(log_file)})
    try:
        loader = start(["python", str(script), uri, "load", "20", "25"])
        try:
            line = loader.wait_for_line(r"^RESULT ", timeout=60).string
        finally:
            loader.kill()
        result = json_loads(line.split(" ", 1)[1])
        server = stats(uri)
        assert result == {"ok": 500, "bad": [], "failed": []}
        assert server["once_calls"] == 500 and server["duplicates"] == 0
        caller = start(["python", str(script), uri, "kill"])
        try:
            caller.wait_for_line("^CALLING", timeout=20)
            wait_for(lambda: log_file.exists() and "pyro5-call" in log_file.read_text(), 10)
            proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            failed_at = float(
                caller.wait_for_line(r"^RESULT ConnectionClosedError", 5).string.split()[2]
            )
            proc.wait(5)
            proc, _, _ = start_peer({"HARD_LOG": str(log_file)}, port=port)
            caller.wait_for_line(r"^AGAIN back$", timeout=10)
        finally:
            caller.kill()
        runs = log_file.read_text().split().count("pyro5-call")
        print(
            f"pyro5 client: 20 x 25 calls 0 lost/mismatched; daemon killed mid-call -> "
            f"ConnectionClosedError after {(failed_at - killed) * 1000:.0f} ms, ran {runs} time(s)"
        )
        assert failed_at - killed <= 1.0
        assert runs == 1
    finally:
        proc.kill()

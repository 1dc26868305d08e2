"""The daemon the hardening tests attack: ``python tests/integration/hard_peer.py PORT``.

Serves :class:`Hard` as ``hard`` on 127.0.0.1:PORT with ``Config.from_env()``
(tests pass ``REMOTEOBJ_FRAME_TIMEOUT`` and friends), prints ``READY <uri>``
and serves until SIGTERM/SIGINT, which starts ``Daemon.shutdown()`` with
``Config.shutdown_grace``; prints ``STOPPED`` when serving has ended.

``HARD_LOG=<file>`` makes :meth:`Hard.work` append one line per execution
(flushed at once), so a test can count how often a call ran even after the
process was SIGKILLed. ``HARD_CPU=<n>`` pins the process to CPU ``n``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import remoteobj
from remoteobj import Config, Daemon
from remoteobj import protocol as p
from remoteobj.serializers import get_serializer


@remoteobj.expose
class Hard:
    """Echo, sleeps, a side-effect log and counters to read the server's state."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._log_path = os.environ.get("HARD_LOG")
        self._lock = threading.Lock()
        self._oneway_ran = 0
        self._oneway_done = 0
        self._work_ran = 0
        self._keys: set[str] = set()
        self._active = 0
        self._max_active = 0
        self._duplicates = 0
        self._gate = threading.Event()

    def echo(self, value: Any) -> Any:
        return value

    def sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def thread(self) -> str:
        """The name of the thread this call runs in."""
        return threading.current_thread().name

    def gate(self, action: str) -> bool:
        """``"wait"``: wait (5 s at most) until another call says ``"open"``, then close
        the gate again; whether it opened. ``"open"``: open it."""
        if action == "open":
            self._gate.set()
            return True
        opened = self._gate.wait(5.0)
        self._gate.clear()
        return opened

    async def asleep(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    def work(self, tag: str, seconds: float) -> str:
        """A call with a side effect: logged once per execution, then a sleep."""
        with self._lock:
            self._work_ran += 1
            if self._log_path:
                with open(self._log_path, "a", encoding="utf-8") as log:
                    log.write(tag + "\n")
                    log.flush()
        time.sleep(seconds)
        return tag

    def once(self, key: str, payload: Any) -> Any:
        """Echo ``(key, payload)``; counts keys seen more than once (duplicated calls)."""
        with self._lock:
            if key in self._keys:
                self._duplicates += 1
            self._keys.add(key)
        return key, payload

    async def aonce(self, key: str, payload: Any) -> Any:
        """:meth:`once` as a coroutine method (runs on the event loop)."""
        return self.once(key, payload)

    def track(self, seconds: float) -> int:
        """Sleep while counting how many calls run at once; returns that count."""
        with self._lock:
            self._active += 1
            self._max_active = max(self._max_active, self._active)
            now = self._active
        time.sleep(seconds)
        with self._lock:
            self._active -= 1
        return now

    def unwrap(self, blob: Any) -> Any:
        """A :class:`SerializedBlob` argument: its info and what it holds."""
        return [blob.info, blob.deserialized()]

    def blob(self, size: int) -> bytes:
        return b"x" * size

    def text(self, size: int) -> str:
        return "x" * size

    @remoteobj.oneway
    def slow_oneway(self, seconds: float) -> None:
        with self._lock:
            self._oneway_ran += 1
        time.sleep(seconds)
        with self._lock:
            self._oneway_done += 1

    async def stats(self) -> dict[str, int]:
        """Counters of this process and of the server core (a coroutine: it runs on
        the event loop, so it answers even when every worker thread is busy)."""
        server = self._daemon._server
        return {
            "threads": threading.active_count(),
            "oneway_ran": self._oneway_ran,
            "oneway_done": self._oneway_done,
            "work_ran": self._work_ran,
            "once_calls": len(self._keys),
            "duplicates": self._duplicates,
            "max_active": self._max_active,
            "active": self._active,
            "sessions": Sess.live,
            "oneway_dropped": getattr(server, "_oneway_dropped", -1),
            "oneway_pending": getattr(server, "_oneway_pending", -1),
            "connections": len(getattr(server, "_conns", {})),
            "inflight": getattr(server, "_inflight", -1),
            "tasks": len(asyncio.all_tasks(server._loop)) if server and server._loop else -1,
            "kept": sum(len(kept) for kept in getattr(server, "_kept_sets", ())),
        }


# =============================================================================
# Helpers for the tests (imported by tests/integration/test_hard_*.py)
# =============================================================================


def start_peer(
    env: dict[str, str] | None = None, *, cpu: int | None = 0, port: int | None = None
) -> tuple[Any, str, int]:
    """Start this daemon in a child process; ``(proc, uri, port)`` once it serves."""
    from tests.procs import free_port, start

    port = free_port() if port is None else port
    extra = dict(env or {})
    if cpu is not None and (os.cpu_count() or 1) > 1:
        extra.setdefault("HARD_CPU", str(cpu))
    proc = start(["python", "tests/integration/hard_peer.py", str(port)], env=extra)
    try:
        uri = proc.wait_for_line(r"^READY (\S+)", timeout=15).group(1)
    except BaseException:
        proc.kill()
        raise
    return proc, uri, port


def seconds_until_closed(socks: list[tuple[socket.socket, float]], limit: float) -> list[float]:
    """For each ``(socket, opened_at)``: read until the server closes it (or ``limit``
    seconds after it was opened, whichever is first); how long after opening that was.
    Closes the sockets."""
    closed_after = []
    for sock, opened in socks:
        sock.settimeout(max(0.05, opened + limit - time.monotonic()))
        try:
            while sock.recv(4096):
                pass
        except (ConnectionResetError, TimeoutError):
            pass
        closed_after.append(time.monotonic() - opened)
        sock.close()
    return closed_after


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM/VmRSS (KiB), Threads and open FDs of a process, from /proc; of those FDs,
    ``sockets`` (connections and listeners) and ``pollers`` (epoll instances: the
    event loop's, and one per worker set, kept for reuse, at most MAX_KEPT)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "Threads"):
                out[key] = int(value.split()[0])
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    out["fds"] = len(targets)
    out["sockets"] = sum(target.startswith("socket:") for target in targets)
    out["pollers"] = sum(target == "anon_inode:[eventpoll]" for target in targets)
    return out


def invoke_frame(
    method: str,
    args: Any = (),
    seq: int = 1,
    flags: int = 0,
    *,
    object_id: str = "hard",
    kwargs: dict[str, Any] | None = None,
) -> bytes:
    """An INVOKE frame in serpent (``kwargs=None`` with FLAGS_BATCH, as Pyro5 sends batches)."""
    if kwargs is None and not flags & p.FLAGS_BATCH:
        kwargs = {}
    data = get_serializer("serpent").dumps_call(object_id, method, args, kwargs)
    return p.encode(p.Message(p.MSG_INVOKE, 1, seq, data, flags))


class RawConn:
    """A blocking raw socket speaking frames, for hostile clients."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = p.MessageReader(64 * 1024 * 1024, allow_compressed=True)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, object_id: str = "hard", serializer: str = "serpent") -> Any:
        """Send a valid CONNECT and return the reply message."""
        ser = get_serializer(serializer)
        payload = ser.dumps({"handshake": "hello", "object": object_id})
        self.send(p.encode(p.Message(p.MSG_CONNECT, ser.serializer_id, 0, payload)))
        msg = self.read()
        assert msg is not None, "closed during the handshake"
        return msg

    def invoke(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Send :func:`invoke_frame` ``(method, *args, **kwargs)``."""
        self.send(invoke_frame(method, *args, **kwargs))

    def read(self, timeout: float = 5.0) -> Any:
        """The next message, or ``None`` if the server closed the connection."""
        self.sock.settimeout(timeout)
        while (msg := self.reader.next_message()) is None:
            try:
                data = self.sock.recv(256 * 1024)
            except ConnectionResetError:
                return None
            except TimeoutError:
                raise TimeoutError("no reply") from None
            if not data:
                return None
            self.reader.feed(data)
        return msg

    def closed_within(self, timeout: float) -> bool:
        """Whether the server closes the connection (EOF/RST) within ``timeout``; data ignored."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(256 * 1024)
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
            if not data:
                return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Canary:
    """A bystander in its own process (CPU 1): ``echo(1)`` every ``interval`` seconds.

    Its latencies are measured where no attacker shares its interpreter, so
    they show the server's responsiveness, not the test process's load.
    """

    def __init__(self, uri: str, interval: float = 0.01, env: dict[str, str] | None = None) -> None:
        self.uri = uri
        self.interval = interval
        self.env = dict(env or {})
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._proc: Any = None

    def __enter__(self) -> Canary:
        from tests.procs import start

        env = dict(self.env)
        if (os.cpu_count() or 1) > 1:
            env.setdefault("HARD_CPU", "1")
        argv = ["python", "tests/integration/hard_peer.py", "canary", self.uri, str(self.interval)]
        self._proc = start(argv, env=env)
        self._proc.wait_for_line(r"^CANARY READY", timeout=15)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the canary and collect its measurements."""
        import json

        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.stop(signal.SIGTERM)
        line = proc.wait_for_line(r"^CANARY RESULT ", timeout=5).string
        result = json.loads(line.split(" ", 2)[2])
        self.latencies = result["latencies"]
        self.errors = result["errors"]

    def p99(self) -> float:
        """99th percentile latency in seconds."""
        data = sorted(self.latencies)
        assert data, "the canary made no call"
        return data[min(len(data) - 1, int(len(data) * 0.99))]

    def report(self) -> str:
        data = sorted(self.latencies)
        if not data:
            return f"canary: no calls, errors {self.errors[:3]}"
        return (
            f"canary: {len(data)} calls, p50 {data[len(data) // 2] * 1000:.1f} ms, "
            f"p99 {self.p99() * 1000:.1f} ms, max {data[-1] * 1000:.1f} ms, "
            f"{len(self.errors)} errors"
        )


def canary_main(uri: str, interval: float) -> None:
    """The canary process: call until SIGTERM, then print the latencies as JSON."""
    import json

    cpu = os.environ.get("HARD_CPU")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    latencies: list[float] = []
    errors: list[str] = []
    with remoteobj.Proxy(uri) as proxy:
        proxy._bind()
        proxy.echo(1)
        print("CANARY READY", flush=True)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                proxy.echo(1)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                proxy._release()
            else:
                latencies.append(time.perf_counter() - started)
            stop.wait(interval)
    print("CANARY RESULT", json.dumps({"latencies": latencies, "errors": errors}), flush=True)


def soak_scale() -> float:
    """``RO_SOAK_SCALE`` (1.0 = the full size of THREATS.md; soak runs default to 1)."""
    return float(os.environ.get("RO_SOAK_SCALE", "1"))


def load_main(uri: str, clients: int, calls: int, kind: str, prefix: str) -> None:
    """A load process: ``clients`` connections x ``calls`` unique calls each, checked.

    ``kind`` "async": one AsyncProxy per client on one event loop, two calls in
    flight per connection (so replies are routed by seq); "sync": one Proxy per
    client, shared by two threads. Prints ``LOAD RESULT <json>``.
    """
    import json
    import random

    cpu = os.environ.get("HARD_CPU")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    ok = 0
    mismatched: list[str] = []
    errors: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def check(key: str, payload: Any, result: Any, took: float) -> None:
        nonlocal ok
        with lock:
            latencies.append(took)
            if isinstance(result, (list, tuple)) and list(result) == [key, payload]:
                ok += 1
            else:
                mismatched.append(f"{key}: {result!r:.80}")

    def payload_for(key: str) -> Any:
        return {"key": key, "nonce": random.getrandbits(64), "pad": "p" * random.randint(0, 64)}

    print("LOAD READY", flush=True)
    started = time.monotonic()
    if kind == "async":

        async def client(i: int) -> None:
            async with remoteobj.AsyncProxy(uri) as proxy:

                async def lane(lane_no: int) -> None:
                    for n in range(lane_no, calls, 2):
                        key = f"{prefix}/{i}/{n}"
                        payload = payload_for(key)
                        t0 = time.perf_counter()
                        try:
                            method = proxy.aonce if n % 4 == 3 else proxy.once
                            result = await method(key, payload)
                        except Exception as exc:
                            errors.append(f"{key}: {type(exc).__name__}: {exc}")
                            continue
                        check(key, payload, result, time.perf_counter() - t0)

                await asyncio.gather(lane(0), lane(1))

        async def run() -> None:
            await asyncio.gather(*(client(i) for i in range(clients)))

        asyncio.run(run())
    else:

        def sync_client(i: int) -> None:
            with remoteobj.Proxy(uri) as proxy:

                def lane(lane_no: int) -> None:
                    for n in range(lane_no, calls, 2):
                        key = f"{prefix}/{i}/{n}"
                        payload = payload_for(key)
                        t0 = time.perf_counter()
                        try:
                            result = proxy.once(key, payload)
                        except Exception as exc:
                            with lock:
                                errors.append(f"{key}: {type(exc).__name__}: {exc}")
                            continue
                        check(key, payload, result, time.perf_counter() - t0)

                other = threading.Thread(target=lane, args=(1,))
                other.start()
                lane(0)
                other.join()

        threads = [threading.Thread(target=sync_client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    took = time.monotonic() - started
    latencies.sort()
    result = {
        "ok": ok,
        "mismatched": mismatched[:20],
        "mismatched_count": len(mismatched),
        "errors": errors[:20],
        "error_count": len(errors),
        "seconds": took,
        "p50": latencies[len(latencies) // 2] if latencies else None,
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else None,
        "max": latencies[-1] if latencies else None,
    }
    print("LOAD RESULT", json.dumps(result), flush=True)


def caller_main(uri: str, count: int, seconds: float) -> None:
    """``count`` connections each calling ``track(seconds)`` (to be SIGKILLed mid-call)."""
    proxies = [remoteobj.Proxy(uri) for _ in range(count)]
    for proxy in proxies:
        proxy._bind()
    print("CALLER READY", flush=True)
    threads = [threading.Thread(target=proxy.track, args=(seconds,)) for proxy in proxies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("CALLER DONE", flush=True)


@remoteobj.behavior("session")
@remoteobj.expose
class Sess:
    """One instance per connection; counts the instances alive (session objects)."""

    live = 0
    hard: Hard | None = None

    def __init__(self) -> None:
        with _sess_lock:
            Sess.live += 1

    def __del__(self) -> None:
        with _sess_lock:
            Sess.live -= 1

    def track(self, seconds: float) -> int:
        assert Sess.hard is not None
        return Sess.hard.track(seconds)


_sess_lock = threading.Lock()


def main() -> None:
    if sys.argv[1] == "caller":
        caller_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    if sys.argv[1] == "canary":
        canary_main(sys.argv[2], float(sys.argv[3]))
        return
    if sys.argv[1] == "load":
        load_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
        return
    port = int(sys.argv[1])
    nofile = os.environ.get("HARD_NOFILE")
    if nofile is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (int(nofile), int(nofile)))
    cpu = os.environ.get("HARD_CPU")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    config = Config.from_env()
    daemon = Daemon("127.0.0.1", port, config=config)
    hard = Hard(daemon)
    uri = daemon.register(hard, "hard")
    Sess.hard = hard
    daemon.register(Sess, "sess")

    def stop(signum: int, frame: Any) -> None:
        daemon.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("READY", uri, flush=True)
    daemon.request_loop()
    daemon.close()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    main()

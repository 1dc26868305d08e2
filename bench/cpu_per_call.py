"""Each side's CPU per sequential call, measured alone, remoteobj and Pyro5 alternating.

::

    python bench/cpu_per_call.py [--serializer msgpack] [--calls 20000] [--rounds 3]

- **client**: a proxy (remoteobj or Pyro5) calls ``ping()`` on a canned-reply
  server thread in the same process (a few lines of Python that answer every
  INVOKE with the same RESULT), so the client's own CPU is the thread's
  ``thread_time``; a raw ``sendall``/``recv`` loop against the same thread is
  the floor.
- **server**: a lean raw client sends prebuilt INVOKE frames to
  ``bench/servers.py`` (remoteobj or Pyro5, or the raw echo server) and reads
  each reply; the server's CPU is its process CPU time (``psutil``).

Both run *warm* (everything on CPU 0: no cross-CPU wake-ups, caches stay hot,
which isolates the code's own cost) and *cross* (server on CPU 1, client on
CPU 0, as ``bench/run.py`` does). Prints a Markdown table of medians.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import psutil  # type: ignore[import-untyped]  # noqa: E402

from remoteobj import protocol as p  # noqa: E402
from remoteobj.serializers import get_serializer  # noqa: E402

META = {"methods": ["ping"], "oneway": [], "attrs": []}


def canned_server(serializer: str) -> int:
    """A server thread answering CONNECT with CONNECTOK and every INVOKE with ``None``."""
    ser = get_serializer(serializer)
    ok = ser.dumps({"meta": META, "handshake": None})
    none = ser.dumps(None)
    lsock = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = p.MessageReader(1 << 20)
        while data := conn.recv(65536):
            reader.feed(data)
            while (msg := reader.next_message()) is not None:
                kind, payload = (
                    (p.MSG_CONNECTOK, ok) if msg.type == p.MSG_CONNECT else (p.MSG_RESULT, none)
                )
                conn.sendall(p.encode(p.Message(kind, msg.serializer_id, msg.seq, payload)))

    def accept() -> None:
        while True:
            conn, _ = lsock.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(lsock.getsockname()[1])


def client_call(kind: str, port: int, serializer: str) -> Callable[[], object]:
    uri = f"PYRO:obj@127.0.0.1:{port}"
    if kind == "remoteobj":
        import remoteobj

        proxy = remoteobj.Proxy(uri, config=remoteobj.Config(serializer=serializer))
        return lambda: proxy.ping()  # noqa: PLW0108 - looked up per call, as users do
    if kind == "pyro5":
        import Pyro5.api

        pproxy = Pyro5.api.Proxy(uri)
        pproxy._pyroSerializer = serializer
        return lambda: pproxy.ping()  # noqa: PLW0108 - looked up per call, as users do
    ser = get_serializer(serializer)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    hello = ser.dumps({"handshake": None, "object": "obj"})
    sock.sendall(p.encode(p.Message(p.MSG_CONNECT, ser.serializer_id, 0, hello)))
    sock.recv(65536)
    frame = p.encode(
        p.Message(p.MSG_INVOKE, ser.serializer_id, 1, ser.dumps_call("obj", "ping", (), {}))
    )

    def raw() -> object:
        sock.sendall(frame)
        return sock.recv(65536)

    return raw


def client_cpu(kind: str, serializer: str, calls: int, cpus: tuple[int, int]) -> float:
    """µs of the calling thread's CPU per call (the canned server runs on ``cpus[0]``)."""
    os.sched_setaffinity(0, {cpus[1]})
    call = client_call(kind, canned_port(serializer, cpus[0]), serializer)
    for _ in range(1000):
        call()
    start = time.thread_time()
    for _ in range(calls):
        call()
    return (time.thread_time() - start) / calls * 1e6


_PORTS: dict[tuple[str, int], int] = {}


def canned_port(serializer: str, cpu: int) -> int:
    # One canned server per serializer; its threads inherit the affinity set here.
    key = (serializer, cpu)
    if key not in _PORTS:
        os.sched_setaffinity(0, {cpu})
        _PORTS[key] = canned_server(serializer)
    return _PORTS[key]


def server_cpu(kind: str, serializer: str, calls: int, cpus: tuple[int, int]) -> float:
    """µs of ``bench/servers.py KIND``'s process CPU per call under a lean raw client."""
    os.sched_setaffinity(0, {cpus[1]})
    argv = ["taskset", "-c", str(cpus[0]), sys.executable, str(BENCH / "servers.py"), kind, "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        target = proc.stdout.readline().split()[1]
        ser = get_serializer(serializer)
        if kind.startswith("raw"):
            sock = socket.create_connection(("127.0.0.1", int(target)))
            frame = b"x" * 64
        else:
            port, obj = int(target.rsplit(":", 1)[1]), target.split(":")[1].split("@")[0]
            sock = socket.create_connection(("127.0.0.1", port))
            hello = ser.dumps({"handshake": None, "object": obj})
            sock.sendall(p.encode(p.Message(p.MSG_CONNECT, ser.serializer_id, 0, hello)))
            reader = p.MessageReader(1 << 20)
            while reader.next_message() is None:
                reader.feed(sock.recv(65536))
            body = ser.dumps_call(obj, "ping", (), {})
            frame = p.encode(p.Message(p.MSG_INVOKE, ser.serializer_id, 1, body))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(2000):
            sock.sendall(frame)
            sock.recv(65536)
        server = psutil.Process(proc.pid)
        before = server.cpu_times()
        for _ in range(calls):
            sock.sendall(frame)
            sock.recv(65536)
        after = server.cpu_times()
        sock.close()
        used = after.user + after.system - before.user - before.system
        return float(used) / calls * 1e6
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serializer", default="msgpack")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    placements = {"warm": (0, 0), "cross": (1, 0)}
    results: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.rounds):
        for side, measure, kinds in (
            ("client", client_cpu, ("raw", "pyro5", "remoteobj")),
            ("server", server_cpu, ("raw-thread", "pyro5", "remoteobj")),
        ):
            for where, cpus in placements.items():
                for kind in kinds:
                    value = measure(kind, args.serializer, args.calls, cpus)
                    results.setdefault((side, where, kind), []).append(value)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    print(
        f"`python bench/cpu_per_call.py --serializer {args.serializer}` ({stamp}), "
        f"{args.calls} calls, medians of {args.rounds} rounds; µs of CPU per call\n"
    )
    print("| side | placement | raw socket | Pyro5 | remoteobj | remoteobj / Pyro5 |")
    print("|---|---|---:|---:|---:|---:|")
    for side, raw in (("client", "raw"), ("server", "raw-thread")):
        for where in placements:
            med: dict[str, Any] = {
                k: statistics.median(results[(side, where, k)]) for k in (raw, "pyro5", "remoteobj")
            }
            print(
                f"| {side} | {where} | {med[raw]:.1f} | {med['pyro5']:.1f} | "
                f"{med['remoteobj']:.1f} | {med['remoteobj'] / med['pyro5']:.2f} |"
            )


if __name__ == "__main__":
    main()

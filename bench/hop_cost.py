"""What does handing a request to a worker thread cost? (the execution-model decision)

Runs one echo server per model in a child process pinned to CPU 1, and a
sequential blocking client pinned to CPU 0 that does 40-byte round trips.
Models, alternated over several rounds:

- ``thread``   : a thread per connection doing blocking recv/send (Pyro5's model)
- ``loop``     : asyncio reads and replies on the event loop (no thread at all)
- ``handoff``  : the loop reads, a worker thread (SimpleQueue) replies on the socket
- ``executor`` : the loop reads, ``run_in_executor`` runs, the loop writes the reply
- ``linger``   : handoff, then the worker keeps reading the connection while it stays busy

Usage: ``python bench/hop_cost.py [--seconds 1.5] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import select
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Event, Process

FRAME = 40
MODELS = ("thread", "loop", "handoff", "executor", "linger")


def _pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def _recv_frame(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < FRAME:
        chunk = sock.recv(FRAME - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def serve_thread(lsock: socket.socket) -> None:
    while True:
        conn, _ = lsock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def run(c: socket.socket = conn) -> None:
            while data := _recv_frame(c):
                c.sendall(data)

        threading.Thread(target=run, daemon=True).start()


def serve_async(lsock: socket.socket, model: str) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    jobs: queue.SimpleQueue[tuple[socket.socket, bytes] | None] = queue.SimpleQueue()
    pool = ThreadPoolExecutor(4)

    def worker() -> None:
        while (job := jobs.get()) is not None:
            conn, data = job
            conn.sendall(data)

    def linger_worker() -> None:
        while (job := jobs.get()) is not None:
            conn, data = job
            conn.sendall(data)
            # keep the connection while it is busy: poll briefly for the next frame
            while select.select([conn], [], [], 0.005)[0]:
                nxt = conn.recv(FRAME)
                if not nxt:
                    break
                conn.sendall(nxt)
            loop.call_soon_threadsafe(loop.add_reader, conn.fileno(), on_readable, conn)

    if model in ("handoff", "linger"):
        for _ in range(4):
            target = linger_worker if model == "linger" else worker
            threading.Thread(target=target, daemon=True).start()

    def on_readable(conn: socket.socket) -> None:
        try:
            data = conn.recv(FRAME)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(conn.fileno())
            conn.close()
            return
        if model == "loop":
            conn.send(data)
        elif model == "handoff":
            jobs.put((conn, data))
        elif model == "linger":
            loop.remove_reader(conn.fileno())
            jobs.put((conn, data))
        else:
            fut = loop.run_in_executor(pool, bytes, data)
            fut.add_done_callback(lambda f: conn.send(f.result()))

    def on_accept() -> None:
        conn, _ = lsock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setblocking(model == "linger")
        loop.add_reader(conn.fileno(), on_readable, conn)

    loop = asyncio.new_event_loop()
    lsock.setblocking(False)
    loop.add_reader(lsock.fileno(), on_accept)
    loop.run_forever()


def server_main(model: str, port_box: object, ready: object) -> None:
    _pin(1)
    lsock = socket.create_server(("127.0.0.1", 0))
    port_box.value = lsock.getsockname()[1]  # type: ignore[attr-defined]
    ready.set()  # type: ignore[attr-defined]
    if model == "thread":
        serve_thread(lsock)
    else:
        serve_async(lsock, model)


def measure(port: int, seconds: float) -> float:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = b"x" * FRAME
    for _ in range(200):  # warm-up
        sock.sendall(payload)
        _recv_frame(sock)
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            sock.sendall(payload)
            _recv_frame(sock)
        n += 100
    elapsed = time.perf_counter() - start
    sock.close()
    return n / elapsed


def main() -> None:
    import multiprocessing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _pin(0)
    results: dict[str, list[float]] = {m: [] for m in MODELS}
    for _ in range(args.rounds):
        for model in MODELS:
            box = multiprocessing.Value("i", 0)
            ready = Event()
            proc = Process(target=server_main, args=(model, box, ready), daemon=True)
            proc.start()
            if not ready.wait(10):
                sys.exit("server did not start")
            results[model].append(measure(box.value, args.seconds))
            proc.kill()
            proc.join()
    base = statistics.median(results["thread"])
    print(f"{'model':<10} {'round trips/s (median)':>24} {'us/trip':>9} {'vs thread':>10}")
    for model in MODELS:
        rate = statistics.median(results[model])
        print(f"{model:<10} {rate:>24,.0f} {1e6 / rate:>9.1f} {rate / base:>10.2f}")


if __name__ == "__main__":
    main()

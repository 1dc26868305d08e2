"""One client process of the many-connections workload of ``bench/run.py``.

``python bench/load.py remoteobj|pyro5 URI CLIENTS THINK SECONDS``

Opens ``CLIENTS`` connections to ``URI`` (at most ``CONNECT_CONCURRENCY`` being
set up at once), prints ``CONNECTED <ok> <refused> <seconds>`` and waits for a
``GO`` line on stdin. Then every connected client loops for ``SECONDS``: one
``ping()`` call, then a random pause of 0 to ``2 * THINK`` seconds (so each
client makes about one call per ``THINK`` seconds). The process prints one JSON
line: ``{"calls", "errors", "refused", "connected", "lat_us": [...]}`` (the
latency of every successful call, in microseconds) and exits.

remoteobj clients are ``AsyncProxy`` objects on one event loop (uvloop when
installed); Pyro5 clients are threads with one ``Proxy`` each, as Pyro5 requires.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time
from typing import Any

CONNECT_CONCURRENCY = 32


def _report(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


async def _remoteobj(uri: str, clients: int, think: float, seconds: float) -> dict[str, Any]:
    import remoteobj

    proxies: list[remoteobj.AsyncProxy] = []
    refused = 0
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect() -> None:
        nonlocal refused
        proxy = remoteobj.AsyncProxy(uri)
        async with gate:
            try:
                await proxy._bind()
                await proxy.ping()
            except Exception:
                refused += 1
                await proxy._release()
                return
        proxies.append(proxy)

    t0 = time.perf_counter()
    await asyncio.gather(*(connect() for _ in range(clients)))
    print(f"CONNECTED {len(proxies)} {refused} {time.perf_counter() - t0:.3f}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # the GO line
    cpu = time.process_time()
    latencies: list[int] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(proxy: remoteobj.AsyncProxy) -> None:
        nonlocal errors
        await asyncio.sleep(random.uniform(0, think))  # spread the starts
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                await proxy.ping()
            except Exception:
                errors += 1
            else:
                latencies.append(int((time.perf_counter() - start) * 1e6))
            await asyncio.sleep(random.uniform(0, 2 * think))

    await asyncio.gather(*(client(p) for p in proxies))
    cpu = time.process_time() - cpu
    for proxy in proxies:
        await proxy._release()
    return {
        "calls": len(latencies) + errors,
        "errors": errors,
        "refused": refused,
        "connected": len(proxies),
        "cpu": cpu,
        "lat_us": latencies,
    }


def _pyro5(uri: str, clients: int, think: float, seconds: float) -> dict[str, Any]:
    import Pyro5.api

    threading.stack_size(512 * 1024)
    lock = threading.Lock()
    connect_gate = threading.Semaphore(CONNECT_CONCURRENCY)
    connected_evt = threading.Barrier(clients + 1)
    go = threading.Event()
    state: dict[str, Any] = {"connected": 0, "refused": 0, "errors": 0, "lat_us": []}
    deadline_box: list[float] = []

    def client() -> None:
        proxy = Pyro5.api.Proxy(uri)
        try:
            with connect_gate:
                proxy._pyroBind()
                proxy.ping()
        except Exception:
            with lock:
                state["refused"] += 1
            proxy._pyroRelease()
            connected_evt.wait()
            return
        with lock:
            state["connected"] += 1
        connected_evt.wait()
        go.wait()
        deadline = deadline_box[0]
        lat: list[int] = []
        errors = 0
        time.sleep(random.uniform(0, think))
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                proxy.ping()
            except Exception:
                errors += 1
            else:
                lat.append(int((time.perf_counter() - start) * 1e6))
            time.sleep(random.uniform(0, 2 * think))
        proxy._pyroRelease()
        with lock:
            state["errors"] += errors
            state["lat_us"].extend(lat)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    connected_evt.wait()
    print(
        f"CONNECTED {state['connected']} {state['refused']} {time.perf_counter() - t0:.3f}",
        flush=True,
    )
    sys.stdin.readline()  # the GO line
    deadline_box.append(time.perf_counter() + seconds)
    cpu = time.process_time()
    go.set()
    for t in threads:
        t.join()
    state["cpu"] = time.process_time() - cpu
    state["calls"] = len(state["lat_us"]) + state["errors"]
    return state


def main() -> None:
    system, uri = sys.argv[1], sys.argv[2]
    clients, think, seconds = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    if system == "remoteobj":
        try:
            import uvloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        except ImportError:
            runner = asyncio.Runner()
        with runner:
            result = runner.run(_remoteobj(uri, clients, think, seconds))
    else:
        result = _pyro5(uri, clients, think, seconds)
    _report(result)


if __name__ == "__main__":
    main()

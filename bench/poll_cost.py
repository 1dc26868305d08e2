"""What busy-polling costs: CPU per sequential call and CPU busy, with and without it.

::

    python bench/poll_cost.py [--calls 20000] [--rounds 2]

Back-to-back ``ping()`` calls on one proxy against three servers (remoteobj's
default daemon, the same with ``request_spin=0``, Pyro5's), the client with
``reply_spin`` at its default or ``0`` to match; pinned as ``bench/run.py``
pins (server CPU 1, client CPU 0). For each: calls/s, each side's CPU time
per call (user + system, psutil) and the share of a CPU each side kept busy.
Prints a Markdown table, one row per system, serializer and round.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import psutil  # type: ignore[import-untyped]  # noqa: E402
import Pyro5.api  # noqa: E402
from run import Procs, pin_client  # noqa: E402

import remoteobj  # noqa: E402


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def measure(call: Callable[[], object], server_pid: int, calls: int) -> tuple[float, ...]:
    """(calls/s, client µs/call, client CPU share, server µs/call, server CPU share)."""
    me, server = psutil.Process(), psutil.Process(server_pid)
    for _ in range(200):
        call()
    c0, s0, t0 = cpu_s(me), cpu_s(server), time.perf_counter()
    for _ in range(calls):
        call()
    elapsed = time.perf_counter() - t0
    client, served = cpu_s(me) - c0, cpu_s(server) - s0
    return (
        calls / elapsed,
        client / calls * 1e6,
        client / elapsed,
        served / calls * 1e6,
        served / elapsed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    server_cpus, _ = pin_client()
    procs = Procs()
    try:
        servers = {
            kind: procs.server(kind, server_cpus)
            for kind in ("remoteobj", "remoteobj-nopoll", "pyro5")
        }
        print(
            f"`python bench/poll_cost.py` ({time.strftime('%Y-%m-%d %H:%M')}), {args.calls} calls"
        )
        print()
        print(
            "| system | serializer | calls/s | client µs CPU/call | client CPU busy "
            "| server µs CPU/call | server CPU busy |"
        )
        print("|---|---|---:|---:|---:|---:|---:|")
        for _ in range(args.rounds):
            for serializer in ("serpent", "msgpack"):
                polling = remoteobj.Config(serializer=serializer)
                systems: list[tuple[str, str, remoteobj.Config | None]] = [
                    ("remoteobj, busy-polling", "remoteobj", polling),
                    (
                        "remoteobj, no busy-polling",
                        "remoteobj-nopoll",
                        polling.replace(reply_spin=0.0),
                    ),
                    ("Pyro5", "pyro5", None),
                ]
                for label, kind, config in systems:
                    uri, pid = servers[kind]
                    proxy: Any
                    if config is None:
                        proxy = Pyro5.api.Proxy(uri)
                        proxy._pyroSerializer = serializer
                    else:
                        proxy = remoteobj.Proxy(uri, config=config)
                    with proxy:
                        rate, c_us, c_busy, s_us, s_busy = measure(proxy.ping, pid, args.calls)
                    print(
                        f"| {label} | {serializer} | {rate:,.0f} | {c_us:.1f} | {c_busy:.0%} "
                        f"| {s_us:.1f} | {s_busy:.0%} |",
                        flush=True,
                    )
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()

"""1 MiB arguments and results with each library's client in a process of its own.

::

    python bench/big_alone.py [--calls 300] [--rounds 3] [--serializer msgpack]

``bench/run.py`` drives both libraries' proxies from one process. remoteobj
primes glibc's allocator there (``remoteobj.memory``), and Pyro5's client
profits from it too: in a process of its own, without it, Pyro5's client takes
hundreds of page faults per 1 MiB it receives. This script runs every client
in a fresh child process pinned to CPU 0 (servers from ``bench/servers.py`` on
CPU 1), alternating the libraries, and prints per call: wall time, the
client's CPU and its page faults (``getrusage``), for ``take(x)`` (1 MiB
argument, small result) and ``echo(x)`` (1 MiB both ways).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def client(kind: str, uri: str, method: str, calls: int, serializer: str) -> None:
    """Child: ``calls`` calls of ``method`` with 1 MiB; prints one JSON line."""
    sys.path.insert(0, str(REPO))
    proxy: object
    if kind == "remoteobj":
        import remoteobj

        proxy = remoteobj.Proxy(uri, config=remoteobj.Config(serializer=serializer))
    else:
        import Pyro5.api

        proxy = Pyro5.api.Proxy(uri)
        proxy._pyroSerializer = serializer  # type: ignore[attr-defined]
    blob = os.urandom(1 << 20)
    call = getattr(proxy, method)
    for _ in range(20):
        call(blob)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        call(blob)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(
        json.dumps({"ms": wall / calls * 1e3, "cpu": cpu / calls * 1e3, "faults": faults / calls})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serializer", default="msgpack")
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        kind, uri, method, calls = args.client
        client(kind, uri, method, int(calls), args.serializer)
        return
    servers = {}
    for kind in ("remoteobj", "pyro5"):
        argv = ["taskset", "-c", "1", sys.executable, str(BENCH / "servers.py"), kind, "0"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        servers[kind] = (proc, proc.stdout.readline().split()[1])
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for _ in range(args.rounds):
            for method in ("take", "echo"):
                for kind, (_, uri) in servers.items():
                    argv = ["taskset", "-c", "0", sys.executable, __file__, "--serializer"]
                    argv += [args.serializer, "--client", kind, uri, method, str(args.calls)]
                    out = subprocess.run(argv, capture_output=True, text=True, check=True)
                    results.setdefault((method, kind), []).append(json.loads(out.stdout))
    finally:
        for proc, _ in servers.values():
            proc.kill()
    stamp = time.strftime("%Y-%m-%d %H:%M")
    print(
        f"`python bench/big_alone.py --serializer {args.serializer}` ({stamp}), "
        f"{args.calls} calls x {args.rounds} rounds, medians; each client alone in its process\n"
    )
    print("| call | system | ms per call | client CPU, ms | client page faults per call |")
    print("|---|---|---:|---:|---:|")
    for method in ("take", "echo"):
        for kind in servers:
            rows = results[(method, kind)]
            med = {k: statistics.median(r[k] for r in rows) for k in ("ms", "cpu", "faults")}
            name = "take(1 MiB)" if method == "take" else "echo(1 MiB)"
            print(f"| {name} | {kind} | {med['ms']:.3f} | {med['cpu']:.3f} | {med['faults']:.0f} |")


if __name__ == "__main__":
    main()

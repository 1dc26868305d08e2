"""Name service throughput, remoteobj vs Pyro5 5.17, side by side in one run.

Measures, for each system with its own name server, daemon and proxies:

- ``lookup()/s``: sequential ``ns.lookup(name)`` calls on one name-server proxy;
- ``PYRONAME/s``: ``Proxy("PYRONAME:name@host:port")`` creation, first call and
  release, sequentially (name resolution + connect + handshake + call), with
  the default configuration (a resolution is reused for ``ns_cache_ttl``, 1 s)
  and, for reference, with ``ns_cache_ttl=0`` (the name server asked every
  time, as Pyro5 does);
- for reference, the same with the target's ``PYRO:`` URI (no name service):
  the part of the PYRONAME cost that is connection set-up, not naming.

The servers (name server and target daemon of each system) run as processes
pinned to one CPU, the client loop to another; the systems alternate in
short slices and medians are reported, with the ratio remoteobj / Pyro5::

    python bench/bench_ns.py [--seconds 1.0] [--rounds 5]

Targets (issue 3): lookups >= 1.3x, PYRONAME >= 3x.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import Pyro5.api

import remoteobj
from remoteobj import naming

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
NAME = "bench.target"

PYRO5_TARGET = r"""
import sys
import Pyro5.api

@Pyro5.api.expose
class Target:
    def ping(self):
        return 1

daemon = Pyro5.api.Daemon(host="127.0.0.1")
uri = daemon.register(Target(), "target")
Pyro5.api.locate_ns("127.0.0.1", int(sys.argv[1])).register(sys.argv[2], uri)
print("READY", uri, flush=True)
daemon.requestLoop()
"""

OUR_TARGET = r"""
import sys
import remoteobj

@remoteobj.expose
class Target:
    def ping(self):
        return 1

daemon = remoteobj.Daemon("127.0.0.1", 0)
uri = daemon.register(Target(), "target")
remoteobj.locate_ns("127.0.0.1", int(sys.argv[1])).register(sys.argv[2], uri)
print("READY", uri, flush=True)
daemon.request_loop()
"""


def _cpus() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs): one each when there are two or more."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return {available[1]}, {available[0]}


class Servers:
    """Child processes pinned to the server CPU, stopped by PID at exit."""

    def __init__(self, cpus: set[int] | None) -> None:
        self.cpus = cpus
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *argv: str, until: str) -> re.Match[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYRO_", "REMOTEOBJ_"))}
        env["PYTHONPATH"] = str(REPO)
        cpus = self.cpus
        proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        for line in proc.stdout:  # the child prints this line within a second or two
            match = re.search(until, line)
            if match:
                return match
            if time.monotonic() > deadline:
                break
        raise RuntimeError(f"{argv} did not print {until!r}")

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)


def rate(op: Callable[[], object], seconds: float) -> float:
    """Operations per second of ``op`` run back to back for about ``seconds``."""
    op()  # warm-up (and first connection) outside the timing
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            op()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


@contextlib.contextmanager
def systems(servers: Servers) -> Iterator[dict[str, dict[str, Callable[[], object]]]]:
    ours = servers.start("-m", "nameserver", "-n", HOST, "-p", "0", "-x", until=r"URI = (\S+)")
    theirs = servers.start(
        "-m", "Pyro5.nameserver", "-n", HOST, "-p", "0", "-x", until=r"URI = (\S+)"
    )
    our_port = ours.group(1).rsplit(":", 1)[1]
    their_port = theirs.group(1).rsplit(":", 1)[1]
    our_target = servers.start("-c", OUR_TARGET, our_port, NAME, until=r"READY (\S+)").group(1)
    their_target = servers.start("-c", PYRO5_TARGET, their_port, NAME, until=r"READY (\S+)").group(
        1
    )

    our_ns = remoteobj.Proxy(ours.group(1))
    their_ns = Pyro5.api.Proxy(theirs.group(1))

    def our_pyroname() -> object:
        with remoteobj.Proxy(f"PYRONAME:{NAME}@{HOST}:{our_port}") as p:
            return p.ping()

    ask_every_time = remoteobj.Config(ns_cache_ttl=0)

    def our_pyroname_uncached() -> object:
        with remoteobj.Proxy(f"PYRONAME:{NAME}@{HOST}:{our_port}", config=ask_every_time) as p:
            return p.ping()

    def their_pyroname() -> object:
        with Pyro5.api.Proxy(f"PYRONAME:{NAME}@{HOST}:{their_port}") as p:
            return p.ping()

    def our_direct() -> object:
        with remoteobj.Proxy(our_target) as p:
            return p.ping()

    def their_direct() -> object:
        with Pyro5.api.Proxy(their_target) as p:
            return p.ping()

    try:
        yield {
            "lookup()/s": {
                "remoteobj": lambda: our_ns.lookup(NAME),
                "Pyro5": lambda: their_ns.lookup(NAME),
            },
            "PYRONAME proxy + first call/s": {
                "remoteobj": our_pyroname,
                "Pyro5": their_pyroname,
            },
            "(ref) PYRONAME, ns_cache_ttl=0/s": {
                "remoteobj": our_pyroname_uncached,
                "Pyro5": their_pyroname,
            },
            "(ref) PYRO: proxy + first call/s": {
                "remoteobj": our_direct,
                "Pyro5": their_direct,
            },
        }
    finally:
        our_ns._release()
        their_ns._pyroRelease()
        naming._proxies.clear()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one slice")
    parser.add_argument("--rounds", type=int, default=5, help="slices per system and test")
    args = parser.parse_args(argv)
    server_cpus, client_cpus = _cpus()
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    servers = Servers(server_cpus)
    try:
        with systems(servers) as tests:
            results: dict[str, dict[str, list[float]]] = {}
            for test, ops in tests.items():
                results[test] = {system: [] for system in ops}
                for _ in range(args.rounds):
                    for system, op in ops.items():  # alternate within the run
                        results[test][system].append(rate(op, args.seconds))
    finally:
        servers.stop()
    pinning = (
        f"servers on CPU {sorted(server_cpus)}, client on CPU {sorted(client_cpus)}"
        if server_cpus and client_cpus
        else "not pinned (one CPU)"
    )
    slices = f"{args.rounds} x {args.seconds:g} s slices alternating"
    print(f"name service, {slices}, medians; {pinning}")
    print(f"{'':32}{'remoteobj':>12}{'Pyro5':>12}{'ratio':>9}")
    for test, by_system in results.items():
        ours = statistics.median(by_system["remoteobj"])
        theirs = statistics.median(by_system["Pyro5"])
        print(f"{test:32}{ours:12.0f}{theirs:12.0f}{ours / theirs:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

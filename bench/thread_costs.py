"""What a call costs each side when many client threads call at once.

::

    python bench/thread_costs.py [--threads 16,64] [--seconds 3]

For each thread count: remoteobj with one proxy shared by all threads, with
a proxy per thread, and Pyro5 with a proxy per thread (``bench/servers.py``
daemons, pinned as ``bench/run.py`` pins: server CPU 1, this client CPU 0),
every thread calling ``ping()`` back to back. After a one-second warm-up,
for ``--seconds``: calls/s, each side's CPU per call and the share of a CPU
it kept busy (psutil), and, where ``perf`` may count tracepoints, each
side's system calls and context switches per call (``perf stat -p``; per
request it sent or answered within perf's window).
Prints a Markdown table: which side is the limit, and what its CPU goes to.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import psutil  # type: ignore[import-untyped]  # noqa: E402
import Pyro5.api  # noqa: E402
from run import Procs, pin_client, pyro_proxy, ro_proxy  # noqa: E402

#: What perf counts per process: (event, column name).
EVENTS = (
    ("syscalls:sys_enter_futex", "futex"),
    ("syscalls:sys_enter_sendto", "send"),
    ("syscalls:sys_enter_recvfrom", "recv"),
    ("syscalls:sys_enter_epoll_wait", "epoll_wait"),
    ("syscalls:sys_enter_sched_yield", "sched_yield"),
    ("context-switches", "switches"),
)


def perf_usable() -> bool:
    """Whether ``perf stat`` can count syscall tracepoints here (root, or a lax
    ``perf_event_paranoid``)."""
    if shutil.which("perf") is None:
        return False
    probe = subprocess.run(
        ["perf", "stat", "-e", EVENTS[0][0], "--", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0


def perf_counts(pid: int, seconds: float) -> subprocess.Popen[str]:
    """Start counting ``pid``'s EVENTS for ``seconds`` (read them with :func:`parse_perf`)."""
    events = ",".join(event for event, _ in EVENTS)
    return subprocess.Popen(
        ["perf", "stat", "-x", ",", "-e", events, "-p", str(pid), "--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def parse_perf(proc: subprocess.Popen[str]) -> dict[str, float]:
    """The counts ``perf stat -x ,`` printed, by column name."""
    _, err = proc.communicate()
    names = dict(EVENTS)
    counts = {}
    for line in err.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in names and fields[0].isdigit():
            counts[names[fields[2]]] = float(fields[0])
    return counts


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def load(
    nthreads: int, opener: Callable[[], tuple[Callable[[], object], Callable[[], None]]]
) -> tuple[list[int], Callable[[], None]]:
    """Start ``nthreads`` threads calling back to back; their call counts, and a stop."""
    counts = [0] * nthreads
    stop = threading.Event()

    def worker(i: int) -> None:
        call, close = opener()
        try:
            while not stop.is_set():
                call()
                counts[i] += 1
        finally:
            close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(nthreads)]
    for thread in threads:
        thread.start()

    def end() -> None:
        stop.set()
        for thread in threads:
            thread.join(10)

    return counts, end


def measure(
    nthreads: int,
    opener: Callable[[], tuple[Callable[[], object], Callable[[], None]]],
    server_pid: int,
    seconds: float,
    perf: bool,
) -> dict[str, Any]:
    me, server = psutil.Process(), psutil.Process(server_pid)
    counts, end = load(nthreads, opener)
    try:
        time.sleep(1.0)  # connect and warm up
        counters = [perf_counts(pid, seconds) for pid in (server_pid, os.getpid())] if perf else []
        n0, c0, s0, t0 = sum(counts), cpu_s(me), cpu_s(server), time.perf_counter()
        time.sleep(seconds)
        n1, c1, s1, t1 = sum(counts), cpu_s(me), cpu_s(server), time.perf_counter()
    finally:
        end()
    calls, elapsed = n1 - n0, t1 - t0
    out: dict[str, Any] = {
        "rate": calls / elapsed,
        "client_us": (c1 - c0) / calls * 1e6,
        "client_busy": (c1 - c0) / elapsed,
        "server_us": (s1 - s0) / calls * 1e6,
        "server_busy": (s1 - s0) / elapsed,
    }
    if counters:
        # Per call = per request sent (client) or answered (server) while perf counted:
        # its window starts a little after ours.
        out["server"], out["client"] = (per_send(parse_perf(c)) for c in counters)
    return out


def per_send(counts: dict[str, float]) -> dict[str, float]:
    sends = counts.get("send") or 1.0
    return {name: count / sends for name, count in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="16,64", help="thread counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    server_cpus, _ = pin_client()
    perf = perf_usable()
    procs = Procs()
    try:
        ro_uri, ro_pid = procs.server("remoteobj", server_cpus)
        py_uri, py_pid = procs.server("pyro5", server_cpus)

        def own_ro() -> tuple[Callable[[], object], Callable[[], None]]:
            proxy = ro_proxy(ro_uri)
            return proxy.ping, proxy._release

        def own_py() -> tuple[Callable[[], object], Callable[[], None]]:
            proxy: Pyro5.api.Proxy = pyro_proxy(py_uri)
            return proxy.ping, proxy._pyroRelease

        print(f"`python bench/thread_costs.py` ({time.strftime('%Y-%m-%d %H:%M')})")
        print()
        head = (
            "| system | threads | calls/s | client µs CPU/call (busy) | server µs CPU/call (busy) |"
        )
        cols = [name for _, name in EVENTS]
        if perf:
            head += " server per call: " + ", ".join(cols) + " | client per call: futex, switches |"
        print(head)
        print("|---|---:|---:|---:|---:|" + ("---|---|" if perf else ""))
        for n in (int(x) for x in args.threads.split(",")):
            shared = ro_proxy(ro_uri)
            shared._bind()
            systems: list[tuple[str, Callable[..., Any], int]] = [
                ("remoteobj, one shared proxy", lambda p=shared: (p.ping, lambda: None), ro_pid),
                ("remoteobj, proxy per thread", own_ro, ro_pid),
                ("Pyro5, proxy per thread", own_py, py_pid),
            ]
            for name, opener, pid in systems:
                got = measure(n, opener, pid, args.seconds, perf)
                row = (
                    f"| {name} | {n} | {got['rate']:,.0f} "
                    f"| {got['client_us']:.1f} ({got['client_busy']:.0%}) "
                    f"| {got['server_us']:.1f} ({got['server_busy']:.0%}) |"
                )
                if perf:
                    server, client = got["server"], got["client"]
                    row += " " + ", ".join(f"{server.get(c, 0):.2f}" for c in cols)
                    row += f" | {client.get('futex', 0):.2f}, {client.get('switches', 0):.2f} |"
                print(row, flush=True)
            shared._release()
        if not perf:
            print("\n(perf cannot count syscall tracepoints here: no per-call counts.)")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()

"""remoteobj vs Pyro5 5.17, side by side in one run: every workload of issue 6.

::

    python bench/run.py [--quick] [--only WORKLOAD[,WORKLOAD...]] [--seconds S] [--rounds N]

Workloads (``--only`` names): ``seq`` (sequential small calls, serpent and
msgpack, with the raw-socket ceiling), ``threads`` (4/16/64 client threads),
``async`` (one ``AsyncProxy``, 1/10/100 calls in flight), ``oneway``,
``args`` (1 MiB bytes, 10k-int list), ``connect`` (connect + first call),
``ns`` (name-server lookups and ``PYRONAME`` resolution, via
``bench/bench_ns.py``), ``clients`` (1,000 connected clients making calls),
``memory`` (daemon RSS with 1,000 idle connections).

How it measures: each workload starts the servers it needs (``bench/servers.py``,
fresh processes on 127.0.0.1 free ports, pinned to CPU 1, killed by PID at the
end); this process is the client, pinned to CPU 0. The systems alternate in
slices of ``--seconds`` (order reversed every round) for ``--rounds`` rounds
(``threads``: ``THREADS_EXTRA_ROUNDS`` more); figures are medians. Both sides
use the same serializer and their library defaults. The table goes to stdout
and to ``bench/results.md``; every sample goes to ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import psutil  # type: ignore[import-untyped]  # noqa: E402
import Pyro5  # noqa: E402
import Pyro5.api  # noqa: E402

import remoteobj  # noqa: E402
from remoteobj.spinning import SocketWatch  # noqa: E402

HOST = "127.0.0.1"
SERVER_CPU = 1
CLIENT_CPU = 0
#: The busy-poll budget of the raw ceiling that polls: remoteobj's default.
RAW_POLL = remoteobj.Config().reply_spin
RAW_FRAME = 64  # bytes per raw ping-pong message (a remoteobj ping() request is ~90)
MiB = 1024 * 1024
PYRO5_MAX = 80  # Pyro5's THREADPOOL_SIZE: its thread server refuses the 81st connection


# --- results --------------------------------------------------------------------------


@dataclass
class Figure:
    """One line of the table: a remoteobj figure, the Pyro5 figure it is compared with."""

    workload: str
    unit: str
    ours: float | None
    theirs: float | None
    target: str = "—"
    passed: bool | None = None
    note: str = ""
    samples: dict[str, list[Any]] = field(default_factory=dict)
    #: False where the two figures are not like for like (e.g. latency of 1,000 vs 80 clients).
    comparable: bool = True

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.theirs or not self.comparable:
            return None
        return self.ours / self.theirs


def versus(  # noqa: PLR0917
    workload: str,
    unit: str,
    ours: list[float],
    theirs: list[float],
    min_ratio: float | None = None,
    note: str = "",
) -> Figure:
    """A higher-is-better comparison of medians, with an optional ratio target."""
    fig = Figure(
        workload,
        unit,
        statistics.median(ours),
        statistics.median(theirs),
        note=note,
        samples={"remoteobj": ours, "Pyro5": theirs},
    )
    if min_ratio is not None:
        fig.target = f">= {min_ratio:g}x"
        fig.passed = fig.ratio is not None and fig.ratio >= min_ratio
    return fig


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("MiB/s", "ms", "KiB", "s", "%"):
        return f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"
    if unit == "MiB":
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def table(figures: list[Figure]) -> str:
    lines = [
        "| Workload | Unit | remoteobj | Pyro5 | remoteobj/Pyro5 | Target | Result |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for f in figures:
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}x"
        result = {True: "PASS", False: "**MISS**", None: "—"}[f.passed]
        name = f.workload + (f" ({f.note})" if f.note else "")
        lines.append(
            f"| {name} | {f.unit} | {fmt(f.ours, f.unit)} | {fmt(f.theirs, f.unit)} "
            f"| {ratio} | {f.target} | {result} |"
        )
    return "\n".join(lines)


# --- processes ------------------------------------------------------------------------


def _cpus() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs): CPU 1 and CPU 0 when this process may use both."""
    available = os.sched_getaffinity(0)
    if {SERVER_CPU, CLIENT_CPU} <= available:
        return {SERVER_CPU}, {CLIENT_CPU}
    return None, None


def pin_client() -> tuple[set[int] | None, set[int] | None]:
    """Pin this process (the client) to its CPU, when it may use both; (server CPUs,
    client CPUs) as :func:`_cpus` gives them."""
    server_cpus, client_cpus = _cpus()
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    return server_cpus, client_cpus


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYRO_", "REMOTEOBJ_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


class LineReader:
    """The stdout lines of a child, read by a thread so the parent can wait with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float) -> str:
        """The next line starting with ``prefix`` (other lines are passed to stderr)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise RuntimeError(
                    f"{self.proc.args!r}: no {prefix!r} line in {timeout} s"
                ) from None
            if line is None:
                raise RuntimeError(
                    f"{self.proc.args!r} exited ({self.proc.wait()}) before {prefix!r}"
                )
            if line.startswith(prefix):
                return line.rstrip("\n")
            sys.stderr.write(f"[child {self.proc.pid}] {line}")


class Procs:
    """Child processes started pinned to some CPUs; all stopped by PID on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], cpus: set[int] | None, *, stdin: bool = False) -> LineReader:
        proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO,
            env=_env(),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
        )
        self.procs.append(proc)
        return LineReader(proc)

    def server(self, kind: str, cpus: set[int] | None) -> tuple[str, int]:
        """Start ``bench/servers.py KIND 0``; its URI (or port, for raw servers) and PID."""
        reader = self.start([str(BENCH / "servers.py"), kind, "0"], cpus)
        line = reader.expect("READY", 30)
        return line.split(None, 1)[1], reader.proc.pid

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self.procs.clear()


@contextlib.contextmanager
def servers(ctx: Ctx, *kinds: str) -> Iterator[dict[str, tuple[str, int]]]:
    """Fresh servers of the given kinds for one workload: {kind: (uri, pid)}."""
    procs = Procs()
    try:
        yield {kind: procs.server(kind, ctx.server_cpus) for kind in kinds}
    finally:
        procs.stop_all()


# --- measuring ------------------------------------------------------------------------


@dataclass
class Ctx:
    seconds: float
    rounds: int
    quick: bool
    server_cpus: set[int] | None
    client_cpus: set[int] | None
    clients: int = 1000
    think: float = 0.1
    notes: list[str] = field(default_factory=list)
    ceiling: dict[str, float] = field(default_factory=dict)


def alternate(
    ctx: Ctx, runs: dict[str, Callable[[], float]], extra_rounds: int = 0
) -> dict[str, list[float]]:
    """Run each system's slice ``ctx.rounds`` (+ ``extra_rounds``) times, alternating,
    order reversed every round."""
    results: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(ctx.rounds + extra_rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            results[name].append(runs[name]())
    return results


def timed(call: Callable[[], object], seconds: float, *, batch: int = 20, warm: int = 20) -> float:
    """Calls per second of ``call`` run back to back for about ``seconds`` (after a warm-up)."""
    for _ in range(warm):
        call()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            call()
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


Opener = Callable[[], tuple[Callable[[], object], Callable[[], None]]]


def threaded(nthreads: int, seconds: float, opener: Opener) -> float:
    """Total calls/s of ``nthreads`` threads calling back to back.

    ``opener()`` runs in each thread and returns (call, close): a thread's own
    proxy, or a shared one. Connecting and a warm-up happen before the clock starts.
    """
    ready = threading.Barrier(nthreads + 1)
    stop = [False]
    counts = [0] * nthreads
    ends = [0.0] * nthreads
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            call, close = opener()
            for _ in range(5):
                call()
        except BaseException as exc:
            errors.append(exc)
            ready.abort()
            return
        try:
            ready.wait()
            n = 0
            while not stop[0]:
                call()
                call()
                call()
                call()
                call()
                n += 5
            counts[i] = n
            ends[i] = time.perf_counter()
        except BaseException as exc:
            errors.append(exc)
        finally:
            close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(nthreads)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait()
    start = time.perf_counter()
    time.sleep(seconds)  # the measured interval, not a wait for a condition
    stop[0] = True
    for t in threads:
        t.join(60)
    if errors:
        raise RuntimeError(f"{len(errors)} client thread(s) failed: {errors[0]!r}") from errors[0]
    return sum(counts) / (max(ends) - start)


@functools.cache
def ro_config(serializer: str = "serpent") -> remoteobj.Config:
    # The defaults, unless REMOTEOBJ_* variables say otherwise (as for the servers);
    # made once: the connect workloads make a proxy per call.
    return remoteobj.Config.from_env().replace(serializer=serializer)


def ro_proxy(uri: str, serializer: str = "serpent") -> remoteobj.Proxy:
    return remoteobj.Proxy(uri, config=ro_config(serializer))


def pyro_proxy(uri: str, serializer: str = "serpent") -> Pyro5.api.Proxy:
    proxy = Pyro5.api.Proxy(uri)
    proxy._pyroSerializer = serializer
    return proxy


def ro_seq(
    uri: str, seconds: float, serializer: str = "serpent", *, busy_poll: bool = True
) -> Callable[[], float]:
    config = ro_config(serializer)
    if not busy_poll:
        config = config.replace(reply_spin=0.0)

    def run() -> float:
        with remoteobj.Proxy(uri, config=config) as p:
            return timed(lambda: p.ping(), seconds)  # noqa: PLW0108 - p.ping looked up per call, as users do

    return run


def pyro_seq(uri: str, seconds: float, serializer: str = "serpent") -> Callable[[], float]:
    def run() -> float:
        with pyro_proxy(uri, serializer) as p:
            return timed(lambda: p.ping(), seconds)  # noqa: PLW0108 - p.ping looked up per call, as users do

    return run


def raw_open(port: int, poll: float = 0.0) -> tuple[Callable[[], object], Callable[[], None]]:
    """A raw ping over a new connection; ``poll``: busy-poll that long before each read."""
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = b"x" * RAW_FRAME
    watch = SocketWatch(sock.fileno(), poll)

    def ping() -> None:
        sock.sendall(payload)
        got = 0
        while got < RAW_FRAME:
            watch.spin()
            chunk = sock.recv(RAW_FRAME - got)
            if not chunk:
                raise ConnectionError("raw server closed the connection")
            got += len(chunk)

    return ping, sock.close


def raw_seq(port: int, seconds: float, poll: float = 0.0) -> Callable[[], float]:
    def run() -> float:
        ping, close = raw_open(port, poll)
        try:
            return timed(ping, seconds)
        finally:
            close()

    return run


def run_async(main: Callable[[], Awaitable[float]]) -> float:
    """Run a coroutine on a fresh event loop (uvloop when installed, as the daemon uses)."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())  # type: ignore[arg-type]


# --- workloads ------------------------------------------------------------------------


def wl_seq(ctx: Ctx) -> list[Figure]:
    """Sequential small calls on one proxy (serpent, msgpack), the same with busy-polling
    off on both remoteobj sides, and the raw-socket ceilings."""
    s = ctx.seconds
    figures = []
    kinds = ("remoteobj", "remoteobj-nopoll", "pyro5", "raw-thread", "raw-loop", "raw-poll")
    with servers(ctx, *kinds) as srv:
        ro, nopoll, py = srv["remoteobj"][0], srv["remoteobj-nopoll"][0], srv["pyro5"][0]
        res = alternate(
            ctx,
            {
                "remoteobj": ro_seq(ro, s),
                "nopoll": ro_seq(nopoll, s, busy_poll=False),
                "Pyro5": pyro_seq(py, s),
                "raw-thread": raw_seq(int(srv["raw-thread"][0]), s),
                "raw-loop": raw_seq(int(srv["raw-loop"][0]), s),
                "raw-poll": raw_seq(int(srv["raw-poll"][0]), s, RAW_POLL),
            },
        )
        raws = ("raw-thread", "raw-loop", "raw-poll")
        for kind in raws:
            ctx.ceiling[f"seq {kind}"] = statistics.median(res[kind])
        raw = max(ctx.ceiling[f"seq {kind}"] for kind in raws)
        ctx.ceiling["seq remoteobj serpent"] = statistics.median(res["remoteobj"])
        ctx.ceiling["seq Pyro5 serpent"] = statistics.median(res["Pyro5"])
        fig = versus("sequential ping(), serpent", "calls/s", res["remoteobj"], res["Pyro5"], 1.3)
        assert fig.ours is not None
        fig.note = f"{fig.ours / raw:.0%} of the best raw socket"
        serpent_off = versus(
            "(ref) sequential ping(), serpent, busy-polling off",
            "calls/s",
            res["nopoll"],
            res["Pyro5"],
        )
        figures.append(fig)
        res = alternate(
            ctx,
            {
                "remoteobj": ro_seq(ro, s, "msgpack"),
                "nopoll": ro_seq(nopoll, s, "msgpack", busy_poll=False),
                "Pyro5": pyro_seq(py, s, "msgpack"),
            },
        )
        figures.append(
            versus("sequential ping(), msgpack", "calls/s", res["remoteobj"], res["Pyro5"], 1.3)
        )
        figures.append(serpent_off)
        figures.append(
            versus(
                "(ref) sequential ping(), msgpack, busy-polling off",
                "calls/s",
                res["nopoll"],
                res["Pyro5"],
            )
        )
        labels = {
            "raw-thread": "thread per connection",
            "raw-loop": "epoll loop",
            "raw-poll": "both ends busy-polling",
        }
        for kind, label in labels.items():
            figures.append(
                Figure(
                    f"raw socket ping-pong, {label} (ceiling)",
                    "trips/s",
                    ctx.ceiling[f"seq {kind}"],
                    None,
                    note=f"{RAW_FRAME} B",
                )
            )
    return figures


#: The threaded slices swing most between rounds (either system's figure can
#: double from one slice to the next on this shared machine), so their medians
#: take more of them.
THREADS_EXTRA_ROUNDS = 4


def wl_threads(ctx: Ctx) -> list[Figure]:
    """N threads calling ping(): Pyro5 one proxy per thread; remoteobj shared and per thread."""
    s = ctx.seconds
    figures = []
    targets = {4: None, 16: 1.5, 64: 2.0}
    with servers(ctx, "remoteobj", "pyro5", "raw-thread", "raw-loop") as srv:
        ro, py = srv["remoteobj"][0], srv["pyro5"][0]

        def own_ro() -> tuple[Callable[[], object], Callable[[], None]]:
            p = ro_proxy(ro)
            return p.ping, p._release

        def own_py() -> tuple[Callable[[], object], Callable[[], None]]:
            p = pyro_proxy(py)
            return p.ping, p._pyroRelease

        def shared_ro(n: int) -> Callable[[], float]:
            def run() -> float:
                with ro_proxy(ro) as p:
                    p._bind()
                    return threaded(n, s, lambda: (p.ping, lambda: None))

            return run

        for n, target in targets.items():
            runs: dict[str, Callable[[], float]] = {
                "shared": shared_ro(n),
                "own": lambda n=n: threaded(n, s, own_ro),  # type: ignore[misc]
                "Pyro5": lambda n=n: threaded(n, s, own_py),  # type: ignore[misc]
            }
            if n == 16:
                for kind in ("raw-thread", "raw-loop"):
                    port = int(srv[kind][0])
                    runs[kind] = lambda port=port: threaded(16, s, lambda: raw_open(port))  # type: ignore[misc]
            res = alternate(ctx, runs, THREADS_EXTRA_ROUNDS)
            figures.append(
                versus(
                    f"{n} threads, one shared proxy", "calls/s", res["shared"], res["Pyro5"], target
                )
            )
            figures.append(
                versus(
                    f"{n} threads, proxy per thread", "calls/s", res["own"], res["Pyro5"], target
                )
            )
            if n == 16:
                for kind in ("raw-thread", "raw-loop"):
                    ctx.ceiling[f"16 threads {kind}"] = statistics.median(res[kind])
                    ctx.ceiling["16 threads remoteobj shared"] = statistics.median(res["shared"])
                    ctx.ceiling["16 threads remoteobj own"] = statistics.median(res["own"])
                    ctx.ceiling["16 threads Pyro5"] = statistics.median(res["Pyro5"])
                    label = "thread per connection" if kind == "raw-thread" else "epoll loop"
                    figures.append(
                        Figure(
                            f"raw socket, 16 client threads, {label} (ceiling)",
                            "trips/s",
                            ctx.ceiling[f"16 threads {kind}"],
                            None,
                        )
                    )
    return figures


def wl_async(ctx: Ctx) -> list[Figure]:
    """One AsyncProxy with N calls in flight on one connection, vs Pyro5's sequential rate."""
    s = ctx.seconds
    with servers(ctx, "remoteobj", "pyro5") as srv:
        ro, py = srv["remoteobj"][0], srv["pyro5"][0]

        def in_flight(n: int) -> Callable[[], float]:
            async def main() -> float:
                async with remoteobj.AsyncProxy(ro, config=ro_config()) as p:
                    for _ in range(20):
                        await p.ping()
                    stop = False

                    async def worker() -> int:
                        done = 0
                        while not stop:
                            await p.ping()
                            done += 1
                        return done

                    tasks = [asyncio.ensure_future(worker()) for _ in range(n)]
                    start = time.perf_counter()
                    await asyncio.sleep(s)
                    stop = True
                    total = sum(await asyncio.gather(*tasks))
                    return total / (time.perf_counter() - start)

            return lambda: run_async(main)

        res = alternate(
            ctx,
            {
                "1": in_flight(1),
                "10": in_flight(10),
                "100": in_flight(100),
                "Pyro5": pyro_seq(py, s),
            },
        )
    return [
        versus(
            f"AsyncProxy, {n} in flight on one connection",
            "calls/s",
            res[n],
            res["Pyro5"],
            5.0 if n == "100" else None,
            note="vs Pyro5 sequential",
        )
        for n in ("1", "10", "100")
    ]


def wl_oneway(ctx: Ctx) -> list[Figure]:
    """Oneway fire(x) back to back; the rate at which the server has *run* them (count())."""
    s = ctx.seconds
    lost: dict[str, int] = {"remoteobj": 0, "Pyro5": 0}
    dropped: dict[str, int] = {"remoteobj": 0, "Pyro5": 0}

    def measure(name: str, fire: Callable[[int], object], count: Callable[[], int]) -> float:
        for _ in range(20):
            fire(0)
        base = count()
        sent = 0
        start = time.perf_counter()
        deadline = start + s
        while time.perf_counter() < deadline:
            for _ in range(20):
                fire(0)
            sent += 20
        # Wait until the server ran them all, or stopped making progress for a second.
        last, since = -1, time.perf_counter()
        while True:
            done = count() - base
            now = time.perf_counter()
            if done >= sent:
                break
            if done != last:
                last, since = done, now
            elif now - since > 1.0:
                lost[name] += sent - done
                break
            time.sleep(0.001)  # poll interval of a wait bounded by the no-progress deadline
        return done / (now - start)

    with servers(ctx, "remoteobj", "pyro5") as srv:
        ro, py = srv["remoteobj"][0], srv["pyro5"][0]

        def ours() -> float:
            with ro_proxy(ro) as p:
                return measure("remoteobj", p.fire, p.count)

        def theirs() -> float:
            with pyro_proxy(py) as p:
                return measure("Pyro5", p.fire, p.count)

        res = alternate(ctx, {"remoteobj": ours, "Pyro5": theirs})
        with ro_proxy(ro) as p:
            dropped["remoteobj"] = p.dropped()
    note = "run by the server, per s"
    if any(lost.values()):
        note += (
            f"; calls lost: remoteobj {lost['remoteobj']} (of them dropped past the "
            f"oneway_queue bound: {dropped['remoteobj']}), Pyro5 {lost['Pyro5']}"
        )
    return [versus("oneway fire(x), serpent", "calls/s", res["remoteobj"], res["Pyro5"], note=note)]


def wl_args(ctx: Ctx) -> list[Figure]:
    """Big arguments: 1 MiB of bytes (serpent, msgpack), a 10k-int list (serpent, msgpack);
    and 1 MiB echoed (a big result too), msgpack."""
    s = ctx.seconds
    blob = os.urandom(MiB)
    ints = list(range(10_000))
    figures = []
    with servers(ctx, "remoteobj", "pyro5") as srv:
        ro, py = srv["remoteobj"][0], srv["pyro5"][0]

        def run(make: Callable[[], Any], arg: Any) -> Callable[[], float]:
            def slice_() -> float:
                with make() as p:
                    if p.take(arg) != len(arg):
                        raise AssertionError("take() returned the wrong length")
                    return timed(lambda: p.take(arg), s, batch=1, warm=2)

            return slice_

        cases: list[tuple[str, Any, str, dict[str, float | None]]] = [
            ("1 MiB bytes argument", blob, "MiB/s", {"serpent": 2.0, "msgpack": 1.0}),
            ("10k-int list argument", ints, "calls/s", {"serpent": None, "msgpack": None}),
        ]
        for label, arg, unit, targets in cases:
            for ser, target in targets.items():
                res = alternate(
                    ctx,
                    {
                        "remoteobj": run(lambda ser=ser: ro_proxy(ro, ser), arg),  # type: ignore[misc]
                        "Pyro5": run(lambda ser=ser: pyro_proxy(py, ser), arg),  # type: ignore[misc]
                    },
                )
                if unit == "MiB/s":
                    res = {k: [r * len(arg) / MiB for r in v] for k, v in res.items()}
                figures.append(
                    versus(f"{label}, {ser}", unit, res["remoteobj"], res["Pyro5"], target)
                )

        def echoed(make: Callable[[], Any]) -> Callable[[], float]:
            def slice_() -> float:
                with make() as p:
                    if p.echo(blob) != blob:
                        raise AssertionError("echo() returned other bytes")
                    return timed(lambda: p.echo(blob), s, batch=1, warm=2) * 2  # MiB both ways

            return slice_

        res = alternate(
            ctx,
            {
                "remoteobj": echoed(lambda: ro_proxy(ro, "msgpack")),
                "Pyro5": echoed(lambda: pyro_proxy(py, "msgpack")),
            },
        )
        figures.append(
            versus(
                "(ref) 1 MiB bytes echoed (argument and result), msgpack",
                "MiB/s",
                res["remoteobj"],
                res["Pyro5"],
            )
        )
    return figures


def wl_connect(ctx: Ctx) -> list[Figure]:
    """A new proxy, connect + handshake + first ping() + close, back to back."""
    s = ctx.seconds
    with servers(ctx, "remoteobj", "pyro5") as srv:
        ro, py = srv["remoteobj"][0], srv["pyro5"][0]

        def ours() -> None:
            with ro_proxy(ro) as p:
                p.ping()

        def theirs() -> None:
            with pyro_proxy(py) as p:
                p.ping()

        async def ours_async() -> float:
            async def one() -> None:
                async with remoteobj.AsyncProxy(ro) as p:
                    await p.ping()

            for _ in range(5):
                await one()
            done, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < s:
                await one()
                done += 1
            return done / elapsed

        res = alternate(
            ctx,
            {
                "remoteobj": lambda: timed(ours, s, batch=5, warm=5),
                "Pyro5": lambda: timed(theirs, s, batch=5, warm=5),
                "remoteobj-async": lambda: run_async(ours_async),
            },
        )
    return [
        versus("connect + first call", "conn/s", res["remoteobj"], res["Pyro5"], 1.3),
        versus(
            "(ref) AsyncProxy: connect + first call (vs Pyro5's Proxy)",
            "conn/s",
            res["remoteobj-async"],
            res["Pyro5"],
        ),
    ]


def _ns_slice(
    rate: Callable[[Callable[[], object], float], float], op: Callable[[], object], seconds: float
) -> Callable[[], float]:
    return lambda: rate(op, seconds)


def wl_ns(ctx: Ctx) -> list[Figure]:
    """Name-server lookup() and PYRONAME resolution, reusing bench/bench_ns.py's setup."""
    import bench_ns

    targets = {
        "lookup()/s": ("name-server lookup()", "lookups/s", 1.3),
        "PYRONAME proxy + first call/s": ("PYRONAME: proxy + first call", "calls/s", 3.0),
    }
    figures = []
    ns_servers = bench_ns.Servers(ctx.server_cpus)
    try:
        with bench_ns.systems(ns_servers) as tests:
            for test, ops in tests.items():
                res = alternate(
                    ctx,
                    {name: _ns_slice(bench_ns.rate, op, ctx.seconds) for name, op in ops.items()},
                )
                label, unit, target = targets.get(test, (test, "ops/s", None))
                figures.append(
                    versus(
                        label,
                        unit,
                        res["remoteobj"],
                        res["Pyro5"],
                        target,
                        note="target from issue 3" if target else "",
                    )
                )
    finally:
        ns_servers.stop()
    return figures


def _percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def _cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def many_clients(  # noqa: PLR0917
    ctx: Ctx, system: str, uri: str, pid: int, seconds: float, clients: int
) -> dict[str, Any]:
    """``clients`` clients in two load processes (bench/load.py) on the client CPU."""
    procs = Procs()
    try:
        halves = [clients // 2, clients - clients // 2]
        readers = [
            procs.start(
                [str(BENCH / "load.py"), system, uri, str(n), str(ctx.think), str(seconds)],
                ctx.client_cpus,
                stdin=True,
            )
            for n in halves
        ]
        connected = refused = 0
        connect_s = 0.0
        for r in readers:
            _, ok, bad, took = r.expect("CONNECTED", 120).split()
            connected += int(ok)
            refused += int(bad)
            connect_s = max(connect_s, float(took))
        server_cpu = _cpu_s(pid)
        for r in readers:
            assert r.proc.stdin is not None
            r.proc.stdin.write("GO\n")
            r.proc.stdin.flush()
        parts = [json.loads(r.expect("{", seconds + 120)) for r in readers]
        server_cpu = _cpu_s(pid) - server_cpu
    finally:
        procs.stop_all()
    lat = [x for part in parts for x in part["lat_us"]]
    return {
        "connected": connected,
        "refused": refused,
        "errors": sum(part["errors"] for part in parts),
        "calls_per_s": sum(part["calls"] for part in parts) / seconds,
        "p50_ms": _percentile(lat, 0.50),
        "p99_ms": _percentile(lat, 0.99),
        "connect_s": connect_s,
        "server_cpu_pct": 100 * server_cpu / seconds,
        "client_cpu_pct": 100 * sum(part["cpu"] for part in parts) / seconds,
    }


def wl_clients(ctx: Ctx) -> list[Figure]:
    """1,000 clients connected at once, each calling ping() about every ``think`` seconds."""
    seconds = 2.0 if ctx.quick else 3.0
    runs: dict[str, list[dict[str, Any]]] = {"remoteobj": [], "Pyro5": []}
    few: dict[str, list[dict[str, Any]]] = {"remoteobj": [], "Pyro5": []}
    with servers(ctx, "remoteobj", "pyro5") as srv:
        uris = {"remoteobj": srv["remoteobj"], "Pyro5": srv["pyro5"]}
        for r in range(min(ctx.rounds, 3)):  # each round is long (connecting, seconds)
            for system in ("remoteobj", "Pyro5") if r % 2 == 0 else ("Pyro5", "remoteobj"):
                kind = "remoteobj" if system == "remoteobj" else "pyro5"
                runs[system].append(many_clients(ctx, kind, *uris[system], seconds, ctx.clients))
                # Like for like: as many clients as Pyro5's default server accepts.
                few[system].append(many_clients(ctx, kind, *uris[system], 2.0, PYRO5_MAX))

    def med(system: str, key: str) -> float:
        return float(statistics.median(run[key] for run in runs[system]))

    def worst(system: str, key: str) -> float:
        return float(max(run[key] for run in runs[system]))

    n = ctx.clients
    served = (
        worst("remoteobj", "refused") == 0 and min(x["connected"] for x in runs["remoteobj"]) == n
    )
    offered = f"each client ~1 call per {ctx.think:g} s, 2 client processes, {seconds:g} s"
    figs = [
        Figure(
            f"{n:,} clients: connected (worst round)",
            "clients",
            min(x["connected"] for x in runs["remoteobj"]),
            min(x["connected"] for x in runs["Pyro5"]),
            target=f"all {n:,}",
            passed=served,
            note=f"Pyro5 refused {worst('Pyro5', 'refused'):.0f}",
        ),
        Figure(
            f"{n:,} clients: call errors (all rounds)",
            "errors",
            sum(x["errors"] for x in runs["remoteobj"]),
            sum(x["errors"] for x in runs["Pyro5"]),
            target="0",
            passed=sum(x["errors"] for x in runs["remoteobj"]) == 0,
            comparable=False,
        ),
        Figure(
            f"{n:,} clients: latency p50",
            "ms",
            med("remoteobj", "p50_ms"),
            med("Pyro5", "p50_ms"),
            note="Pyro5: only its connected clients",
            comparable=False,
        ),
        Figure(
            f"{n:,} clients: latency p99",
            "ms",
            med("remoteobj", "p99_ms"),
            med("Pyro5", "p99_ms"),
            target="< 100 ms",
            passed=med("remoteobj", "p99_ms") < 100,
            comparable=False,
        ),
        Figure(
            f"{n:,} clients: calls served",
            "calls/s",
            med("remoteobj", "calls_per_s"),
            med("Pyro5", "calls_per_s"),
            note=offered,
            comparable=False,
        ),
        Figure(
            f"{n:,} clients: server CPU busy",
            "%",
            med("remoteobj", "server_cpu_pct"),
            med("Pyro5", "server_cpu_pct"),
            note=f"client processes: remoteobj {med('remoteobj', 'client_cpu_pct'):.0f}%, "
            f"Pyro5 {med('Pyro5', 'client_cpu_pct'):.0f}% of one CPU",
            comparable=False,
        ),
        Figure(
            f"{n:,} clients: time to connect all",
            "s",
            med("remoteobj", "connect_s"),
            med("Pyro5", "connect_s"),
            note="32 connects at a time",
            comparable=False,
        ),
    ]
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        figs.append(
            Figure(
                f"{PYRO5_MAX} clients (Pyro5's limit): latency {label}",
                "ms",
                statistics.median(x[key] for x in few["remoteobj"]),
                statistics.median(x[key] for x in few["Pyro5"]),
                note="same load both sides; lower is better",
            )
        )
    few_errors = {s: sum(x["errors"] + x["refused"] for x in few[s]) for s in few}
    figs[
        -1
    ].note += f"; errors+refused: remoteobj {few_errors['remoteobj']}, Pyro5 {few_errors['Pyro5']}"
    for fig in figs:
        fig.samples = {k: list(v) for k, v in runs.items()}
    return figs


def _settled_rss(pid: int, timeout: float = 3.0) -> int:
    """The process's RSS once it stopped changing (three equal-ish samples 0.1 s apart)."""
    proc = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    last, stable = proc.memory_info().rss, 0
    while stable < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # sampling interval of a wait bounded by ``timeout``
        rss = proc.memory_info().rss
        stable = stable + 1 if abs(rss - last) < 32 * 1024 else 0
        last = rss
    return int(last)


def wl_memory(ctx: Ctx) -> list[Figure]:
    """Daemon RSS with ``ctx.clients`` idle (handshaken) connections, minus RSS with none."""
    n = ctx.clients
    rounds = 1 if ctx.quick else min(ctx.rounds, 3)
    results: dict[str, list[tuple[int, int, int]]] = {"remoteobj": [], "Pyro5": []}
    for r in range(rounds):
        for system in ("remoteobj", "Pyro5") if r % 2 == 0 else ("Pyro5", "remoteobj"):
            kind = "remoteobj" if system == "remoteobj" else "pyro5"
            with servers(ctx, kind) as srv:
                uri, pid = srv[kind]
                opened: list[Any] = []
                try:
                    warm = ro_proxy(uri) if kind == "remoteobj" else pyro_proxy(uri)
                    warm.ping()
                    opened.append(warm)  # a daemon that served a call, with one connection
                    before = _settled_rss(pid)
                    accepted = 0
                    for _ in range(n):
                        proxy = ro_proxy(uri) if kind == "remoteobj" else pyro_proxy(uri)
                        try:
                            if kind == "remoteobj":
                                proxy._bind()
                            else:
                                proxy._pyroBind()
                        except Exception:
                            continue
                        opened.append(proxy)
                        accepted += 1
                    after = _settled_rss(pid)
                finally:
                    for proxy in opened:
                        with contextlib.suppress(Exception):
                            if isinstance(proxy, remoteobj.Proxy):
                                proxy._release()
                            else:
                                proxy._pyroRelease()
                results[system].append((before, after, accepted))

    def per_conn(system: str) -> list[float]:
        return [(a - b) / max(k, 1) / 1024 for b, a, k in results[system]]

    def total(system: str) -> list[float]:
        return [(a - b) / MiB for b, a, _ in results[system]]

    ours_kib, theirs_kib = (
        statistics.median(per_conn("remoteobj")),
        statistics.median(per_conn("Pyro5")),
    )
    ours_mib, theirs_mib = statistics.median(total("remoteobj")), statistics.median(total("Pyro5"))
    accepted_by = {s: min(k for _, _, k in results[s]) for s in results}
    return [
        Figure(
            "memory: RSS per idle connection",
            "KiB",
            ours_kib,
            theirs_kib,
            target="<= 16 KiB",
            passed=ours_kib <= 16 and accepted_by["remoteobj"] == n,
            note=f"Pyro5 accepted {accepted_by['Pyro5']} of {n:,}",
        ),
        Figure(
            f"memory: RSS added by {n:,} idle connections",
            "MiB",
            ours_mib,
            theirs_mib,
            target="<= 32 MiB",
            comparable=False,
            passed=ours_mib <= 32 and accepted_by["remoteobj"] == n,
            note=f"remoteobj accepted {accepted_by['remoteobj']:,}, Pyro5 {accepted_by['Pyro5']}",
        ),
        Figure(
            "memory: daemon RSS with 1 connection",
            "MiB",
            statistics.median(b / MiB for b, _, _ in results["remoteobj"]),
            statistics.median(b / MiB for b, _, _ in results["Pyro5"]),
        ),
    ]


WORKLOADS: dict[str, Callable[[Ctx], list[Figure]]] = {
    "seq": wl_seq,
    "threads": wl_threads,
    "async": wl_async,
    "oneway": wl_oneway,
    "args": wl_args,
    "connect": wl_connect,
    "ns": wl_ns,
    "clients": wl_clients,
    "memory": wl_memory,
}


# --- report ---------------------------------------------------------------------------


def machine() -> str:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    for mod in ("serpent", "msgpack", "uvloop"):
        with contextlib.suppress(ImportError):
            m = __import__(mod)
            v = getattr(m, "__version__", None) or ".".join(map(str, getattr(m, "version", ())))
            versions.append(f"{mod} {v}")
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            check=False,
            cwd=REPO,
            text=True,
            capture_output=True,
            timeout=10,
        ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, remoteobj {remoteobj.__version__} "
        f"(tree at {commit} + working changes), Pyro5 {Pyro5.__version__}, " + ", ".join(versions)
    )


def main(argv: list[str] | None = None) -> int:
    """Run the selected workloads; print the table and write bench/results.md and .json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="short slices, 3 rounds (about 1.5 minutes)"
    )
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(WORKLOADS))
    parser.add_argument("--seconds", type=float, default=None, help="length of one slice")
    parser.add_argument(
        "--rounds", type=int, default=None, help="slices per system (default 5; --quick: 3)"
    )
    parser.add_argument("--clients", type=int, default=1000, help="clients of 'clients'/'memory'")
    parser.add_argument(
        "--think", type=float, default=0.1, help="'clients': mean seconds between a client's calls"
    )
    parser.add_argument("--output", default=str(BENCH / "results.md"))
    args = parser.parse_args(argv)
    only = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
    if args.rounds is None:
        args.rounds = 3 if args.quick else 5
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (medians of alternated slices)")
    server_cpus, client_cpus = pin_client()
    seconds = args.seconds if args.seconds is not None else (0.3 if args.quick else 0.6)
    ctx = Ctx(
        seconds,
        args.rounds,
        args.quick,
        server_cpus,
        client_cpus,
        clients=args.clients,
        think=args.think,
    )
    figures: list[Figure] = []
    load_before = os.getloadavg()
    started = time.perf_counter()
    for name in only:
        t0 = time.perf_counter()
        try:
            got = WORKLOADS[name](ctx)
        except Exception as exc:
            traceback.print_exc()
            got = [
                Figure(
                    f"{name}: FAILED ({type(exc).__name__}: {exc})", "—", None, None, passed=False
                )
            ]
        figures.extend(got)
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
        for fig in got:
            ratio = "" if fig.ratio is None else f"  {fig.ratio:.2f}x"
            print(
                f"  {fig.workload}: {fmt(fig.ours, fig.unit)} vs {fmt(fig.theirs, fig.unit)} "
                f"{fig.unit}{ratio}",
                file=sys.stderr,
                flush=True,
            )
    elapsed = time.perf_counter() - started
    pinning = (
        f"servers pinned to CPU {sorted(server_cpus)}, client to CPU {sorted(client_cpus)}"
        if server_cpus and client_cpus
        else "NOT pinned (fewer than 2 CPUs)"
    )
    command = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    misses = [f.workload for f in figures if f.passed is False]
    report = "\n".join(
        [
            f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d %H:%M')}, {elapsed:.0f} s)",
            "",
            f"Machine: {machine()}",
            "",
            "Load average (1 min) before/after the run: "
            f"{load_before[0]:.2f} / {os.getloadavg()[0]:.2f} (the machine is shared: other "
            "processes compete for both CPUs, so absolute figures swing; the systems alternate "
            "within the run, so the ratios hold better)",
            "",
            f"Method: {args.rounds} rounds of {seconds:g} s slices per system "
            f"({args.rounds + THREADS_EXTRA_ROUNDS} for the threads rows), alternating "
            f"(order reversed every round), medians; {pinning}; same serializer both sides; "
            "ratio = remoteobj / Pyro5.",
            "",
            table(figures),
            "",
            f"Targets met: {sum(f.passed is True for f in figures)} of "
            f"{sum(f.passed is not None for f in figures)}"
            + (f"; missed: {'; '.join(misses)}" if misses else ""),
            "",
        ]
    )
    print(report)
    Path(args.output).write_text(report)
    Path(args.output).with_suffix(".json").write_text(
        json.dumps(
            {
                "command": command,
                "seconds": seconds,
                "rounds": args.rounds,
                "figures": [asdict(f) | {"ratio": f.ratio} for f in figures],
                "ceiling": ctx.ceiling,
            },
            indent=1,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

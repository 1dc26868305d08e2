"""Where does a sequential call's time go? CPU per call, and a py-spy profile of both ends.

::

    python bench/profile_hot.py [--seconds 10] [--rounds 3] [--rate 100] [--serializer serpent]

1. Unprofiled: the raw-socket echo (thread per connection), Pyro5 and remoteobj
   servers (``bench/servers.py``, pinned to CPU 1) each get a sequential
   ``ping()`` client (a child process pinned to CPU 0), alternating for
   ``--rounds`` rounds. Per call: wall time, client CPU (the client's
   ``process_time``) and server CPU (``psutil`` on the server process).
2. Profiled: the same remoteobj (and Pyro5) run with ``py-spy record --native``
   attached to the daemon and to the client for ``--seconds``. Samples whose
   innermost frames wait (poll/epoll/futex/condition waits) are counted as
   *waiting*; the rest is CPU, split into categories (socket syscalls, framing,
   serializing, dispatch, thread hand-off, event loop, proxy logic, ...) by the
   innermost frame that identifies one, and into hot spots: own time per Python
   function, with the C functions it calls folded into it.

Writes ``bench/profile/*.speedscope.json`` (open them at https://www.speedscope.app)
and prints a Markdown report (also ``bench/profile/summary.md``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import psutil  # type: ignore[import-untyped]  # noqa: E402
from run import CLIENT_CPU, SERVER_CPU, Procs  # noqa: E402

RAW_FRAME = 64
OUT = BENCH / "profile"

# --- the client child ----------------------------------------------------------------


def client_main(kind: str, target: str, seconds: float, serializer: str) -> None:
    """Child: warm up, print WARM, call back to back for ``seconds``, print a JSON result."""
    call: Callable[[], object]
    if kind == "raw":
        sock = socket.create_connection(("127.0.0.1", int(target)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        payload = b"x" * RAW_FRAME

        def call() -> None:
            sock.sendall(payload)
            got = 0
            while got < RAW_FRAME:
                got += len(sock.recv(RAW_FRAME - got))

    elif kind == "remoteobj":
        import remoteobj

        proxy = remoteobj.Proxy(target, config=remoteobj.Config(serializer=serializer))

        def call() -> object:
            return proxy.ping()

    else:
        import Pyro5.api

        pproxy = Pyro5.api.Proxy(target)
        pproxy._pyroSerializer = serializer

        def call() -> object:
            return pproxy.ping()

    for _ in range(500):
        call()
    print("WARM", flush=True)
    calls = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            call()
        calls += 20
        now = time.perf_counter()
        if now >= deadline:
            break
    cpu = time.process_time() - cpu0
    print(json.dumps({"calls": calls, "elapsed": now - start, "cpu": cpu}), flush=True)


# --- measuring ------------------------------------------------------------------------


def _server_cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def run_client(  # noqa: PLR0917
    kind: str,
    target: str,
    server_pid: int,
    seconds: float,
    serializer: str,
    profile: str | None = None,
    rate: int = 100,
) -> dict[str, Any]:
    """One client run. ``profile="daemon"|"client"``: py-spy records that side meanwhile,
    itself pinned to the *other* side's CPU so that it does not steal the profiled one's."""
    procs = Procs()
    spy: subprocess.Popen[bytes] | None = None
    try:
        reader = procs.start(
            [str(BENCH / "profile_hot.py"), "--client", kind, target, str(seconds), serializer],
            {CLIENT_CPU},
        )
        reader.expect("WARM", 60)
        cpu0 = _server_cpu(server_pid)
        if profile:
            tool, _, side = profile.rpartition("-")
            pid = server_pid if side == "daemon" else reader.proc.pid
            spy_cpu = {CLIENT_CPU} if side == "daemon" else {SERVER_CPU}
            argv = _profiler(
                tool or "py-spy", pid, max(1, int(seconds) - 1), rate, OUT / f"{kind}-{profile}"
            )
            spy = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=lambda: os.sched_setaffinity(0, spy_cpu),  # noqa: PLW1509
            )
        result: dict[str, Any] = json.loads(reader.expect("{", seconds + 60))
        result["server_cpu"] = _server_cpu(server_pid) - cpu0
        if spy is not None:
            spy.wait(60)
            if profile and profile.startswith("strace-"):
                result["syscalls"] = _read_strace(OUT / f"{kind}-{profile}.strace")
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait(10)
        procs.stop_all()
    calls = result["calls"]
    return {
        "rate": calls / result["elapsed"],
        "wall_us": result["elapsed"] / calls * 1e6,
        "client_us": result["cpu"] / calls * 1e6,
        "server_us": result["server_cpu"] / calls * 1e6,
        "syscalls": result.get("syscalls", {}),
    }


def _profiler(tool: str, pid: int, duration: int, rate: int, out: Path) -> list[str]:
    """The command line that profiles ``pid`` for ``duration`` seconds into ``out.*``."""
    if tool == "perf":
        return ["perf", "record", "-q", "-F", "999", "-p", str(pid), "-o", f"{out}.data",
                "--", "sleep", str(duration)]  # fmt: skip
    if tool == "strace":
        return ["timeout", "-s", "INT", str(duration), "strace", "-c", "-f", "-p", str(pid),
                "-o", f"{out}.strace"]  # fmt: skip
    return ["py-spy", "record", "--pid", str(pid), "--native", "--idle", "--rate", str(rate),
            "--duration", str(duration), "--format", "speedscope",
            "-o", f"{out}.speedscope.json"]  # fmt: skip


def _read_strace(path: Path) -> dict[str, int]:
    """{syscall: count} from an ``strace -c`` summary."""
    counts: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                counts[parts[-1]] = int(parts[3])
        path.unlink()
    return counts


# --- reading py-spy profiles ----------------------------------------------------------

WAIT_FRAMES = {
    "poll",
    "epoll_pwait",
    "epoll_wait",
    "select",
    "ppoll",
    "pselect6",
    "PyThread_acquire_lock_timed",
    "pthread_cond_timedwait",
    "pthread_cond_wait",
    "sem_clockwait",
    "sem_timedwait",
    "sem_wait",
    "take_gil",
    "drop_gil",
}
SOCKET_C = ("socketmodule.c",)
WAKE_FRAMES = {
    "sem_post",
    "pthread_cond_signal",
    "pthread_cond_broadcast",
    "PyThread_release_lock",
    "futex_wake",
}


def _is_python(frame: dict[str, Any]) -> bool:
    return str(frame["file"]).endswith((".py", ".pyx")) or str(frame["file"]).startswith("<frozen")


def category(stack: list[dict[str, Any]]) -> str:
    """The category of one CPU sample, from its innermost identifying frame."""
    names = [f["name"] for f in stack]
    if "gc_collect_main" in names:
        return "garbage collector"
    for frame in reversed(stack):  # innermost first
        name, file = str(frame["name"]), str(frame["file"])
        if name in WAKE_FRAMES:
            return "thread hand-off (locks, wake-ups, thread start)"
        if file.endswith(SOCKET_C) or name in ("send", "recv", "sendmsg", "recvmsg", "__send"):
            return "socket syscalls (send/recv/connect)"
        if not _is_python(frame):
            continue
        base = file.rsplit("/", 1)[-1]
        if "uvloop" in file or "/asyncio/" in file:
            return "event loop (uvloop/asyncio)"
        if (
            base in ("threading.py", "queue.py")
            or name.startswith("WorkerPool.")
            or name in ("Server._later", "Server._to_loop")
        ):
            return "thread hand-off (locks, wake-ups, thread start)"
        if base in ("protocol.py", "uuid.py"):  # Pyro5 makes a uuid4 correlation id per frame
            return "framing (protocol: header, reader)"
        if base in ("serializers.py", "serpent.py", "ast.py", "utf_8.py") or "msgpack" in file:
            return "serializing (serializers, serpent)"
        if "/Pyro5/" in file:
            return {
                "client.py": "proxy logic (Proxy, call core)",
                "core.py": "proxy logic (Proxy, call core)",
                "server.py": "dispatch (daemon: lookup, checks, invoke)",
                "svr_threads.py": "server I/O core (reading, linger, write, limits)",
                "socketutil.py": "socket syscalls (send/recv/connect)",
            }.get(base, "other Python")
        if base in ("daemon.py", "exposure.py", "context.py"):
            return "dispatch (daemon: lookup, checks, invoke)"
        if base == "server.py":
            return "server I/O core (reading, linger, write, limits)"
        if base == "client.py":
            return "proxy logic (Proxy, call core)"
        if base in ("servers.py", "profile_hot.py"):
            return "the method / the benchmark loop"
        return "other Python"
    return "interpreter / other native"


def hot_function(stack: list[dict[str, Any]]) -> str:
    """The innermost Python function of a sample (C callees folded into their caller)."""
    for frame in reversed(stack):
        if _is_python(frame):
            file = str(frame["file"])
            short = (
                "/".join(file.split("/")[-2:])
                if "site-packages" in file or "python3" in file
                else file.rsplit("/", 1)[-1]
            )
            return f"{frame['name']} ({short})"
    return f"{stack[-1]['name']} (native)" if stack else "?"


def analyse(path: Path, blocking_recv: bool) -> dict[str, Any]:
    """Waiting share, CPU categories and hot spots of one speedscope file (shares of CPU samples).

    ``blocking_recv``: the program reads blocking sockets without a timeout (Pyro5), so
    a sample inside ``recv`` is mostly waiting for the peer; remoteobj waits in
    poll/epoll and only calls ``recv`` when data is there."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    cats: collections.Counter[str] = collections.Counter()
    hot: collections.Counter[str] = collections.Counter()
    native: collections.Counter[str] = collections.Counter()
    waiting = cpu = 0.0
    for prof in data["profiles"]:
        for sample, weight in zip(prof["samples"], prof["weights"], strict=True):
            stack = [frames[i] for i in sample]
            if any(f["name"] in WAIT_FRAMES for f in stack[-4:]) or (
                blocking_recv and stack and stack[-1]["name"] == "recv"
            ):
                waiting += weight
                continue
            cpu += weight
            cats[category(stack)] += weight
            hot[hot_function(stack)] += weight
            if stack and not _is_python(stack[-1]):
                native[str(stack[-1]["name"])] += weight
    return {"cpu": cpu, "waiting": waiting, "categories": cats, "hot": hot, "native": native}


# --- reading perf profiles (on-CPU, kernel included) ------------------------------------

KERNEL_CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (
        "kernel: memory (mmap/munmap/page faults)",
        (
            "page",
            "mmap",
            "munmap",
            "mremap",
            "mas_",
            "vma",
            "unmap",
            "fault",
            "clear_page",
            "folio",
            "anon_vma",
            "tlb",
            "pgd",
            "pte",
            "pmd",
            "do_vmi",
            "mem_cgroup",
            "memcg",
            "alloc_pages",
            "lru_",
            "zap_",
            "unmapped_area",
            "brk",
            "madvise",
            "rmap",
        ),
    ),
    (
        "kernel: wake-ups and context switches",
        (
            "finish_task_switch",
            "schedule",
            "pick_next",
            "enqueue",
            "dequeue",
            "update_curr",
            "ttwu",
            "try_to_wake_up",
            "select_task_rq",
            "psi_",
            "__switch_to",
            "switch_mm",
            "_raw_spin_unlock_irqrestore",
            "pv_queued_spin",
            "wake",
            "futex",
            "hrtimer",
            "update_load",
            "update_rq",
            "sched",
            "__resched",
            "idle",
            "rcu",
        ),
    ),
    ("kernel: poll/epoll", ("poll", "ep_", "epoll", "fdget", "fput", "__fget")),
    (
        "kernel: TCP/IP send+receive (loopback)",
        (
            "tcp",
            "ip_",
            "ipv4",
            "inet",
            "dev_",
            "xmit",
            "netif",
            "net_rx",
            "backlog",
            "skb",
            "sock",
            "sk_",
            "copy_",
            "_iter",
            "softirq",
            "bh_",
            "sys_send",
            "sys_recv",
            "napi",
            "dst_",
            "nf_",
            "loopback",
            "check_object_size",
            "csum",
            "kmem_cache",
            "kfree",
            "kmalloc",
            "__slab",
            "slab",
        ),
    ),
    (
        "kernel: syscall entry/exit",
        ("entry_SYSCALL", "syscall", "exit_to_user_mode", "__x64_sys", "irq"),
    ),
]


def perf_category(dso: str, kind: str, sym: str) -> str:
    """The category of one (dso, symbol) line of ``perf report``."""
    if kind == "k":
        for name, needles in KERNEL_CATEGORIES:
            if any(n in sym for n in needles):
                return name
        return "kernel: other"
    if "libpython" in dso or dso.startswith("python"):
        return "user: Python interpreter (libpython)"
    if dso.startswith(("libc", "ld-linux")):
        return "user: libc (malloc, memcpy, locks)"
    return "user: C extensions (_struct, _socket, uvloop, ...)"


def analyse_perf(path: Path) -> dict[str, Any]:
    """On-CPU shares by category, and the top symbols, from a ``perf record`` file."""
    out = subprocess.run(
        [
            "perf",
            "report",
            "-i",
            str(path),
            "--no-children",
            "--sort",
            "dso,sym",
            "--stdio",
            "-g",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    cats: dict[str, float] = collections.defaultdict(float)
    syms: dict[str, float] = collections.defaultdict(float)
    for line in out.splitlines():
        m = re.match(r"^\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$", line)
        if not m:
            continue
        pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        cats[perf_category(dso, kind, sym)] += pct
        syms[f"{sym} [{dso.removesuffix('.so.1.0')}]"] += pct
    top = sorted(syms.items(), key=lambda kv: -kv[1])[:50]
    return {"categories": dict(cats), "symbols": dict(top)}


# --- report ---------------------------------------------------------------------------


def _pct(counter: collections.Counter[str], total: float, n: int) -> list[tuple[str, float]]:
    return [(k, 100 * v / total) for k, v in counter.most_common(n)] if total else []


def strace_report(profiled: dict[str, dict[str, Any]]) -> list[str]:
    """Syscalls per call (``strace -c -f``, counts only: strace slows the process a lot)."""
    lines: list[str] = []
    kinds = ("raw", "pyro5", "remoteobj")
    for side in ("daemon", "client"):
        have = [k for k in kinds if profiled.get(f"{k}-strace-{side}", {}).get("syscalls")]
        if not have:
            continue
        per_call: dict[str, dict[str, float]] = {}
        for k in have:
            counts = profiled[f"{k}-strace-{side}"]["syscalls"]
            sends = counts.get("sendto", 0) + counts.get("sendmsg", 0) + counts.get("write", 0)
            per_call[k] = {name: n / max(sends, 1) for name, n in counts.items()}
        names = sorted({n for k in have for n, v in per_call[k].items() if v >= 0.05},
                       key=lambda n: (-max(per_call[k].get(n, 0) for k in have), n))  # fmt: skip
        lines += [
            "",
            f"#### {side}: syscalls per call (strace -c -f; one reply/request send = one call)",
            "",
            "| syscall | " + " | ".join(have) + " |",
            "|---|" + "---:|" * len(have),
        ]
        for name in names:
            lines.append(f"| {name} | " + " | ".join(f"{per_call[k].get(name, 0):.2f}"
                                                     for k in have) + " |")  # fmt: skip
        lines.append("| **total** | " + " | ".join(
            f"**{sum(v for v in per_call[k].values()):.2f}**" for k in have) + " |")  # fmt: skip
    return lines


def perf_report(
    profiled: dict[str, dict[str, float]], perf: dict[str, dict[str, Any]]
) -> list[str]:
    """On-CPU µs per call by category, raw vs Pyro5 vs remoteobj, for each side."""
    lines: list[str] = []
    kinds = ("raw", "pyro5", "remoteobj")
    for side in ("daemon", "client"):
        cpu_key = "server_us" if side == "daemon" else "client_us"
        have = [k for k in kinds if f"{k}-{side}" in perf]
        if not have:
            continue
        cats = sorted({c for k in have for c in perf[f"{k}-{side}"]["categories"]})
        per_call = {k: profiled[f"{k}-perf-{side}"][cpu_key] for k in have}
        lines += [
            "",
            f"#### {side}: on-CPU µs per call by category (perf, 999 Hz, kernel included)",
            "",
            "| category | " + " | ".join(have) + " |",
            "|---|" + "---:|" * len(have),
        ]
        for cat in cats:
            cells = [
                f"{perf[f'{k}-{side}']['categories'].get(cat, 0) * per_call[k] / 100:.1f}"
                for k in have
            ]
            lines.append(f"| {cat} | " + " | ".join(cells) + " |")
        lines.append(
            "| **total CPU per call** | "
            + " | ".join(f"**{per_call[k]:.1f}**" for k in have)
            + " |"
        )
        lines.append(
            "| calls/s during this profile | "
            + " | ".join(f"{profiled[f'{k}-perf-{side}']['rate']:,.0f}" for k in have)
            + " |"
        )
        if "remoteobj" in have:
            lines += [
                "",
                f"Top symbols, remoteobj {side} (% of its on-CPU samples):",
                "",
                "| symbol [dso] | % |",
                "|---|---:|",
            ]
            for sym, pct in list(perf[f"remoteobj-{side}"]["symbols"].items())[:15]:
                lines.append(f"| `{sym}` | {pct:.1f} |")
    return lines


def report(
    args: argparse.Namespace,
    unprofiled: dict[str, list[dict[str, Any]]],
    profiled: dict[str, dict[str, Any]],
    analyses: dict[str, dict[str, Any]],
    perf: dict[str, dict[str, Any]],
) -> str:
    med = {
        k: {m: statistics.median(r[m] for r in runs) for m in runs[0] if m != "syscalls"}
        for k, runs in unprofiled.items()
    }
    lines = [
        f"Command: `python bench/profile_hot.py --seconds {args.seconds:g} --rounds {args.rounds} "
        f"--rate {args.rate} --serializer {args.serializer}` ({args.when})",
        "",
        f"Sequential `ping()`, {args.serializer}, server on CPU {SERVER_CPU}, client on CPU "
        f"{CLIENT_CPU}; medians of {args.rounds} unprofiled runs of {args.seconds:g} s.",
        "",
        "| per call | raw socket (thread/conn) | Pyro5 | remoteobj |",
        "|---|---:|---:|---:|",
    ]
    for metric, label in (
        ("rate", "calls/s"),
        ("wall_us", "wall time, µs"),
        ("client_us", "client CPU, µs"),
        ("server_us", "server CPU, µs"),
    ):
        cells = [
            f"{med[k][metric]:,.0f}" if metric == "rate" else f"{med[k][metric]:.1f}"
            for k in ("raw", "pyro5", "remoteobj")
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for k in ("pyro5", "remoteobj"):
        extra = med[k]["wall_us"] - med["raw"]["wall_us"]
        lines.append("")
        lines.append(
            f"{k}: {extra:.1f} µs per call above the raw ping-pong "
            f"(client CPU +{med[k]['client_us'] - med['raw']['client_us']:.1f} µs, "
            f"server CPU +{med[k]['server_us'] - med['raw']['server_us']:.1f} µs)."
        )
    lines += strace_report(profiled)
    lines += perf_report(profiled, perf)
    for k, a in analyses.items():
        system, side = k.split("-")
        prof = profiled.get(k, {})
        side_us = prof.get("server_us" if side == "daemon" else "client_us", 0.0)
        lines += [
            "",
            f"### {system} {side} (py-spy --native, {args.rate} Hz; under profiling "
            f"{prof.get('rate', 0):,.0f} calls/s, {side_us:.1f} µs CPU per call)",
            "",
            f"All threads, {a['waiting'] + a['cpu']:.1f} s of samples: waiting (poll, epoll, "
            f"futex{', blocking recv' if system == 'pyro5' else ''}) {a['waiting']:.1f} s, "
            f"on CPU {a['cpu']:.1f} s. Shares below are of the on-CPU samples.",
            "",
            "| category | % of CPU | µs per call |",
            "|---|---:|---:|",
        ]
        for name, pct in _pct(a["categories"], a["cpu"], 20):
            lines.append(f"| {name} | {pct:.1f} | {side_us * pct / 100:.1f} |")
        lines += ["", "| hot spot (own time, C callees folded in) | % of CPU |", "|---|---:|"]
        for name, pct in _pct(a["hot"], a["cpu"], args.top):
            lines.append(f"| `{name}` | {pct:.1f} |")
        lines += ["", "| innermost native frame | % of CPU |", "|---|---:|"]
        for name, pct in _pct(a["native"], a["cpu"], 8):
            lines.append(f"| `{name}` | {pct:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--client", nargs=4, metavar=("KIND", "TARGET", "SECONDS", "SER"), help=argparse.SUPPRESS
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rate", type=int, default=100, help="py-spy samples/s (more slows the target down)"
    )
    parser.add_argument("--serializer", default="serpent")
    parser.add_argument("--top", type=int, default=12, help="hot spots listed per process")
    parser.add_argument("--no-pyro5-profile", action="store_true")
    parser.add_argument("--no-perf", action="store_true", help="skip the perf (kernel) profiles")
    parser.add_argument("--no-strace", action="store_true", help="skip the syscall counts")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render from bench/profile/results.json"
    )
    args = parser.parse_args()
    if args.report_only:
        return render(args)
    if args.client:
        kind, target, seconds, ser = args.client
        client_main(kind, target, float(seconds), ser)
        return 0
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {CLIENT_CPU})
    OUT.mkdir(exist_ok=True)
    procs = Procs()
    unprofiled: dict[str, list[dict[str, Any]]] = {"raw": [], "pyro5": [], "remoteobj": []}
    profiled: dict[str, dict[str, Any]] = {}
    perf: dict[str, dict[str, Any]] = {}
    try:
        targets = {
            "raw": procs.server("raw-thread", {SERVER_CPU}),
            "pyro5": procs.server("pyro5", {SERVER_CPU}),
            "remoteobj": procs.server("remoteobj", {SERVER_CPU}),
        }
        for r in range(args.rounds):
            order = list(targets) if r % 2 == 0 else list(targets)[::-1]
            for kind in order:
                target, pid = targets[kind]
                unprofiled[kind].append(
                    run_client(kind, target, pid, args.seconds, args.serializer)
                )
                print(f"[{kind}] {unprofiled[kind][-1]}", file=sys.stderr, flush=True)
        if not args.no_perf:
            for kind, (target, pid) in targets.items():
                for side in ("daemon", "client"):
                    profiled[f"{kind}-perf-{side}"] = run_client(
                        kind, target, pid, args.seconds, args.serializer, profile=f"perf-{side}"
                    )
                    path = OUT / f"{kind}-perf-{side}.data"
                    if path.exists():
                        perf[f"{kind}-{side}"] = analyse_perf(path)
                        path.unlink()  # large and machine-specific; the summary keeps the figures
        if not args.no_strace:
            for kind, (target, pid) in targets.items():
                for side in ("daemon", "client"):
                    profiled[f"{kind}-strace-{side}"] = run_client(
                        kind, target, pid, args.seconds, args.serializer, profile=f"strace-{side}"
                    )
        for kind in ("remoteobj",) if args.no_pyro5_profile else ("remoteobj", "pyro5"):
            target, pid = targets[kind]
            for side in ("daemon", "client"):
                profiled[f"{kind}-{side}"] = run_client(
                    kind, target, pid, args.seconds, args.serializer, profile=side, rate=args.rate
                )
    finally:
        procs.stop_all()
    (OUT / "results.json").write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%d %H:%M"),
                "args": {k: getattr(args, k) for k in ("seconds", "rounds", "rate", "serializer")},
                "unprofiled": unprofiled,
                "profiled": profiled,
                "perf": perf,
            },
            indent=1,
        )
    )
    return render(args)


def render(args: argparse.Namespace) -> int:
    """Write the report from ``bench/profile/results.json`` and the py-spy files."""
    data = json.loads((OUT / "results.json").read_text())
    for key, value in data.get("args", {}).items():  # the measured run's settings
        setattr(args, key, value)
    args.when = data.get("when", "?")
    analyses: dict[str, dict[str, Any]] = {}
    for kind in ("remoteobj", "pyro5"):
        for side in ("daemon", "client"):
            path = OUT / f"{kind}-{side}.speedscope.json"
            if path.exists():
                analyses[f"{kind}-{side}"] = analyse(path, blocking_recv=_blocking_recv(kind, side))
    text = report(args, data["unprofiled"], data["profiled"], analyses, data["perf"])
    print(text)
    (OUT / "summary.md").write_text(text)
    return 0


def _blocking_recv(kind: str, side: str) -> bool:
    """Whether that side waits for its peer inside ``recv`` (a blocking socket) rather than
    in poll/epoll: Pyro5 everywhere; remoteobj's blocking ``Proxy`` (kernel socket
    timeouts since c6ab033). The remoteobj daemon polls, then reads what is there."""
    return kind == "pyro5" or side == "client"


if __name__ == "__main__":
    sys.exit(main())

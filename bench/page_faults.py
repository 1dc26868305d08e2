"""Page faults per call in each daemon while a client sends 1 MiB arguments.

    python bench/page_faults.py [--serializer msgpack] [--calls 200]

Starts the ``bench/servers.py`` daemons of remoteobj and Pyro5 (pinned to
the server CPU, the client to the other), warms each up with 20 calls, then
counts the daemon's page faults with ``perf stat -e page-faults -p PID``
over ``--calls`` calls of ``take(1 MiB)``. It shows what
:mod:`remoteobj.memory` is for: without it glibc unmaps each megabyte
buffer on free and the next message faults its pages in again (~320 faults
per call measured here; Pyro5's daemon: none). Needs ``perf``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import Pyro5.api

import remoteobj

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serializer", default="msgpack")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[-1]
    os.sched_setaffinity(0, {cpus[0]})
    blob = os.urandom(MiB)
    for kind in ("remoteobj", "pyro5"):
        proc = subprocess.Popen(
            ["taskset", "-c", str(server_cpu), sys.executable, "bench/servers.py", kind, "0"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            uri = proc.stdout.readline().split()[1]
            proxy: object
            if kind == "remoteobj":
                proxy = remoteobj.Proxy(uri, config=remoteobj.Config(serializer=args.serializer))
            else:
                proxy = Pyro5.api.Proxy(uri)
                proxy._pyroSerializer = args.serializer  # type: ignore[attr-defined]
            for _ in range(20):
                proxy.take(blob)  # type: ignore[attr-defined]
            perf = subprocess.Popen(
                ["perf", "stat", "-x,", "-e", "page-faults", "-p", str(proc.pid)],
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.3)  # perf attaches asynchronously; a fixed settle time, not a wait
            start = time.perf_counter()
            for _ in range(args.calls):
                proxy.take(blob)  # type: ignore[attr-defined]
            took = time.perf_counter() - start
            perf.send_signal(2)
            report = perf.communicate()[1]
            match = re.search(r"^(\d+),.*page-faults", report, re.MULTILINE)
            faults = int(match.group(1)) if match else -1
            print(
                f"{kind:10} {args.calls / took:7.0f} calls/s  "
                f"{faults / args.calls:7.1f} page faults per call in the daemon"
            )
        finally:
            proc.kill()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

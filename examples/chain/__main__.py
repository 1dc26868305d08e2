"""``python -m examples.chain``: the whole chain demo on this machine, in one command.

1. starts a name server inside this process (``nameserver.daemon``) on
   127.0.0.1, on a free port;
2. starts the three chain servers (``examples/chain/server.py 1 2``, ``2 3``,
   ``3 1``) as processes, pointed at it by ``REMOTEOBJ_NS_HOST``/
   ``REMOTEOBJ_NS_PORT`` and bound to 127.0.0.1 (``REMOTEOBJ_HOST``) on free
   ports, and waits until each has registered its name;
3. runs ``examples/chain/client.py``, which prints the result;
4. stops the servers (SIGTERM) and the name server, and checks that every
   name left the name server with its server.

Exit status 0 when the chain closed and everything stopped cleanly. The
servers' output is shown with a ``[server N]`` prefix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import remoteobj
from nameserver.daemon import NameServerDaemon

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LOOPBACK = "127.0.0.1"
#: (THIS, NEXT) of each server: 1 -> 2 -> 3 -> 1.
TOPOLOGY = (("1", "2"), ("2", "3"), ("3", "1"))
_output = threading.Lock()


def say(text: str) -> None:
    """Print one whole line; the echo threads and the main thread print at once,
    and print() writes the text and the newline separately."""
    with _output:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


#: What ``remoteobj.serve`` prints once the names are registered.
READY_LINE = "remoteobj daemon running."
START_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
#: After a Ctrl-C, how long the servers get to stop on their own before SIGTERM.
SELF_STOP_TIMEOUT = 5.0


class Server:
    """A chain server process whose output is echoed with a prefix as it arrives."""

    def __init__(self, label: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.label = label
        self.lines: list[str] = []
        self._seen = threading.Condition()
        # Our own interpreter running our own script: no untrusted input.
        self.popen = subprocess.Popen(  # noqa: S603
            argv, env=dict(env), cwd=REPO, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )  # fmt: skip
        self._echo = threading.Thread(target=self._forward, name=f"echo-{label}", daemon=True)
        self._echo.start()

    def _forward(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:
            for line in self.popen.stdout:
                say(f"[{self.label}] {line.rstrip()}")
                with self._seen:
                    self.lines.append(line.strip())
                    self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for_line(self, text: str, deadline: float) -> bool:
        """Wait until the server has printed (and we have echoed) the line ``text``;
        ``False`` if it exits or the ``time.monotonic()`` deadline passes first."""
        with self._seen:
            while text not in self.lines:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._echo.is_alive():
                    return False
                self._seen.wait(min(remaining, 0.1))
        return True

    def exits_within(self, timeout: float) -> bool:
        """Whether the process exits (by itself) within ``timeout`` seconds."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def signal(self, sig: int) -> None:
        """Send ``sig`` unless the process has already exited."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit status; killed (and reported as failed) if it does not exit in time."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{self.label} did not stop within {timeout:.0f} s: killing it")
            self.popen.kill()
            self.popen.wait()
            code = -signal.SIGKILL
        self._echo.join(timeout)
        return code


def child_env(ns_port: int) -> dict[str, str]:
    """Our environment, pointed at the embedded name server and at 127.0.0.1."""
    env = dict(os.environ)
    env.update(
        REMOTEOBJ_NS_HOST=LOOPBACK,
        REMOTEOBJ_NS_PORT=str(ns_port),
        REMOTEOBJ_HOST=LOOPBACK,
        PYTHONUNBUFFERED="1",
        # The scripts import remoteobj; this makes that work from a checkout, installed or not.
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    return env


def run_chain(env: Mapping[str, str], servers: list[Server]) -> bool:
    """Start the servers, wait for them, run the client; whether the chain closed."""
    for this, nxt in TOPOLOGY:
        argv = [sys.executable, str(HERE / "server.py"), this, nxt]
        servers.append(Server(f"server {this}", argv, env))
    deadline = time.monotonic() + START_TIMEOUT
    for server in servers:
        if not server.wait_for_line(READY_LINE, deadline):
            say(f"{server.label} did not come up (see its output above)")
            return False
    say("All three servers are registered; running the client:")
    client = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, str(HERE / "client.py")], env=dict(env), cwd=REPO,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CALL_TIMEOUT,
        check=False,
    )  # fmt: skip
    # What the servers printed on the way arrives through other pipes: show it first,
    # so the output reads in the order things happened.
    deadline = time.monotonic() + 5.0
    for server, (this, nxt) in zip(servers, TOPOLOGY, strict=True):
        said = f"{this} forwarding the message to the object {nxt}"
        server.wait_for_line(f"Back at {this}; the chain is closed!" if this == "1" else said,
                             deadline)  # fmt: skip
    sys.stdout.write(client.stdout)
    sys.stderr.write(client.stderr)
    sys.stdout.flush()
    return client.returncode == 0 and client.stdout.startswith("Result=")


def main() -> int:
    """Run the demo; the exit status."""
    received: list[int] = []

    def interrupt(signum: int, _frame: object) -> None:
        received.append(signum)
        for sig in (signal.SIGINT, signal.SIGTERM):  # one is enough: let the cleanup finish
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    # Ctrl-C and a `kill` of the demo both clean up.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)
    config = remoteobj.Config.from_env(host=LOOPBACK, ns_host=LOOPBACK)
    ns = NameServerDaemon(LOOPBACK, 0, config=config)
    ns_thread = threading.Thread(target=ns.request_loop, name="nameserver")
    ns_thread.start()
    say(f"Name server running: {ns.uri}")
    servers: list[Server] = []
    ok = False
    try:
        ok = run_chain(child_env(int(ns.sock.getsockname()[1])), servers)
    except KeyboardInterrupt:
        say("Interrupted.")
    except subprocess.TimeoutExpired:
        say(f"The client took longer than {CALL_TIMEOUT:.0f} s.")
    finally:
        say("Stopping the servers...")
        # Ctrl-C in a terminal reached the servers too (one process group): let them
        # stop by themselves rather than interrupt them again while they clean up.
        by_themselves = signal.SIGINT in received
        codes = []
        for server in servers:  # one at a time, so their last words come in order
            if not (by_themselves and server.exits_within(SELF_STOP_TIMEOUT)):
                server.signal(signal.SIGTERM)
            codes.append(server.wait(STOP_TIMEOUT))
        left = sorted(ns.nameserver.list(prefix="example.chain."))
        ns.shutdown()
        ns_thread.join()
        ns.close()
    if left:
        say(f"Names left in the name server: {', '.join(left)}")
    if received:
        say("Demo interrupted.")
        return 130
    clean = all(code == 0 for code in codes) and not left
    say("Demo finished." if ok and clean else "Demo FAILED.")
    return 0 if ok and clean else 1


if __name__ == "__main__":
    sys.exit(main())

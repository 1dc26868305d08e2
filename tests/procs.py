"""Process helpers for integration tests: free ports, child processes, deadlines.

Everything binds to 127.0.0.1. Children are started with a clean environment
(no inherited ``REMOTEOBJ_*``/``PYRO_*`` settings unless given), their output
is collected line by line, and they are stopped by PID -- never by name.
Waiting is always for a condition with a deadline, never a bare sleep.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = [
    "LOOPBACK",
    "REPO",
    "Proc",
    "always",
    "child_env",
    "free_port",
    "running",
    "start",
    "start_nameserver",
    "wait_for",
]

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that was free a moment ago (TCP by default, ``SOCK_DGRAM`` for UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], T | None],
    timeout: float,
    *,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Poll ``condition`` until it returns something truthy; return that.

    Raises ``AssertionError`` naming ``message`` (or what it returns, when it is
    a callable: the state seen last, say) when ``timeout`` seconds pass first.
    Exceptions from ``condition`` propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


def always(
    condition: Callable[[], object],
    duration: float,
    *,
    interval: float = 0.05,
    message: str = "condition",
) -> None:
    """Check ``condition`` again and again for ``duration`` seconds; fail (``AssertionError``
    naming ``message``) the first time it is falsy. The opposite of :func:`wait_for`."""
    deadline = time.monotonic() + duration
    while True:
        if not condition():
            raise AssertionError(f"{message} stopped holding")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: ours minus remoteobj/Pyro settings, plus ``extra``,
    with the checkout on ``PYTHONPATH`` so ``python -m nameserver`` works uninstalled."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REMOTEOBJ_", "PYRO_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Proc:
    """A child process whose stdout+stderr lines are collected as they arrive."""

    def __init__(self, popen: subprocess.Popen[str], argv: Sequence[str]) -> None:
        self.popen = popen
        self.argv = list(argv)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:  # closed at EOF, so no pipe outlives the child
            for line in self.popen.stdout:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        """Everything the child printed so far."""
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first output line matching ``pattern`` (``re.search``), waiting for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (
                    self.popen.poll() is not None and not self._reader.is_alive()
                ):
                    raise AssertionError(
                        f"no line matching {pattern!r} from {self.argv} "
                        f"(exit {self.popen.poll()}); output:\n" + "\n".join(self.lines)
                    )
                self._changed.wait(min(remaining, 0.1))

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child by PID (ignored if it has already exited)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the child to exit; its exit status. Fails the test on timeout."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.argv} did not exit within {timeout} s") from None
        self._reader.join(timeout)
        return code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` (SIGCONT first, in case it was stopped) and wait; SIGKILL if it hangs."""
        if self.popen.poll() is None:
            self.send_signal(signal.SIGCONT)
            self.send_signal(sig)
            try:
                return self.wait(timeout)
            except AssertionError:
                self.send_signal(signal.SIGKILL)
                self.popen.wait(timeout)
                raise
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL by PID, reap, and collect the last output."""
        self.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        self._reader.join(10)


def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> Proc:
    """Start ``argv`` (``"python"`` as first item means this interpreter) with
    :func:`child_env` plus ``env``; stdout and stderr are merged and collected."""
    args = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    popen = subprocess.Popen(
        args,
        env=child_env(env),
        cwd=str(cwd or REPO),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    return Proc(popen, args)


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> Iterator[Proc]:
    """:func:`start` ``argv`` for the ``with`` block; SIGKILLed by PID afterwards if still up."""
    proc = start(argv, env=env, cwd=cwd)
    try:
        yield proc
    finally:
        proc.kill()


def start_nameserver(
    *args: str,
    env: Mapping[str, str] | None = None,
    pyro5: bool = False,
    timeout: float = 15.0,
) -> tuple[Proc, str]:
    """Start ``remoteobj-ns`` (or Pyro5's with ``pyro5=True``) on 127.0.0.1, a
    port of its own choosing and no broadcast, plus ``args`` (later flags win);
    returns the process and the name server URI it printed."""
    module = "Pyro5.nameserver" if pyro5 else "nameserver"
    proc = start(["python", "-m", module, "-n", LOOPBACK, "-p", "0", "-x", *args], env=env)
    try:
        uri = proc.wait_for_line(r"^URI = (PYRO:\S+)$", timeout).group(1)
    except BaseException:
        proc.kill()
        raise
    return proc, uri

"""The examples, run exactly as README.md tells a user to run them.

Every command below is checked to appear verbatim in README.md, then run as a
process on 127.0.0.1: the name server on a free port, found by the examples
through ``REMOTEOBJ_NS_HOST``/``REMOTEOBJ_NS_PORT``, the servers bound to
127.0.0.1 (``REMOTEOBJ_HOST``) on ports of their own choosing.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.procs import LOOPBACK, REPO, Proc, child_env, free_port, start

README = REPO / "README.md"

NS = "remoteobj-ns"
NSC_LOOKUP = "remoteobj-nsc lookup example.greeting"
GREETING_SERVER = "python examples/greeting/server.py"
GREETING_CLIENT = "python examples/greeting/client.py LiLei"
ASYNC_CLIENT = "python examples/greeting/async_client.py LiLei HanMeimei"
CHAIN_SERVERS = (
    "python examples/chain/server.py 1 2",
    "python examples/chain/server.py 2 3",
    "python examples/chain/server.py 3 1",
)
CHAIN_CLIENT = "python examples/chain/client.py"
DEMO = "python -m examples.chain"

READY = r"^remoteobj daemon running\.$"
CHAIN_RESULT = (
    "Result=['passed on from 1', 'passed on from 2', 'passed on from 3', 'complete at 1']"
)


def _shell_lines(text: str) -> set[str]:
    """Every command line of the README's ``sh`` blocks, comments stripped."""
    lines: set[str] = set()
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            lines.update(part.strip() for part in command.split("&&") if part.strip())
    return lines


@pytest.mark.parametrize(
    "command",
    [NS, NSC_LOOKUP, GREETING_SERVER, GREETING_CLIENT, ASYNC_CLIENT, *CHAIN_SERVERS,
     CHAIN_CLIENT, DEMO],
)  # fmt: skip
def test_the_readme_gives_these_commands(command: str) -> None:
    assert command in _shell_lines(README.read_text(encoding="utf-8"))


def _argv(command: str) -> list[str]:
    """The command as run from the checkout; ``remoteobj-*`` are the installed scripts."""
    argv = command.split()
    if argv[0].startswith("remoteobj-"):
        script = Path(sysconfig.get_path("scripts")) / argv[0]
        if not script.exists():  # not installed: the module is the same program
            module = "nameserver" if argv[0] == "remoteobj-ns" else "nameserver.nsc"
            return [sys.executable, "-m", module, *argv[1:]]
        return [str(script), *argv[1:]]
    return argv


def _env(ns_port: int) -> dict[str, str]:
    return {
        "REMOTEOBJ_NS_HOST": LOOPBACK,
        "REMOTEOBJ_NS_PORT": str(ns_port),
        "REMOTEOBJ_HOST": LOOPBACK,
    }


def _run(command: str, env: dict[str, str], stdin: str = "", timeout: float = 20.0) -> str:
    """Run a command to completion; its output (stdout+stderr), asserting exit status 0."""
    argv = _argv(command)
    if argv[0] == "python":
        argv[0] = sys.executable
    done = subprocess.run(
        argv, env=child_env(env), cwd=REPO, input=stdin, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{output}"
    return output


def _start(command: str, env: dict[str, str]) -> Proc:
    return start(_argv(command), env=env)


def _stop(proc: Proc, sig: int = signal.SIGTERM) -> int:
    return proc.stop(sig, timeout=10)


@pytest.fixture
def name_server() -> Iterator[dict[str, str]]:
    """``remoteobj-ns`` as the README starts it, on a free port (by environment);
    yields the environment that points the examples at it."""
    env = _env(free_port())
    proc = _start(NS, env)
    try:
        proc.wait_for_line(rf"^URI = PYRO:Pyro\.NameServer@{re.escape(LOOPBACK)}:\d+$", 15)
        yield env
        assert _stop(proc) == 0, proc.output
    finally:
        proc.kill()


def _started(commands: Sequence[str], env: dict[str, str]) -> list[Proc]:
    procs = [_start(command, env) for command in commands]
    for proc in procs:
        proc.wait_for_line(READY, 15)
    return procs


def _another_loopback() -> str:
    """127.0.0.2 where it can be bound (Linux: all of 127/8 is loopback), else 127.0.0.1."""
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
    except OSError:
        return LOOPBACK
    return "127.0.0.2"


def test_greeting_server_and_clients(name_server: dict[str, str]) -> None:
    env = name_server
    # The server listens where REMOTEOBJ_HOST says, the clients find it all the same.
    host = _another_loopback()
    (server,) = _started([GREETING_SERVER], {**env, "REMOTEOBJ_HOST": host})
    try:
        assert _run(GREETING_CLIENT, env).splitlines() == ["Hi welcome LiLei"]
        # Without a name it asks for one.
        asked = _run(GREETING_CLIENT.removesuffix(" LiLei"), env, stdin="Han Meimei\n")
        assert asked == "What is your name? Hi welcome Han Meimei\n"
        # The asyncio client: both calls in flight on one connection, answers in order.
        lines = _run(ASYNC_CLIENT, env).splitlines()
        assert lines == ["Hi welcome LiLei", "Hi welcome HanMeimei"]
        asked = _run(ASYNC_CLIENT.split(" LiLei", maxsplit=1)[0], env, stdin="Li Lei\n")
        assert asked == "What is your name? Hi welcome Li Lei\n"
        uri = server.wait_for_line(r"^\s+uri = (PYRO:\S+)$").group(1)
        assert re.fullmatch(rf"PYRO:\w+@{re.escape(host)}:\d+", uri)
        assert _run(NSC_LOOKUP, env).splitlines() == [uri]
    finally:
        code = _stop(server, signal.SIGTERM)
    assert code == 0, server.output
    assert server.lines[-1] == "Server stopped."
    # It took its name with it.
    with pytest.raises(AssertionError, match="unknown name"):
        _run(NSC_LOOKUP, env)


def test_chain_of_three_servers(name_server: dict[str, str]) -> None:
    env = name_server
    servers = _started(CHAIN_SERVERS, env)
    try:
        assert _run(CHAIN_CLIENT, env).splitlines() == [CHAIN_RESULT]
        # Server 1 was called again by server 3 while its first call was still running.
        first = servers[0]
        first.wait_for_line(r"^Back at 1; the chain is closed!$", 5)
        assert first.lines.index("1 forwarding the message to the object 2") < first.lines.index(
            "Back at 1; the chain is closed!"
        )
        # A second run reuses the links' connections and still closes the ring.
        assert _run(CHAIN_CLIENT, env).splitlines() == [CHAIN_RESULT]
    finally:
        codes = [_stop(proc, signal.SIGINT) for proc in servers]
    assert codes == [0, 0, 0], "\n---\n".join(p.output for p in servers)
    for number, proc in enumerate(servers, 1):
        assert proc.lines[-1] == f"server_{number} stopped."
    listing = _run("remoteobj-nsc list example.chain.", env)
    assert "example.chain." not in listing.replace("prefix 'example.chain.'", "")


def test_one_command_demo() -> None:
    """``python -m examples.chain``: everything starts, the ring closes, everything stops."""
    output = _run(DEMO, {}, timeout=60)
    lines = output.splitlines()
    assert CHAIN_RESULT in lines
    assert lines[-1] == "Demo finished."
    assert re.match(rf"^Name server running: PYRO:Pyro\.NameServer@{LOOPBACK}:\d+$", lines[0])
    for number in (1, 2, 3):
        assert re.search(rf"^\[server {number}\] +uri = PYRO:\S+@{LOOPBACK}:\d+$", output, re.M)
    # The README shows how the demo ends: that is how it ends.
    readme = README.read_text(encoding="utf-8")
    shown = re.search(r"It ends with:\n\n```text\n(.*?)```", readme, re.S)
    assert shown is not None
    assert lines[-len(shown.group(1).splitlines()) :] == shown.group(1).splitlines()

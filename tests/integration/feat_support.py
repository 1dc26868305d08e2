"""Helpers shared by the feature tests: peers, in-process daemons, counters."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import remoteobj
from tests.procs import Proc, start, wait_for

PEER = "tests/integration/feat_peer.py"


def start_peer(impl: str, *options: str, env: dict[str, str] | None = None) -> tuple[Proc, str]:
    """Start ``feat_peer.py`` (remoteobj or pyro5) on a port of its own; (process, uri)."""
    from tests.procs import free_port

    proc = start(["python", PEER, impl, str(free_port()), *options], env=env)
    try:
        uri = proc.wait_for_line(r"READY (\S+)", timeout=15).group(1)
    except BaseException:
        proc.kill()
        raise
    return proc, uri


def start_peers(specs: Sequence[tuple[str, Sequence[str]]]) -> list[tuple[Proc, str]]:
    """Start several peers at once (their start-up overlaps); (process, uri) each."""
    from tests.procs import free_port

    procs = [start(["python", PEER, impl, str(free_port()), *options]) for impl, options in specs]
    try:
        return [(p, p.wait_for_line(r"READY (\S+)", timeout=15).group(1)) for p in procs]
    except BaseException:
        for p in procs:
            p.kill()
        raise


def object_uri(service_uri: str, object_id: str) -> str:
    """The URI of another object of the same peer."""
    return service_uri.replace("feat.service", object_id)


def counts(service_uri: str) -> dict[str, int]:
    """The peer's counters (live instances, open generators...)."""
    with remoteobj.Proxy(object_uri(service_uri, "feat.stats")) as stats:
        result: dict[str, int] = stats.counts()
        return result


def wait_count(service_uri: str, key: str, expected: int, timeout: float = 5.0) -> None:
    """Wait until the peer's counter ``key`` equals ``expected``."""
    wait_for(
        lambda: counts(service_uri)[key] == expected,
        timeout,
        message=f"{key} == {expected} (now {counts(service_uri)[key]})",
    )


@contextlib.contextmanager
def serving(daemon: remoteobj.Daemon) -> Iterator[remoteobj.Daemon]:
    """Serve ``daemon`` in a thread for the block; shut it down and close it after."""
    daemon.bind()  # here, not racing the serving thread's own bind()
    thread = threading.Thread(target=daemon.request_loop, name="test-daemon", daemon=True)
    thread.start()
    try:
        # Serving for sure before the block (a shutdown() before serve() starts is lost).
        with remoteobj.Proxy(daemon.uri_for("Pyro.Daemon")) as builtin:
            try:
                builtin.ping()
            except remoteobj.errors.CommunicationError as exc:
                if "rejected" not in str(exc):  # a refused handshake is an answer too
                    raise
        yield daemon
    finally:
        daemon.shutdown()
        thread.join(10)
        daemon.close()
        assert not thread.is_alive(), "daemon thread did not stop"


@contextlib.contextmanager
def call_context(**values: Any) -> Iterator[remoteobj.CallContext]:
    """Set fields of this thread's call context for the block, restoring them after."""
    ctx = remoteobj.current_context()
    saved = {name: getattr(ctx, name) for name in values}
    saved["response_annotations"] = ctx.response_annotations
    for name, value in values.items():
        setattr(ctx, name, value)
    try:
        yield ctx
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)

"""Frozen configuration, passed explicitly to daemons, proxies and the name server.

There is no global configuration object to mutate. Build a :class:`Config`
(``Config(commtimeout=5)``), derive one (``cfg.replace(serializer="json")``) or
read the environment once (``Config.from_env()``), and hand it to the
constructors that need it. Every default below is a limit that protects a
server from a hostile or broken peer; each is pinned by a test.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

__all__ = ["ENV_PREFIX", "SERIALIZER_NAMES", "Config"]

ENV_PREFIX = "REMOTEOBJ_"
SERIALIZER_NAMES = ("serpent", "marshal", "json", "msgpack")

MiB = 1024 * 1024
#: Longest busy-poll allowed (``reply_spin``, ``request_spin``): past this, sleeping is cheap.
MAX_SPIN = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Every tunable of remoteobj, with defaults that are safe to expose.

    Times are in seconds, sizes in bytes. ``0`` never means "unlimited" unless
    the field says so.
    """

    # --- addresses -----------------------------------------------------------
    #: Interface a daemon binds to when none is given.
    host: str = "localhost"
    #: Where :func:`remoteobj.locate_ns` looks first, and the name server's defaults.
    ns_host: str = "localhost"
    ns_port: int = 9090
    #: UDP port of the name server's ``GET_NSURI`` broadcast responder.
    ns_bcport: int = 9091
    #: Address the broadcast responder binds to (``None``: the name server's host).
    ns_bchost: str | None = None

    # --- serialization ---------------------------------------------------------
    #: Serializer a proxy speaks: serpent, json, msgpack or marshal.
    serializer: str = "serpent"
    #: Serializers a daemon decodes. marshal is off: it is not safe on hostile input.
    accepted_serializers: frozenset[str] = frozenset({"serpent", "json", "msgpack"})
    #: Compress outgoing payloads over 100 bytes with zlib (Pyro5's COMPRESSION).
    compression: bool = False
    #: Largest frame accepted, counted after decompression.
    max_message_size: int = 4 * MiB
    #: Most elements (commas and brackets) a serpent payload may hold before parsing.
    serpent_max_elements: int = 100_000
    #: Deepest nesting a payload may have.
    max_nesting: int = 200
    #: Payloads above this size are decoded at most ``max_concurrent_decodes`` at a time.
    large_payload: int = 64 * 1024
    max_concurrent_decodes: int = 2
    #: Send the remote traceback with exceptions (Pyro5 does; turn off to hide paths).
    send_tracebacks: bool = True

    # --- client ----------------------------------------------------------------
    #: Deadline of one call, from send to reply (``0``: none). Pyro5's COMMTIMEOUT.
    commtimeout: float = 30.0
    #: Deadline for connecting and the handshake.
    connect_timeout: float = 10.0
    #: A proxy connection idle this long is pinged in the background (``0``: never),
    #: and marked dead if the daemon does not answer within ``ping_timeout``: a
    #: hung daemon (no FIN, e.g. SIGSTOP) is found before the next call is sent.
    ping_interval: float = 30.0
    ping_timeout: float = 10.0
    #: Handshake data sent by proxies (Pyro5's default is "hello").
    handshake: Any = "hello"
    #: How long a proxy with one call in flight busy-polls for the reply before it
    #: sleeps (``0``: never); threads sharing a proxy wait awake five times this
    #: long for the reader to hand them their replies. Waking a sleeping CPU costs
    #: more than a small call (:mod:`remoteobj.spinning`); waits that outlast the
    #: budget make later ones skip it.
    reply_spin: float = 0.0002

    # --- server ----------------------------------------------------------------
    #: Threads that run synchronous methods.
    workers: int = 64
    #: How long a worker keeps reading a busy connection once it idles, before
    #: handing it back to the loop (``0``: never keep one). While other connections
    #: keep the same worker busy, an idle one stays 50 ms.
    worker_linger: float = 0.005
    #: How long such a worker busy-polls for the next request before it sleeps
    #: (``0``: never): once a request came while it lingered (a caller back to
    #: back), while no other call runs, and skipped when it rarely pays.
    request_spin: float = 0.0002
    #: A new connection must complete its first frame within this.
    first_frame_timeout: float = 10.0
    #: Once a frame's first byte is in, the whole frame must arrive within this.
    frame_timeout: float = 10.0
    #: TLS handshakes must finish within this.
    ssl_handshake_timeout: float = 10.0
    #: Connections held at once; past it the longest-idle one is closed.
    max_connections: int = 1024
    #: Connections idle longer than this are closed (``0``: never).
    idle_timeout: float = 0.0
    #: Calls running at once for one connection, and for the whole daemon.
    max_inflight_per_conn: int = 16
    max_inflight: int = 256
    #: Calls in one batch.
    max_batch: int = 1000
    #: Oneway calls running at once, and waiting; past that they are dropped and counted.
    oneway_workers: int = 32
    oneway_queue: int = 1024
    #: Buffered reply bytes a slow reader may hold, and how long it may stall.
    write_high_water: int = 1 * MiB
    write_timeout: float = 30.0
    #: TCP keepalive (idle, interval, probes) and TCP_USER_TIMEOUT.
    keepalive: tuple[int, int, int] = (60, 10, 3)
    tcp_user_timeout: float = 30.0
    #: Lifetime of a server-side stream (``0``: unlimited),
    #: and how long one outlives its connection.
    iter_stream_lifetime: float = 0.0
    iter_stream_linger: float = 30.0
    #: Streams open at once per daemon.
    max_streams: int = 1024
    #: Grace period of :meth:`Daemon.shutdown` for calls in flight.
    shutdown_grace: float = 5.0

    # --- name server -----------------------------------------------------------
    #: How long a daemon's registration lives without renewal.
    ns_lease: float = 30.0
    #: How often a daemon renews its registrations.
    ns_renew: float = 10.0
    #: How long a proxy may reuse a ``PYRONAME`` resolution of this process before
    #: asking the name server again (``0``: ask every time, as Pyro5 does). A
    #: reused address that refuses the connection is looked up afresh at once.
    ns_cache_ttl: float = 1.0
    #: Names a name server holds at most, and the longest name.
    ns_max_names: int = 100_000
    ns_max_name_length: int = 256

    # --- security --------------------------------------------------------------
    #: Shared secret for the challenge-response handshake (``None``: off). Never sent;
    #: both sides prove they know it (:mod:`remoteobj.auth`).
    auth_secret: str | None = field(default=None, repr=False)
    #: Speak TLS: a daemon accepts TLS connections only, a proxy connects with TLS.
    ssl: bool = False
    #: PEM certificate (chain) and private key of this side: a daemon's, or a proxy's
    #: for mutual TLS (``ssl_keyfile`` ``None``: the key is in ``ssl_certfile``).
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: PEM CA certificates to verify the peer with (a proxy: the system's if ``None``;
    #: a daemon: the CAs client certificates must be signed by).
    ssl_cafile: str | None = None
    #: Daemons: refuse clients without a certificate signed by ``ssl_cafile`` (mutual TLS).
    ssl_require_client_cert: bool = False
    #: Proxies: the daemon's certificate must name the host of the URI.
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid Config: " + "; ".join(problems))

    def _problems(self) -> typing.Iterator[str]:
        if self.serializer not in SERIALIZER_NAMES:
            names = ", ".join(SERIALIZER_NAMES)
            yield f"serializer must be one of {names}, not {self.serializer!r}"
        unknown = set(self.accepted_serializers) - set(SERIALIZER_NAMES)
        if unknown:
            yield f"accepted_serializers has unknown names {sorted(unknown)}"
        for name in ("ns_port", "ns_bcport"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                yield f"{name} must be a port number (0-65535), not {value}"
        positive = (
            "max_message_size",
            "serpent_max_elements",
            "max_nesting",
            "max_concurrent_decodes",
            "workers",
            "max_connections",
            "max_inflight_per_conn",
            "max_inflight",
            "max_batch",
            "oneway_workers",
            "oneway_queue",
            "write_high_water",
            "max_streams",
            "ns_max_names",
            "ns_max_name_length",
            "first_frame_timeout",
            "frame_timeout",
            "ssl_handshake_timeout",
            "connect_timeout",
            "ping_timeout",
            "write_timeout",
            "ns_lease",
            "ns_renew",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                yield f"{name} must be > 0, not {getattr(self, name)}"
        non_negative = (
            "ns_cache_ttl",
            "commtimeout",
            "worker_linger",
            "reply_spin",
            "request_spin",
            "idle_timeout",
            "iter_stream_lifetime",
            "iter_stream_linger",
            "shutdown_grace",
            "tcp_user_timeout",
            "ping_interval",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                yield f"{name} must be >= 0, not {getattr(self, name)}"
        for name in ("reply_spin", "request_spin"):
            if (value := getattr(self, name)) > MAX_SPIN:
                yield f"{name} must be at most {MAX_SPIN} (it busy-polls a CPU), not {value}"
        if self.ns_renew >= self.ns_lease:
            yield f"ns_renew ({self.ns_renew}) must be shorter than ns_lease ({self.ns_lease})"
        if self.auth_secret is not None and not self.auth_secret:
            yield "auth_secret must not be empty (None turns authentication off)"
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            yield "ssl_keyfile needs ssl_certfile"
        if self.ssl_require_client_cert and (not self.ssl or self.ssl_cafile is None):
            yield "ssl_require_client_cert needs ssl and ssl_cafile (the CA of client certificates)"

    @classmethod
    def default(cls) -> Config:
        """The configuration constructors use when given none: :meth:`from_env`,
        parsed once per distinct set of ``REMOTEOBJ_`` variables."""
        return _from_env_cached(_env_settings())

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (validated like a new one)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Build a Config from ``REMOTEOBJ_<FIELD>`` environment variables.

        ``REMOTEOBJ_COMMTIMEOUT=5`` sets ``commtimeout``; booleans take
        1/0/true/false/yes/no/on/off, sets and tuples take comma-separated
        values. An unknown ``REMOTEOBJ_`` variable or a value that does not
        parse raises :class:`ValueError` naming it, so a typo never goes
        unnoticed. Keyword ``overrides`` win over the environment.
        """
        env = os.environ if environ is None else environ
        hints = _field_types()
        values: dict[str, Any] = {}
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name not in hints:
                raise ValueError(f"unknown setting {key} (no Config field {name!r})")
            try:
                values[name] = _parse(hints[name], raw)
            except ValueError as exc:
                raise ValueError(f"{key}={raw!r}: {exc}") from None
        values.update(overrides)
        return cls(**values)


@functools.cache
def _field_types() -> dict[str, Any]:
    """Each Config field's declared type, resolved once: resolving the annotations
    takes ~0.4 ms, which ``from_env`` paid on every call."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


@functools.lru_cache(maxsize=8)
def _from_env_cached(items: tuple[tuple[str, str], ...]) -> Config:
    return Config.from_env(dict(items))


_PREFIX_BYTES = ENV_PREFIX.encode()


def _env_settings() -> tuple[tuple[str, str], ...]:
    """The ``REMOTEOBJ_`` variables, sorted. Runs for every proxy made without a
    config, so on POSIX it scans the raw bytes behind ``os.environ``: iterating
    ``os.environ`` decodes every key and value first, ``os.environb`` still runs
    Python code per key (13 us with 40 variables, against 2 us for the dict)."""
    raw = getattr(os.environ, "_data", None)  # CPython's bytes dict under os.environ
    if os.supports_bytes_environ and isinstance(raw, dict):
        ours = [(k, v) for k, v in raw.items() if k.startswith(_PREFIX_BYTES)]
        return tuple(sorted((os.fsdecode(k), os.fsdecode(v)) for k, v in ours))
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX)))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(hint: Any, raw: str) -> Any:
    """Turn one environment string into a value of the field's declared type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if raw.strip().lower() in ("", "none"):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse(inner, raw)
    if hint is bool:
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("expected a boolean (1/0, true/false, yes/no, on/off)")
    if hint is int:
        return int(raw)
    if hint is float:
        return float(raw)
    if hint is str:
        return raw
    if origin is frozenset:
        return frozenset(part.strip() for part in raw.split(",") if part.strip())
    if origin is tuple:
        parts = [p.strip() for p in raw.split(",")]
        if len(parts) != len(args):
            raise ValueError(f"expected {len(args)} comma-separated values")
        return tuple(_parse(a, p) for a, p in zip(args, parts, strict=True))
    if hint is Any:
        return raw
    raise ValueError(f"cannot read a {hint} from the environment")

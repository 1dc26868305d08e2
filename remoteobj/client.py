"""Proxies: one protocol core without I/O, and two thin shells over it.

- :class:`CallCore` knows the protocol side of a proxy: the handshake, the
  metadata, sequence numbers, building INVOKE frames and turning RESULT
  frames into values or raised exceptions. It does no I/O.
- :class:`Proxy` is the blocking shell. One proxy may be used by many threads
  at once: their requests share one connection and their replies are matched
  by sequence number. Whichever waiting thread holds the *reader* role reads
  the socket and hands other threads their replies, so a single caller reads
  its own reply with no thread hop at all.
- :class:`AsyncProxy` is the asyncio shell: many calls in flight on one
  connection, replies routed to futures by a reader task.

Names starting with ``_`` are local (``_release()``, ``_bind()``,
``_timeout``...), never remote, so they cannot collide with remote names.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import logging
import math
import select
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Container, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import protocol as p
from .auth import AUTH_KEY, ClientAuth
from .blob import blob_call
from .config import Config
from .context import current_context
from .errors import (
    CommunicationError,
    ConnectionClosedError,
    ProtocolError,
    SerializeError,
    TimeoutError,
)
from .memory import prime_allocator
from .receiving import receive, timeval
from .serializers import (
    DecodeLimits,
    get_serializer,
    register_class_to_dict,
    register_dict_to_class,
)
from .spinning import CAN_POLL, SocketWatch, Spinner
from .streams import DAEMON_OBJECT as STREAM_DAEMON
from .streams import STREAM_ANNOTATION, AsyncStreamIterator, StreamIterator, StreamRef
from .tls import client_context
from .uri import URI

__all__ = ["AsyncProxy", "CallCore", "Proxy", "RemoteMeta"]

log = logging.getLogger(__name__)

RECV_SIZE = 64 * 1024  # asyncio reads (StreamReader.read allocates only what is there)
#: A connection idle this long is checked for a dead peer before a call is sent on it.
IDLE_CHECK_AFTER = 0.05


@dataclass(frozen=True, slots=True)
class RemoteMeta:
    """What the remote object exposes, as told by the daemon at connect time."""

    methods: frozenset[str]
    oneway: frozenset[str]
    attrs: frozenset[str]

    @classmethod
    def from_wire(cls, meta: Any) -> RemoteMeta:
        """Read Pyro5's ``meta`` dict (sets, or lists/tuples in json/serpent)."""
        if not isinstance(meta, Mapping):
            raise ProtocolError("invalid connect reply: no metadata")

        def names(key: str) -> frozenset[str]:
            value = meta.get(key) or ()
            if not isinstance(value, (set, frozenset, list, tuple)):
                raise ProtocolError(f"invalid connect reply: metadata {key!r} is not a collection")
            return frozenset(str(v) for v in value)

        return cls(names("methods"), names("oneway"), names("attrs"))


class CallCore:
    """The protocol logic of a proxy, without I/O; shared by both shells."""

    __slots__ = (
        "auth",
        "config",
        "handshake",
        "handshake_response",
        "limits",
        "meta",
        "object_id",
        "serializer",
        "uri",
    )

    def __init__(self, uri: URI, config: Config) -> None:
        prime_allocator(config.max_message_size)  # once per process: see remoteobj.memory
        self.uri = uri
        self.config = config
        self.object_id = uri.object
        self.serializer = get_serializer(config.serializer)
        self.limits = DecodeLimits.from_config(config)
        self.handshake: Any = config.handshake
        self.handshake_response: Any = None
        self.meta: RemoteMeta | None = None
        secret = config.auth_secret
        #: The shared-secret exchange of this connection attempt (remoteobj.auth).
        self.auth = ClientAuth(secret, str(self.object_id)) if secret else None

    def connect_frame(self) -> bytes:
        """The CONNECT frame that opens a connection to this proxy's object."""
        return self._connect_frame(self.auth.hello() if self.auth is not None else None)

    def _connect_frame(self, auth: dict[str, str] | None) -> bytes:
        data: dict[str, Any] = {"handshake": self.handshake, "object": self.object_id}
        if auth is not None:
            data[AUTH_KEY] = auth
        payload = self.serializer.dumps(data)
        ctx = current_context()
        corr = ctx.corr_id or p.NO_CORR_ID
        msg = p.Message(
            p.MSG_CONNECT,
            self.serializer.serializer_id,
            0,
            payload,
            annotations=ctx.annotations,
            corr_id=corr,
        )
        return p.encode(msg, compress=self.config.compression)

    def on_connect_reply(self, msg: p.Message) -> bytes | None:
        """Check the daemon's answer to CONNECT: store the metadata and return ``None``;
        or return the CONNECT frame that answers an authentication challenge (send it
        and pass the reply here again); or raise."""
        if msg.type == p.MSG_CONNECTFAIL:
            reason = self._fail_reason(msg)
            if self.auth is not None:
                answer = self.auth.answer(reason)
                if answer is not None:
                    return self._connect_frame(answer)
            raise CommunicationError(f"connection to {self.uri} rejected: {reason}")
        if msg.type != p.MSG_CONNECTOK:
            raise ProtocolError(f"invalid msg type {msg.type} received in reply to connect")
        if msg.serializer_id != self.serializer.serializer_id:
            raise SerializeError("invalid serializer in response")
        data = self.serializer.loads(msg.data, self.limits)
        if not isinstance(data, Mapping):
            raise ProtocolError("invalid connect reply")
        if self.auth is not None:
            self.auth.verify_server(data.get(AUTH_KEY))  # the daemon knows the secret too
        meta = RemoteMeta.from_wire(data.get("meta"))
        if not meta.methods and not meta.attrs:
            raise CommunicationError(f"remote object {self.uri} exposes nothing")
        self.meta = meta
        self.handshake_response = data.get("handshake")
        return None

    def _fail_reason(self, msg: p.Message) -> Any:
        """The text of a CONNECTFAIL. A marshal one (what daemons send before they know
        the serializer) is read without ``marshal.loads``: a proxy never runs the
        marshal decoder on a daemon's bytes unless it speaks marshal itself."""
        try:
            if msg.serializer_id == MARSHAL_ID and self.serializer.serializer_id != MARSHAL_ID:
                return _marshal_text(msg.data)
            return get_serializer(msg.serializer_id).loads(msg.data, self.limits)
        except (SerializeError, ValueError):
            return "(unreadable reason)"

    def invoke_frame(
        self,
        seq: int,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        flags: int = 0,
        *,
        object_id: str | None = None,
    ) -> p.Frame:
        """An INVOKE frame, carrying the caller's correlation id and annotations
        (in parts when the payload is large: see :func:`remoteobj.protocol.encode_frame`).

        ``object_id`` addresses another object on the same connection (the
        daemon's ``Pyro.Daemon`` for stream items). A :class:`SerializedBlob` as
        the only argument travels as it is, with ``FLAGS_KEEPSERIALIZED``.
        """
        target = self.object_id if object_id is None else object_id
        ctx = current_context()
        annotations = ctx.annotations
        blob = blob_call(self.serializer, target, method, args, kwargs, annotations=annotations)
        if blob is None:
            data = self.serializer.dumps_call_buffer(target, method, args, kwargs)
        else:
            data, annotations = blob
            flags |= p.FLAGS_KEEPSERIALIZED
        corr = ctx.corr_id or p.NO_CORR_ID
        msg = p.Message(
            p.MSG_INVOKE, self.serializer.serializer_id, seq, data, flags, annotations, corr
        )
        return p.encode_frame(msg, compress=self.config.compression)

    def is_oneway(self, method: str) -> bool:
        """Whether calls of ``method`` get no reply (the daemon marked it @oneway)."""
        return self.meta is not None and method in self.meta.oneway

    def check_method(self, name: str) -> None:
        """Raise :class:`AttributeError` unless ``name`` is an exposed remote method."""
        if self.meta is not None and name not in self.meta.methods:
            raise AttributeError(f"remote object '{self.uri}' has no exposed method {name!r}")

    def result(self, msg: p.Message) -> Any:
        """The value a RESULT frame carries; raises the remote exception if it carries one."""
        if msg.type != p.MSG_RESULT:
            raise ProtocolError(f"invalid msg type {msg.type} received in reply to a call")
        if msg.serializer_id != self.serializer.serializer_id:
            raise SerializeError("invalid serializer in response")
        # Every reply replaces the caller's response annotations (as Pyro5 does), so
        # they always belong to the last call; read them before the next call.
        current_context().response_annotations = msg.annotations
        if msg.flags & p.FLAGS_ITEMSTREAMRESULT:
            # Tested before EXCEPTION: the exception payload is only for old clients.
            stream_id = msg.annotations.get(STREAM_ANNOTATION, b"").decode("ascii", "replace")
            if not stream_id:
                raise ProtocolError(
                    "result of call is an iterator, but the server does not stream it"
                )
            return StreamRef(stream_id)
        data = self.serializer.loads(msg.data, self.limits)
        if msg.flags & p.FLAGS_EXCEPTION:
            if isinstance(data, BaseException):
                raise data
            raise ProtocolError(f"invalid exception reply: {data!r}")
        return data


def _target(uri: URI, config: Config) -> tuple[URI, bool]:
    """The ``PYRO:`` URI a proxy connects to, and whether it is a kept ``PYRONAME``
    resolution (see :func:`remoteobj.naming.resolve_for_proxy`)."""
    if uri.protocol == "PYRO":
        return uri, False
    from .naming import resolve_for_proxy  # the name service sits above the proxies

    return resolve_for_proxy(uri, config)


async def _target_async(uri: URI, config: Config) -> tuple[URI, bool]:
    """:func:`_target` for asyncio code."""
    if uri.protocol == "PYRO":
        return uri, False
    from .naming import resolve_for_proxy_async

    return await resolve_for_proxy_async(uri, config)


def _retry_elsewhere(exc: CommunicationError, uri: URI, config: Config) -> bool:
    """Connecting to ``uri``'s resolution failed: forget it if it was kept; whether
    connecting to a fresh one is safe (nothing can have run: refused, not timed
    out or cut off after the call went out)."""
    from .naming import forget_resolution

    forget_resolution(uri, config)
    return not isinstance(exc, TimeoutError) and not (
        isinstance(exc, ConnectionClosedError) and exc.sent
    )


MARSHAL_ID = 2


def _marshal_text(data: bytes | bytearray | memoryview) -> str:
    """A str written by ``marshal.dumps`` (type codes u/t/a/A/z/Z), decoded by hand."""
    if len(data) < 2:
        raise ValueError("not a marshal string")
    code = chr(data[0] & 0x7F)  # 0x80 is marshal's FLAG_REF
    if code in "zZ":
        size, body = data[1], data[2:]
    elif code in "utaA":
        size, body = int.from_bytes(data[1:5], "little"), data[5:]
    else:
        raise ValueError("not a marshal string")
    if len(body) != size:
        raise ValueError("truncated marshal string")
    return bytes(body).decode("utf-8" if code in "ut" else "ascii")


def _open_socket(uri: URI, timeout: float | None, config: Config | None = None) -> socket.socket:
    try:
        if uri.sockname is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(uri.sockname)
        else:
            assert uri.host is not None and uri.port is not None
            sock = socket.create_connection((uri.host, uri.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except builtins.TimeoutError as exc:
        raise TimeoutError(f"connecting to {uri.location} timed out") from exc
    except OSError as exc:
        raise CommunicationError(f"cannot connect to {uri.location}: {exc}") from exc
    if config is not None and config.ssl:
        try:  # the TLS handshake, within the same timeout
            sock = client_context(config).wrap_socket(sock, server_hostname=uri.host)
        except builtins.TimeoutError as exc:
            sock.close()
            raise TimeoutError(f"TLS handshake with {uri.location} timed out") from exc
        except (ssl.SSLError, OSError, ValueError) as exc:
            sock.close()
            raise CommunicationError(f"TLS handshake with {uri.location} failed: {exc}") from exc
    return sock


def _sendall_parts(
    sock: socket.socket, parts: tuple[bytes, bytes | bytearray | memoryview]
) -> None:
    """``sendall`` of a frame in parts, without joining them: one gathered write
    (``sendmsg``), repeated for what the kernel did not take. TLS sockets have no
    ``sendmsg``: they get the joined bytes."""
    if isinstance(sock, ssl.SSLSocket):
        sock.sendall(b"".join(parts))
        return
    rest = p.unsent(parts, 0)
    while rest:
        rest = p.unsent(rest, sock.sendmsg(rest))


def _next_free_seq(last: int, pending: Container[int]) -> int:
    """The seq after ``last`` (16 bits, wrapping) that no call in flight uses."""
    seq = last
    while True:
        seq = (seq + 1) & 0xFFFF
        if seq not in pending:
            return seq


#: Threads sharing a proxy wait awake for their replies this many times
#: ``Config.reply_spin``: the reader may have other replies to read and hand on
#: first (with 4 threads on one proxy, 200 us waits mostly missed; 1 ms ones
#: made calls 1.5x faster, see BENCHMARKS.md).
HANDOFF_SPIN_FACTOR = 5


class _Waiter:
    """One thread waiting for its reply on a shared connection."""

    __slots__ = ("error", "msg", "signaled", "wake")

    def __init__(self) -> None:
        self.msg: p.Message | None = None
        self.error: BaseException | None = None
        self.signaled = False
        self.wake = threading.Lock()
        self.wake.acquire()


class _SyncConnection:
    """A blocking connection shared by threads (leader/follower reading)."""

    def __init__(self, sock: socket.socket, core: CallCore) -> None:
        self.sock = sock
        self.core = core
        self.reader = p.MessageReader(core.config.max_message_size, allow_compressed=True)
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.pending: dict[int, _Waiter] = {}
        self.reading = False
        self.broken: BaseException | None = None
        self.seq = 0
        sock.settimeout(None)  # blocking; timeouts come from the kernel (see _settimeout)
        #: recv flags for a large body: wait for all of it (TLS sockets take no flags).
        self._waitall = 0 if isinstance(sock, ssl.SSLSocket) else socket.MSG_WAITALL
        # Busy-waiting (remoteobj.spinning): the reader for the socket, the other
        # threads for the reader to hand them their replies. Each learns apart.
        spin = core.config.reply_spin if CAN_POLL else 0.0
        self._socket_watch = SocketWatch(sock.fileno(), spin) if spin else None
        self._handoff_spinner = Spinner(spin * HANDOFF_SPIN_FACTOR)
        self.timeout: float | None = None
        #: When a reply last arrived; an idle connection is checked before reuse.
        self.last_used = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last reply, or 0 while a call is in flight."""
        with self.lock:
            if self.pending or self.reading:
                return 0.0
        return time.monotonic() - self.last_used

    def ping(self, timeout: float) -> None:
        """Send a PING and wait for the pong; on silence mark the connection dead.

        Runs beside the proxy's callers: the ping is one more request on the
        shared connection, answered by seq like any call.
        """
        try:
            seq, waiter = self.register()
        except ConnectionClosedError:
            return
        frame = p.encode(p.Message(p.MSG_PING, PING_SERIALIZER_ID, seq, b"ping"))
        try:
            self.send(frame, timeout)
            self.wait(seq, waiter, time.monotonic() + timeout)
        except TimeoutError:
            log.info("daemon did not answer a ping within %.1f s; closing the connection", timeout)
            self.fail(TimeoutError(f"the daemon did not answer a ping within {timeout} s"))
        except CommunicationError:
            pass  # already marked dead by send/wait

    def register(self) -> tuple[int, _Waiter]:
        waiter = _Waiter()
        with self.lock:
            if self.broken is not None:
                raise ConnectionClosedError(f"connection lost: {self.broken}", sent=False)
            seq = self.seq = _next_free_seq(self.seq, self.pending)
            self.pending[seq] = waiter
        return seq, waiter

    def forget(self, seq: int) -> None:
        with self.lock:
            self.pending.pop(seq, None)

    def _settimeout(self, timeout: float | None) -> None:
        # The socket stays in blocking mode and the kernel enforces the timeout
        # (SO_RCVTIMEO/SO_SNDTIMEO): Python's own socket timeouts cost a poll()
        # before every recv and send. Skip the setsockopt while the value is within
        # 10 ms of the one set (a deadline then overshoots by at most that).
        current = self.timeout
        if timeout is None or current is None:
            if timeout is current:
                return
        elif abs(timeout - current) < 0.01:
            return
        value = timeval(timeout)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
        self.timeout = timeout

    def looks_dead(self) -> bool:
        """With nothing in flight, a readable socket means EOF or junk: the peer is gone."""
        # Hold the lock through the poll: otherwise another thread could register,
        # send and get its reply in between, and a live connection would look dead.
        with self.lock:
            if self.pending or self.reading:
                return False
            try:
                ready, _, _ = select.select([self.sock], [], [], 0)
            except (OSError, ValueError):
                return True
            if ready and isinstance(self.sock, ssl.SSLSocket):
                return self._tls_dead()
            return bool(ready)

    def _tls_dead(self) -> bool:
        # Readable TLS: maybe just a TLS 1.3 session ticket (Python's TLS servers send
        # two after the handshake), which is no sign of a dead peer. Holds self.lock.
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        previous = sock.gettimeout()
        try:
            sock.settimeout(0.0)
            sock.recv(1)  # EOF, or application bytes nobody asked for: gone or broken
            return True
        except ssl.SSLWantReadError:
            return False  # only protocol records: the connection is fine
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(previous)

    def send(self, frame: p.Frame, timeout: float | None) -> None:
        with self.send_lock:
            try:
                self._settimeout(timeout)
                if isinstance(frame, bytes):
                    self.sock.sendall(frame)
                else:
                    _sendall_parts(self.sock, frame)
            except (BlockingIOError, ssl.SSLWantWriteError) as exc:  # SO_SNDTIMEO expired
                self.fail(exc)
                raise TimeoutError("sending the request timed out") from exc
            except OSError as exc:
                self.fail(exc)
                raise ConnectionClosedError(f"sending failed: {exc}", sent=False) from exc

    def wait(self, seq: int, waiter: _Waiter, deadline: float | None) -> p.Message:
        while True:
            with self.lock:
                if waiter.msg is not None or waiter.error is not None:
                    break
                leader = not self.reading
                if leader:
                    self.reading = True
            if leader:
                try:
                    self._read_some(deadline)
                except builtins.TimeoutError:
                    self._step_down(seq, waiter)
                    raise TimeoutError("call timed out waiting for the reply") from None
                finally:
                    self._step_down_if_done(waiter)
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self._step_down(seq, waiter)
                raise TimeoutError("call timed out waiting for the reply")
            if not waiter.signaled:  # the reader hands replies on quickly: wait awake first
                self._handoff_spinner.wait(lambda: waiter.signaled)
            if waiter.wake.acquire(timeout=-1 if remaining is None else remaining):
                with self.lock:
                    waiter.signaled = False  # consumed; a signal is pending until acquired
        if waiter.error is not None:
            raise waiter.error
        assert waiter.msg is not None
        return waiter.msg

    def handshake(self, frame: bytes, deadline: float) -> None:
        """Send CONNECT (``frame``, maybe with the first call's INVOKE behind it) and
        read the daemon's answer, within ``deadline``; raises if it refuses.

        Runs before the connection is shared, on the connecting thread. Replies
        that arrived together with the answer are handed to their waiters.
        """
        reply: bytes | None = frame
        while reply is not None:  # twice when the daemon asks to authenticate
            self._settimeout(max(deadline - time.monotonic(), 0.001))
            self.sock.sendall(reply)
            while (msg := self.reader.next_message()) is None:
                self._settimeout(max(deadline - time.monotonic(), 0.001))
                self._spin()
                try:
                    got = receive(self.sock, self.reader)
                except (BlockingIOError, ssl.SSLWantReadError):  # SO_RCVTIMEO expired
                    raise builtins.TimeoutError from None
                if not got:
                    raise ConnectionClosedError("connection closed during the handshake")
            reply = self.core.on_connect_reply(msg)
        self.last_used = time.monotonic()
        self._deliver(self._take_buffered())

    def _read_some(self, deadline: float | None) -> None:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if remaining == 0.0:
            raise builtins.TimeoutError
        self._settimeout(remaining)
        try:
            body = self.reader.body_buffer()
            if body is None:
                # Only for a lone call: with several in flight, the threads behind
                # them want the CPU (and the GIL) more than this leader wants a fast
                # wake-up.
                if len(self.pending) == 1:
                    self._spin()
                got = receive(self.sock, self.reader)
            else:
                # A large reply's body, in place and (plain TCP) in one wait: only this
                # leader reads, and the body is the answer to a call this proxy made.
                with body:
                    got = self.sock.recv_into(body, 0, self._waitall)
                self.reader.body_received(got)
        except (BlockingIOError, ssl.SSLWantReadError):  # SO_RCVTIMEO expired
            raise builtins.TimeoutError from None
        except (ProtocolError, OSError) as exc:
            self.fail(exc)
            return
        if not got:
            self.fail(ConnectionResetError("connection closed by the server"))
            return
        self._deliver(self._take_buffered())

    def _spin(self) -> None:
        """Busy-poll for the answer a little before a read sleeps (:mod:`.spinning`)."""
        watch, sock = self._socket_watch, self.sock
        if watch is not None and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            watch.spin()  # (bytes TLS has already decrypted show in no poll)

    def _take_buffered(self) -> list[p.Message]:
        """Every complete message in the reader ([] and the connection failed when the
        bytes are not protocol 502)."""
        msgs = []
        try:
            while (msg := self.reader.next_message()) is not None:
                msgs.append(msg)
        except ProtocolError as exc:
            self.fail(exc)
            return []
        return msgs

    def _deliver(self, msgs: list[p.Message]) -> None:
        """Hand each reply to the thread waiting for its seq."""
        with self.lock:
            for msg in msgs:
                waiter = self.pending.pop(msg.seq, None)
                if waiter is None:
                    log.debug("dropping a reply nobody waits for (seq %d)", msg.seq)
                    continue
                waiter.msg = msg
                self._signal(waiter)
            self.last_used = time.monotonic()

    def _signal(self, waiter: _Waiter) -> None:
        if not waiter.signaled:
            waiter.signaled = True
            waiter.wake.release()

    def _step_down_if_done(self, waiter: _Waiter) -> None:
        with self.lock:
            if waiter.msg is None and waiter.error is None:
                self.reading = False
                return
            self.reading = False
            for other in self.pending.values():  # hand the reader role on
                if other.msg is None and other.error is None:
                    self._signal(other)
                    break

    def _step_down(self, seq: int, waiter: _Waiter) -> None:
        with self.lock:
            self.pending.pop(seq, None)
            waiter.error = TimeoutError("call timed out waiting for the reply")

    def fail(self, exc: BaseException) -> None:
        """The connection is gone: every waiting call fails, the next call reconnects."""
        with self.lock:
            if self.broken is None:
                self.broken = exc
            for waiter in self.pending.values():
                waiter.error = ConnectionClosedError(f"connection lost: {exc}", sent=True)
                self._signal(waiter)
            self.pending.clear()
        with contextlib.suppress(OSError):
            self.sock.close()

    def close(self) -> None:
        self.fail(ConnectionAbortedError("proxy released"))


class _Pinger:
    """One background thread that pings idle proxy connections of this process.

    Connections are held weakly: a released or forgotten proxy is simply dropped.
    The thread starts with the first watched connection and looks at them every
    quarter of the shortest interval; with none left it lingers for
    :data:`PINGER_LINGER` seconds before ending, so a process that opens one
    short-lived proxy after another does not start a thread for each. Due pings
    go out from up to :data:`PING_THREADS` short-lived threads at once: a hung
    daemon holds up only its own connection's ping, not the others'.
    """

    def __init__(self) -> None:
        self._conns: weakref.WeakKeyDictionary[_SyncConnection, tuple[float, float]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        #: How long the thread sleeps between looks now (inf: nothing to watch).
        self._period = math.inf
        #: Pings to send (strong references only until sent) and those being sent.
        self._due: collections.deque[tuple[_SyncConnection, float]] = collections.deque()
        self._pinging: set[_SyncConnection] = set()
        self._senders = 0

    def watch(self, conn: _SyncConnection, interval: float, timeout: float) -> None:
        with self._lock:
            self._conns[conn] = (interval, timeout)
            if _look_every(interval) < self._period:
                self._wake.set()  # it sleeps longer than this connection allows
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="remoteobj-pinger", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                watched = list(self._conns.items())
                self._period = min((_look_every(i) for _, (i, _) in watched), default=math.inf)
                period = self._period
            if not watched:
                self._wake.wait(PINGER_LINGER)
                self._wake.clear()
                with self._lock:
                    if not self._conns:
                        self._thread = None  # the next watch() starts a new thread
                        return
                continue
            for conn, (interval, timeout) in watched:
                if conn.broken is not None:
                    with self._lock:
                        self._conns.pop(conn, None)
                elif conn.idle_for() >= interval:
                    self._ping_soon(conn, timeout)
            del watched, conn  # hold no strong reference while sleeping
            self._wake.wait(period)
            self._wake.clear()

    def _ping_soon(self, conn: _SyncConnection, timeout: float) -> None:
        with self._lock:
            if conn in self._pinging:
                return  # its last ping is still waiting for the pong
            self._pinging.add(conn)
            self._due.append((conn, timeout))
            if self._senders >= PING_THREADS:
                return
            self._senders += 1
        threading.Thread(target=self._send_due, name="remoteobj-ping", daemon=True).start()

    def _send_due(self) -> None:
        while True:
            with self._lock:
                if not self._due:
                    self._senders -= 1
                    return
                conn, timeout = self._due.popleft()
            try:
                conn.ping(timeout)
            except Exception:  # a bug, not a dead peer (ping() handles those): keep going
                log.exception("pinging a connection failed")
            finally:
                with self._lock:
                    self._pinging.discard(conn)
            del conn


def _look_every(interval: float) -> float:
    """How often the pinger looks at a connection pinged every ``interval`` seconds."""
    return max(min(interval / 4, 5.0), 0.05)


#: Seconds the pinger thread waits for new connections once it has none.
PINGER_LINGER = 30.0
#: Pings sent at once, at most (each waits up to its ``ping_timeout``).
PING_THREADS = 8
_PINGER = _Pinger()
PING_SERIALIZER_ID = 42  # Pyro5's dummy id: a ping's payload is never deserialized


class _RemoteMethod:
    """A bound remote method of a :class:`Proxy`."""

    __slots__ = ("_name", "_proxy")

    def __init__(self, proxy: Proxy, name: str) -> None:
        self._proxy = proxy
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._proxy._invoke(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self._name} of {self._proxy._uri}>"


class Proxy:
    """A blocking proxy for a remote object; safe to share between threads.

    ``Proxy("PYRO:obj@host:port")``, ``Proxy("PYRONAME:name")`` or
    ``Proxy("PYROMETA:tag")``. It connects on first use (or :meth:`_bind`),
    reconnects on the next call after the connection was lost, and never
    repeats a call on its own. Calls time out after ``_timeout`` seconds
    (``Config.commtimeout``, 30 by default; ``None`` waits forever).
    """

    def __init__(self, uri: URI | str, *, config: Config | None = None) -> None:
        cfg = config if config is not None else Config.default()
        target = uri if isinstance(uri, URI) else URI(uri)
        object.__setattr__(self, "_uri", target)
        object.__setattr__(self, "_config", cfg)
        object.__setattr__(self, "_core", None)
        object.__setattr__(self, "_conn", None)
        object.__setattr__(self, "_connect_lock", threading.Lock())
        object.__setattr__(self, "_timeout", cfg.commtimeout or None)
        object.__setattr__(self, "_preset_meta", None)
        object.__setattr__(self, "_meta_key", str(target))
        object.__setattr__(self, "_stream_closes", collections.deque())

    _uri: URI
    _config: Config
    _core: CallCore | None
    _conn: _SyncConnection | None
    _connect_lock: threading.Lock
    #: Seconds a call may take (``None``: no limit). Local, never remote.
    _timeout: float | None
    _preset_meta: RemoteMeta | None
    _meta_key: str
    #: Ids of remote streams whose iterators were dropped unfinished; closed on the
    #: next call (a finalizer must not send).
    _stream_closes: collections.deque[str]

    # --- local controls ---------------------------------------------------------

    def _bind(self) -> None:
        """Connect now (fetching the metadata) rather than on first use."""
        self._connection()

    def _release(self) -> None:
        """Close the connection; the next call opens a new one."""
        with self._connect_lock:
            conn = self._conn
            object.__setattr__(self, "_conn", None)
        if conn is not None:
            if self._stream_closes and conn.broken is None and self._core is not None:
                self._close_streams(conn, self._core)
            conn.close()

    def _close_streams(self, conn: _SyncConnection, core: CallCore) -> None:
        """Send the oneway ``close_stream`` of every abandoned stream iterator."""
        while True:
            try:
                stream_id = self._stream_closes.popleft()
            except IndexError:
                return
            frame = core.invoke_frame(
                0, "close_stream", (stream_id,), {}, p.FLAGS_ONEWAY, object_id=STREAM_DAEMON
            )
            try:
                conn.send(frame, self._timeout)
            except CommunicationError:
                return  # the daemon closes the streams of a lost connection itself

    @property
    def _meta(self) -> RemoteMeta:
        """The remote object's exposed members (connects if needed)."""
        self._connection()
        assert self._core is not None and self._core.meta is not None
        return self._core.meta

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            conn = self._conn
            if conn is not None:
                conn.close()

    def __repr__(self) -> str:
        return f"<remoteobj.Proxy for {self._uri}>"

    def __copy__(self) -> Proxy:
        return Proxy(self._uri, config=self._config)

    # --- remote access ----------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)  # local names are never remote
        conn = self._conn
        if conn is None or conn.broken is not None:
            known = self._known_meta()
            if known is not None and name in known.methods and name not in known.attrs:
                return _RemoteMethod(self, name)  # the call connects, sent with the CONNECT
        self._connection(self._call_deadline())
        core = self._core
        assert core is not None and core.meta is not None
        if name in core.meta.attrs:
            return self._invoke("__getattr__", (name,), None)
        core.check_method(name)
        return _RemoteMethod(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        self._connection(self._call_deadline())
        assert self._core is not None and self._core.meta is not None
        if name in self._core.meta.attrs:
            self._invoke("__setattr__", (name, value), None)
            return
        object.__setattr__(self, name, value)

    def _call_deadline(self) -> float | None:
        # Fetching the metadata for a first call is part of that call: same timeout.
        timeout = self._timeout
        return None if timeout is None else time.monotonic() + timeout

    def _known_meta(self) -> RemoteMeta | None:
        """What the object exposes, as last known without connecting: from this
        proxy's previous connection, the proxy it was made from, or any proxy of
        this process for the same URI."""
        core = self._core
        if core is not None and core.meta is not None:
            return core.meta
        return self._preset_meta or _known_meta.get(self._meta_key)

    def _connection(self, deadline: float | None = None) -> _SyncConnection:
        """The live connection, connecting first if needed; connecting (and waiting for
        another thread's connect) ends by ``deadline`` (a call's) or ``connect_timeout``."""
        return self._connect(deadline, None)[0]

    def _connect(
        self, deadline: float | None, first: _Call | None
    ) -> tuple[_SyncConnection, _Sent | None]:
        """The live connection, and whether ``first`` went out with the CONNECT.

        A new connection sends the ``first`` call's INVOKE in the same write as its
        CONNECT when the object's metadata is already known (and no authentication
        exchange comes first), saving a round trip: the daemon reads the INVOKE
        only after accepting the CONNECT, so a refused connection runs nothing.
        """
        conn = self._conn
        if conn is not None and conn.broken is None:
            return conn, None
        wait = -1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not self._connect_lock.acquire(timeout=wait):
            raise TimeoutError(f"connecting to {self._uri} timed out")
        try:
            conn = self._conn
            if conn is not None and conn.broken is None:
                return conn, None
            target, kept = _target(self._uri, self._config)
            try:
                conn, sent = self._open(target, deadline, first)
            except CommunicationError as exc:
                if not _retry_elsewhere(exc, self._uri, self._config) or not kept:
                    raise  # (a fresh resolution that fails is not looked up again at once)
                fresh, _ = _target(self._uri, self._config)
                if fresh == target:
                    raise
                conn, sent = self._open(fresh, deadline, first)
            core = conn.core
            assert core.meta is not None
            _remember_meta(self._meta_key, core.meta)
            object.__setattr__(self, "_core", core)
            object.__setattr__(self, "_conn", conn)
            if self._config.ping_interval > 0:
                _PINGER.watch(conn, self._config.ping_interval, self._config.ping_timeout)
            return conn, sent
        finally:
            self._connect_lock.release()

    def _open(
        self, uri: URI, deadline: float | None, first: _Call | None
    ) -> tuple[_SyncConnection, _Sent | None]:
        """Connect to ``uri`` and shake hands (``first`` riding along when it can)."""
        core = CallCore(uri, self._config)
        timeout = self._config.connect_timeout
        if deadline is not None:
            timeout = max(min(timeout, deadline - time.monotonic()), 0.001)
        connect_deadline = time.monotonic() + timeout
        sock = _open_socket(uri, timeout, self._config)
        conn = _SyncConnection(sock, core)
        sent: _Sent | None = None
        try:
            frame = core.connect_frame()
            known = self._known_meta() if first is not None and core.auth is None else None
            if known is not None:
                assert first is not None
                request, seq, waiter = _request(conn, core, known, first)
                frame += p.joined(request)
                sent = (seq, waiter)
            conn.handshake(frame, connect_deadline)
        except builtins.TimeoutError:
            sock.close()
            raise TimeoutError(f"handshake with {uri.location} timed out") from None
        except OSError as exc:
            sock.close()
            raise ConnectionClosedError(
                f"handshake with {uri.location} failed: {exc}", sent=sent is not None
            ) from exc
        except BaseException:
            sock.close()
            raise
        return conn, sent

    def _invoke(
        self,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        flags: int = 0,
        object_id: str | None = None,
    ) -> Any:
        """Send a call and wait for its result (``None`` at once for a oneway call).

        ``flags`` may ask for ONEWAY or BATCH; ``object_id`` addresses another
        object of the same daemon on this connection (``Pyro.Daemon``).
        """
        timeout = self._timeout
        # One deadline for the whole call, connecting included.
        deadline = None if timeout is None else time.monotonic() + timeout
        conn = self._conn
        if (
            conn is not None
            and time.monotonic() - conn.last_used > IDLE_CHECK_AFTER
            and conn.looks_dead()
        ):
            # The daemon went away while we were idle (e.g. it restarted): nothing was
            # sent yet, so reconnecting is safe.
            conn.close()
        call = (method, args, kwargs, flags, object_id)
        conn, sent = self._connect(deadline, call)
        core = conn.core
        if sent is None:
            if self._stream_closes:
                self._close_streams(conn, core)
            assert core.meta is not None
            request, seq, waiter = _request(conn, core, core.meta, call)
            try:
                conn.send(request, timeout)
            except BaseException:
                conn.forget(seq)
                raise
        else:
            seq, waiter = sent
        if waiter is None:
            return None  # oneway
        result = core.result(conn.wait(seq, waiter, deadline))
        if type(result) is StreamRef:
            return StreamIterator(self, result.stream_id)
        return result


#: A call: method, args, kwargs, flags, object id (``None``: the proxy's object).
_Call = tuple[str, Sequence[Any], Mapping[str, Any] | None, int, str | None]
#: A call sent: its seq and the waiter for its reply (``None`` for a oneway call).
_Sent = tuple[int, "_Waiter | None"]
#: The same for an AsyncProxy: its seq and the future of its reply.
_AsyncSent = tuple[int, "asyncio.Future[p.Message] | None"]


def _request(
    conn: _SyncConnection, core: CallCore, meta: RemoteMeta, call: _Call
) -> tuple[p.Frame, int, _Waiter | None]:
    """The INVOKE frame of ``call``, its seq registered on ``conn`` unless it is oneway."""
    method, args, kwargs, flags, object_id = call
    if object_id is None and method in meta.oneway:
        flags |= p.FLAGS_ONEWAY
    if flags & p.FLAGS_ONEWAY:
        return core.invoke_frame(0, method, args, kwargs, flags, object_id=object_id), 0, None
    seq, waiter = conn.register()
    try:
        frame = core.invoke_frame(seq, method, args, kwargs, flags, object_id=object_id)
    except BaseException:
        conn.forget(seq)
        raise
    return frame, seq, waiter


#: What each URI's daemon last said its object exposes (its latest connect reply in
#: this process), so a new proxy's first call can travel with its CONNECT. A stale
#: entry costs no correctness: the daemon checks every call, and a name the entry
#: lacks makes the proxy connect and ask first. Bounded; the oldest entry goes first.
_known_meta: dict[str, RemoteMeta] = {}
KNOWN_META_MAX = 1024


def _remember_meta(key: str, meta: RemoteMeta) -> None:
    if key not in _known_meta and len(_known_meta) >= KNOWN_META_MAX:
        # Another thread may evict the same entry at once; either way one goes.
        with contextlib.suppress(StopIteration, KeyError, RuntimeError):
            del _known_meta[next(iter(_known_meta))]
    _known_meta[key] = meta


class _AsyncRemoteMethod:
    """A remote method (or, when awaited, a remote attribute) of an :class:`AsyncProxy`."""

    __slots__ = ("_name", "_proxy")

    def __init__(self, proxy: AsyncProxy, name: str) -> None:
        self._proxy = proxy
        self._name = name

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await self._proxy._invoke(self._name, args, kwargs)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._proxy._get(self._name).__await__()


class AsyncProxy:
    """An asyncio proxy: ``await proxy.method(...)``, many calls in flight on one connection.

    Remote attributes: ``await proxy.attr`` reads, ``await proxy._set("attr", v)`` writes.
    Use it from one event loop.
    """

    def __init__(self, uri: URI | str, *, config: Config | None = None) -> None:
        cfg = config if config is not None else Config.default()
        self._uri = uri if isinstance(uri, URI) else URI(uri)
        self._config = cfg
        self._timeout: float | None = cfg.commtimeout or None
        self._core: CallCore | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[p.Message]] = {}
        self._seq = 0
        self._connecting: asyncio.Lock | None = None
        #: Ids of remote streams whose iterators were dropped unfinished.
        self._stream_closes: collections.deque[str] = collections.deque()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _AsyncRemoteMethod(self, name)

    def __repr__(self) -> str:
        return f"<remoteobj.AsyncProxy for {self._uri}>"

    async def __aenter__(self) -> AsyncProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._release()

    async def _bind(self) -> None:
        """Connect now rather than on first use."""
        await self._connection()

    async def _release(self) -> None:
        """Close the connection; the next call opens a new one."""
        writer = self._writer
        if writer is not None and self._core is not None:
            self._close_streams(writer, self._core)
        self._fail(ConnectionAbortedError("proxy released"))
        if writer is not None:
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _get(self, name: str) -> Any:
        """Read a remote attribute (an exposed property)."""
        return await self._invoke("__getattr__", (name,), None)

    async def _set(self, name: str, value: Any) -> None:
        """Write a remote attribute (an exposed property with a setter)."""
        await self._invoke("__setattr__", (name, value), None)

    async def _connection(self, deadline: float | None = None) -> CallCore:
        """The connected core, connecting first if needed; connecting (and waiting for
        another task's connect) ends by ``deadline`` (loop time) or ``connect_timeout``."""
        return (await self._connect(deadline, None))[0]

    async def _connect(
        self, deadline: float | None, first: _Call | None
    ) -> tuple[CallCore, _AsyncSent | None]:
        """The connected core, and whether ``first`` went out with the CONNECT (as
        :meth:`Proxy._connect` does: when this process knows the object's metadata)."""
        if self._writer is not None and self._core is not None:
            return self._core, None
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        cfg = self._config
        loop = asyncio.get_running_loop()
        until = loop.time() + cfg.connect_timeout
        if deadline is not None:
            until = min(until, deadline)
        try:
            async with asyncio.timeout_at(until):
                await self._connecting.acquire()
        except builtins.TimeoutError:
            raise TimeoutError(f"connecting to {self._uri} timed out") from None
        try:
            if self._writer is not None and self._core is not None:
                return self._core, None
            target, kept = await _target_async(self._uri, cfg)
            try:
                core, reader, writer, msgs, sent = await self._open(target, until, first)
            except CommunicationError as exc:
                if not _retry_elsewhere(exc, self._uri, cfg) or not kept:
                    raise
                fresh, _ = await _target_async(self._uri, cfg)
                if fresh == target:
                    raise
                core, reader, writer, msgs, sent = await self._open(fresh, until, first)
            assert core.meta is not None
            _remember_meta(str(self._uri), core.meta)
            self._core = core
            self._writer = writer
            loop = asyncio.get_running_loop()
            self._reader_task = loop.create_task(self._read_loop(reader, msgs))
            return core, sent
        finally:
            self._connecting.release()

    async def _open(
        self, uri: URI, until: float, first: _Call | None
    ) -> tuple[
        CallCore, asyncio.StreamReader, asyncio.StreamWriter, p.MessageReader, _AsyncSent | None
    ]:
        """Connect to ``uri`` and shake hands by ``until`` (loop time), ``first`` riding
        along when it can; the reader holds whatever came after the daemon's answer."""
        cfg = self._config
        core = CallCore(uri, cfg)
        tls = client_context(cfg) if cfg.ssl else None
        known = _known_meta.get(str(self._uri)) if first is not None and core.auth is None else None
        sent: _AsyncSent | None = None
        msgs = p.MessageReader(cfg.max_message_size)
        try:
            async with asyncio.timeout_at(until):
                if uri.sockname is not None:
                    reader, writer = await asyncio.open_unix_connection(
                        uri.sockname, ssl=tls, server_hostname=uri.host if tls else None
                    )
                else:
                    reader, writer = await asyncio.open_connection(
                        uri.host, uri.port, ssl=tls, server_hostname=uri.host if tls else None
                    )
                try:
                    hello = core.connect_frame()
                    if known is not None and first is not None:
                        request = self._first_request(core, known, first)
                        if request is not None:
                            data, sent = request
                            hello += data
                    frame: bytes | None = hello
                    while frame is not None:  # twice when the daemon asks to authenticate
                        writer.write(frame)
                        frame = core.on_connect_reply(await _read_one(reader, msgs))
                except BaseException:
                    writer.close()
                    raise
        except builtins.TimeoutError:
            self._forget(sent)
            raise TimeoutError(f"connecting to {uri.location} timed out") from None
        except OSError as exc:
            self._forget(sent)
            if sent is not None:  # (the daemon may have accepted it and run the call)
                raise ConnectionClosedError(
                    f"handshake with {uri.location} failed: {exc}", sent=True
                ) from exc
            raise CommunicationError(f"cannot connect to {uri.location}: {exc}") from exc
        except BaseException:
            self._forget(sent)
            raise
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return core, reader, writer, msgs, sent

    def _first_request(
        self, core: CallCore, meta: RemoteMeta, call: _Call
    ) -> tuple[bytes, _AsyncSent] | None:
        """:meth:`_request` for a call to send behind the CONNECT; ``None`` when ``meta``
        does not list the method (then the proxy connects and asks first)."""
        method, _, _, _, object_id = call
        if object_id is not None or method not in meta.methods or method in meta.attrs:
            return None
        frame, sent = self._request(core, meta, call)
        return p.joined(frame), sent

    def _request(self, core: CallCore, meta: RemoteMeta, call: _Call) -> tuple[p.Frame, _AsyncSent]:
        """The INVOKE frame of ``call``, and its seq with the future of its reply
        (registered once the frame is made; ``None`` for a oneway call)."""
        method, args, kwargs, flags, object_id = call
        if object_id is None and method in meta.oneway:
            flags |= p.FLAGS_ONEWAY
        if flags & p.FLAGS_ONEWAY:
            frame = core.invoke_frame(0, method, args, kwargs, flags, object_id=object_id)
            return frame, (0, None)
        seq = self._next_seq()
        frame = core.invoke_frame(seq, method, args, kwargs, flags, object_id=object_id)
        fut: asyncio.Future[p.Message] = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        return frame, (seq, fut)

    def _forget(self, sent: _AsyncSent | None) -> None:
        """Drop the reply future of a first call whose connection failed."""
        if sent is not None and sent[1] is not None:
            self._pending.pop(sent[0], None)
            sent[1].cancel()

    def _next_seq(self) -> int:
        seq = self._seq = _next_free_seq(self._seq, self._pending)
        return seq

    async def _read_loop(self, stream: asyncio.StreamReader, reader: p.MessageReader) -> None:
        """Hand each reply to its call's future; ``reader`` may hold replies already
        (the first call's, read together with the CONNECT's answer)."""
        try:
            while True:
                while (msg := reader.next_message()) is not None:
                    fut = self._pending.pop(msg.seq, None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                data = await stream.read(RECV_SIZE)
                if not data:
                    raise ConnectionResetError("connection closed by the server")
                reader.feed(data)
        except asyncio.CancelledError:
            # The loop is shutting down (or _fail cancelled us): close the transport
            # now, or it outlives its loop.
            self._fail(ConnectionAbortedError("event loop closing"))
            raise
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        writer, self._writer = self._writer, None
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if writer is not None:
            writer.close()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionClosedError(f"connection lost: {exc}", sent=True))

    async def _invoke(
        self,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        flags: int = 0,
        object_id: str | None = None,
    ) -> Any:
        """Send a call and await its result (``None`` at once for a oneway call)."""
        core, msg = await self._roundtrip(method, args, kwargs, flags, object_id)
        if msg is None:
            return None
        result = core.result(msg)
        if type(result) is StreamRef:
            return AsyncStreamIterator(self, result.stream_id)
        return result

    def _close_streams(self, writer: asyncio.StreamWriter, core: CallCore) -> None:
        """Send the oneway ``close_stream`` of every abandoned stream iterator."""
        while self._stream_closes:
            stream_id = self._stream_closes.popleft()
            frame = core.invoke_frame(
                0, "close_stream", (stream_id,), {}, p.FLAGS_ONEWAY, object_id=STREAM_DAEMON
            )
            _write(writer, frame)

    async def _roundtrip(
        self,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        flags: int = 0,
        object_id: str | None = None,
    ) -> tuple[CallCore, p.Message | None]:
        """Send a call; the core and the reply frame (``None`` for oneway calls)."""
        # One deadline for the whole call: connecting, a full send buffer, the reply.
        timeout = self._timeout
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        call = (method, args, kwargs, flags, object_id)
        core, sent = await self._connect(deadline, call)
        writer = self._writer
        assert writer is not None
        if sent is None:  # (else it went out with the CONNECT)
            if object_id is None and method not in ("__getattr__", "__setattr__", "<batch>"):
                core.check_method(method)
            if self._stream_closes:
                self._close_streams(writer, core)
            assert core.meta is not None
            frame, sent = self._request(core, core.meta, call)
            _write(writer, frame)
        seq, fut = sent
        if fut is None:
            return core, None  # oneway
        try:
            async with asyncio.timeout_at(deadline):
                if writer.transport.get_write_buffer_size() > self._config.write_high_water:
                    await writer.drain()  # a daemon that stopped reading must not hang us
                msg = await fut
        except builtins.TimeoutError:
            self._pending.pop(seq, None)
            raise TimeoutError("call timed out waiting for the reply") from None
        return core, msg


def _write(writer: asyncio.StreamWriter, frame: p.Frame) -> None:
    if isinstance(frame, bytes):
        writer.write(frame)
    else:
        writer.writelines(frame)


async def _read_one(stream: asyncio.StreamReader, reader: p.MessageReader) -> p.Message:
    while (msg := reader.next_message()) is None:
        data = await stream.read(RECV_SIZE)
        if not data:
            raise ConnectionClosedError("connection closed during the handshake")
        reader.feed(data)
    return msg


def _proxy_to_dict(proxy: Any) -> dict[str, Any]:
    core = proxy._core
    meta = core.meta if core is not None else None
    if meta is None:  # not connected: what the daemon said when it made this proxy, if known
        meta = getattr(proxy, "_preset_meta", None)
    return {
        "__class__": "Pyro5.client.Proxy",
        "state": [
            str(proxy._uri),
            sorted(meta.oneway) if meta else [],
            sorted(meta.methods) if meta else [],
            sorted(meta.attrs) if meta else [],
            proxy._config.handshake,
            proxy._config.serializer,
        ],
    }


def _dict_to_proxy(classname: str, data: Mapping[str, Any]) -> Proxy:
    state = data.get("state")
    if not isinstance(state, (list, tuple)) or not state or not isinstance(state[0], str):
        raise SerializeError("invalid serialized proxy")
    proxy = Proxy(state[0])
    if len(state) >= 4 and all(isinstance(v, (list, tuple, set, frozenset)) for v in state[1:4]):
        # Keep the metadata the sender knew, so passing the proxy on keeps it too.
        oneway, methods, attrs = (frozenset(str(n) for n in v) for v in state[1:4])
        object.__setattr__(proxy, "_preset_meta", RemoteMeta(methods, oneway, attrs))
    return proxy


register_class_to_dict(Proxy, _proxy_to_dict)
register_class_to_dict(AsyncProxy, _proxy_to_dict)
register_dict_to_class("Pyro5.client.Proxy", _dict_to_proxy)

"""The asyncio server core: accept, read, dispatch, write; limits and shutdown.

Execution model (measured in ``bench/hop_cost.py``; see BENCHMARKS.md):

- The event loop owns every *idle* connection: no thread waits on it, so a
  thousand idle clients cost a thousand small objects, not a thousand threads.
- The loop reads and decodes small requests. Coroutine methods run on the
  loop; synchronous methods run in a worker thread, which writes the reply
  to the socket itself (no second hop back to the loop).
- A worker whose call finished on an otherwise quiet connection *keeps*
  the connection, reading the next request itself: sequential callers thus
  pay no thread hop at all, like Pyro5's thread-per-connection server. Other
  busy connections (requests ``BACK_TO_BACK`` apart on average) join that
  worker's set (:mod:`remoteobj.keeping`, one ``epoll``; up to ``MAX_KEPT``
  workers keep sets) instead of each costing a hop per call or a thread:
  with 64 busy clients one worker reads and runs their calls one after the
  other and the loop stays out of the way. Requests pipelined on one
  connection (threads sharing a proxy) wait in the set's queue and run
  there too, rather than each going to a thread of its own (1.4x the calls/s
  with 16 threads on one proxy, BENCHMARKS.md); the worker also takes those
  the per-connection in-flight limit held back in the buffer.
  A connection goes back to the loop once idle for ``Config.worker_linger``
  (``IDLE_IN_BUSY_SET`` while others keep its worker busy anyway). Once
  requests come while the worker waits (callers back to back), and while
  no other call runs, it first busy-polls for the next request
  (``Config.request_spin``, :mod:`remoteobj.spinning`): a CPU left idle
  would have to be woken for it, which costs more than the call.
- Connections kept together wait for each other's calls, so nothing slow
  stays among them: a connection whose call took longer than
  ``QUICK_CALL`` leaves a shared set (and is kept, if at all, alone), and a
  watchdog on the loop hands every connection of a worker stuck in a call
  for ``STEAL_AFTER`` back to the loop, the stuck one included, so further
  calls on it (a proxy shared by threads) still run concurrently; the calls
  queued behind the stuck one go to other workers (a call waiting for
  another from the same proxy gets it at most ~20 ms late). A connection
  whose call was slow hands its queued calls on likewise, and is read
  again, if at all, by a worker that queues only single calls (``solo``).

Ownership of a connection's *reading* is the ``owner`` field, changed only
under the connection's lock. Writing is separate: any thread may send a
reply, under the connection's write lock; what does not fit in the socket
buffer is flushed by the loop.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import logging
import os
import queue
import socket
import ssl
import stat
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from . import protocol as p
from .config import Config
from .daemon import Call, Daemon, Session
from .errors import ProtocolError
from .keeping import CONNS_PER_WORKER, KeptSet
from .memory import prime_allocator
from .receiving import receive, receive_body
from .tls import server_context

__all__ = ["Server", "listen", "run_loop"]

log = logging.getLogger(__name__)

ACCEPTS_PER_WAKEUP = 64
#: A connection whose oneway calls were dropped this many times (queue full) is closed.
ONEWAY_DROPS_CLOSE = 100
#: How long a worker may run a call on a connection it keeps before the loop reads it
#: again; also the watchdog's period while workers keep connections. Each watchdog
#: wake-up competes with the workers for the GIL: at 2 ms it cost sequential callers
#: ~10 % (measured with bench/profile_hot.py), at 10 ms it is noise.
STEAL_AFTER = 0.010
#: Workers that may keep connections at once. Past a few, threads waiting in poll()
#: thrash the GIL (as Pyro5's thread per connection does); each watches up to
#: keeping.CONNS_PER_WORKER of them, the loop the rest.
MAX_KEPT = 4
#: A call that took longer than this on a connection a worker keeps along with
#: others hands its connection back to the loop (the others would wait behind its
#: next one); such a call's connection is kept by a worker of its own, if at all.
QUICK_CALL = 0.001
#: A connection kept in a set that other connections keep busy goes back to the loop
#: after idling this long (``worker_linger`` applies once the whole set idles):
#: while the worker is awake anyway, watching one more socket costs nothing, and a
#: caller pausing longer than this saves little by skipping the hop.
IDLE_IN_BUSY_SET = 0.05
#: A connection joins another worker's set only while its requests come this
#: close on average (a moving average over the last few: one late request does
#: not throw a busy caller out). Joining and leaving cost about what the hop
#: costs: clients calling now and then (1,000 of them, every 0.1 s) would
#: mostly join, idle out and leave again, at ~15 % more daemon CPU.
BACK_TO_BACK = 0.02
#: Longest wait of a worker for more of a frame before it looks at the connection's
#: state again (closing, the frame deadline).
BODY_WAIT = 0.05
LOOP, WORKER = 0, 1
NO_BACKLOG, BACKLOG, BACKLOG_TAKING = 0, 1, 2


#: Linux copies TCP_NODELAY, keepalive and TCP_USER_TIMEOUT from a listening socket
#: to the connections it accepts, at SYN time: listen() sets them before listening.
TCP_OPTIONS_INHERITED = sys.platform == "linux"


def listen(
    host: str, port: int, unixsocket: str | None = None, config: Config | None = None
) -> socket.socket:
    """A non-blocking listening socket on ``host:port`` (IPv4 or IPv6) or a Unix socket.

    With ``config``, on Linux, the TCP options accepted connections need are set
    here, before ``listen()``: a connection the kernel accepts earlier would
    not get them.
    """
    if unixsocket is not None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(unixsocket).st_mode):
                os.unlink(unixsocket)  # a stale socket file from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(unixsocket)
    else:
        family, _, _, _, addr = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        if TCP_OPTIONS_INHERITED:
            cfg = config if config is not None else Config.default()
            _tune_tcp(sock, cfg.keepalive, cfg.tcp_user_timeout)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def run_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main()`` on a new event loop in this thread (uvloop when installed).

    Takes the coroutine *function*: a coroutine made before the loop exists
    would be left un-awaited if Ctrl-C arrived in between.
    """
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


class WorkerPool:
    """Threads for synchronous calls, started on demand up to ``size``.

    New threads are started by a helper thread, never by the submitter:
    ``Thread.start()`` waits until the new thread runs, and under a burst
    (many threads wanting the GIL) that wait on the event loop stalled every
    connection for a hundred milliseconds and more.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._spawner: threading.Thread | None = None
        self._stopped = False

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Queue ``fn(*args)`` for a worker thread."""
        self._jobs.put((fn, args))
        # More jobs waiting than idle threads to take them: ask for one more thread.
        # (Checking only `idle == 0` let a burst queue up behind one thread while
        # the pool had room: a quick call then waited for every slow one ahead of it.)
        if self._jobs.qsize() > self._idle and len(self._threads) < self._size:
            if self._spawner is None:
                self._spawner = threading.Thread(
                    target=self._spawn_loop, name=f"{self._name}-spawner", daemon=True
                )
                self._spawner.start()
            self._wanted.set()

    def _spawn_loop(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            while (
                not self._stopped
                and self._jobs.qsize() > self._idle
                and len(self._threads) < self._size
            ):
                t = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                with self._lock:
                    self._threads.append(t)
                    self._idle += 1
                t.start()
            if self._stopped:
                return

    def has_spare(self) -> bool:
        """Whether a worker could take a new job at once (so lingering costs nobody)."""
        return self._idle > 0 or len(self._threads) < self._size

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                self._idle -= 1
            fn, args = job
            try:
                fn(*args)
            except Exception:
                log.exception("worker job failed")
            with self._lock:
                self._idle += 1

    def stop(self) -> None:
        """Let every thread finish its job and exit."""
        self._stopped = True
        self._wanted.set()
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)


class Connection:
    """One client connection's state; changed under ``lock`` where threads meet."""

    __slots__ = (
        "backlog",
        "closed",
        "closing",
        "eof",
        "fd",
        "frame_deadline",
        "gap",
        "inflight",
        "kept_by",
        "last_active",
        "lock",
        "loop_reading",
        "oneway_drops",
        "oneway_paused",
        "oneways",
        "out",
        "out_since",
        "owner",
        "paused",
        "reader",
        "session",
        "sock",
        "wlock",
    )

    #: A TLS connection (:class:`TLSConnection`): read and written on the loop only.
    tls: ClassVar[bool] = False

    def __init__(self, sock: socket.socket, session: Session, reader: p.MessageReader) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.session = session
        self.reader = reader
        self.lock = threading.Lock()
        self.wlock = threading.Lock()
        self.owner = LOOP
        self.loop_reading = False
        self.inflight = 0
        self.paused = False
        self.closing = False
        self.closed = False
        self.out = bytearray()
        self.out_since = 0.0
        self.last_active = time.monotonic()
        #: Moving average of the seconds between reads (a caller back to back: short);
        #: a new connection has yet to show it.
        self.gap = IDLE_IN_BUSY_SET
        self.frame_deadline: float | None = None
        #: Complete requests buffered beyond the in-flight limits, taken as calls finish:
        #: NO_BACKLOG, BACKLOG, or BACKLOG_TAKING (a _take_backlog is scheduled).
        self.backlog = NO_BACKLOG
        #: The client closed its side while requests were still in the backlog.
        self.eof = False
        self.oneway_drops = 0
        #: This connection's oneway calls running or queued (its reading pauses at
        #: Config.oneway_workers of them; see Server._start_oneway).
        self.oneways = 0
        #: Reading paused behind them, until half have run (set and cleared under the
        #: server's oneway lock, so a pause cannot miss the completion that ends it).
        self.oneway_paused = False
        #: The set of the worker that reads this connection (``owner == WORKER``).
        self.kept_by: KeptSet[Connection] | None = None


class TLSConnection(Connection):
    """A TLS connection. OpenSSL objects must not be used by two threads at once, so
    everything on it happens on the loop: the handshake (non-blocking, under
    ``Config.ssl_handshake_timeout``), every read, and every write (workers hand
    their replies to the loop; no worker keeps it)."""

    __slots__ = ("handshaking", "tls_chunk", "tls_writing")
    tls: ClassVar[bool] = True

    def __init__(self, sock: ssl.SSLSocket, session: Session, reader: p.MessageReader) -> None:
        super().__init__(sock, session, reader)
        self.handshaking = True
        #: The record being written: after SSLWantWrite, OpenSSL wants the same bytes again.
        self.tls_chunk: bytes | None = None
        self.tls_writing = False


#: Bytes handed to one SSL write (the same chunk is retried after SSLWantWrite).
TLS_CHUNK = 64 * 1024


class Server:
    """Serves one :class:`Daemon` on one listening socket, on the running loop."""

    def __init__(self, daemon: Daemon, sock: socket.socket) -> None:
        self.daemon = daemon
        self.config = cfg = daemon.config
        self._lsock = sock
        # listen() already set them on the listening socket, and Linux copies them
        # to every connection it accepts (six setsockopt calls fewer per accept).
        self._tcp_options_inherited = TCP_OPTIONS_INHERITED
        self._conns: dict[int, Connection] = {}
        self._pool = WorkerPool(cfg.workers, "remoteobj-worker")
        self._oneway_pool = WorkerPool(cfg.oneway_workers, "remoteobj-oneway")
        self._oneway_pending = 0  # running + queued, sync and coroutine alike
        self._oneway_dropped = 0
        self._oneway_lock = threading.Lock()
        #: Connections paused by the global in-flight limit with no call of their own to
        #: resume them; woken when the daemon drops below the limit.
        self._starved: set[Connection] = set()
        self._decodes = threading.BoundedSemaphore(cfg.max_concurrent_decodes)
        self._ssl = server_context(cfg) if cfg.ssl else None
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        #: The workers' kept connections, one set per worker (at most MAX_KEPT).
        self._kept_sets: list[KeptSet[Connection]] = []
        self._kept_lock = threading.Lock()  # taken after a conn.lock, before a set's lock
        self._spare_sets: list[KeptSet[Connection]] = []  # empty, for the next worker
        self._sets_closed = False  # serving ended: a set that empties now is closed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._stopping = False
        self._grace_deadline = 0.0
        self._done: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._finished = threading.Event()
        self._watchdog_wake = asyncio.Event()
        self._stop_before_start: float | None = None
        self.finished = False

    # --- lifecycle ------------------------------------------------------------

    async def serve(self) -> None:
        """Accept and serve until :meth:`stop`; then drain and close."""
        prime_allocator(self.config.max_message_size)
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._done = asyncio.Event()
        loop.add_reader(self._lsock.fileno(), self._accept)
        housekeeping = loop.create_task(self._housekeeping())
        if self._stop_before_start is not None:
            self._begin_stop(self._stop_before_start)
        try:
            await self._done.wait()
        finally:
            housekeeping.cancel()
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(self._lsock.fileno())
            self._close_all()
            self._pool.stop()
            with self._kept_lock:
                self._sets_closed = True
                for kept in self._spare_sets:
                    kept.close()
                self._spare_sets.clear()
            self._oneway_pool.stop()
            self.finished = True
            self._closed.set()
            self._finished.set()

    def stop(self, grace: float) -> None:
        """Begin a graceful shutdown (thread-safe): in-flight calls get ``grace`` seconds."""
        loop = self._loop
        if self.finished:
            return
        if loop is None:  # not serving yet: serve() will stop at once (a signal during start-up)
            self._stop_before_start = grace
            return
        # Always via the loop's queue, even on the loop thread: a signal handler
        # (request_loop + signal.signal) runs between any two bytecodes of the
        # loop thread, possibly while it holds a connection lock that
        # _begin_stop -> _close would take again (deadlock), or mid-iteration.
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(self._begin_stop, grace)

    def wait_finished(self, timeout: float) -> bool:
        """Block until :meth:`serve` has returned (from any thread but the loop's)."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            return self.finished
        return self._finished.wait(timeout)

    async def wait_closed(self) -> None:
        """Wait until :meth:`serve` has returned (call it on the serving loop)."""
        await self._closed.wait()

    def _begin_stop(self, grace: float) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._grace_deadline = time.monotonic() + grace
        assert self._loop is not None
        # The listener stays watched: new connections are accepted and closed at once
        # (_accept), so clients fail fast instead of waiting in the kernel's backlog
        # until the grace period ends; the socket itself stays usable for a new serve().
        for conn in list(self._conns.values()):
            self._pause(conn)
            if conn.inflight == 0:
                self._close(conn)
        self._check_drained()

    def _check_drained(self) -> None:
        if not self._stopping or self._done is None:
            return
        if self._inflight == 0 or time.monotonic() >= self._grace_deadline:
            self._done.set()

    # --- accepting ------------------------------------------------------------

    def _accept(self) -> None:
        assert self._loop is not None
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, addr = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: stop accepting for a moment instead of spinning.
                    log.warning("accept failed (%s); pausing accepts for 100 ms", exc)
                    self._loop.remove_reader(self._lsock.fileno())
                    self._loop.call_later(0.1, self._resume_accept)
                    return
                log.info("accept failed: %s", exc)
                return
            if self._stopping:
                sock.close()  # shutting down: refused at once rather than left waiting
                continue
            if len(self._conns) >= self.config.max_connections and not self._evict_idle():
                log.warning(
                    "connection limit (%d) reached; refusing %s", self.config.max_connections, addr
                )
                sock.close()
                continue
            self._setup(sock, addr)

    def _resume_accept(self) -> None:
        if not self.finished and self._loop is not None:
            self._loop.add_reader(self._lsock.fileno(), self._accept)

    def _setup(self, sock: socket.socket, addr: Any) -> None:
        assert self._loop is not None
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not self._tcp_options_inherited:
            _tune_tcp(sock, self.config.keepalive, self.config.tcp_user_timeout)
        reader = p.MessageReader(
            self.config.max_message_size, allow_compressed=self.config.compression
        )
        if self._ssl is not None:
            self._setup_tls(sock, addr, reader)
            return
        conn = Connection(sock, Session(addr), reader)
        conn.frame_deadline = time.monotonic() + self.config.first_frame_timeout
        self._conns[conn.fd] = conn
        self._loop.add_reader(conn.fd, self._on_readable, conn)
        conn.loop_reading = True

    def _evict_idle(self) -> bool:
        idle = [
            c
            for c in self._conns.values()
            if c.inflight == 0 and c.oneways == 0 and c.owner == LOOP
        ]
        if not idle:
            return False
        # Connections that never completed a handshake go first: a flood of new
        # connections must not push out the clients already being served.
        victim = min(idle, key=lambda c: (c.session.handshaken, c.last_active))
        log.info(
            "connection limit reached; closing the longest idle connection %s",
            victim.session.address,
        )
        self._close(victim)
        return True

    # --- reading on the loop ----------------------------------------------------------

    def _on_readable(self, conn: Connection) -> None:
        assert self._loop is not None
        with conn.lock:
            if conn.owner != LOOP:
                # A worker reads this connection now; stop watching it until it hands back.
                self._loop.remove_reader(conn.fd)
                conn.loop_reading = False
                return
            msgs: list[p.Message] | None
            try:
                msgs = self._parse(conn) if receive(conn.sock, conn.reader) else None
            except (BlockingIOError, InterruptedError):
                return
            except ProtocolError as exc:
                self._protocol_error(conn, exc)
                return
            except OSError:
                msgs = None
        if msgs is None:
            self._end_of_input(conn)
            return
        for msg in msgs:
            self._dispatch(conn, msg)
        self._apply_limits(conn)

    def _end_of_input(self, conn: Connection) -> None:
        """The client closed its side. If it sent requests first (oneway calls, say),
        serve what is buffered, then close (_apply_limits); else close now. Loop only."""
        assert self._loop is not None
        if conn.backlog and not conn.closed:
            conn.eof = True
            if conn.loop_reading:
                self._loop.remove_reader(conn.fd)
                conn.loop_reading = False
            return
        self._close(conn)

    def _parse(self, conn: Connection, data: bytes = b"") -> list[p.Message]:
        """Feed bytes (if not fed already) and take every complete message; counts them
        in flight. Holds conn.lock."""
        reader = conn.reader
        if data:
            reader.feed(data)
        now = time.monotonic()
        conn.gap += (now - conn.last_active - conn.gap) / 4
        conn.last_active = now
        msgs: list[p.Message] = []
        # Take no more requests than the in-flight limits allow: one recv can hold
        # thousands of pipelined requests. The rest stays buffered (backlog) and is
        # taken as calls finish (_apply_limits -> _take_backlog).
        cfg = self.config
        room = min(cfg.max_inflight_per_conn - conn.inflight, cfg.max_inflight - self._inflight)
        while len(msgs) < room and (msg := reader.next_message()) is not None:
            msgs.append(msg)
        conn.backlog = BACKLOG if len(msgs) >= room and reader.buffered > 0 else NO_BACKLOG
        if reader.in_frame:
            if conn.frame_deadline is None:
                conn.frame_deadline = now + self.config.frame_timeout
        elif conn.session.handshaken:
            conn.frame_deadline = None  # before the handshake the first-frame deadline stays
        if msgs:
            conn.inflight += len(msgs)
            with self._inflight_lock:
                self._inflight += len(msgs)
        return msgs

    def _protocol_error(self, conn: Connection, exc: ProtocolError) -> None:
        """Answer bytes that are not protocol 502, then close. Holds conn.lock."""
        log.info("protocol error from %s: %s", conn.session.address, exc)
        seq, ser_id = exc.seq or 0, exc.serializer_id or 0
        if conn.session.handshaken:
            reply = self.daemon.error_reply(p.Message(p.MSG_RESULT, ser_id, seq, b""), exc)
        else:
            reply = self.daemon.connect_fail(seq, str(exc))
        self._send(conn, reply)
        conn.closing = True
        self._later(self._close, conn)

    def _dispatch(self, conn: Connection, msg: p.Message) -> None:
        """Handle one message read on the loop (already counted in flight)."""
        session = conn.session
        if not session.handshaken:
            if msg.type != p.MSG_CONNECT:
                reply = self.daemon.connect_fail(
                    msg.seq, f"invalid msg type {msg.type} received (expected: {p.MSG_CONNECT})"
                )
                self._finish(conn, reply)
                self._close(conn)
                return
            reply, accepted = self.daemon.handle_connect(session, msg)
            self._finish(conn, reply)
            if accepted:
                conn.frame_deadline = None
            elif session.auth_nonce is None:  # else: an auth challenge, answered on this connection
                self._close(conn)
            return
        if msg.type == p.MSG_PING:
            self._finish(conn, self.daemon.pong(msg))
            return
        if msg.type != p.MSG_INVOKE:
            exc = ProtocolError(f"invalid msg type {msg.type} received")
            self._finish(conn, self.daemon.error_reply(msg, exc))
            self._close(conn)
            return
        if len(msg.data) > self.config.large_payload:
            self._pool.submit(self._prepare_and_run, conn, msg)  # decode off the loop
            return
        self._run(conn, self.daemon.prepare(session, msg))

    def _run(self, conn: Connection, call: Call | bytes | None) -> None:
        """Start a prepared call: on the loop if it is a coroutine, else on a worker."""
        if not isinstance(call, Call):
            self._finish(conn, call)
        elif call.oneway:
            self._finish(conn, None)  # the client does not wait; the call runs detached
            self._start_oneway(conn, call)
        elif call.is_coroutine:
            self._spawn(self._run_coroutine(conn, call))
        else:
            self._pool.submit(self._run_in_worker, conn, call)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_coroutine(self, conn: Connection, call: Call) -> None:
        self._finish(conn, await self.daemon.run_async(call))

    def _start_oneway(self, conn: Connection, call: Call) -> None:
        """Run a oneway call detached, within the oneway bounds (coroutines included).

        A connection with ``oneway_workers`` oneway calls running or queued is
        read no further until half of them have run (_apply_limits): its later
        calls wait in its socket, and one client, however fast, cannot fill the
        shared queue. Past the shared bound (many connections flooding at once)
        a call is dropped and counted, and a connection that keeps overflowing
        is closed. Logged once per connection, not per call."""
        cfg = self.config
        with self._oneway_lock:
            full = self._oneway_pending >= cfg.oneway_workers + cfg.oneway_queue
            if not full:
                self._oneway_pending += 1
                conn.oneways += 1
        if not full:
            if call.is_coroutine:
                self._spawn(self._oneway_coroutine(conn, call))
            else:
                self._oneway_pool.submit(self._run_oneway, conn, call)
            return
        self._oneway_dropped += 1
        conn.oneway_drops += 1
        if conn.oneway_drops == 1:
            log.warning(
                "oneway queue full; dropping oneway calls from %s (%d dropped in all)",
                conn.session.address,
                self._oneway_dropped,
            )
        elif conn.oneway_drops == ONEWAY_DROPS_CLOSE:
            log.warning(
                "closing %s: %d oneway calls dropped", conn.session.address, conn.oneway_drops
            )
            conn.closing = True
            self._later(self._close, conn)

    async def _oneway_coroutine(self, conn: Connection, call: Call) -> None:
        try:
            await self.daemon.run_async(call)
        finally:
            self._oneway_done(conn)

    def _run_oneway(self, conn: Connection, call: Call) -> None:
        try:
            self.daemon.run_sync(call)
        finally:
            self._oneway_done(conn)

    def _oneway_done(self, conn: Connection) -> None:
        with self._oneway_lock:  # decremented from many threads: `-= 1` alone loses updates
            self._oneway_pending -= 1
            conn.oneways -= 1
            # Halfway down from the bound that paused it: read the connection again.
            resume = conn.oneway_paused and conn.oneways <= self.config.oneway_workers // 2
            if resume:
                conn.oneway_paused = False
        if resume:
            self._later(self._apply_limits, conn)

    def _pause_for_oneways(self, conn: Connection) -> bool:
        """Whether ``conn``, seen with ``oneway_workers`` oneway calls waiting or running,
        still has them, and so is read no further until half have run. Loop only (the
        only thread that adds to ``conn.oneways``, so a count seen below the bound is
        not stale; one seen above it may be, hence the check under the lock)."""
        with self._oneway_lock:
            if conn.oneways >= self.config.oneway_workers:
                conn.oneway_paused = True
        return conn.oneway_paused

    # --- finishing calls --------------------------------------------------------------

    def _finish(self, conn: Connection, reply: p.Frame | None) -> None:
        """Send a reply produced on the loop and count the request done."""
        if reply is not None:
            self._send(conn, reply)
        with conn.lock:
            conn.inflight -= 1
        self._done_one()
        self._apply_limits(conn)

    def _done_one(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1
        if self._starved and self._inflight < self.config.max_inflight:
            self._later(self._wake_starved)
        if self._stopping:
            self._check_drained()

    def _wake_starved(self) -> None:
        starved, self._starved = self._starved, set()
        for conn in starved:
            if not conn.closed:
                self._apply_limits(conn)

    def _apply_limits(self, conn: Connection) -> None:
        """Pause reading a connection over its in-flight limits; resume it below them. Loop only."""
        over_global = self._inflight >= self.config.max_inflight
        over = (
            conn.inflight >= self.config.max_inflight_per_conn
            or over_global
            or len(conn.out) > self.config.write_high_water
            or conn.oneway_paused
            or (conn.oneways >= self.config.oneway_workers and self._pause_for_oneways(conn))
        )
        if over or self._stopping:
            self._pause(conn)
            if over_global and conn.inflight == 0 and not self._stopping:
                self._starved.add(conn)  # no call of its own will finish and resume it
        else:
            if conn.paused:
                conn.paused = False
                self._watch(conn)
            if conn.backlog == BACKLOG:
                conn.backlog = BACKLOG_TAKING
                self._later(self._take_backlog, conn)
        if conn.inflight == 0 and (self._stopping or (conn.eof and not conn.backlog)):
            self._close(conn)

    def _take_backlog(self, conn: Connection) -> None:
        """Dispatch requests that were buffered while the connection was at its limits."""
        with conn.lock:
            if conn.owner != LOOP or conn.closed or conn.closing or conn.paused:
                if conn.backlog == BACKLOG_TAKING:
                    conn.backlog = BACKLOG  # taken when the connection is below its limits
                return
            try:
                msgs = self._parse(conn)
            except ProtocolError as exc:
                self._protocol_error(conn, exc)
                return
        for msg in msgs:
            self._dispatch(conn, msg)
        self._apply_limits(conn)

    def _pause(self, conn: Connection) -> None:
        assert self._loop is not None
        conn.paused = True
        if conn.loop_reading and not conn.closed:
            self._loop.remove_reader(conn.fd)
            conn.loop_reading = False

    def _watch(self, conn: Connection) -> None:
        assert self._loop is not None
        if (
            not conn.loop_reading
            and not conn.closed
            and conn.owner == LOOP
            and not conn.paused
            and not conn.eof
        ):
            reader = self._tls_readable if conn.tls else self._on_readable
            self._loop.add_reader(conn.fd, reader, conn)
            conn.loop_reading = True
            if conn.tls and isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
                # Bytes OpenSSL decrypted before we paused: no socket event will tell.
                self._loop.call_soon(self._tls_readable, conn)

    # --- workers ----------------------------------------------------------------------

    def _prepare(self, conn: Connection, msg: p.Message) -> Call | bytes | None:
        """Decode a request in a worker; big ones at most ``max_concurrent_decodes`` at a time."""
        if len(msg.data) <= self.config.large_payload:
            return self.daemon.prepare(conn.session, msg)
        with self._decodes:  # bound the memory and CPU of big decodes
            return self.daemon.prepare(conn.session, msg)

    def _prepare_and_run(self, conn: Connection, msg: p.Message) -> None:
        call = self._prepare(conn, msg)
        if isinstance(call, Call) and not call.oneway and not call.is_coroutine:
            self._run_in_worker(conn, call)
        else:
            self._to_loop(self._run, conn, call)

    def _run_in_worker(self, conn: Connection, call: Call) -> None:
        """Run a call in this worker and send its reply; then keep the connection while
        it is busy: in another worker's set, or in a set this worker serves."""
        kept = self._run_call(conn, call, None)
        if kept is not None:
            self._serve_kept(kept)

    def _run_call(
        self, conn: Connection, call: Call, kept: KeptSet[Connection] | None
    ) -> KeptSet[Connection] | None:
        """Run ``call`` here and send its reply (``kept``: the set this worker serves,
        ``conn`` in it); a new set for this worker to serve, or ``None``."""
        # (A kept connection's call is timed from when its request was read.)
        started = time.monotonic() if kept is None else kept.busy_since
        reply = self.daemon.run_sync(call)
        if reply is not None:
            self._send(conn, reply)
        if kept is not None:
            kept.busy_since = 0.0
        quick = time.monotonic() - started <= QUICK_CALL
        new = self._done_in_worker(conn, kept, quick=quick)
        self._done_one()
        return new

    def _done_in_worker(
        self, conn: Connection, kept: KeptSet[Connection] | None, *, quick: bool
    ) -> KeptSet[Connection] | None:
        """Count a worker's call done; decide whether a worker keeps reading the connection.
        A new set for this worker to serve, or ``None``."""
        cfg = self.config
        new = None
        with conn.lock:
            conn.inflight -= 1
            keep = (
                cfg.worker_linger > 0
                and not conn.tls
                and not conn.closing
                and not conn.closed
                and not conn.paused
                and not self._stopping
                and not conn.out
            )
            if kept is not None and conn.kept_by is kept:
                # (Its other calls in flight, if any, wait in kept.queue or, complete,
                # in its buffer: the backlog, which this worker takes next.)
                keep = keep and not _partial_frame(conn)
                if keep and (quick or (len(kept) == 1 and not kept.queue)):
                    conn.last_active = time.monotonic()
                else:  # slow: the others in the set (or its own queued calls) would wait
                    self._release(conn)
            elif keep and kept is None and conn.inflight == 0 and not conn.reader.in_frame:
                new = self._keep(conn, quick=quick)
            elif conn.owner == WORKER:
                self._release(conn)
            paused = conn.paused
        if paused or self._stopping:
            self._to_loop(self._apply_limits, conn)
        return new

    def _keep(self, conn: Connection, *, quick: bool) -> KeptSet[Connection] | None:
        """Have a worker read ``conn`` (a loop connection that just finished a call):
        a set that takes it, or else a new set for this worker. Holds conn.lock.

        A connection that has yet to show it calls back to back is kept only
        where no connections are kept together yet: it would split the busy
        ones over more workers (more threads wanting the GIL), and likely
        idle out of its set again at once.
        """
        now = time.monotonic()
        with self._kept_lock:
            chosen = None
            if quick:
                back_to_back = conn.gap < BACK_TO_BACK
                for kept in self._kept_sets:
                    if kept.solo:
                        continue
                    if not back_to_back:
                        return None
                    busy = kept.busy_since
                    if (
                        not kept.receiving
                        and len(kept) < CONNS_PER_WORKER
                        and (not busy or now - busy <= QUICK_CALL)
                    ):
                        chosen = kept
                        break
            new = None
            if chosen is None:
                if len(self._kept_sets) >= MAX_KEPT or not self._pool.has_spare():
                    return None
                if self._spare_sets:  # (a set's poller is a file: reused, not remade)
                    chosen = new = self._spare_sets.pop()
                else:
                    chosen = new = KeptSet[Connection](self.config.request_spin)
                new.solo = not quick
                self._kept_sets.append(new)
                if len(self._kept_sets) == 1:
                    # The steal watchdog runs while sets exist. Woken only once the set is
                    # listed: woken before, it could find no set and sleep on (0.25 s).
                    self._later(self._watchdog_wake.set)
            conn.owner = WORKER
            conn.last_active = now
            conn.kept_by = chosen
            chosen.add(conn.fd, conn)
        return new

    def _release(self, conn: Connection) -> None:
        """Give reading back to the loop. Holds conn.lock, so the loop acts later.
        Its requests still queued in the set run in other workers, concurrently."""
        conn.owner = LOOP
        conn.reader.drop_spare()  # an idle connection holds no body buffer
        for msg in self._detach(conn):
            self._pool.submit(self._prepare_and_run, conn, msg)
        if conn.closing:
            self._later(self._close, conn)
            return
        if not conn.loop_reading:
            self._later(self._watch, conn)
        if conn.backlog:
            # Requests wait in the buffer (the limits were reached while a worker read):
            # no socket event will announce them, the loop takes them when it can.
            self._later(self._apply_limits, conn)

    @staticmethod
    def _detach(conn: Connection) -> list[p.Message]:
        """Take ``conn`` out of the set that watches it, if any; its requests that
        were queued there, not run. Holds conn.lock."""
        if (kept := conn.kept_by) is None:
            return []
        conn.kept_by = None
        return kept.discard(conn.fd)

    def _release_all(self, kept: KeptSet[Connection]) -> None:
        """Give every connection of ``kept`` back to the loop."""
        for conn in list(kept.conns.values()):
            with conn.lock:
                if conn.kept_by is kept:
                    self._release(conn)

    def _serve_kept(self, kept: KeptSet[Connection]) -> None:
        """Read and run the calls of the connections in ``kept`` until all went back.

        Each connection goes back to the loop once idle for ``worker_linger``
        (or its frame is overdue), on anything but synchronous calls, or when
        its call was slow among others (or before its own queued calls). Once requests come while
        waiting (callers back to back), and while no other call runs, the
        worker busy-polls before it sleeps: a CPU left idle would have to be
        woken for the next request.

        Should anything here fail, every connection of the set goes back to the
        loop: none may be left watched by a worker that is gone.
        """
        try:
            self._serve_kept_until_empty(kept)
        except BaseException:
            with self._kept_lock:  # first, so that nobody joins it meanwhile
                self._kept_sets.remove(kept)
            self._release_all(kept)
            kept.close()
            raise

    def _serve_kept_until_empty(self, kept: KeptSet[Connection]) -> None:
        linger = self.config.worker_linger
        check_every = min(linger, BODY_WAIT)
        next_check = time.monotonic() + check_every
        streak = False
        while True:
            if not kept.conns and self._retire(kept):
                return
            if not self._receive_alone(kept):
                timeout = next_check - time.monotonic()
                spin = streak and self._inflight == 0
                events = kept.wait(timeout, spin=spin) if timeout > 0 else []
                if streak := bool(events):
                    kept.last_event = time.monotonic()
                for fd, _ in events:
                    if (conn := kept.conns.get(fd)) is not None:
                        self._serve_readable(kept, conn)
            now = time.monotonic()
            if now >= next_check:
                self._expire_kept(kept, now)
                # While requests keep coming, connections go back only after
                # IDLE_IN_BUSY_SET: no need to look at each of them every few ms.
                busy = now - kept.last_event < linger and len(kept.conns) > 1
                next_check = now + (max(check_every, IDLE_IN_BUSY_SET / 4) if busy else check_every)

    def _retire(self, kept: KeptSet[Connection]) -> bool:
        """Drop an empty set (unless a connection joined it meanwhile)."""
        with self._kept_lock:
            if kept.conns:
                return False
            self._kept_sets.remove(kept)
            if self._sets_closed:
                kept.close()
            else:
                self._spare_sets.append(kept)
        return True

    def _receive_alone(self, kept: KeptSet[Connection]) -> bool:
        """Receive a large body in place, if the set's only connection is in one;
        whether it did. In place: at most MAX_KEPT sets, one such body each, so
        the memory taken before the peer sends it is bounded."""
        if len(kept.conns) != 1 or not kept.partial:
            return False
        kept.partial = False
        with kept.lock:
            if len(kept.conns) != 1:
                return False
            (conn,) = kept.conns.values()
        body = conn.reader.body_buffer()  # only this worker touches the reader now
        if body is None:
            return False
        with kept.lock:
            kept.receiving = len(kept.conns) == 1  # nobody may join and wait behind it
        if not kept.receiving:
            return False
        try:
            with body:
                waited = receive_body(conn.sock, body, BODY_WAIT)
        finally:
            kept.receiving = False
        kept.partial = waited < 0  # nothing came in time: the body is still awaited
        self._serve_readable(kept, conn, waited)
        return True

    def _serve_readable(
        self, kept: KeptSet[Connection], conn: Connection, waited: int | None = None
    ) -> None:
        """Read ``conn`` (see :meth:`_read_kept`) and run its calls here; then the
        requests its in-flight limit held back in its buffer, as the limit allows."""
        self._read_kept(kept, conn, waited)
        self._run_queued(kept)
        while conn.backlog and conn.kept_by is kept:
            self._read_kept(kept, conn)
            self._run_queued(kept)

    def _read_kept(
        self, kept: KeptSet[Connection], conn: Connection, waited: int | None = None
    ) -> None:
        """Read a kept connection said to be readable (or, ``waited``, the result of
        receiving its body in place); queue its requests in ``kept`` to run here.

        Only calls are queued, several of them (pipelined: threads sharing a
        proxy) only in a set of quick calls. Anything else (oneway, pings,
        errors) hands the connection back to the loop.
        """
        with conn.lock:
            if conn.kept_by is not kept:
                return  # handed back meanwhile (the watchdog, a shutdown)
            if conn.closing:
                self._release(conn)
                return
            if waited is not None and waited < 0:
                return  # nothing came in time; the frame deadline is checked later
            try:
                if waited is not None:
                    if got := waited:
                        conn.reader.body_received(got)
                elif conn.backlog:  # complete requests wait in the buffer: none to read
                    got = 1
                else:
                    got = receive(conn.sock, conn.reader)
                msgs = self._parse(conn) if got else []
            except (BlockingIOError, InterruptedError):
                return
            except ProtocolError as exc:
                self._release(conn)
                self._to_loop(self._protocol_error_locked, conn, exc)
                return
            except OSError:
                got = 0
            if not got:
                conn.closing = True
                self._release(conn)
                return
            if not msgs:
                if conn.backlog:  # complete requests, but over a limit: the loop's job
                    self._release(conn)
                elif conn.reader.in_frame:
                    kept.partial = True  # a large body's start: received in place if alone
                return
            calls = (
                (len(msgs) == 1 or not kept.solo)
                and not _partial_frame(conn)
                and all(msg.type == p.MSG_INVOKE and not msg.flags & p.FLAGS_ONEWAY for msg in msgs)
            )
            if not calls:
                self._release(conn)
                self._to_loop(self._dispatch_all, conn, msgs)
                return
            kept.push(conn, msgs)

    def _run_queued(self, kept: KeptSet[Connection]) -> None:
        """Run the requests queued in ``kept``, in order, here; hand a connection back
        to the loop when its request turns out not to be a synchronous call."""
        while (item := kept.pop()) is not None:
            conn, msg = item
            # (A kept connection's call is timed from here, decoding included.)
            kept.busy_since = time.monotonic()
            call = self._prepare(conn, msg)
            if not msg.flags & p.FLAGS_KEEPSERIALIZED:  # (a SerializedBlob keeps the payload)
                conn.reader.recycle(msg)  # decoded: its buffer takes the next large body
            if isinstance(call, Call) and not call.is_coroutine and not call.oneway:
                self._run_call(conn, call, kept)
                continue
            kept.busy_since = 0.0
            with conn.lock:
                if conn.kept_by is kept:
                    self._release(conn)
            self._to_loop(self._run, conn, call)

    def _expire_kept(self, kept: KeptSet[Connection], now: float) -> None:
        """Hand back the set's connections that idled for ``worker_linger`` (or
        ``IDLE_IN_BUSY_SET`` while others keep it busy), whose frame is overdue
        (the loop's sweep closes them), or that are closing."""
        linger = self.config.worker_linger
        if now - kept.last_event < linger:
            linger = max(linger, IDLE_IN_BUSY_SET)
        for conn in list(kept.conns.values()):
            with conn.lock:
                if conn.kept_by is not kept:
                    continue
                if conn.reader.in_frame:
                    due = conn.frame_deadline or now
                else:
                    due = conn.last_active + linger
                if conn.closing or now >= due:
                    self._release(conn)

    def _protocol_error_locked(self, conn: Connection, exc: ProtocolError) -> None:
        with conn.lock:
            self._protocol_error(conn, exc)

    def _dispatch_all(self, conn: Connection, msgs: list[p.Message]) -> None:
        for msg in msgs:
            self._dispatch(conn, msg)
        self._apply_limits(conn)

    def _later(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` on the loop soon, never inline (the caller may hold a lock)."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            self._loop.call_soon(fn, *args)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is gone: shutting down
                self._loop.call_soon_threadsafe(fn, *args)

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is gone: shutting down
                self._loop.call_soon_threadsafe(fn, *args)

    async def _housekeeping(self) -> None:
        """Deadlines (first frame, frame, idle, write) and the steal watchdog."""
        cfg = self.config
        interval = min(1.0, cfg.first_frame_timeout / 4, cfg.frame_timeout / 4)
        if cfg.ssl:
            interval = min(interval, cfg.ssl_handshake_timeout / 4)
        next_sweep = time.monotonic() + interval
        while True:
            if self._kept_sets:
                await asyncio.sleep(STEAL_AFTER)
            else:
                # Idle: sleep until the next sweep, or until a worker keeps a connection.
                # asyncio.timeout, not wait_for: wait_for (3.11) runs the wait in a task
                # of its own, one more task that comes and goes with the watchdog's mode.
                self._watchdog_wake.clear()
                with contextlib.suppress(builtins.TimeoutError):
                    async with asyncio.timeout(min(interval, 0.25)):
                        await self._watchdog_wake.wait()
            now = time.monotonic()
            for kept in list(self._kept_sets):
                busy = kept.busy_since
                if busy and now - busy > STEAL_AFTER:
                    # A long call: the loop reads its connection (more calls on it run
                    # concurrently) and the others in the set, which would wait behind it.
                    self._release_all(kept)
            if now < next_sweep:
                continue
            next_sweep = now + interval
            for conn in list(self._conns.values()):
                self._sweep(conn, now)
            self._check_drained()

    def _sweep(self, conn: Connection, now: float) -> None:
        cfg = self.config
        if conn.owner != LOOP:
            return
        # While we do not read a connection (paused at its limits, or requests
        # waiting in its backlog), an unfinished frame is not the client's fault.
        reading = not conn.paused and not conn.backlog
        if conn.frame_deadline is not None and now > conn.frame_deadline and reading:
            log.info("closing %s: frame not completed in time", conn.session.address)
            self._close(conn)
        elif conn.out and now - conn.out_since > cfg.write_timeout:
            log.info("closing %s: client stopped reading replies", conn.session.address)
            self._close(conn)
        elif (
            cfg.idle_timeout
            and conn.inflight == 0
            and conn.oneways == 0  # (paused behind its oneway calls: not idle)
            and now - conn.last_active > cfg.idle_timeout
        ):
            self._close(conn)

    # --- writing ----------------------------------------------------------------------

    def _send(self, conn: Connection, frame: p.Frame) -> None:
        """Send a frame from any thread; what the socket does not take, the loop flushes.
        A frame in parts goes out in one gathered write, its payload never joined."""
        if conn.tls:
            self._to_loop(self._tls_send, conn, p.joined(frame))
            return
        parts = (frame,) if isinstance(frame, bytes) else frame
        with conn.wlock:
            if conn.closed:
                return
            if conn.out:
                for part in parts:
                    conn.out += part
                return
            try:
                sent = (
                    conn.sock.send(frame) if isinstance(frame, bytes) else conn.sock.sendmsg(parts)
                )
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                conn.closing = True
                self._later(self._close, conn)
                return
            rest = p.unsent(parts, sent)
            if not rest:
                return
            for part in rest:
                conn.out += part
            conn.out_since = time.monotonic()
        self._to_loop(self._want_write, conn)

    def _want_write(self, conn: Connection) -> None:
        assert self._loop is not None
        if not conn.closed and conn.out:
            self._loop.add_writer(conn.fd, self._flush, conn)
            self._apply_limits(conn)

    def _flush(self, conn: Connection) -> None:
        assert self._loop is not None
        with conn.wlock:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                sent = -1
            if sent > 0:
                del conn.out[:sent]
                conn.out_since = time.monotonic()
            remaining = len(conn.out)
        if sent < 0:
            self._close(conn)
        elif not remaining:
            self._loop.remove_writer(conn.fd)
            self._apply_limits(conn)

    # --- TLS (everything on the loop) ---------------------------------------------------

    def _setup_tls(self, sock: socket.socket, addr: Any, reader: p.MessageReader) -> None:
        assert self._loop is not None and self._ssl is not None
        try:
            tsock = self._ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS setup failed for %s: %s", addr, exc)
            sock.close()
            return
        conn = TLSConnection(tsock, Session(addr), reader)
        conn.frame_deadline = time.monotonic() + self.config.ssl_handshake_timeout
        self._conns[conn.fd] = conn
        self._loop.add_reader(conn.fd, self._tls_handshake, conn)
        conn.loop_reading = True

    def _tls_handshake(self, conn: TLSConnection) -> None:
        """One non-blocking step of a TLS handshake (never blocks the loop)."""
        assert self._loop is not None
        if conn.closed:
            return
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            if conn.tls_writing:
                self._loop.remove_writer(conn.fd)
                conn.tls_writing = False
            return
        except ssl.SSLWantWriteError:
            if not conn.tls_writing:
                self._loop.add_writer(conn.fd, self._tls_handshake, conn)
                conn.tls_writing = True
            return
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake with %s failed: %s", conn.session.address, exc)
            self._close(conn)
            return
        if conn.tls_writing:
            self._loop.remove_writer(conn.fd)
            conn.tls_writing = False
        conn.handshaking = False
        conn.last_active = time.monotonic()
        conn.frame_deadline = conn.last_active + self.config.first_frame_timeout
        self._loop.add_reader(conn.fd, self._tls_readable, conn)  # replaces the handshake
        if sock.pending():
            self._tls_readable(conn)

    def _tls_readable(self, conn: Connection) -> None:
        """Read a TLS connection: what the socket has plus what OpenSSL already decrypted."""
        assert self._loop is not None
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        chunks: list[bytes] = []
        eof = False
        with conn.lock:
            if conn.closed:
                return
            try:
                while len(chunks) < 16:  # a bounded amount per wake-up: others' turn
                    data = sock.recv(conn.reader.recv_size())
                    if not data:
                        eof = True
                        break
                    chunks.append(data)
                    if not sock.pending():
                        break
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except (ssl.SSLError, OSError):
                eof = True
            msgs: list[p.Message] = []
            if chunks:
                try:
                    msgs = self._parse(conn, b"".join(chunks))
                except ProtocolError as exc:
                    self._protocol_error(conn, exc)
                    return
        if eof and not msgs:
            self._end_of_input(conn)
            return
        for msg in msgs:
            self._dispatch(conn, msg)
        if eof:
            conn.eof = True
            if conn.loop_reading:
                self._loop.remove_reader(conn.fd)
                conn.loop_reading = False
        self._apply_limits(conn)
        if sock.pending() and not conn.closed and conn.loop_reading:
            self._loop.call_soon(self._tls_readable, conn)  # decrypted bytes wait in OpenSSL

    def _tls_send(self, conn: Connection, data: bytes) -> None:
        """Queue a frame on a TLS connection and write what the socket takes (loop only;
        the caller may hold ``conn.lock``, so closing and limits are left for later)."""
        if conn.closed:
            return
        if not conn.out:
            conn.out_since = time.monotonic()
        conn.out += data
        if not self._tls_write(conn):
            conn.closing = True
            self._later(self._close, conn)
        elif len(conn.out) > self.config.write_high_water:
            self._later(self._apply_limits, conn)

    def _tls_flush(self, conn: Connection) -> None:
        """The loop's writer callback for a TLS connection with bytes waiting."""
        if not self._tls_write(conn):
            self._close(conn)
        elif not conn.closed:
            self._apply_limits(conn)

    def _tls_write(self, conn: Connection) -> bool:
        """Write queued bytes until the socket is full; ``False`` if the connection broke."""
        assert self._loop is not None and isinstance(conn, TLSConnection)
        sock = conn.sock
        while conn.out and not conn.closed:
            chunk = conn.tls_chunk or bytes(conn.out[:TLS_CHUNK])
            try:
                sent = sock.send(chunk)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                conn.tls_chunk = chunk
                if not conn.tls_writing:
                    self._loop.add_writer(conn.fd, self._tls_flush, conn)
                    conn.tls_writing = True
                return True
            except (ssl.SSLError, OSError):
                return False
            conn.tls_chunk = None
            del conn.out[:sent]
            conn.out_since = time.monotonic()
        if conn.tls_writing and not conn.closed:
            self._loop.remove_writer(conn.fd)
            conn.tls_writing = False
        return True

    # --- closing ----------------------------------------------------------------------

    def _close(self, conn: Connection) -> None:
        """Close a connection (loop thread). Waits for a worker that reads it to hand back."""
        assert self._loop is not None
        with conn.lock:
            if conn.closed:
                return
            if conn.owner != LOOP:
                conn.closing = True  # the worker hands back and calls us again
                return
            with conn.wlock:
                conn.closed = True
                if conn.loop_reading:
                    self._loop.remove_reader(conn.fd)
                    conn.loop_reading = False
                self._loop.remove_writer(conn.fd)
                conn.sock.close()
        self._conns.pop(conn.fd, None)
        self._starved.discard(conn)
        try:
            # Session instances and streams are released, then client_disconnected runs.
            self.daemon.release_session(conn.session)
        except Exception:
            log.exception("client_disconnected hook failed")

    def _close_all(self) -> None:
        for conn in list(self._conns.values()):
            with conn.lock:
                conn.owner = LOOP  # the loop is ending; workers find the socket closed
                self._detach(conn)  # (what it had queued is not run: it closes)
            self._close(conn)


def _partial_frame(conn: Connection) -> bool:
    """Whether ``conn``'s buffer ends in part of a frame (its backlog aside: complete
    requests held back by the in-flight limits)."""
    return conn.reader.in_frame and not conn.backlog


def _tune_tcp(sock: socket.socket, keepalive: tuple[int, int, int], user_timeout: float) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle, interval, count = keepalive
    for name, value in (
        ("TCP_KEEPIDLE", idle),
        ("TCP_KEEPINTVL", interval),
        ("TCP_KEEPCNT", count),
        ("TCP_USER_TIMEOUT", int(user_timeout * 1000)),
    ):
        opt = getattr(socket, name, None)
        if opt is not None and value > 0:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)

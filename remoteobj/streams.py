"""Remote iterators: a method that returns an iterator streams its items on demand.

Wire behaviour (Pyro5 5.17, ``server.py`` ``_streamResponse`` and ``DaemonObject``;
``client.py`` ``_StreamResultIterator``):

- When a remote method (or an exposed property) returns an iterator or a
  generator, the daemon does not serialize it. It keeps it under a fresh
  ``uuid4`` string and replies ``FLAGS_EXCEPTION | FLAGS_ITEMSTREAMRESULT``
  with the annotation ``STRM`` = the stream id (the exception payload,
  ``ProtocolError("result of call is an iterator")``, is there for old clients).
- The client fetches items with ``Pyro.Daemon.get_next_stream_item(id)``;
  exhaustion arrives as a remote ``StopIteration``; an early stop is the
  oneway ``Pyro.Daemon.close_stream(id)``.

Server side, :class:`StreamRegistry` holds the open streams of one daemon with
the limits of :class:`~remoteobj.config.Config`: ``max_streams`` open at once,
``iter_stream_lifetime`` seconds from creation (``0``: unlimited), and
``iter_stream_linger`` seconds kept after the owning connection closed, so a
proxy that reconnects can go on reading (``0``: closed with the connection).
A stream that ends, fails, expires or is closed has its iterator closed
(``close()``/``aclose()``), so generators run their ``finally`` blocks at once.
Async iterators (``async def`` generators) stream too: their items are awaited
on the daemon's event loop.

Client side, a :class:`~remoteobj.Proxy` call that returns a stream gives a
:class:`StreamIterator` (``for item in proxy.numbers(): ...``), an
:class:`~remoteobj.AsyncProxy` call an :class:`AsyncStreamIterator`
(``async for item in await proxy.numbers(): ...``). Both close the remote
stream when left early (``close()``/``aclose()``, ``with``/``async with``, or,
lazily, on the next call of the proxy once the iterator is garbage).
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import protocol as p
from .errors import CommunicationError, DaemonError, RemoteObjError

if TYPE_CHECKING:
    from .client import AsyncProxy, Proxy
    from .config import Config

__all__ = [
    "STREAM_ANNOTATION",
    "AsyncStreamIterator",
    "StreamIterator",
    "StreamRef",
    "StreamRegistry",
    "is_stream",
]

log = logging.getLogger(__name__)

#: The annotation that carries the stream id of an ITEMSTREAMRESULT reply.
STREAM_ANNOTATION = "STRM"
#: Object id of the daemon's built-in object, which serves the stream items.
DAEMON_OBJECT = "Pyro.Daemon"
#: The text of the exception an ITEMSTREAMRESULT reply carries (Pyro5's).
STREAM_RESULT_TEXT = "result of call is an iterator"
TERMINATED_TEXT = "item stream terminated"


# Results of these types are never streams; skips the ABC checks on the hot path.
_PLAIN_RESULTS = frozenset({type(None), bool, int, float, str, bytes, list, tuple, dict, set})


def is_stream(value: Any) -> bool:
    """Whether a result is streamed rather than serialized: an iterator or generator,
    sync or async (Pyro5 streams ``collections.abc.Iterator`` and generators)."""
    if type(value) in _PLAIN_RESULTS:
        return False
    return isinstance(value, collections.abc.Iterator | collections.abc.AsyncIterator)


@dataclass(frozen=True, slots=True)
class StreamRef:
    """What :meth:`remoteobj.client.CallCore.result` returns for a streamed result;
    the proxy shells turn it into their iterator."""

    stream_id: str


# =============================================================================
# Server side
# =============================================================================


class _Owner(Protocol):
    """A connection's session as the registry sees it (``daemon.Session``)."""

    streams: set[str]
    #: Set (by :meth:`StreamRegistry.release`) once the connection has closed.
    closed: bool


class _Stream:
    __slots__ = ("closed", "created", "iterator", "linger_since", "lock", "owner")

    def __init__(self, iterator: Any, owner: _Owner | None, now: float) -> None:
        self.iterator = iterator
        self.owner = owner
        self.created = now
        #: When the owner disconnected (``None`` while it is connected).
        self.linger_since: float | None = None if owner is not None else now
        #: Serializes next() (a generator refuses concurrent use) and close().
        self.lock = threading.Lock()
        self.closed = False


class StreamRegistry:
    """The open streams of one daemon, with their lifetime and linger limits.

    Thread-safe: items are fetched in worker threads, connections close on the
    event loop. ``clock`` is injectable for tests.
    """

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self._lifetime = config.iter_stream_lifetime
        self._linger = config.iter_stream_linger
        self._max = config.max_streams
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        #: No stream expires before this, so most accesses skip the expiry scan.
        self._next_expiry = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._streams

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` (the daemon's, running in this thread) for async iterators and
        expiry timers."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    # --- the operations ---------------------------------------------------------

    def open(self, iterator: Any, owner: _Owner | None) -> str:
        """Keep ``iterator`` as a new stream of ``owner``'s connection; its id.

        Raises :class:`DaemonError` when ``Config.max_streams`` are open already
        (the iterator is closed then: nobody will read it).
        """
        if isinstance(iterator, collections.abc.AsyncIterator) and self._loop is None:
            _dispose([_Stream(iterator, None, 0.0)], None)
            raise DaemonError("async iterators can only be streamed by a serving daemon")
        stream_id = str(uuid.uuid4())
        now = self._clock()
        with self._lock:
            expired = self._expired_locked(now)
            full = len(self._streams) >= self._max
            orphan = owner is not None and owner.closed
            if not full:
                if orphan:
                    owner = None  # the client left while the call ran: the stream lingers
                stream = self._streams[stream_id] = _Stream(iterator, owner, now)
                if owner is not None:
                    owner.streams.add(stream_id)
                self._next_expiry = min(self._next_expiry, self._deadline(stream))
        self._dispose(expired)
        if full:
            _dispose([_Stream(iterator, None, now)], self._loop)
            raise DaemonError(f"too many open streams (limit {self._max})")
        if self._lifetime > 0:
            self._sweep_later(self._lifetime)
        if orphan:
            self._sweep_later(self._linger)
        return stream_id

    def next_item(self, stream_id: str, session: _Owner | None) -> Any:
        """The next item of a stream (``StopIteration`` at its end).

        A stream whose connection went away is adopted by the connection
        asking (a proxy that reconnected), as in Pyro5. Unknown, expired and
        closed streams raise ``RemoteObjError("item stream terminated")``.
        """
        if not isinstance(stream_id, str):
            raise TypeError("stream id must be a string")
        now = self._clock()
        with self._lock:
            expired = self._expired_locked(now)
            stream = self._streams.get(stream_id)
            if stream is not None and stream.owner is None and session is not None:
                stream.owner = session
                stream.linger_since = None
                session.streams.add(stream_id)
        self._dispose(expired)
        if stream is None:
            raise RemoteObjError(TERMINATED_TEXT)
        with stream.lock:
            if stream.closed:
                raise RemoteObjError(TERMINATED_TEXT)
            try:
                return self._advance(stream.iterator)
            except BaseException:
                # Exhausted or failed: the stream is over (its generator is finished).
                self._forget(stream_id)
                stream.closed = True
                raise

    def close(self, stream_id: str) -> None:
        """Close a stream early (the client stopped reading); unknown ids are ignored."""
        if isinstance(stream_id, str):
            stream = self._forget(stream_id)
            if stream is not None:
                self._dispose([stream])

    def release(self, session: _Owner) -> None:
        """The connection of ``session`` closed: its streams linger, or close now
        if ``Config.iter_stream_linger`` is 0."""
        now = self._clock()
        closing: list[_Stream] = []
        with self._lock:
            session.closed = True  # streams opened from now on linger at once
            ids, session.streams = session.streams, set()
            for stream_id in ids:
                stream = self._streams.get(stream_id)
                if stream is None or stream.owner is not session:
                    continue
                if self._linger > 0:
                    stream.owner = None
                    stream.linger_since = now
                    self._next_expiry = min(self._next_expiry, now + self._linger)
                else:
                    del self._streams[stream_id]
                    closing.append(stream)
        self._dispose(closing)
        if ids and self._linger > 0:
            self._sweep_later(self._linger)

    def sweep(self) -> int:
        """Close the streams past their lifetime or linger time; how many."""
        with self._lock:
            expired = self._expired_locked(self._clock())
        self._dispose(expired)
        return len(expired)

    def close_all(self) -> None:
        """Close every stream (the daemon is closing)."""
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        self._dispose(streams)

    # --- internals ----------------------------------------------------------------

    def _forget(self, stream_id: str) -> _Stream | None:
        with self._lock:
            stream = self._streams.pop(stream_id, None)
            if stream is not None and stream.owner is not None:
                stream.owner.streams.discard(stream_id)
        return stream

    def _deadline(self, stream: _Stream) -> float:
        """When a stream expires: its lifetime, or its linger time once its owner left."""
        deadline = stream.created + self._lifetime if self._lifetime > 0 else math.inf
        if stream.linger_since is not None:
            deadline = min(deadline, stream.linger_since + self._linger)
        return deadline

    def _expired_locked(self, now: float) -> list[_Stream]:
        if now < self._next_expiry:
            return []
        expired: list[tuple[str, _Stream]] = []
        next_expiry = math.inf
        for stream_id, stream in self._streams.items():
            deadline = self._deadline(stream)
            if now >= deadline:
                expired.append((stream_id, stream))
            else:
                next_expiry = min(next_expiry, deadline)
        self._next_expiry = next_expiry
        for stream_id, stream in expired:
            del self._streams[stream_id]
            if stream.owner is not None:
                stream.owner.streams.discard(stream_id)
        return [stream for _, stream in expired]

    def _advance(self, iterator: Any) -> Any:
        if not isinstance(iterator, collections.abc.AsyncIterator):
            return next(iterator)
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RemoteObjError(TERMINATED_TEXT)
        if threading.get_ident() == self._loop_thread:
            # Waiting here for the loop would deadlock it; workers call this, never the loop.
            raise RuntimeError("async stream items cannot be fetched on the event loop thread")
        future = asyncio.run_coroutine_threadsafe(_anext(iterator), loop)
        try:
            return future.result()
        except StopAsyncIteration:
            raise StopIteration from None

    def offload(self, job: Callable[[], None]) -> None:
        """Run ``job`` (user code: closing iterators or resources) now, or in a
        thread if called on the event loop, which must never block."""
        loop = self._loop
        if loop is not None and threading.get_ident() == self._loop_thread:
            loop.run_in_executor(None, _logged, job)
        else:
            job()

    def _dispose(self, streams: list[_Stream]) -> None:
        if streams:
            loop = self._loop
            self.offload(lambda: _dispose(streams, loop))

    def _sweep_later(self, delay: float) -> None:
        loop = self._loop
        if loop is None:
            return  # not serving: expiry is checked on the next access instead
        when = delay + 0.01
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is served
            if threading.get_ident() == self._loop_thread:
                loop.call_later(when, self.sweep)
            else:
                loop.call_soon_threadsafe(loop.call_later, when, self.sweep)


def _logged(job: Callable[[], None]) -> None:
    try:
        job()
    except Exception:
        log.exception("closing streams or resources failed")


async def _anext(iterator: Any) -> Any:
    return await iterator.__anext__()


def _dispose(streams: list[_Stream], loop: asyncio.AbstractEventLoop | None) -> None:
    """Close the iterators of finished streams (never on the event loop thread)."""
    for stream in streams:
        it = stream.iterator
        if isinstance(it, collections.abc.AsyncIterator):
            aclose = getattr(it, "aclose", None)
            if aclose is not None and loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    asyncio.run_coroutine_threadsafe(_aclose(it), loop)
            continue
        close = getattr(it, "close", None)
        if not callable(close):
            continue
        with stream.lock:  # waits for a next() in progress; generators refuse concurrent use
            stream.closed = True
            try:
                close()
            except Exception:
                log.warning("closing a stream's iterator failed", exc_info=True)


async def _aclose(iterator: Any) -> None:
    try:
        await iterator.aclose()
    except Exception:
        log.warning("closing a stream's async iterator failed", exc_info=True)


# =============================================================================
# Client side
# =============================================================================


class StreamIterator:
    """The items of a remote iterator, fetched one call at a time (blocking proxies).

    Returned by a :class:`~remoteobj.Proxy` call whose remote method returned an
    iterator. Iterate it once; :meth:`close` (or leaving a ``with`` block) ends
    the remote stream early. A connection lost in between is reconnected on the
    next item, and the daemon hands the stream over (within its linger time).
    """

    __slots__ = ("__weakref__", "_proxy", "stream_id")

    def __init__(self, proxy: Proxy, stream_id: str) -> None:
        self._proxy: Proxy | None = proxy
        #: The daemon's id of the stream.
        self.stream_id = stream_id

    def __iter__(self) -> StreamIterator:
        return self

    def __next__(self) -> Any:
        proxy = self._proxy
        if proxy is None:
            raise StopIteration
        try:
            return proxy._invoke(
                "get_next_stream_item", (self.stream_id,), {}, object_id=DAEMON_OBJECT
            )
        except CommunicationError:
            raise  # the stream may live on; the next item reconnects
        except BaseException:
            # Exhausted, or the remote iterator raised: the daemon dropped the stream.
            self._proxy = None
            raise

    def close(self) -> None:
        """Stop the remote iterator (a oneway ``close_stream``); idempotent."""
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy._invoke(
                "close_stream",
                (self.stream_id,),
                {},
                flags=p.FLAGS_ONEWAY,
                object_id=DAEMON_OBJECT,
            )

    def __enter__(self) -> StreamIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(CommunicationError):  # gone: the daemon closes it itself
            self.close()

    def __del__(self) -> None:
        # Never send from a finalizer (it may run inside another call holding the
        # connection's locks): leave the close to the proxy's next call.
        proxy = self._proxy
        if proxy is not None:
            proxy._stream_closes.append(self.stream_id)

    def __repr__(self) -> str:
        return f"<remote stream {self.stream_id}>"


class AsyncStreamIterator:
    """The items of a remote iterator for an :class:`~remoteobj.AsyncProxy`:
    ``async for item in await proxy.numbers(): ...``."""

    __slots__ = ("__weakref__", "_proxy", "stream_id")

    def __init__(self, proxy: AsyncProxy, stream_id: str) -> None:
        self._proxy: AsyncProxy | None = proxy
        #: The daemon's id of the stream.
        self.stream_id = stream_id

    def __aiter__(self) -> AsyncStreamIterator:
        return self

    async def __anext__(self) -> Any:
        proxy = self._proxy
        if proxy is None:
            raise StopAsyncIteration
        try:
            core, msg = await proxy._roundtrip(
                "get_next_stream_item", (self.stream_id,), {}, 0, DAEMON_OBJECT
            )
            assert msg is not None
            # Inside this frame: a StopIteration must not escape a coroutine.
            return core.result(msg)
        except StopIteration:
            self._proxy = None
            raise StopAsyncIteration from None
        except CommunicationError:
            raise
        except BaseException:
            self._proxy = None
            raise

    async def aclose(self) -> None:
        """Stop the remote iterator (a oneway ``close_stream``); idempotent."""
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            await proxy._roundtrip(
                "close_stream", (self.stream_id,), {}, p.FLAGS_ONEWAY, DAEMON_OBJECT
            )

    async def __aenter__(self) -> AsyncStreamIterator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(CommunicationError):
            await self.aclose()

    def __del__(self) -> None:
        proxy = self._proxy
        if proxy is not None:
            proxy._stream_closes.append(self.stream_id)

    def __repr__(self) -> str:
        return f"<remote async stream {self.stream_id}>"

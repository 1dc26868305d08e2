"""Batched calls: many method calls of one remote object in one round trip.

::

    with remoteobj.Proxy(uri) as p:
        batch = remoteobj.BatchProxy(p)
        batch.add(1, 2)
        batch.fail("x")          # recorded, not sent
        batch.add(3, 4)
        results = batch()        # one INVOKE; an iterator over the results
        next(results)            # 3
        next(results)            # raises the remote exception; the batch stopped there

On the wire (Pyro5 5.17, ``client.py`` ``BatchProxy``, ``server.py``
``handleRequest``) a batch is one INVOKE of the method ``"<batch>"`` with
``FLAGS_BATCH``, the list of ``(method, args, kwargs)`` as arguments and
``None`` as keyword arguments. The daemon runs the calls in order and stops at
the first one that raises, replying (with ``FLAGS_BATCH``) the results so far
plus that exception, wrapped; iterating the results re-raises it in its place.
``batch(oneway=True)`` sends the batch oneway: nothing comes back. Coroutine
methods and streamed results cannot be batched (as in Pyro5); a daemon accepts
at most ``Config.max_batch`` calls per batch.

:class:`BatchProxy` wraps a :class:`~remoteobj.Proxy`, :class:`AsyncBatchProxy`
an :class:`~remoteobj.AsyncProxy` (``results = await batch()``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from . import protocol as p
from .serializers import ExceptionWrapper

if TYPE_CHECKING:
    from .client import AsyncProxy, Proxy, RemoteMeta

__all__ = ["BATCH_METHOD", "AsyncBatchProxy", "BatchProxy"]

#: The method name of a batch INVOKE.
BATCH_METHOD = "<batch>"

_Calls = list[tuple[str, tuple[Any, ...], dict[str, Any]]]


class _BatchedMethod:
    """Records a call on a batch proxy instead of sending it."""

    __slots__ = ("_calls", "_name")

    def __init__(self, calls: _Calls, name: str) -> None:
        self._calls = calls
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self._calls.append((self._name, args, kwargs))


class _BatchBase:
    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: _Calls = []

    def __getattr__(self, name: str) -> _BatchedMethod:
        if name.startswith("_"):
            raise AttributeError(name)  # local names are never remote
        return _BatchedMethod(self._calls, name)

    def _take(self, meta: RemoteMeta) -> _Calls:
        """The recorded calls (clearing them for reuse), checked against the metadata.

        Oneway methods run inline in a batch, as in Pyro5."""
        for name, _, _ in self._calls:
            if name not in meta.methods:
                raise AttributeError(f"remote object has no exposed method {name!r}")
        calls, self._calls = self._calls, []
        return calls

    def __len__(self) -> int:
        """How many calls are recorded and not sent yet."""
        return len(self._calls)


def _results(values: Any) -> Iterator[Any]:
    """Yield batch results, raising a wrapped exception where it stands."""
    if not isinstance(values, list | tuple):
        raise TypeError(f"invalid batch reply: {type(values).__name__}")
    for value in values:
        if isinstance(value, ExceptionWrapper):
            value.raise_if_exception()
        yield value


class BatchProxy(_BatchBase):
    """Collects calls for one remote object and sends them as one batch.

    Call methods on it to record them; call the batch proxy itself to send
    them: ``batch()`` returns an iterator over the results (re-raising a
    remote exception at its place, after which the batch had stopped);
    ``batch(oneway=True)`` sends without waiting and returns ``None``. The
    recorded calls are cleared once sent, so the batch proxy can be reused.
    Method names are checked against the remote metadata before sending.
    """

    __slots__ = ("_proxy",)

    def __init__(self, proxy: Proxy) -> None:
        from .client import AsyncProxy  # imported late: the client imports little

        if isinstance(cast(object, proxy), AsyncProxy):
            raise TypeError("use AsyncBatchProxy with an AsyncProxy")
        super().__init__()
        self._proxy = proxy

    @overload
    def __call__(self, oneway: Literal[False] = False) -> Iterator[Any]: ...
    @overload
    def __call__(self, oneway: Literal[True]) -> None: ...
    @overload
    def __call__(self, oneway: bool) -> Iterator[Any] | None: ...

    def __call__(self, oneway: bool = False) -> Iterator[Any] | None:
        """Send the recorded calls; an iterator over their results (``None`` if oneway)."""
        calls = self._take(self._proxy._meta)
        flags = p.FLAGS_BATCH | (p.FLAGS_ONEWAY if oneway else 0)
        results = self._proxy._invoke(BATCH_METHOD, calls, None, flags)
        return None if oneway else _results(results)

    def __enter__(self) -> BatchProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __repr__(self) -> str:
        return f"<remoteobj.BatchProxy for {self._proxy._uri}, {len(self._calls)} calls>"


class AsyncBatchProxy(_BatchBase):
    """:class:`BatchProxy` for an :class:`~remoteobj.AsyncProxy`:
    ``results = await batch()`` (``await batch(oneway=True)`` returns ``None``)."""

    __slots__ = ("_proxy",)

    def __init__(self, proxy: AsyncProxy) -> None:
        super().__init__()
        self._proxy = proxy

    @overload
    async def __call__(self, oneway: Literal[False] = False) -> Iterator[Any]: ...
    @overload
    async def __call__(self, oneway: Literal[True]) -> None: ...
    @overload
    async def __call__(self, oneway: bool) -> Iterator[Any] | None: ...

    async def __call__(self, oneway: bool = False) -> Iterator[Any] | None:
        """Send the recorded calls; an iterator over their results (``None`` if oneway)."""
        core = await self._proxy._connection()
        assert core.meta is not None
        calls = self._take(core.meta)
        flags = p.FLAGS_BATCH | (p.FLAGS_ONEWAY if oneway else 0)
        results = await self._proxy._invoke(BATCH_METHOD, calls, None, flags)
        return None if oneway else _results(results)

    def __repr__(self) -> str:
        return f"<remoteobj.AsyncBatchProxy for {self._proxy._uri}, {len(self._calls)} calls>"

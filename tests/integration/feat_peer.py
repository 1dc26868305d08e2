"""A feature-rich peer served by remoteobj or by Pyro5, for the feature interop tests.

``python tests/integration/feat_peer.py remoteobj|pyro5 PORT [options]`` serves on
127.0.0.1:PORT and prints ``READY <uri of feat.service>``; it serves until killed.

Objects (the same for both implementations):

- ``feat.service``: :class:`Service` -- streams, batches, autoproxies, callbacks,
  call context, blobs, custom classes, compression-sized payloads;
- ``feat.session`` / ``feat.single`` / ``feat.percall`` / ``feat.created``: a class
  registered in each instance mode (``created``: session mode, custom creator);
- ``feat.stats``: counters kept by the process (live instances, open generators).

Options: ``--compression``, ``--lifetime S``, ``--linger S``, ``--max-streams N``,
``--handshake TOKEN`` (refuse connections with other handshake data).
"""

from __future__ import annotations

import argparse
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

COUNTS: dict[str, int] = {"live": 0, "created": 0, "open_gens": 0, "closed_gens": 0}
LOCK = threading.Lock()


def bump(key: str, delta: int = 1) -> None:
    with LOCK:
        COUNTS[key] += delta


class Point:
    """A custom class sent across the wire as ``{"__class__": "feat.Point", ...}``."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


def point_to_dict(pt: Point) -> dict[str, Any]:
    return {"__class__": "feat.Point", "x": pt.x, "y": pt.y}


def dict_to_point(_classname: str, d: dict[str, Any]) -> Point:
    return Point(d["x"], d["y"])


def build(impl: str, api: Any) -> dict[str, Any]:
    """The objects to register, built with one implementation's decorators."""
    expose, oneway, behavior, callback = api.expose, api.oneway, api.behavior, api.callback
    context = api.current_context
    make_proxy: Callable[[Any], Any] = api.Proxy

    def ctx() -> Any:
        return context() if callable(context) else context

    @expose
    class Child:
        def __init__(self, name: str) -> None:
            self.name = name

        def hello(self) -> str:
            return f"hello from {self.name}"

    @expose
    class Service:
        def __init__(self) -> None:
            self._value = 1
            self._next: str | None = None
            self._recorded: list[Any] = []
            self.children: list[Any] = []
            self.daemon: Any = None

        # --- plain --------------------------------------------------------------
        def echo(self, x: Any) -> Any:
            return x

        def add(self, a: int, b: int = 0) -> int:
            return a + b

        def fail(self, text: str) -> None:
            raise ValueError(text)

        @oneway
        def record(self, item: Any) -> None:
            self._recorded.append(item)

        def recorded(self) -> list[Any]:
            return list(self._recorded)

        @property
        def value(self) -> int:
            return self._value

        @value.setter
        def value(self, v: int) -> None:
            self._value = v

        @property
        def letters(self) -> Iterator[str]:
            return iter("abc")

        # --- streams ------------------------------------------------------------
        def count(self, n: int) -> Iterator[int]:
            bump("open_gens")
            try:
                yield from range(n)
            finally:
                bump("open_gens", -1)
                bump("closed_gens")

        def fail_after(self, n: int) -> Iterator[int]:
            yield from range(n)
            raise ValueError(f"failed after {n}")

        def plain_iterator(self, n: int) -> Iterator[int]:
            return iter(list(range(n)))

        # --- sizes (compression) ------------------------------------------------
        def big(self, n: int) -> str:
            return "x" * n

        def length(self, s: str) -> int:
            return len(s)

        # --- context --------------------------------------------------------------
        def context(self) -> dict[str, Any]:
            c = ctx()
            c.response_annotations = {**c.response_annotations, "RESP": b"reply-" + impl.encode()}
            return {
                "impl": impl,
                "corr": str(c.correlation_id),
                "ann": {k: bytes(v).decode("latin-1") for k, v in c.annotations.items()},
            }

        def forward_context(self, uri: str) -> dict[str, Any]:
            with make_proxy(uri) as p:
                return {"here": str(ctx().correlation_id), "there": p.context()}

        # --- autoproxy & callbacks -----------------------------------------------------
        def child(self, name: str) -> Any:
            c = Child(name)
            self.daemon.register(c)
            self.children.append(c)
            return c  # registered: travels as a proxy

        def call_back(self, cb: Any, value: Any) -> Any:
            return cb.notify(value)

        def call_back_error(self, cb: Any) -> str:
            try:
                cb.explode()
            except Exception as exc:
                return f"caught {type(exc).__name__}: {exc}"
            return "no error"

        # --- blobs ------------------------------------------------------------------
        def blob_info(self, blob: Any) -> list[Any]:
            return [impl, blob.info, blob.deserialized()]

        def set_next(self, uri: str) -> None:
            self._next = uri

        def dispatch(self, blob: Any) -> Any:
            assert self._next is not None
            with make_proxy(self._next) as p:
                return p.blob_info(blob)

        # --- custom classes ----------------------------------------------------------
        def shift(self, pt: Point, dx: int) -> Point:
            return Point(pt.x + dx, pt.y)

    @expose
    class Thing:
        def __init__(self) -> None:
            bump("live")
            bump("created")
            self._data: Any = None
            weakref.finalize(self, bump, "live", -1)

        def whoami(self) -> int:
            return id(self)

        def put(self, x: Any) -> None:
            self._data = x

        def get(self) -> Any:
            return self._data

    @behavior(instance_mode="session")
    class SessionThing(Thing):
        pass

    @behavior(instance_mode="single")
    class SingleThing(Thing):
        pass

    @behavior(instance_mode="percall")
    class PercallThing(Thing):
        pass

    def creator(cls: type) -> Any:
        obj = cls()
        obj._data = "made by creator"
        return obj

    @behavior(instance_mode="session", instance_creator=creator)
    class CreatedThing(Thing):
        pass

    @expose
    class Stats:
        def counts(self) -> dict[str, int]:
            with LOCK:
                return dict(COUNTS)

        @callback
        def unused(self) -> None:
            pass

    for cls in (SessionThing, SingleThing, PercallThing, CreatedThing):
        expose(cls)
    return {
        "feat.service": Service(),
        "feat.session": SessionThing,
        "feat.single": SingleThing,
        "feat.percall": PercallThing,
        "feat.created": CreatedThing,
        "feat.stats": Stats(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("impl", choices=["remoteobj", "pyro5"])
    parser.add_argument("port", type=int)
    parser.add_argument("--compression", action="store_true")
    parser.add_argument("--lifetime", type=float, default=0.0)
    parser.add_argument("--linger", type=float, default=30.0)
    parser.add_argument("--max-streams", type=int, default=1024)
    parser.add_argument("--handshake", default=None)
    args = parser.parse_args()

    if args.impl == "remoteobj":
        import remoteobj
        from remoteobj import serializers

        serializers.register_class_to_dict(Point, point_to_dict)
        serializers.register_dict_to_class("feat.Point", dict_to_point)
        objects = build("remoteobj", remoteobj)
        cfg = remoteobj.Config(
            accepted_serializers=frozenset({"serpent", "json", "msgpack", "marshal"}),
            compression=args.compression,
            iter_stream_lifetime=args.lifetime,
            iter_stream_linger=args.linger,
            max_streams=args.max_streams,
        )
        token = args.handshake

        class Daemon(remoteobj.Daemon):
            def validate_handshake(self, session: Any, data: Any) -> Any:
                if token is not None and data != token:
                    raise remoteobj.errors.SecurityError("bad handshake")
                return "welcome" if token is not None else "hello"

            def annotations(self) -> dict[str, bytes]:
                return {"DMON": b"remoteobj"}  # on every reply, as Pyro5's hook

        daemon: Any = Daemon("127.0.0.1", args.port, config=cfg)
    else:
        from Pyro5 import api, config, errors
        from Pyro5.serializers import SerializerBase

        SerializerBase.register_class_to_dict(Point, point_to_dict)
        SerializerBase.register_dict_to_class("feat.Point", dict_to_point)
        config.SERVERTYPE = "thread"
        config.COMPRESSION = args.compression
        config.ITER_STREAM_LIFETIME = args.lifetime
        config.ITER_STREAM_LINGER = args.linger
        objects = build("pyro5", api)
        token = args.handshake

        class PyroDaemon(api.Daemon):  # type: ignore[misc]
            def validateHandshake(self, conn: Any, data: Any) -> Any:
                if token is not None and data != token:
                    raise errors.SecurityError("bad handshake")
                return "welcome" if token is not None else "hello"

            def annotations(self) -> dict[str, bytes]:
                return {"DMON": b"pyro5"}

        daemon = PyroDaemon(host="127.0.0.1", port=args.port)
    objects["feat.service"].daemon = daemon
    uri = None
    for name, obj in objects.items():
        registered = daemon.register(obj, name)
        if name == "feat.service":
            uri = registered
    print("READY", uri, flush=True)
    if args.impl == "remoteobj":
        daemon.request_loop()
    else:
        daemon.requestLoop()


if __name__ == "__main__":
    main()

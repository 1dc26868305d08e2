"""A test service served by either implementation, for the interop tests.

``python tests/integration/peers.py remoteobj|pyro5 PORT [SERIALIZER]`` serves the
same ``Service`` under the id ``test.service`` on 127.0.0.1:PORT and prints
``READY <uri>``. It serves until killed.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any


def make_service(expose: Any, oneway: Any) -> type:
    class Service:
        def __init__(self) -> None:
            self._value = 1
            self._log: list[Any] = []
            self._lock = threading.Lock()

        def echo(self, x: Any) -> Any:
            return x

        def add(self, a: int, b: int = 0) -> int:
            return a + b

        def fail(self, text: str) -> None:
            raise ValueError(text, 42)

        def sleep(self, seconds: float) -> float:
            time.sleep(seconds)
            return seconds

        @oneway
        def record(self, item: Any) -> None:
            with self._lock:
                self._log.append(item)

        def recorded(self) -> list[Any]:
            with self._lock:
                return list(self._log)

        @property
        def value(self) -> int:
            return self._value

        @value.setter
        def value(self, v: int) -> None:
            self._value = v

        def _private(self) -> str:
            return "secret"

    Service.__qualname__ = Service.__name__ = "Service"
    exposed: type = expose(Service)
    return exposed


def main() -> None:
    impl, port = sys.argv[1], int(sys.argv[2])
    serializer = sys.argv[3] if len(sys.argv) > 3 else "serpent"
    if impl == "remoteobj":
        import remoteobj

        service = make_service(remoteobj.expose, remoteobj.oneway)

        class Aio(service):  # type: ignore[valid-type, misc]
            async def coro(self, x: int) -> int:
                import asyncio

                await asyncio.sleep(0.01)
                return x * 2

        remoteobj.expose(Aio)
        cfg = remoteobj.Config(
            accepted_serializers=frozenset({"serpent", "json", "msgpack", "marshal"})
        )
        daemon = remoteobj.Daemon("127.0.0.1", port, config=cfg)
        uri = daemon.register(Aio(), "test.service")
        print("READY", uri, flush=True)
        daemon.request_loop()
    else:
        from Pyro5 import api, config

        config.SERIALIZER = serializer
        config.SERVERTYPE = "thread"
        service = make_service(api.expose, api.oneway)
        daemon = api.Daemon(host="127.0.0.1", port=port)
        uri = daemon.register(service(), "test.service")
        print("READY", uri, flush=True)
        daemon.requestLoop()


if __name__ == "__main__":
    main()

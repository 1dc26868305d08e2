"""SQLite storage under SIGKILL: no acknowledged registration lost, no acknowledged
removal resurrected (THREATS G16, at test-suite scale).

A client streams register/remove calls at a name server on ``sql:FILE``; a
timer SIGKILLs the server at a random instant. The server is restarted on the
same file and its table must equal the model of acknowledged operations. The
one call in flight at the kill may have landed or not: either is accepted,
and the model adopts what the server says.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import remoteobj
from remoteobj.errors import CommunicationError
from tests.procs import start_nameserver

NS = "Pyro.NameServer"
ROUNDS = 6
NAMES = [f"svc.{i}" for i in range(25)]

Value = tuple[str, frozenset[str]] | None  # (uri, metadata) or absent


def test_sigkill_mid_stream_keeps_every_acknowledged_change(tmp_path: Path) -> None:
    db = f"sql:{tmp_path / 'ns.db'}"
    rng = random.Random(20240502)
    model: dict[str, tuple[str, frozenset[str]]] = {}
    in_flight: tuple[str, Value, Value] | None = None
    acknowledged = 0
    counter = 0
    config = remoteobj.Config(commtimeout=5, connect_timeout=5)
    for _ in range(ROUNDS):
        restarted = time.monotonic()
        proc, uri = start_nameserver("-s", db)
        try:
            with remoteobj.Proxy(uri, config=config) as ns:
                listed = ns.list(return_metadata=True)
                assert time.monotonic() - restarted < 10
                actual = {n: (u, frozenset(m)) for n, (u, m) in listed.items() if n != NS}
                if in_flight is not None:
                    lost, old, new = in_flight
                    assert actual.get(lost) in (old, new), f"{lost}: {actual.get(lost)}"
                    if actual.get(lost) is None:
                        model.pop(lost, None)
                    else:
                        model[lost] = actual[lost]
                    in_flight = None
                assert actual == model

                killer = threading.Timer(rng.uniform(0.1, 0.5), proc.send_signal, [signal.SIGKILL])
                killer.start()
                try:
                    while True:
                        counter += 1
                        name = rng.choice(NAMES)
                        before = model.get(name)
                        after: Value
                        if rng.random() < 0.65:
                            after = (f"PYRO:obj{counter}@127.0.0.1:{5000 + counter % 1000}",
                                     frozenset({f"v{counter}", "t"}))  # fmt: skip
                        else:
                            after = None
                        in_flight = (name, before, after)
                        try:
                            if after is None:
                                ns.remove(name)
                            else:
                                ns.register(name, after[0], metadata=sorted(after[1]))
                        except CommunicationError:
                            break  # killed: this call's fate is checked after the restart
                        in_flight = None
                        acknowledged += 1
                        if after is None:
                            model.pop(name, None)
                        else:
                            model[name] = after
                finally:
                    killer.join()
        finally:
            proc.wait(10)
    assert acknowledged > 100, (
        f"only {acknowledged} operations acknowledged: the test proves little"
    )

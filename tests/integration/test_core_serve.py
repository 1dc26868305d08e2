"""``remoteobj.serve()``: the one-liner serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal

import remoteobj
from tests.procs import start

SCRIPT = """
import remoteobj

@remoteobj.expose
class Hello:
    def hi(self) -> str:
        return "hi"

remoteobj.serve({Hello: "hello"}, host="127.0.0.1", use_ns=False)
print("serve returned", flush=True)
"""


def test_serve_answers_and_returns_cleanly_on_sigterm() -> None:
    proc = start(["python", "-c", SCRIPT])
    try:
        uri = proc.wait_for_line(r"uri = (\S+)", timeout=15).group(1)
        proc.wait_for_line("daemon running", timeout=15)
        with remoteobj.Proxy(uri) as p:
            assert p.hi() == "hi"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert "serve returned" in proc.output
    finally:
        proc.kill()

"""The pure helpers of the benchmark scripts (bench/run.py, bench/profile_hot.py).

The benchmarks themselves are not part of the test suite (they take minutes and
need quiet CPUs); these checks keep the arithmetic that turns samples into the
published table honest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import profile_hot  # noqa: E402
import run  # noqa: E402


def test_versus_takes_medians_and_judges_the_ratio() -> None:
    fig = run.versus("w", "calls/s", [10.0, 30.0, 20.0], [10.0, 10.0, 100.0], 1.5)
    assert (fig.ours, fig.theirs) == (20.0, 10.0)
    assert fig.ratio == pytest.approx(2.0)
    assert fig.passed is True
    assert fig.target == ">= 1.5x"
    assert run.versus("w", "calls/s", [14.0], [10.0], 1.5).passed is False
    assert run.versus("w", "calls/s", [14.0], [10.0]).passed is None


def test_ratio_is_absent_when_figures_are_not_comparable() -> None:
    assert run.Figure("w", "ms", 5.0, 1.0, comparable=False).ratio is None
    assert run.Figure("w", "ms", 5.0, None).ratio is None
    assert run.Figure("w", "ms", None, 1.0).ratio is None


def test_table_marks_misses_and_formats_units() -> None:
    text = run.table(
        [
            run.Figure("a", "calls/s", 12345.6, 10000.0, target=">= 1.3x", passed=False),
            run.Figure("b", "MiB/s", 3.14159, None, note="n"),
        ]
    )
    lines = text.splitlines()
    assert lines[2] == "| a | calls/s | 12,346 | 10,000 | 1.23x | >= 1.3x | **MISS** |"
    assert lines[3] == "| b (n) | MiB/s | 3.14 | — | — | — | — |"


def test_percentile_in_milliseconds() -> None:
    values = list(range(1, 101))  # microseconds
    assert run._percentile(values, 0.5) == pytest.approx(0.051)
    assert run._percentile(values, 0.99) == pytest.approx(0.1)
    assert run._percentile([], 0.5) != run._percentile([], 0.5)  # NaN


def test_alternate_reverses_the_order_every_round() -> None:
    order: list[str] = []

    def slice_(name: str, value: float) -> float:
        order.append(name)
        return value

    ctx = run.Ctx(0.1, 4, False, None, None)
    result = run.alternate(ctx, {"a": lambda: slice_("a", 1.0), "b": lambda: slice_("b", 2.0)})
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert result == {"a": [1.0] * 4, "b": [2.0] * 4}


def test_perf_categories() -> None:
    cat = profile_hot.perf_category
    assert cat("[kernel.kallsyms]", "k", "finish_task_switch.isra.0").startswith("kernel: wake")
    assert cat("[kernel.kallsyms]", "k", "tcp_sendmsg_locked").startswith("kernel: TCP")
    assert cat("[kernel.kallsyms]", "k", "exc_page_fault").startswith("kernel: memory")
    assert cat("libpython3.11.so.1.0", ".", "_PyEval_EvalFrameDefault").startswith("user: Python")
    assert cat("libc.so.6", ".", "malloc").startswith("user: libc")


def test_analyse_splits_waiting_from_cpu_and_folds_c_into_python(tmp_path: Path) -> None:
    frames = [
        {"name": "Server._linger", "file": "/x/remoteobj/server.py", "line": 1},
        {"name": "poll", "file": "libc.so.6", "line": 0},
        {"name": "MessageReader.next_message", "file": "/x/remoteobj/protocol.py", "line": 2},
        {"name": "s_unpack_internal", "file": "_struct.c", "line": 0},
        {"name": "recv", "file": "libc.so.6", "line": 0},
    ]
    profile = {
        "shared": {"frames": frames},
        "profiles": [
            {
                "samples": [[0, 1], [0, 2, 3], [0, 2, 3], [0, 4]],
                "weights": [0.5, 0.2, 0.2, 0.1],
            }
        ],
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile))
    a = profile_hot.analyse(path, blocking_recv=False)
    assert a["waiting"] == pytest.approx(0.5)
    assert a["cpu"] == pytest.approx(0.5)
    assert a["hot"]["MessageReader.next_message (protocol.py)"] == pytest.approx(0.4)
    assert a["categories"]["framing (protocol: header, reader)"] == pytest.approx(0.4)
    assert a["categories"]["socket syscalls (send/recv/connect)"] == pytest.approx(0.1)
    blocking = profile_hot.analyse(path, blocking_recv=True)
    assert blocking["waiting"] == pytest.approx(0.6)  # a blocking recv waits for the peer

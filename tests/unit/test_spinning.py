"""The busy-wait before a thread sleeps: when it waits, and how it learns to stop.

A scripted check stands in for the socket poll (or the flag another thread
sets), so each test says exactly when the awaited thing "arrives"; a pipe
checks the real poll of a :class:`remoteobj.spinning.SocketWatch`.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator

import pytest

from remoteobj.spinning import MAX_SKIP_LEVEL, SocketWatch, Spinner


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def scripted(answers: list[bool]) -> tuple[Callable[[], bool], list[int]]:
    """A check answering from ``answers`` (True: ready; silent once exhausted),
    and the list its calls are counted in."""
    calls: list[int] = []

    def ready() -> bool:
        calls.append(1)
        return bool(answers) and answers.pop(0)

    return ready, calls


def checked_waits(spinner: Spinner, waits: int, answers: list[bool] | None = None) -> list[int]:
    """Run ``waits`` waits (1-based); the ones that checked (the others slept at once)."""
    ready, calls = scripted(answers or [])
    checked = []
    for n in range(1, waits + 1):
        before = len(calls)
        spinner.wait(ready)
        if len(calls) > before:
            checked.append(n)
    return checked


def test_a_readable_pipe_is_caught_at_once(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, b"x")
    started = time.perf_counter()
    assert SocketWatch(r, budget=1.0).spin() is True
    assert time.perf_counter() - started < 0.5


def test_a_silent_pipe_is_given_up_after_the_budget(pipe: tuple[int, int]) -> None:
    started = time.perf_counter()
    assert SocketWatch(pipe[0], budget=0.02).spin() is False
    assert 0.02 <= time.perf_counter() - started < 1.0


def test_what_arrives_mid_wait_is_caught() -> None:
    ready, calls = scripted([False, False, False, True])
    assert Spinner(budget=10.0).wait(ready) is True
    assert len(calls) == 4


def test_zero_budget_never_checks() -> None:
    ready, calls = scripted([True])
    assert Spinner(budget=0).wait(ready) is False
    assert calls == []


def test_a_peer_that_never_answers_in_time_is_waited_for_ever_more_rarely() -> None:
    checked = checked_waits(Spinner(budget=0.0002), 700)
    # each miss doubles the waits skipped after it: 1, 3, 7, ... then one in 128
    assert checked[: MAX_SKIP_LEVEL + 1] == [2**k - 1 for k in range(1, MAX_SKIP_LEVEL + 2)]
    gaps = {b - a for a, b in itertools.pairwise(checked[MAX_SKIP_LEVEL:])}
    assert gaps == {2**MAX_SKIP_LEVEL}


def test_a_caught_wait_lowers_the_skipping_again() -> None:
    spinner = Spinner(budget=0.0002)
    assert checked_waits(spinner, 3) == [1, 3]  # two misses: the next 3 waits sleep at once
    # after those, a wait that catches; then waiting again on the very next one
    assert checked_waits(spinner, 5, answers=[True]) == [4, 5]
    # that one missed: back to skipping 3 (not 7: the catch lowered the level)
    assert checked_waits(spinner, 4) == [4]

"""The busy-poll before a read sleeps: when it polls, and how it learns to stop.

A pipe stands in for the socket (a :class:`Spinner` watches any file
descriptor); a scripted poll replaces the real one where the test needs to
say exactly when data "arrives".
"""

from __future__ import annotations

import itertools
import os
import select
import time
from collections.abc import Iterator

import pytest

from remoteobj.spinning import MAX_SKIP_LEVEL, Spinner

READY = [(0, select.POLLIN)]


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def scripted(spinner: Spinner, answers: list[bool]) -> list[int]:
    """Make ``spinner`` poll from ``answers`` (True: readable) and count the polls;
    an exhausted script stays silent."""
    polls: list[int] = []

    def poll(timeout: int) -> list[tuple[int, int]]:
        assert timeout == 0, "a spinner never sleeps in poll"
        polls.append(timeout)
        return READY if answers and answers.pop(0) else []

    spinner._poll = poll
    return polls


def polled_waits(spinner: Spinner, waits: int, answers: list[bool] | None = None) -> list[int]:
    """Run ``waits`` waits (1-based); the ones that polled (the others slept at once)."""
    polls = scripted(spinner, answers or [])
    polled = []
    for n in range(1, waits + 1):
        before = len(polls)
        spinner.wait()
        if len(polls) > before:
            polled.append(n)
    return polled


def test_readable_descriptor_is_caught_at_once(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, b"x")
    spinner = Spinner(r, budget=1.0)
    started = time.perf_counter()
    assert spinner.wait() is True
    assert time.perf_counter() - started < 0.5


def test_silent_descriptor_gives_up_after_the_budget(pipe: tuple[int, int]) -> None:
    spinner = Spinner(pipe[0], budget=0.02)
    started = time.perf_counter()
    assert spinner.wait() is False
    elapsed = time.perf_counter() - started
    assert 0.02 <= elapsed < 1.0


def test_data_arriving_mid_spin_is_caught() -> None:
    spinner = Spinner(0, budget=10.0)
    polls = scripted(spinner, [False, False, False, True])
    assert spinner.wait() is True
    assert len(polls) == 4


def test_zero_budget_never_polls() -> None:
    spinner = Spinner(0, budget=0)
    polls = scripted(spinner, [True])
    assert spinner.wait() is False
    assert polls == []


def test_a_peer_that_never_answers_in_time_is_polled_ever_more_rarely() -> None:
    spinner = Spinner(0, budget=0.0002)
    polled = polled_waits(spinner, 700)
    # each miss doubles the waits skipped after it: 1, 3, 7, ... then one in 128
    assert polled[: MAX_SKIP_LEVEL + 1] == [2**k - 1 for k in range(1, MAX_SKIP_LEVEL + 2)]
    gaps = {b - a for a, b in itertools.pairwise(polled[MAX_SKIP_LEVEL:])}
    assert gaps == {2**MAX_SKIP_LEVEL}


def test_a_caught_wait_lowers_the_skipping_again() -> None:
    spinner = Spinner(0, budget=0.0002)
    assert polled_waits(spinner, 3) == [1, 3]  # two misses: the next 3 waits sleep at once
    # after those, a poll that catches its data; then polling on the very next wait
    assert polled_waits(spinner, 5, answers=[True]) == [4, 5]
    # that wait missed again: back to skipping 3 (not 7: the catch lowered the level)
    assert polled_waits(spinner, 4) == [4]

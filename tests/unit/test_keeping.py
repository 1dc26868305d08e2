"""KeptSet: one worker's watched connections (here: pipes), changed from other threads."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from remoteobj.keeping import CONNS_PER_WORKER, KeptSet
from remoteobj.protocol import MSG_INVOKE, Message

needs_epoll = pytest.mark.skipif(CONNS_PER_WORKER == 1, reason="no epoll: one connection per set")


@pytest.fixture
def pipes() -> Iterator[list[tuple[int, int]]]:
    made = [os.pipe() for _ in range(3)]
    yield made
    for r, w in made:
        os.close(r)
        os.close(w)


def test_a_readable_member_is_reported_and_a_quiet_one_is_not(
    pipes: list[tuple[int, int]],
) -> None:
    kept: KeptSet[str] = KeptSet(0.0)
    (r1, w1), (r2, _) = pipes[:2]
    kept.add(r1, "one")
    kept.add(r2, "two")
    assert kept.wait(0.01, spin=False) == []
    os.write(w1, b"x")
    assert [fd for fd, _ in kept.wait(1.0, spin=False)] == [r1]
    assert len(kept) == 2 and kept.conns[r1] == "one"


def test_a_discarded_member_is_no_longer_reported(pipes: list[tuple[int, int]]) -> None:
    kept: KeptSet[str] = KeptSet(0.0)
    r, w = pipes[0]
    kept.add(r, "one")
    kept.discard(r)
    kept.discard(r)  # twice: no error
    os.write(w, b"x")
    assert kept.wait(0.01, spin=False) == []
    assert len(kept) == 0


def test_discarding_a_closed_descriptor_is_harmless() -> None:
    kept: KeptSet[str] = KeptSet(0.0)
    r, w = os.pipe()
    kept.add(r, "one")
    os.close(r)
    os.close(w)
    kept.discard(r)
    assert len(kept) == 0


@needs_epoll
def test_a_member_added_while_the_worker_waits_is_watched_at_once(
    pipes: list[tuple[int, int]],
) -> None:
    kept: KeptSet[str] = KeptSet(0.0)
    (r1, _), (r2, w2) = pipes[:2]
    kept.add(r1, "quiet")
    found: list[list[tuple[int, int]]] = []
    waiter = threading.Thread(target=lambda: found.append(kept.wait(5.0, spin=False)))
    started = time.monotonic()
    waiter.start()
    os.write(w2, b"x")  # readable before it joins: reported as soon as it joins
    kept.add(r2, "joined")
    waiter.join(5)
    assert [fd for fd, _ in found[0]] == [r2]
    assert time.monotonic() - started < 2.5  # not the wait's whole 5 s


def test_a_spinning_wait_catches_data_without_sleeping(pipes: list[tuple[int, int]]) -> None:
    kept: KeptSet[str] = KeptSet(0.05)
    r, w = pipes[0]
    kept.add(r, "one")
    threading.Timer(0.002, os.write, (w, b"x")).start()
    assert [fd for fd, _ in kept.wait(0.0, spin=True)] == [r]  # caught by the spin alone


def test_a_spin_that_finds_nothing_falls_back_to_the_wait(pipes: list[tuple[int, int]]) -> None:
    kept: KeptSet[str] = KeptSet(0.001)
    r, _ = pipes[0]
    kept.add(r, "one")
    started = time.monotonic()
    assert kept.wait(0.05, spin=True) == []
    assert time.monotonic() - started >= 0.05


def _requests(*seqs: int) -> list[Message]:
    return [Message(MSG_INVOKE, 1, seq, b"") for seq in seqs]


def test_queued_requests_come_out_in_the_order_they_were_read() -> None:
    kept: KeptSet[str] = KeptSet(0.0)
    kept.push("one", _requests(1, 2))
    kept.push("two", _requests(7))
    kept.push("one", _requests(3))
    taken = []
    while (item := kept.pop()) is not None:
        taken.append((item[0], item[1].seq))
    assert taken == [("one", 1), ("one", 2), ("two", 7), ("one", 3)]


def test_a_discarded_member_takes_its_queued_requests_and_leaves_the_others_in_order(
    pipes: list[tuple[int, int]],
) -> None:
    kept: KeptSet[str] = KeptSet(0.0)
    (r1, _), (r2, _) = pipes[:2]
    kept.add(r1, "one")
    kept.add(r2, "two")
    kept.push("one", _requests(1))
    kept.push("two", _requests(7, 8))
    kept.push("one", _requests(2))
    assert [msg.seq for msg in kept.discard(r1)] == [1, 2]
    assert kept.discard(r1) == []
    assert [(c, m.seq) for c, m in iter(kept.pop, None)] == [("two", 7), ("two", 8)]
    assert kept.discard(r2) == []

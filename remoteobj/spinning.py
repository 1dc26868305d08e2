"""Busy-polling a socket for a short while before sleeping on it.

Why: a blocking ``recv`` puts the thread to sleep, and when nothing else runs
its CPU goes idle. The reply (or the next request) then has to wake that CPU
again, and on a virtual machine an idle CPU is halted in the hypervisor, so
each wake-up costs tens of microseconds: more than our own per-call work. On
the 2-vCPU VM of BENCHMARKS.md a raw Python ping-pong does 12k round trips/s
when both ends sleep, 40k when one end polls and 87k when both do. Go's
runtime spins its idle threads for the same reason before parking them.

A :class:`Spinner` checks a condition (a socket's ``poll(0)``, or a flag
another thread sets) until it holds or ``budget`` seconds have passed,
yielding the CPU (``sched_yield``, without the GIL) on every turn so that any
other thread ready to run goes first: the wait only fills time the CPU would
otherwise spend idle. The caller then goes on as usual (at once, or sleeping
when the spinner gave up). The spinner learns when waiting is wasted: each
wait that outlasts the budget doubles the number of later waits that skip it
(up to 127 in 128), and each caught wait brings it back down, so a peer that
answers slowly costs at most one budget per 128 waits.

Threads waiting on each other pay the same toll: a thread sharing a proxy
sleeps on a lock until the thread reading the socket hands it its reply, and
waking it costs as much; those waits spin too.
"""

from __future__ import annotations

import functools
import os
import select
import time
from collections.abc import Callable

__all__ = ["CAN_POLL", "MAX_SKIP_LEVEL", "SocketWatch", "Spinner"]

#: Whether this platform can busy-poll a socket (not Windows: no ``poll``, no ``sched_yield``).
CAN_POLL = hasattr(select, "poll") and hasattr(os, "sched_yield")
#: After repeated misses, poll on one wait in ``2 ** MAX_SKIP_LEVEL``.
MAX_SKIP_LEVEL = 7


class Spinner:
    """Busy-waits for a condition before its owner sleeps; learns when that is wasted.

    ``budget`` is in seconds; ``0`` turns waiting off. One spinner serves one
    kind of wait (a socket's next reply, say). Threads that share one may race
    on its counters, which only blurs how often it waits.
    """

    __slots__ = ("_budget", "_level", "_skip")

    def __init__(self, budget: float) -> None:
        self._budget = budget
        self._level = 0  # how often the last waits outlasted the budget
        self._skip = 0  # waits left that sleep at once

    def wait(self, ready: Callable[[], object]) -> bool:
        """Call ``ready()`` (yielding the CPU between calls) until it is true, for at
        most the budget.

        ``True``: ready (for a socket poll: readable, or closed, which the read
        that follows says). ``False``: the budget ran out, or waiting is off or
        skipped this time; the caller may sleep.
        """
        if self._budget <= 0:
            return False
        if self._skip:
            self._skip -= 1
            return False
        clock = time.perf_counter
        yield_cpu = os.sched_yield
        end = clock() + self._budget
        while not ready():
            yield_cpu()
            if clock() >= end:
                self._level = min(self._level + 1, MAX_SKIP_LEVEL)
                self._skip = (1 << self._level) - 1
                return False
        if self._level:
            self._level -= 1
        return True


class SocketWatch:
    """One socket watched for input: a poll object to sleep on, and a
    :class:`Spinner` that busy-polls it first. One owner thread at a time."""

    __slots__ = ("_check", "poller", "spinner")

    def __init__(self, fd: int, budget: float) -> None:
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)
        self._check = functools.partial(self.poller.poll, 0)  # looks without waiting
        self.spinner = Spinner(budget)

    def spin(self) -> bool:
        """Busy-poll until the socket is readable (or closed: the read that follows
        says which), within the spinner's budget; see :meth:`Spinner.wait`."""
        return self.spinner.wait(self._check)

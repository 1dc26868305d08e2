"""Busy-polling a socket for a short while before sleeping on it.

Why: a blocking ``recv`` puts the thread to sleep, and when nothing else runs
its CPU goes idle. The reply (or the next request) then has to wake that CPU
again, and on a virtual machine an idle CPU is halted in the hypervisor, so
each wake-up costs tens of microseconds: more than our own per-call work. On
the 2-vCPU VM of BENCHMARKS.md a raw Python ping-pong does 12k round trips/s
when both ends sleep, 40k when one end polls and 87k when both do. Go's
runtime spins its idle threads for the same reason before parking them.

A :class:`Spinner` polls one socket (``poll(0)``) until it is readable or
``budget`` seconds have passed, yielding the CPU (``sched_yield``, without the
GIL) on every turn so that any other thread ready to run goes first: the poll
only fills time the CPU would otherwise spend idle. The caller then reads as
usual (at once, or sleeping when the poll gave up). The spinner learns when
polling is wasted: each wait that outlasts the budget doubles the number of
later waits that skip polling (up to 127 in 128), and each caught wait brings
it back down, so a peer that answers slowly costs at most one budget per 128
waits.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable

__all__ = ["CAN_POLL", "MAX_SKIP_LEVEL", "Spinner"]

#: Whether this platform has what a Spinner needs (not Windows: no ``poll``).
CAN_POLL = hasattr(select, "poll") and hasattr(os, "sched_yield")
#: After repeated misses, poll on one wait in ``2 ** MAX_SKIP_LEVEL``.
MAX_SKIP_LEVEL = 7


class Spinner:
    """Polls file descriptor ``fd`` before its owner sleeps on it; one owner thread at a time.

    ``budget`` is in seconds; ``0`` turns polling off. :attr:`poller` (``fd``
    registered for ``POLLIN``) is the owner's to sleep on too.
    """

    __slots__ = ("_budget", "_level", "_poll", "_skip", "poller")

    def __init__(self, fd: int, budget: float) -> None:
        self._budget = budget
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)
        self._poll: Callable[[int], list[tuple[int, int]]] = self.poller.poll
        self._level = 0  # how often the last waits outlasted the budget
        self._skip = 0  # waits left that sleep at once

    def wait(self) -> bool:
        """Poll until the descriptor is readable, for at most the budget.

        ``True``: readable (or closed: the read that follows says which).
        ``False``: the budget ran out, polling is off or skipped this time; the
        caller's read may sleep.
        """
        if self._budget <= 0:
            return False
        if self._skip:
            self._skip -= 1
            return False
        poll = self._poll
        clock = time.perf_counter
        yield_cpu = os.sched_yield
        end = clock() + self._budget
        while not poll(0):
            yield_cpu()
            if clock() >= end:
                self._level = min(self._level + 1, MAX_SKIP_LEVEL)
                self._skip = (1 << self._level) - 1
                return False
        if self._level:
            self._level -= 1
        return True

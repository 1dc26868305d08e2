"""Keep the C allocator from handing every big message's memory back to the kernel.

glibc serves a block above its *mmap threshold* (128 KiB at first) with fresh
pages from the kernel and unmaps them again on free, so each megabyte-sized
message costs a page fault per 4 KiB page, on every call: measured here, ~320
faults and about half the throughput for a 1 MiB argument (a daemon served
569 calls/s against 1,304/s without the faults). glibc raises the threshold,
once and for good, to the size of the largest such block freed (up to
32 MiB); a long-running process reaches that by chance, or never. Freeing one
block as big as the largest message this side accepts settles it at start:
messages up to that size then reuse heap memory. Elsewhere than glibc the
block is just allocated and freed.
"""

from __future__ import annotations

import threading

__all__ = ["prime_allocator"]

#: glibc stops raising its mmap threshold here (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit).
_GLIBC_THRESHOLD_MAX = 32 * 1024 * 1024


class _Primer:
    """The largest block freed so far by :func:`prime_allocator` in this process."""

    def __init__(self) -> None:
        self.size = 0
        self.lock = threading.Lock()

    def prime(self, largest_message: int) -> None:
        size = min(largest_message, _GLIBC_THRESHOLD_MAX)
        if size <= self.size:
            return
        with self.lock:
            if size <= self.size:
                return
            block = bytearray(size)  # a fresh mapping, touched: then unmapped by the free
            del block
            self.size = size


_primer = _Primer()


def prime_allocator(largest_message: int) -> None:
    """Allocate and free one block of ``largest_message`` bytes (at most 32 MiB), once
    per process for the largest size asked; later calls for no larger size do nothing."""
    _primer.prime(largest_message)

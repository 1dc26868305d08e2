"""prime_allocator: one big block freed per process, so big messages reuse heap memory."""

from __future__ import annotations

import tracemalloc

from remoteobj import memory


def peak_of(call: object) -> int:
    tracemalloc.start()
    try:
        call()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_largest_size_asked_is_allocated_once_and_smaller_ones_cost_nothing() -> None:
    primer = memory._Primer()
    assert peak_of(lambda: primer.prime(4 * 1024 * 1024)) >= 4 * 1024 * 1024
    assert peak_of(lambda: primer.prime(4 * 1024 * 1024)) < 1024
    assert peak_of(lambda: primer.prime(1024 * 1024)) < 1024
    assert peak_of(lambda: primer.prime(6 * 1024 * 1024)) >= 6 * 1024 * 1024


def test_sizes_past_glibcs_threshold_limit_are_capped() -> None:
    primer = memory._Primer()
    primer.prime(1 << 40)  # a terabyte limit must not allocate a terabyte
    assert primer.size == 32 * 1024 * 1024

"""The ``regex`` filter of ``list`` and ``remove``: Python regular expressions that
stay cheap to match.

Pyro5 matches any pattern a client sends against every name with ``re.match``.
Python's backtracking engine holds the GIL while it works, and a pattern such
as ``(a+)+$`` against a registered name of 30 ``a`` and a ``!`` takes a
minute (each further ``a`` doubles it): one request would stop the whole name
server. So a pattern is parsed first and refused, with a clear
:class:`~remoteobj.errors.NamingError`, when matching could take time
exponential or of high degree in the length of a name:

- a repetition (``*``, ``+``, ``{m,n}``) inside another repetition;
- an alternation (``a|b``) inside a repetition;
- backreferences (``\\1``, ``(?P=name)``, conditional groups);
- more than :data:`MAX_REPEATS` repetitions in all (names are at most
  ``ns_max_name_length`` characters, so three of them cost at most ~n³/6
  steps per name, a fraction of a second at the 256-character default);
- a pattern longer than :data:`MAX_PATTERN_LENGTH`.

What is left can still be slow across 100,000 names, so :func:`select`
gives up after :data:`MATCH_BUDGET` seconds, again with a ``NamingError``.
Everything an administrator writes to pick names (``example\\..*``,
``(shop|store)\\.[a-z]+``, ``.*\\.v[0-9]+``) is accepted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from remoteobj.errors import NamingError

__all__ = ["MATCH_BUDGET", "MAX_PATTERN_LENGTH", "MAX_REPEATS", "compile_pattern", "select"]

#: Longest pattern accepted, in characters.
MAX_PATTERN_LENGTH = 256
#: Most repetitions (``*``, ``+``, ``{m,n}`` with n > 1) a pattern may hold.
MAX_REPEATS = 3
#: Seconds one ``list``/``remove`` may spend matching before it is refused.
MATCH_BUDGET = 1.0

_REPEATS = frozenset({sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT})
_BACKREFERENCES = frozenset({sre.GROUPREF, sre.GROUPREF_EXISTS})


def compile_pattern(regex: str) -> re.Pattern[str]:
    """``regex`` compiled, or :class:`~remoteobj.errors.NamingError` when it is not
    a valid regular expression or could be costly to match (see the module)."""
    if not isinstance(regex, str):
        raise NamingError(f"invalid regex: expected a string, not {type(regex).__name__}")
    if len(regex) > MAX_PATTERN_LENGTH:
        raise NamingError(
            f"regex too long: {len(regex)} characters, the limit is {MAX_PATTERN_LENGTH}"
        )
    try:
        parsed = sre_parse.parse(regex)
        pattern = re.compile(regex)
    except (re.error, OverflowError, RecursionError) as exc:
        raise NamingError(f"invalid regex: {exc}") from None
    repeats = _repeats(parsed, inside_repeat=False)
    if repeats > MAX_REPEATS:
        raise NamingError(
            f"regex too costly to match: {repeats} repetitions, the limit is {MAX_REPEATS}"
        )
    return pattern


def select(pattern: re.Pattern[str], names: Iterable[str]) -> list[str]:
    """The names ``pattern`` matches (from their start, as Pyro5's ``re.match``);
    :class:`~remoteobj.errors.NamingError` once matching has taken
    :data:`MATCH_BUDGET` seconds."""
    budget = MATCH_BUDGET
    deadline = time.monotonic() + budget
    match, clock = pattern.match, time.monotonic
    found = []
    for name in names:
        if match(name):
            found.append(name)
        if clock() > deadline:  # (after every name: one match may take milliseconds)
            raise NamingError(f"regex too costly to match: gave up after {budget} s")
    return found


def _repeats(items: Any, inside_repeat: bool) -> int:
    """How many repetitions the parsed ``items`` hold; raises for the costly shapes."""
    count = 0
    for op, arg in items:
        if op in _REPEATS:
            _, most, body = arg
            if most > 1:
                if inside_repeat:
                    raise NamingError("regex too costly to match: a repetition inside another")
                count += 1 + _repeats(body, inside_repeat=True)
            else:  # `?`: at most once
                count += _repeats(body, inside_repeat)
        elif op == sre.BRANCH:
            if inside_repeat:
                raise NamingError("regex too costly to match: an alternation inside a repetition")
            count += sum(_repeats(branch, inside_repeat) for branch in arg[1])
        elif op == sre.SUBPATTERN:
            count += _repeats(arg[3], inside_repeat)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            count += _repeats(arg[1], inside_repeat)
        elif op == sre.ATOMIC_GROUP:
            count += _repeats(arg, inside_repeat)
        elif op in _BACKREFERENCES:
            raise NamingError("regex too costly to match: backreferences are not supported")
    return count

"""The name server's ``regex`` filter: costly patterns are refused before they run,
and matching stops at a time budget, so one request cannot stop the name server."""

from __future__ import annotations

import re
import time

import pytest

from nameserver import patterns
from nameserver.patterns import MATCH_BUDGET, compile_pattern, select
from nameserver.registry import Registry
from remoteobj.errors import NamingError

URI = "PYRO:obj@127.0.0.1:9999"

EVERYDAY = [
    r"example\..*",
    ".*",
    "",
    r"(shop|store)\.[a-z]+",
    r".*\.v[0-9]+",
    r"[a-z]+\.[a-z]+\.[0-9]+",
    r"x{2,3}y?",
    r"(a|b)*c",  # one-character alternatives are a character class
    r"(?i)Pyro\.",
    r"(?=svc)\w+",
    r"(?>a+)b",
]
COSTLY = {
    r"(a+)+$": "a repetition inside another",
    r"(a*)*b": "a repetition inside another",
    r"(\w+\s?)+$": "a repetition inside another",
    r"(aa|a)*$": "an alternation inside a repetition",
    r"(x+x+)+y": "a repetition inside another",
    r"(a)\1": "backreferences",
    r"(?P<n>a)(?P=n)": "backreferences",
    r"(a)?(?(1)b|c)": "backreferences",
    r".*.*.*.*x": "4 repetitions",
    r"(?=(a+)+)": "a repetition inside another",
}


@pytest.mark.parametrize("regex", EVERYDAY)
def test_everyday_patterns_are_accepted_and_mean_what_re_says(regex: str) -> None:
    names = ["example.a", "shop.x", "store.yz", "app.v12", "xxy", "abac", "Pyro.NS", "svc1"]
    assert select(compile_pattern(regex), names) == [n for n in names if re.match(regex, n)]


@pytest.mark.parametrize(("regex", "why"), COSTLY.items())
def test_costly_patterns_are_refused_before_they_run(regex: str, why: str) -> None:
    with pytest.raises(NamingError, match=f"^regex too costly to match: .*{re.escape(why)}"):
        compile_pattern(regex)


def test_invalid_and_overlong_patterns_get_clear_errors() -> None:
    with pytest.raises(NamingError, match=r"^invalid regex: "):
        compile_pattern("[")
    with pytest.raises(NamingError, match=r"^invalid regex: expected a string"):
        compile_pattern(5)  # type: ignore[arg-type]
    with pytest.raises(NamingError, match=r"^regex too long: 257 characters"):
        compile_pattern("a" * 257)


def test_the_pattern_that_stops_pyro5s_name_server_is_refused_at_once() -> None:
    reg = Registry(max_name_length=256)
    reg.register("a" * 40 + "!", URI)  # re.match("(a+)+$", ...) would take hours
    started = time.monotonic()
    with pytest.raises(NamingError, match="a repetition inside another"):
        reg.list(regex="(a+)+$")
    with pytest.raises(NamingError, match="a repetition inside another"):
        reg.remove(regex="(a+)+$")
    assert time.monotonic() - started < 0.5
    assert set(reg.list(regex="a+!")) == {"a" * 40 + "!"}  # serving on, nothing removed


def test_matching_that_runs_long_across_many_names_gives_up_at_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(patterns, "MATCH_BUDGET", 0.2)
    reg = Registry(max_name_length=256)
    for i in range(400):
        reg.register("a" * 250 + f"{i:03d}", URI)  # three ambiguous repetitions: ~n³/6 each
    started = time.monotonic()
    with pytest.raises(NamingError, match=r"gave up after 0\.2 s"):
        reg.list(regex="a*a*a*b")
    assert time.monotonic() - started < 0.2 + 1.0  # the budget, plus one name's match
    assert MATCH_BUDGET == 1.0

"""Glob patterns (KEYS, SCAN MATCH, PSUBSCRIBE, CONFIG GET ...): the same
answers as one regular expression, without its exponential backtracking on
patterns with many stars (Redis's "pattern matching long nested loops"
regression cases), and the same answers as redis-server."""

from __future__ import annotations

import random
import re

import pytest

from storage.glob import _tokens, match, matcher
from tests.compare import Conn
from tests.helpers import Proc


def reference(pattern: bytes, key: bytes) -> bool:
    """The pattern as a single regex (right, but exponential on failure with
    many stars: only for short keys)."""
    rx = b"".join(b".*" if t is None else t for t in _tokens(pattern))
    return re.compile(rx + b"\\Z", re.DOTALL).match(key) is not None


ELEMENTS = [b"a", b"b", b"*", b"**", b"?", b"[ab]", b"[^a]", b"[a-b]", b"\\*", b"\\?",
            b"[", b"\\", b"]", b"c"]


def test_many_stars_agree_with_one_regex():
    rng = random.Random(20261207)
    for _ in range(20000):
        pattern = b"".join(rng.choice(ELEMENTS) for _ in range(rng.randint(0, 8)))
        key = bytes(rng.choice(b"ab*?c[]\\") for _ in range(rng.randint(0, 10)))
        assert match(pattern, key) == reference(pattern, key), (pattern, key)
        assert match(pattern, key.upper(), nocase=True) == reference(pattern.lower(),
                                                                     key.lower())


def test_star_alone_and_edges():
    assert matcher(b"*")(b"anything")
    assert match(b"a*b*c", b"abc") and match(b"a*b*c", b"axxbyyc")
    assert not match(b"a*b*c", b"acb")
    assert match(b"*a*", b"a") and not match(b"*a*", b"b")
    assert match(b"a*a*a", b"aaa") and not match(b"a*a*a", b"aa")
    assert match(b"*?*?*", b"ab") and not match(b"*?*?*", b"a")


LONG_NESTED = (b"a" * 74, b"a*" * 30 + b"b")
VERY_LONG_NESTED = (b"A" * 50000, b"*?" * 50000)


def test_long_nested_patterns_fail_fast_in_process():
    for key, pattern in (LONG_NESTED, VERY_LONG_NESTED):
        assert match(pattern, key) is False
    # Redis gives up past 1000 nested stars: 1000 still match, 1001 never do
    assert match(b"*a" * 1000, b"a" * 1000) and match(b"*a" * 1000 + b"*", b"a" * 1000)
    assert not match(b"*a" * 1001, b"a" * 1001)
    assert match(b"a*" * 1001, b"a" * 1001)          # the last star is trailing


@pytest.fixture(scope="module")
def pair():
    procs = [Proc(redis_server=rs).start() for rs in (False, True)]
    yield procs
    for p in procs:
        p.cleanup()


def test_keys_with_long_nested_patterns_answer_as_redis(pair):
    """Redis's two regression cases: KEYS answers (empty) instead of keeping
    the server busy for good.  Bounded by a socket timeout, not timed."""
    for key, pattern in (LONG_NESTED, VERY_LONG_NESTED):
        replies = []
        for p in pair:
            c = Conn(p.port)
            c.call("FLUSHALL")
            c.call("SET", key, "1")
            c.sock.settimeout(30)
            replies.append(c.call("KEYS", pattern))
            assert c.call("PING") == b"+PONG\r\n"
            c.close()
        assert replies[0] == replies[1] == b"*0\r\n"


def test_patterns_match_as_redis(pair):
    rng = random.Random(7)
    keys = [bytes(rng.choice(b"ab*?c") for _ in range(rng.randint(1, 6))) for _ in range(60)]
    patterns = [b"".join(rng.choice(ELEMENTS[:10]) for _ in range(rng.randint(1, 5)))
                for _ in range(150)]
    conns = [Conn(p.port) for p in pair]
    try:
        for c in conns:
            c.call("FLUSHALL")
            for k in keys:
                c.call("SET", k, "1")
        for pat in patterns:
            got = [sorted(_parse_array(c.call("KEYS", pat))) for c in conns]
            assert got[0] == got[1], pat
    finally:
        for c in conns:
            c.close()


def _parse_array(raw: bytes) -> list:
    from tests.compare import parse
    node, _ = parse(raw)
    return [v for _, v in node[1]]


def test_nesting_limit_as_redis(pair):
    conns = [Conn(p.port) for p in pair]
    try:
        for c in conns:
            c.call("FLUSHALL")
            for n in (999, 1000, 1001, 1002):
                c.call("SET", b"a" * n, "1")
        for pat in (b"*a" * 1000, b"*a" * 1001, b"a*" * 1001, b"*a" * 1000 + b"*",
                    b"a*" * 1002, b"?*" * 1001):
            got = [sorted(_parse_array(c.call("KEYS", pat))) for c in conns]
            assert got[0] == got[1], len(pat)
    finally:
        for c in conns:
            c.close()

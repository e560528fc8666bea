"""Redis glob-style pattern matching (stringmatchlen): * ? [abc] [^a-z] and \\ escapes.

Every element of a pattern but `*` matches exactly one byte, so a pattern is
a list of fixed-length segments separated by stars.  With at most one star a
single regular expression does the work (a regex engine's backtracking is
then bounded by the key length).  With more, backtracking over several `.*`
is exponential in the number of stars when the match fails (Redis's own
"pattern matching long nested loops" case: a hundred `*` against a long key
never finishes), so the segments are matched in order instead: the first at
the start, the last at the end, each one between at its leftmost place after
the previous one.  Leftmost is always right for fixed-length segments: any
later place leaves less room for the rest.  That is linear in the key length
per segment, as Redis's matcher (which gives up on longer matches after a
failed star) is.  Like Redis's, a pattern with more than 1000 star runs
before its end matches nothing.
"""

from __future__ import annotations

import re
from functools import lru_cache


def _tokens(pattern: bytes) -> list:
    """The pattern as regex pieces, one per element; None for a star run."""
    out: list = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == 42:  # *
            while i + 1 < n and pattern[i + 1] == 42:
                i += 1
            out.append(None)
        elif c == 63:  # ?
            out.append(b".")
        elif c == 91:  # [
            i += 1
            neg = i < n and pattern[i] == 94
            if neg:
                i += 1
            items = bytearray()
            while i < n and pattern[i] != 93:
                ch = pattern[i]
                if ch == 92 and i + 1 < n:
                    i += 1
                    items += re.escape(pattern[i:i + 1])
                elif i + 2 < n and pattern[i + 1] == 45 and pattern[i + 2] != 93:
                    lo, hi = ch, pattern[i + 2]
                    if lo > hi:
                        lo, hi = hi, lo
                    items += re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi]))
                    i += 2
                else:
                    items += re.escape(bytes([ch]))
                i += 1
            # an unterminated class in Redis matches as if closed at the end
            if not items:
                out.append(b"(?!)" if not neg else b".")
            else:
                out.append(b"[" + (b"^" if neg else b"") + bytes(items) + b"]")
        elif c == 92 and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i:i + 1]))
        else:
            out.append(re.escape(bytes([c])))
        i += 1
    return out


def _segments(tokens: list) -> list:
    segs: list = [[]]
    for t in tokens:
        if t is None:
            segs.append([])
        else:
            segs[-1].append(t)
    return segs


# Redis's protection against abusive patterns: its matcher recurses once per
# star run that something follows and gives up past 1000 levels, so such a
# pattern matches nothing
MAX_NESTING = 1000


def _never(key: bytes) -> bool:
    return False


@lru_cache(maxsize=256)
def _compile(pattern: bytes):
    """A function key -> bool."""
    tokens = _tokens(pattern)
    stars = tokens.count(None)
    if stars - (1 if tokens and tokens[-1] is None else 0) > MAX_NESTING:
        return _never
    if stars <= 1:
        rx = re.compile(b"".join(b".*" if t is None else t for t in tokens) + b"\\Z",
                        re.DOTALL)
        m = rx.match
        return lambda key: m(key) is not None
    segs = _segments(tokens)
    first = re.compile(b"".join(segs[0]), re.DOTALL)
    first_len = len(segs[0])
    last = re.compile(b"".join(segs[-1]) + b"\\Z", re.DOTALL)
    last_len = len(segs[-1])
    middle = [(re.compile(b"".join(s), re.DOTALL).search, len(s)) for s in segs[1:-1] if s]
    need = first_len + last_len + sum(n for _, n in middle)

    def match(key: bytes) -> bool:
        n = len(key)
        if n < need:
            return False
        if first_len and first.match(key) is None:
            return False
        end = n - last_len
        if last_len and last.match(key, end) is None:
            return False
        pos = first_len
        for search, _ in middle:
            m = search(key, pos, end)
            if m is None:
                return False
            pos = m.end()
        return True

    return match


def matcher(pattern: bytes):
    """A function key -> bool for the pattern; `*` alone matches everything."""
    if pattern == b"*":
        return lambda key: True
    return _compile(pattern)


def match(pattern: bytes, key: bytes, nocase: bool = False) -> bool:
    if nocase:
        pattern, key = pattern.lower(), key.lower()
    return _compile(pattern)(key)

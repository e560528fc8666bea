"""Redis glob-style pattern matching (stringmatchlen): * ? [abc] [^a-z] and \\ escapes."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def _compile(pattern: bytes):
    out = bytearray()
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == 42:  # *
            while i + 1 < n and pattern[i + 1] == 42:
                i += 1
            out += b".*"
        elif c == 63:  # ?
            out += b"."
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
                out += b"(?!)" if not neg else b"."
            else:
                out += b"[" + (b"^" if neg else b"") + items + b"]"
        elif c == 92 and i + 1 < n:
            i += 1
            out += re.escape(pattern[i:i + 1])
        else:
            out += re.escape(bytes([c]))
        i += 1
    return re.compile(bytes(out) + b"\\Z", re.DOTALL)


def matcher(pattern: bytes):
    """A function key -> bool for the pattern; `*` alone matches everything."""
    if pattern == b"*":
        return lambda key: True
    m = _compile(pattern).match
    return lambda key: m(key) is not None


def match(pattern: bytes, key: bytes, nocase: bool = False) -> bool:
    if nocase:
        pattern, key = pattern.lower(), key.lower()
    return _compile(pattern).match(key) is not None

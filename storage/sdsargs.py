"""Redis's sds argument helpers: sdssplitargs() and sdscatrepr().

split_args() splits a line the way Redis reads inline commands, redis.conf lines
and AOF manifest lines; quote() is the inverse Redis uses for MONITOR lines and
CONFIG REWRITE values.
"""

from __future__ import annotations

import re

_HEX = b"0123456789abcdefABCDEF"
# a line without these splits like bytes.split(); \v and \f separate arguments
# only where sdssplitargs skips blanks (isspace), not inside a word
_PLAIN = re.compile(rb"[\"'\x0b\x0c]").search
_ESC = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}


def split_args(line: bytes) -> list[bytes] | None:
    """Split an inline request like sdssplitargs(): quotes, escapes, \\xHH.

    Returns None for unbalanced quotes."""
    if _PLAIN(line) is None:
        return line.split()
    args: list[bytes] = []
    i = 0
    n = len(line)
    while True:
        while i < n and line[i] in b" \n\r\t\v\f":
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        inq = insq = False
        while True:
            if inq:
                if i >= n:
                    return None
                ch = line[i]
                if ch == 92 and i + 3 < n and line[i + 1] == 120 and \
                        line[i + 2] in _HEX and line[i + 3] in _HEX:
                    cur.append(int(line[i + 2:i + 4], 16))
                    i += 3
                elif ch == 92 and i + 1 < n:
                    i += 1
                    cur.append(_ESC.get(line[i], line[i]))
                elif ch == 34:
                    if i + 1 < n and line[i + 1] not in b" \n\r\t\v\f":
                        return None
                    i += 1
                    break
                else:
                    cur.append(ch)
            elif insq:
                if i >= n:
                    return None
                ch = line[i]
                if ch == 92 and i + 1 < n and line[i + 1] == 39:
                    i += 1
                    cur.append(39)
                elif ch == 39:
                    if i + 1 < n and line[i + 1] not in b" \n\r\t\v\f":
                        return None
                    i += 1
                    break
                else:
                    cur.append(ch)
            else:
                if i >= n:
                    break
                ch = line[i]
                if ch in b" \n\r\t":  # not \v \f: isspace() only between args
                    break
                if ch == 34:
                    inq = True
                elif ch == 39:
                    insq = True
                else:
                    cur.append(ch)
            i += 1
        args.append(bytes(cur))


_REPR = {92: "\\\\", 34: '\\"', 10: "\\n", 13: "\\r", 9: "\\t", 7: "\\a", 8: "\\b"}


def quote(data: bytes) -> str:
    """sdscatrepr(): the bytes in double quotes, escaped as Redis prints them."""
    out = ['"']
    for ch in data:
        esc = _REPR.get(ch)
        if esc is not None:
            out.append(esc)
        elif 32 <= ch < 127:
            out.append(chr(ch))
        else:
            out.append("\\x%02x" % ch)
    out.append('"')
    return "".join(out)

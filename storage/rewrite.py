"""AOF rewrite: serialize a keyspace snapshot as the commands that rebuild it.

Each value type registers a function `fn(key, value) -> list of argv` in
REWRITERS (type -> function); the expiry is added as PEXPIREAT, as Redis does.
A type module adds itself with `register(MyType, fn)`; big collections should
emit several commands of at most ITEMS_PER_CMD elements (Redis's
AOF_REWRITE_ITEMS_PER_CMD), e.g. RPUSH key e1 .. e64, RPUSH key e65 ...
"""

from __future__ import annotations

from typing import Callable, Iterable

from storage.valuetypes import registered

ITEMS_PER_CMD = 64

Rewriter = Callable[[bytes, object], list]
REWRITERS: dict[type, Rewriter] = {}


def register(typ: type, fn: Rewriter) -> None:
    REWRITERS[typ] = fn


def _string(key: bytes, value: bytes) -> list:
    return [[b"SET", key, value]]


register(bytes, _string)


def encode_command(argv) -> bytes:
    """One command as a RESP multibulk (the AOF format)."""
    parts = [b"*%d\r\n" % len(argv)]
    for a in argv:
        if type(a) is not bytes:
            a = a if isinstance(a, (bytes, bytearray, memoryview)) else str(a).encode()
            a = bytes(a)
        parts.append(b"$%d\r\n" % len(a))
        parts.append(a)
        parts.append(b"\r\n")
    return b"".join(parts)


def chunked(cmd: bytes, key: bytes, items: Iterable, per: int = ITEMS_PER_CMD) -> list:
    """[cmd key i1..i64], [cmd key i65..] - for collection rewriters.

    `items` yields the flat arguments of one element each as a tuple
    (e.g. (member,) for RPUSH/SADD, (field, value) for HSET, (score, member)
    for ZADD)."""
    out = []
    cur: list = []
    n = 0
    for it in items:
        cur.extend(it)
        n += 1
        if n == per:
            out.append([cmd, key] + cur)
            cur = []
            n = 0
    if n:
        out.append([cmd, key] + cur)
    return out


def rewrite_keyspace(ks, write: Callable[[bytes], object], now_ms: int) -> int:
    """Write every live key of every database through `write`; returns the key count.

    Keys already expired at `now_ms` are skipped. Raises TypeError for a value
    type with no registered rewriter (the rewrite then fails as a whole)."""
    n = 0
    chunk: list[bytes] = []
    size = 0
    for db in ks.dbs:
        if db is None:
            continue
        first = True
        expires = db.expires
        for slotdict in db.slots:
            if not slotdict:
                continue
            for key, value in slotdict.items():
                when = expires.get(key, -1) if expires else -1
                if when != -1 and when <= now_ms:
                    continue
                if first:
                    chunk.append(encode_command([b"SELECT", b"%d" % db.id]))
                    first = False
                t = type(value)
                if t is bytes:
                    b = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                        len(key), key, len(value), value)
                else:
                    fn = registered(REWRITERS, t)
                    if fn is None:
                        raise TypeError("no AOF rewriter for values of type %s (key %r)"
                                        % (t.__name__, key))
                    b = b"".join(encode_command(a) for a in fn(key, value))
                if when != -1:
                    b += b"*3\r\n$9\r\nPEXPIREAT\r\n$%d\r\n%s\r\n$%d\r\n%d\r\n" % (
                        len(key), key, len(str(when)), when)
                chunk.append(b)
                size += len(b)
                n += 1
                if size >= 1 << 20:
                    write(b"".join(chunk))
                    chunk = []
                    size = 0
    if chunk:
        write(b"".join(chunk))
    return n

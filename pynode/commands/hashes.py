"""Hash commands (Redis 7.0 t_hash.c): HSET HSETNX HMSET HGET HMGET HGETALL
HKEYS HVALS HLEN HSTRLEN HEXISTS HDEL HINCRBY HINCRBYFLOAT HRANDFIELD HSCAN.

HINCRBYFLOAT computes in x87 `long double` as Redis does (the emulation of
strings.py) and is propagated as HSET with the result.  HSCAN returns a
listpack hash whole in one call with cursor 0, as Redis does; for a
hashtable hash see scan_batch.
"""

from __future__ import annotations

import random
from collections import OrderedDict

from pynode import notify
from pynode.commands import (NOT_INT, SYNTAX, WRONGTYPE, CommandError, command, lookup_read,
                            lookup_write, parse_int)
from pynode.commands.keys import _parse_cursor
from pynode.commands.strings import _ld_format, _ld_parse, _ld_round
from pynode.resp import OK, ONE, ZERO, integer
from storage.glob import matcher
from storage.hashes import HASHTABLE, LISTPACK, Hash
from storage.values import LIMITS, string_int

LLONG_MAX = 9223372036854775807
LLONG_MIN = -9223372036854775808
LONG_MAX = LLONG_MAX

EMPTY_SCAN = b"*2\r\n$1\r\n0\r\n*0\r\n"


# ------------------------------------------------------------------ lookups
def _set_one(h: Hash, field: bytes, value: bytes) -> None:
    """hashTypeSet for HINCRBY*: a long field or value converts first."""
    if h.encoding == LISTPACK:
        lim = LIMITS.hash_max_listpack_value
        if len(field) > lim or len(value) > lim:
            h.encoding = HASHTABLE
    h[field] = value
    h.check_entries()


# ------------------------------------------------------------------ HSET & co
def _hset(c, argv, name: str) -> int:
    n = len(argv)
    if n & 1:
        raise CommandError("ERR wrong number of arguments for '%s' command" % name)
    key = argv[1]
    db = c.db
    h = db.get(key)
    if h is None:
        h = Hash()
        new = True
    elif type(h) is not Hash:
        raise CommandError(WRONGTYPE)
    else:
        new = False
    before = len(h)
    if h.encoding == LISTPACK:
        if n == 4:
            # Hash.fit for one field, inline
            lim = LIMITS.hash_max_listpack_value
            if len(argv[2]) > lim or len(argv[3]) > lim:
                h.encoding = HASHTABLE
            h[argv[2]] = argv[3]
        else:
            h.fit(argv, 2)
            for i in range(2, n, 2):
                h[argv[i]] = argv[i + 1]
        if len(h) > LIMITS.hash_max_listpack_entries:
            h.encoding = HASHTABLE
    elif n == 4:
        h[argv[2]] = argv[3]
    else:
        for i in range(2, n, 2):
            h[argv[i]] = argv[i + 1]
    if new:
        db.set(key, h)
    else:
        db.modified(key)
    srv = c.srv
    srv.dirty += (n - 2) >> 1
    if srv.notify_flags:
        notify.notify(srv, notify.HASH, b"hset", key, db.id)
    return len(h) - before


@command("hset")
def hset(c, argv):
    return integer(_hset(c, argv, "hset"))


@command("hmset")
def hmset(c, argv):
    _hset(c, argv, "hmset")
    return OK


@command("hsetnx")
def hsetnx(c, argv):
    key = argv[1]
    db = c.db
    h = lookup_write(c, key, Hash)
    field = argv[2]
    if h is not None and field in h:
        return ZERO
    new = h is None
    if new:
        h = Hash()
    if h.encoding == LISTPACK:
        h.fit(argv, 2)
    h[field] = argv[3]
    h.check_entries()
    if new:
        db.set(key, h)
    else:
        db.modified(key)
    srv = c.srv
    srv.dirty += 1
    notify.notify(srv, notify.HASH, b"hset", key, db.id)
    return ONE


# ------------------------------------------------------------------ reads
@command("hget")
def hget(c, argv):
    h = lookup_read(c, argv[1], Hash)
    if h is None:
        return c.nil
    v = h.get(argv[2])
    if v is None:
        return c.nil
    return b"$%d\r\n%s\r\n" % (len(v), v)


@command("hmget")
def hmget(c, argv):
    h = lookup_read(c, argv[1], Hash)
    nil = c.nil
    out = [b"*%d\r\n" % (len(argv) - 2)]
    if h is None:
        out.append(nil * (len(argv) - 2))
    else:
        get = h.get
        for f in argv[2:]:
            v = get(f)
            out.append(nil if v is None else b"$%d\r\n%s\r\n" % (len(v), v))
    return b"".join(out)


def _getall(c, argv, keys: bool, vals: bool) -> bytes:
    h = lookup_read(c, argv[1], Hash)
    if h is None:
        if keys and vals and c.resp == 3:
            return b"%0\r\n"
        return b"*0\r\n"
    if keys and vals:
        head = b"%%%d\r\n" % len(h) if c.resp == 3 else b"*%d\r\n" % (2 * len(h))
        out = [head]
        for f, v in h.items():
            out.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(f), f, len(v), v))
    else:
        out = [b"*%d\r\n" % len(h)]
        for x in (h.keys() if keys else h.values()):
            out.append(b"$%d\r\n%s\r\n" % (len(x), x))
    return b"".join(out)


@command("hgetall")
def hgetall(c, argv):
    return _getall(c, argv, True, True)


@command("hkeys")
def hkeys(c, argv):
    return _getall(c, argv, True, False)


@command("hvals")
def hvals(c, argv):
    return _getall(c, argv, False, True)


@command("hlen")
def hlen(c, argv):
    h = lookup_read(c, argv[1], Hash)
    return ZERO if h is None else integer(len(h))


@command("hstrlen")
def hstrlen(c, argv):
    h = lookup_read(c, argv[1], Hash)
    if h is None:
        return ZERO
    v = h.get(argv[2])
    return ZERO if v is None else integer(len(v))


@command("hexists")
def hexists(c, argv):
    h = lookup_read(c, argv[1], Hash)
    return ONE if h is not None and argv[2] in h else ZERO


# ------------------------------------------------------------------ HDEL
@command("hdel")
def hdel(c, argv):
    key = argv[1]
    db = c.db
    h = lookup_write(c, key, Hash)
    if h is None:
        return ZERO
    deleted = 0
    removed = False
    pop = h.pop
    for f in argv[2:]:
        if pop(f, None) is not None:
            deleted += 1
            if not h:
                db.delete(key)
                removed = True
                break
    if deleted:
        if not removed:
            db.modified(key)
        srv = c.srv
        srv.dirty += deleted
        if srv.notify_flags:
            notify.notify(srv, notify.HASH, b"hdel", key, db.id)
            if removed:
                notify.notify(srv, notify.GENERIC, b"del", key, db.id)
    return integer(deleted)


# ------------------------------------------------------------------ counters
def _lookup_or_create(c, key):
    """hashTypeLookupWriteOrCreate: (hash, is_new)."""
    h = c.db.get(key)
    if h is None:
        return Hash(), True
    if type(h) is not Hash:
        raise CommandError(WRONGTYPE)
    return h, False


def _store_counter(c, key, h, new, field, value, event) -> None:
    _set_one(h, field, value)
    db = c.db
    if new:
        db.set(key, h)
    else:
        db.modified(key)
    c.srv.dirty += 1
    notify.notify(c.srv, notify.HASH, event, key, db.id)


@command("hincrby")
def hincrby(c, argv):
    incr = parse_int(argv[3])
    key, field = argv[1], argv[2]
    h, new = _lookup_or_create(c, key)
    cur = h.get(field)
    if cur is None:
        value = 0
    else:
        value = string_int(cur)
        if value is None:
            raise CommandError("ERR hash value is not an integer")
    n = value + incr
    if n > LLONG_MAX or n < LLONG_MIN:
        raise CommandError("ERR increment or decrement would overflow")
    _store_counter(c, key, h, new, field, b"%d" % n, b"hincrby")
    return integer(n)


@command("hincrbyfloat")
def hincrbyfloat(c, argv):
    inc = _ld_parse(argv[3])
    if inc is None:
        raise CommandError("ERR value is not a valid float")
    if type(inc) is float:
        raise CommandError("ERR value is NaN or Infinity")
    key, field = argv[1], argv[2]
    h, new = _lookup_or_create(c, key)
    cur = h.get(field)
    if cur is None:
        value = 0
    else:
        value = _ld_parse(cur)
        if value is None:
            raise CommandError("ERR hash value is not a float")
        if type(value) is float:
            raise CommandError("ERR increment would produce NaN or Infinity")
    res = _ld_round(value + inc)
    if type(res) is float:
        raise CommandError("ERR increment would produce NaN or Infinity")
    out = _ld_format(res)
    _store_counter(c, key, h, new, field, out, b"hincrbyfloat")
    c.rewrite = [[b"HSET", key, field, out]]
    return b"$%d\r\n%s\r\n" % (len(out), out)


# ------------------------------------------------------------------ HRANDFIELD
def _pairs_reply(c, pairs, withvalues: bool) -> bytes:
    """A list of (field, value) as HRANDFIELD replies with it."""
    if not withvalues:
        out = [b"*%d\r\n" % len(pairs)]
        for f, _ in pairs:
            out.append(b"$%d\r\n%s\r\n" % (len(f), f))
    elif c.resp == 3:
        out = [b"*%d\r\n" % len(pairs)]
        for f, v in pairs:
            out.append(b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(f), f, len(v), v))
    else:
        out = [b"*%d\r\n" % (2 * len(pairs))]
        for f, v in pairs:
            out.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(f), f, len(v), v))
    return b"".join(out)


@command("hrandfield")
def hrandfield(c, argv):
    n = len(argv)
    if n >= 3:
        count = parse_int(argv[2])
        if count < -LONG_MAX:
            raise CommandError("ERR value is out of range, value must between %d and %d"
                               % (-LONG_MAX, LONG_MAX))
        withvalues = False
        if n > 4 or (n == 4 and argv[3].lower() != b"withvalues"):
            raise CommandError(SYNTAX)
        if n == 4:
            withvalues = True
            if count < -LONG_MAX // 2 or count > LONG_MAX // 2:
                raise CommandError("ERR value is out of range")
        h = lookup_read(c, argv[1], Hash)
        if h is None or count == 0:
            return b"*0\r\n"
        size = len(h)
        if count < 0 or count == 1:
            items = list(h.items())
            return _pairs_reply(c, random.choices(items, k=-count if count < 0 else 1),
                                withvalues)
        if count >= size:
            return _pairs_reply(c, list(h.items()), withvalues)
        items = list(h.items())
        picked = sorted(random.sample(range(size), count))
        return _pairs_reply(c, [items[i] for i in picked], withvalues)
    h = lookup_read(c, argv[1], Hash)
    if h is None:
        return c.nil
    f = next(iter(h)) if len(h) == 1 else random.choice(list(h))
    return b"$%d\r\n%s\r\n" % (len(f), f)


# ------------------------------------------------------------------ SCAN
# Hashtable collections are scanned over a snapshot of their members taken
# by the first call: the cursor is (snapshot id << 32) | position, so every
# element present for the whole scan is returned exactly once, whatever is
# added or removed meanwhile.  Snapshots are dropped when the scan ends and
# the oldest are forgotten beyond _SCAN_KEEP; a cursor whose snapshot is
# gone continues over the collection's current members from its position.
_SCAN_KEEP = 64
_scans: OrderedDict = OrderedDict()
_scan_ids = [0]


def parse_scan_options(argv, start: int):
    """(count, match function or None) from the options of H/S/ZSCAN."""
    count = 10
    pattern = None
    i = start
    n = len(argv)
    while i < n:
        opt = argv[i].lower()
        if n - i >= 2 and opt == b"count":
            count = parse_int(argv[i + 1], NOT_INT)
            if count < 1:
                raise CommandError(SYNTAX)
        elif n - i >= 2 and opt == b"match":
            pattern = argv[i + 1]
        else:
            raise CommandError(SYNTAX)
        i += 2
    ok = matcher(pattern) if pattern is not None and pattern != b"*" else None
    return count, ok


def _scan_head(cursor: int, n: int) -> bytes:
    cur = b"%d" % cursor
    return b"*2\r\n$%d\r\n%s\r\n*%d\r\n" % (len(cur), cur, n)


def scan_batch(coll, cursor: int, count: int, members):
    """(next cursor, members to return) for a hashtable collection: `members()`
    lists its current members (a fresh list the snapshot may keep)."""
    if cursor == 0:
        snap = members()
        if len(snap) <= count:
            return 0, snap
        _scan_ids[0] = sid = _scan_ids[0] % 0x7FFFFFFF + 1
        pos = 0
    else:
        sid, pos = cursor >> 32, cursor & 0xFFFFFFFF
        entry = _scans.pop(sid, None)
        if entry is not None and entry[0] is coll:
            snap = entry[1]
        else:
            snap = members()
    batch = snap[pos:pos + count]
    pos += count
    if pos >= len(snap):
        return 0, batch
    _scans[sid] = (coll, snap)
    while len(_scans) > _SCAN_KEEP:
        _scans.popitem(last=False)
    return (sid << 32) | pos, batch


@command("hscan")
def hscan(c, argv):
    cursor = _parse_cursor(argv[2])
    h = lookup_read(c, argv[1], Hash)
    if h is None:
        return EMPTY_SCAN
    count, ok = parse_scan_options(argv, 3)
    out = []
    if h.encoding == LISTPACK:
        nxt = 0
        for f, v in h.items():
            if ok is None or ok(f):
                out.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(f), f, len(v), v))
    else:
        nxt, batch = scan_batch(h, cursor, count, lambda: list(h))
        get = h.get
        for f in batch:
            v = get(f)
            if v is not None and (ok is None or ok(f)):
                out.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(f), f, len(v), v))
    return _scan_head(nxt, 2 * len(out)) + b"".join(out)

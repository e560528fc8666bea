"""Sorted set commands, as Redis 7.0's t_zset.c: ZADD and friends, the range
commands (rank, score, lex; ZRANGESTORE), the set operations, ZRANDMEMBER,
the pops (ZPOPMIN/MAX, ZMPOP and the blocking BZPOPMIN/MAX, BZMPOP) and ZSCAN.

Argument checks run in Redis's order, so a command with several problems
gets the same error.  Scores are doubles replied with %.17g (RESP2 bulk,
RESP3 double).  Propagation: the command itself, except ZMPOP and the
blocking pops, which reach the AOF and replicas as ZPOPMIN/ZPOPMAX key
[count], as in Redis.
"""

from __future__ import annotations

import math
import random

from pynode import notify
from pynode.commands import (NOT_INT, SYNTAX, WRONGTYPE, CommandError, command, lookup_read,
                            lookup_write, parse_int)
from storage.glob import matcher
from storage.keyspace import type_name
from storage.values import LIMITS
from storage.zsets import (INF, LISTPACK, NINF, SKIPLIST, ZSet, lp_score_bytes, new_zset,
                           range_double, string2d)

NOT_FLOAT = "ERR value is not a valid float"
NAN_RESULT = "ERR resulting score is not a number (NaN)"
MINMAX_NOT_FLOAT = "ERR min or max is not a float"
LEX_NOT_VALID = "ERR min or max not valid string range item"
NOT_POSITIVE = "ERR value is out of range, must be positive"
LLONG_MAX = 9223372036854775807

EMPTY = b"*0\r\n"
ZERO = b":0\r\n"
ONE = b":1\r\n"
_NUMSTART = frozenset(bytes((ch,)) for ch in b"0123456789+-.")
EMPTY_SCAN = b"*2\r\n$1\r\n0\r\n*0\r\n"

ZNOTIFY = notify.ZSET
GNOTIFY = notify.GENERIC
_notify = notify.notify
_nextafter = math.nextafter


# ------------------------------------------------------------------ helpers
def _int(n: int) -> bytes:
    return b":%d\r\n" % n


def dbl(c, x: float) -> bytes:
    """addReplyDouble."""
    s = b"%.17g" % x
    if c.resp == 3:
        return b",%s\r\n" % s
    return b"$%d\r\n%s\r\n" % (len(s), s)


def null_array(c) -> bytes:
    return b"_\r\n" if c.resp == 3 else b"*-1\r\n"


def range_reply(c, items, withscores: bool) -> bytes:
    """An array of members, with their scores: flat in RESP2, [member, score]
    pairs in RESP3.  items: iterable of (score, member)."""
    if not withscores:
        out = [b"$%d\r\n%s\r\n" % (len(m), m) for _, m in items]
        return b"*%d\r\n%s" % (len(out), b"".join(out))
    if c.resp == 3:
        out = [b"*2\r\n$%d\r\n%s\r\n,%s\r\n" % (len(m), m, b"%.17g" % s) for s, m in items]
        return b"*%d\r\n%s" % (len(out), b"".join(out))
    out = []
    for s, m in items:
        fs = b"%.17g" % s
        out.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(m), m, len(fs), fs))
    return b"*%d\r\n%s" % (2 * len(out), b"".join(out))


def parse_double(b: bytes, msg: str = NOT_FLOAT) -> float:
    v = string2d(b)
    if v is None:
        raise CommandError(msg)
    return v


def store_result(c, dst: bytes, z: ZSet | None, event: bytes) -> int:
    """Store a *STORE result (or delete dst when it is empty); the reply count."""
    db = c.db
    if z is not None and len(z):
        db.set(dst, z)
        c.srv.dirty += 1
        _notify(c.srv, ZNOTIFY, event, dst, db.id)
        return len(z)
    if db.delete(dst):
        c.srv.dirty += 1
        _notify(c.srv, GNOTIFY, b"del", dst, db.id)
    return 0


# ------------------------------------------------------------------ ranges
class ScoreRange:
    """zrangespec: min/max with exclusive flags, and the slice of a ZSet it covers."""

    __slots__ = ("min", "max", "minex", "maxex")

    def __init__(self, bmin: bytes, bmax: bytes) -> None:
        self.minex = self.maxex = False
        if bmin[:1] == b"(":
            self.minex = True
            bmin = bmin[1:]
        if bmax[:1] == b"(":
            self.maxex = True
            bmax = bmax[1:]
        lo = range_double(bmin)
        hi = range_double(bmax)
        if lo is None or hi is None:
            raise CommandError(MINMAX_NOT_FLOAT)
        self.min = lo
        self.max = hi

    def bounds(self, z: ZSet) -> tuple[int, int]:
        """[lo, hi) ranks of the elements in range."""
        sl = z.sl
        if self.minex:
            lo = len(sl) if self.min == INF else sl.bisect_left((_nextafter(self.min, INF),))
        else:
            lo = sl.bisect_left((self.min,))
        if self.maxex:
            hi = sl.bisect_left((self.max,))
        elif self.max == INF:
            hi = len(sl)
        else:
            hi = sl.bisect_left((_nextafter(self.max, INF),))
        return lo, hi


_MINSTR = 1     # "-"
_MAXSTR = 2     # "+"


def _lex_item(b: bytes):
    """zslParseLexRangeItem: (special, value, exclusive)."""
    c0 = b[:1]
    if c0 == b"+":
        if len(b) != 1:
            return None
        return _MAXSTR, b"", True
    if c0 == b"-":
        if len(b) != 1:
            return None
        return _MINSTR, b"", True
    if c0 == b"(":
        return 0, b[1:], True
    if c0 == b"[":
        return 0, b[1:], False
    return None


class LexRange:
    """zlexrangespec, with the listpack walk Redis uses (members sorted only
    when every score is the same; the walk is what Redis does either way)."""

    __slots__ = ("mins", "min", "minex", "maxs", "max", "maxex")

    def __init__(self, bmin: bytes, bmax: bytes) -> None:
        a = _lex_item(bmin)
        b = _lex_item(bmax) if a is not None else None
        if a is None or b is None:
            raise CommandError(LEX_NOT_VALID)
        self.mins, self.min, self.minex = a
        self.maxs, self.max, self.maxex = b

    def gte_min(self, v: bytes) -> bool:
        s = self.mins
        if s:
            return s == _MINSTR
        return v > self.min if self.minex else v >= self.min

    def lte_max(self, v: bytes) -> bool:
        s = self.maxs
        if s:
            return s == _MAXSTR
        return v < self.max if self.maxex else v <= self.max

    def empty(self) -> bool:
        """The range can hold nothing (sdscmplex(min, max) > 0, or == 0 and open)."""
        a, b = self.mins, self.maxs
        if a and a == b:
            cmp = 0
        elif a == _MINSTR or b == _MAXSTR:
            cmp = -1
        elif a == _MAXSTR or b == _MINSTR:
            cmp = 1
        else:
            cmp = (self.min > self.max) - (self.min < self.max)
        return cmp > 0 or (cmp == 0 and (self.minex or self.maxex))

    def in_range(self, z: ZSet) -> bool:
        """zzlIsInLexRange."""
        if self.empty() or not z.scores:
            return False
        sl = z.sl
        return self.gte_min(sl[-1][1]) and self.lte_max(sl[0][1])

    def sorted_bounds(self, z: ZSet) -> tuple[int, int]:
        """[lo, hi) when all the scores are equal (members are then sorted)."""
        sl = z.sl
        s = sl[0][0]
        if self.mins == _MINSTR:
            lo = 0
        elif self.mins == _MAXSTR:
            lo = len(sl)
        elif self.minex:
            lo = sl.bisect_right((s, self.min))
        else:
            lo = sl.bisect_left((s, self.min))
        if self.maxs == _MAXSTR:
            hi = len(sl)
        elif self.maxs == _MINSTR:
            hi = 0
        elif self.maxex:
            hi = sl.bisect_left((s, self.max))
        else:
            hi = sl.bisect_right((s, self.max))
        return lo, hi

    def first(self, z: ZSet) -> int | None:
        """zzlFirstInLexRange: the rank of the first element in range."""
        if not self.in_range(z):
            return None
        sl = z.sl
        if sl[0][0] == sl[-1][0]:
            lo, hi = self.sorted_bounds(z)
            return lo if lo < hi else None
        for i, (_, m) in enumerate(sl):
            if self.gte_min(m):
                return i if self.lte_max(m) else None
        return None

    def last(self, z: ZSet) -> int | None:
        """zzlLastInLexRange: the rank of the last element in range."""
        if not self.in_range(z):
            return None
        sl = z.sl
        if sl[0][0] == sl[-1][0]:
            lo, hi = self.sorted_bounds(z)
            return hi - 1 if lo < hi else None
        for i in range(len(sl) - 1, -1, -1):
            m = sl[i][1]
            if self.lte_max(m):
                return i if self.gte_min(m) else None
        return None

    def span(self, z: ZSet) -> tuple[int, int]:
        """[lo, hi): from the first element in range while members stay <= max."""
        i = self.first(z)
        if i is None:
            return 0, 0
        sl = z.sl
        if sl[0][0] == sl[-1][0]:
            return self.sorted_bounds(z)
        j = i
        n = len(sl)
        while j < n and self.lte_max(sl[j][1]):
            j += 1
        return i, j


# ------------------------------------------------------------------ ZADD / ZINCRBY
def _zadd_one(c, argv) -> bytes:
    """ZADD key score member without options (the common case)."""
    score = string2d(argv[2])
    if score is None:
        raise CommandError(NOT_FLOAT)
    key = argv[1]
    member = argv[3]
    db = c.db
    z = db.get(key)
    if z is None:
        z = new_zset(1, len(member))
        db.set(key, z)
        z.insert(member, score)
        added = 1
    elif type(z) is not ZSet:
        raise CommandError(WRONGTYPE)
    else:
        cur = z.scores.get(member)
        if cur is None:
            z.insert(member, score)
            added = 1
        elif score != cur:
            z.update(member, cur, score)
            added = 0
        else:
            return ZERO
        db.modified(key)
    srv = c.srv
    srv.dirty += 1
    if srv.notify_flags:
        _notify(srv, ZNOTIFY, b"zadd", key, db.id)
    return ONE if added else ZERO


def zadd_generic(c, argv, incr: bool = False) -> bytes:
    n = len(argv)
    if n == 4 and not incr and argv[2][:1] in _NUMSTART:
        return _zadd_one(c, argv)
    nx = xx = gt = lt = ch = False
    i = 2
    while i < n:
        o = argv[i]
        if len(o) > 4:
            break
        o = o.lower()
        if o == b"nx":
            nx = True
        elif o == b"xx":
            xx = True
        elif o == b"ch":
            ch = True
        elif o == b"incr":
            incr = True
        elif o == b"gt":
            gt = True
        elif o == b"lt":
            lt = True
        else:
            break
        i += 1
    elements = n - i
    if elements % 2 or not elements:
        raise CommandError(SYNTAX)
    elements //= 2
    if nx and xx:
        raise CommandError("ERR XX and NX options at the same time are not compatible")
    if (gt and nx) or (lt and nx) or (gt and lt):
        raise CommandError("ERR GT, LT, and/or NX options at the same time are not compatible")
    if incr and elements > 1:
        raise CommandError("ERR INCR option supports a single increment-element pair")
    scores = []
    for j in range(i, n, 2):
        v = string2d(argv[j])
        if v is None:
            raise CommandError(NOT_FLOAT)
        scores.append(v)
    key = argv[1]
    db = c.db
    z = db.get(key)
    added = updated = processed = 0
    score = 0.0
    if z is None:
        if xx:
            return c.nil if incr else ZERO
        z = new_zset(elements, len(argv[i + 1]))
        db.set(key, z)
    elif type(z) is not ZSet:
        raise CommandError(WRONGTYPE)
    d = z.scores
    error = None
    for k in range(elements):
        score = scores[k]
        member = argv[i + 1 + 2 * k]
        cur = d.get(member)
        if cur is not None:
            if nx:
                continue
            if incr:
                score += cur
                if score != score:
                    error = NAN_RESULT
                    break
            if (lt and score >= cur) or (gt and score <= cur):
                continue
            processed += 1
            if score != cur:
                z.update(member, cur, score)
                updated += 1
        elif not xx:
            z.insert(member, score)
            added += 1
            processed += 1
    if added or updated:
        if error is None:
            c.srv.dirty += added + updated
        db.modified(key)
        _notify(c.srv, ZNOTIFY, b"zincr" if incr else b"zadd", key, db.id)
    if error is not None:
        raise CommandError(error)
    if incr:
        return dbl(c, score) if processed else c.nil
    return _int(added + updated if ch else added)


@command("zadd")
def zadd(c, argv):
    if len(argv) == 4 and argv[2][:1] in _NUMSTART:
        return _zadd_one(c, argv)
    return zadd_generic(c, argv)


@command("zincrby")
def zincrby(c, argv):
    return zadd_generic(c, argv, True)


# ------------------------------------------------------------------ simple reads
@command("zcard")
def zcard(c, argv):
    z = lookup_read(c, argv[1], ZSet)
    return _int(len(z.scores)) if z is not None else ZERO


@command("zscore")
def zscore(c, argv):
    z = lookup_read(c, argv[1], ZSet)
    if z is None:
        return c.nil
    s = z.scores.get(argv[2])
    if s is None:
        return c.nil
    return dbl(c, s)


@command("zmscore")
def zmscore(c, argv):
    z = lookup_read(c, argv[1], ZSet)
    out = [b"*%d\r\n" % (len(argv) - 2)]
    nil = c.nil
    get = z.scores.get if z is not None else None
    for m in argv[2:]:
        s = get(m) if get is not None else None
        out.append(nil if s is None else dbl(c, s))
    return b"".join(out)


def _rank(c, argv, reverse: bool):
    z = lookup_read(c, argv[1], ZSet)
    if z is None:
        return c.nil
    r = z.rank(argv[2])
    if r is None:
        return c.nil
    return _int(len(z.scores) - 1 - r if reverse else r)


@command("zrank")
def zrank(c, argv):
    return _rank(c, argv, False)


@command("zrevrank")
def zrevrank(c, argv):
    return _rank(c, argv, True)


@command("zcount")
def zcount(c, argv):
    rng = ScoreRange(argv[2], argv[3])
    z = lookup_read(c, argv[1], ZSet)
    if z is None:
        return ZERO
    lo, hi = rng.bounds(z)
    return _int(hi - lo if hi > lo else 0)


@command("zlexcount")
def zlexcount(c, argv):
    rng = LexRange(argv[2], argv[3])
    z = lookup_read(c, argv[1], ZSet)
    if z is None:
        return ZERO
    lo, hi = rng.span(z)
    return _int(hi - lo)


# ------------------------------------------------------------------ ZRANGE family
R_AUTO, R_RANK, R_SCORE, R_LEX = 0, 1, 2, 3
D_AUTO, D_FWD, D_REV = 0, 1, 2


def _rank_items(z: ZSet, start: int, end: int, reverse: bool):
    llen = len(z.scores)
    if start < 0:
        start += llen
    if end < 0:
        end += llen
    if start < 0:
        start = 0
    if start > end or start >= llen:
        return ()
    if end >= llen:
        end = llen - 1
    if reverse:
        return z.sl[llen - 1 - end:llen - start][::-1]
    return z.sl[start:end + 1]


def _slice(z: ZSet, lo: int, hi: int, offset: int, limit: int, reverse: bool):
    """Elements [lo, hi) after skipping `offset`, at most `limit` (< 0: all),
    forwards or backwards (genericZrangebyscoreCommand's walk)."""
    if offset < 0 or limit == 0 or hi <= lo:
        return ()
    if reverse:
        stop = hi - offset
        start = lo if limit < 0 else max(lo, stop - limit)
        if stop <= start:
            return ()
        return z.sl[start:stop][::-1]
    start = lo + offset
    stop = hi if limit < 0 else min(hi, start + limit)
    if stop <= start:
        return ()
    return z.sl[start:stop]


def _lex_items(z: ZSet, rng: LexRange, offset: int, limit: int, reverse: bool):
    sl = z.sl
    if sl and sl[0][0] == sl[-1][0]:
        if not rng.in_range(z):
            return ()
        lo, hi = rng.sorted_bounds(z)
        return _slice(z, lo, hi, offset, limit, reverse)
    # scores differ: walk as Redis walks a listpack
    i = rng.last(z) if reverse else rng.first(z)
    if i is None or offset < 0:
        return ()
    out = []
    n = len(sl)
    step = -1 if reverse else 1
    i += step * offset
    while 0 <= i < n and limit != 0:
        item = sl[i]
        if reverse:
            if not rng.gte_min(item[1]):
                break
        elif not rng.lte_max(item[1]):
            break
        out.append(item)
        limit -= 1
        i += step
    return out


def zrange_generic(c, argv, src_idx: int, store: bool, rangetype: int, direction: int):
    key = argv[src_idx]
    minidx = src_idx + 1
    maxidx = src_idx + 2
    withscores = False
    offset = 0
    limit = -1
    n = len(argv)
    j = src_idx + 3
    while j < n:
        a = argv[j].lower()
        left = n - j - 1
        if not store and a == b"withscores":
            withscores = True
        elif a == b"limit" and left >= 2:
            offset = parse_int(argv[j + 1])
            limit = parse_int(argv[j + 2])
            j += 2
        elif direction == D_AUTO and a == b"rev":
            direction = D_REV
        elif rangetype == R_AUTO and a == b"bylex":
            rangetype = R_LEX
        elif rangetype == R_AUTO and a == b"byscore":
            rangetype = R_SCORE
        else:
            raise CommandError(SYNTAX)
        j += 1
    if direction == D_AUTO:
        direction = D_FWD
    if rangetype == R_AUTO:
        rangetype = R_RANK
    if limit != -1 and rangetype == R_RANK:
        raise CommandError("ERR syntax error, LIMIT is only supported in combination with "
                           "either BYSCORE or BYLEX")
    if withscores and rangetype == R_LEX:
        raise CommandError("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    reverse = direction == D_REV
    if reverse and rangetype != R_RANK:
        minidx, maxidx = maxidx, minidx
    if rangetype == R_RANK:
        start = parse_int(argv[minidx])
        end = parse_int(argv[maxidx])
    elif rangetype == R_SCORE:
        rng = ScoreRange(argv[minidx], argv[maxidx])
    else:
        rng = LexRange(argv[minidx], argv[maxidx])
    z = lookup_read(c, key, ZSet)
    if z is None:
        if store:
            return _int(store_result(c, argv[1], None, b"zrangestore"))
        return EMPTY
    if rangetype == R_RANK:
        items = _rank_items(z, start, end, reverse)
    elif rangetype == R_SCORE:
        if offset > 0 and offset >= len(z.scores):
            items = ()
        else:
            lo, hi = rng.bounds(z)
            items = _slice(z, lo, hi, offset, limit, reverse)
    else:
        items = _lex_items(z, rng, offset, limit, reverse)
    if store:
        # a rank range knows its length: zsetTypeCreate(length) picks the
        # encoding up front; score and lex ranges start as a listpack
        if rangetype == R_RANK:
            items = list(items)
            dz = ZSet(LISTPACK if len(items) <= LIMITS.zset_max_listpack_entries else SKIPLIST)
        else:
            dz = ZSet(LISTPACK)
        insert = dz.insert
        for s, m in items:
            insert(m, s)
        return _int(store_result(c, argv[1], dz, b"zrangestore"))
    return range_reply(c, items, withscores)


@command("zrange")
def zrange(c, argv):
    return zrange_generic(c, argv, 1, False, R_AUTO, D_AUTO)


@command("zrangestore")
def zrangestore(c, argv):
    return zrange_generic(c, argv, 2, True, R_AUTO, D_AUTO)


@command("zrevrange")
def zrevrange(c, argv):
    return zrange_generic(c, argv, 1, False, R_RANK, D_REV)


@command("zrangebyscore")
def zrangebyscore(c, argv):
    return zrange_generic(c, argv, 1, False, R_SCORE, D_FWD)


@command("zrevrangebyscore")
def zrevrangebyscore(c, argv):
    return zrange_generic(c, argv, 1, False, R_SCORE, D_REV)


@command("zrangebylex")
def zrangebylex(c, argv):
    return zrange_generic(c, argv, 1, False, R_LEX, D_FWD)


@command("zrevrangebylex")
def zrevrangebylex(c, argv):
    return zrange_generic(c, argv, 1, False, R_LEX, D_REV)


# ------------------------------------------------------------------ removal
@command("zrem")
def zrem(c, argv):
    key = argv[1]
    z = lookup_write(c, key, ZSet)
    if z is None:
        return ZERO
    deleted = 0
    removed = False
    delete = z.delete
    for m in argv[2:]:
        if delete(m):
            deleted += 1
        if not z.scores:
            c.db.delete(key)
            removed = True
            break
    if deleted:
        db = c.db
        srv = c.srv
        _notify(srv, ZNOTIFY, b"zrem", key, db.id)
        if removed:
            _notify(srv, GNOTIFY, b"del", key, db.id)
        else:
            db.modified(key)
        srv.dirty += deleted
    return _int(deleted)


def _zremrange(c, argv, rangetype: int):
    key = argv[1]
    if rangetype == R_RANK:
        event = b"zremrangebyrank"
        start = parse_int(argv[2])
        end = parse_int(argv[3])
    elif rangetype == R_SCORE:
        event = b"zremrangebyscore"
        rng = ScoreRange(argv[2], argv[3])
    else:
        event = b"zremrangebylex"
        rng = LexRange(argv[2], argv[3])
    z = lookup_write(c, key, ZSet)
    if z is None:
        return ZERO
    llen = len(z.scores)
    if rangetype == R_RANK:
        if start < 0:
            start += llen
        if end < 0:
            end += llen
        if start < 0:
            start = 0
        if start > end or start >= llen:
            return ZERO
        if end >= llen:
            end = llen - 1
        lo, hi = start, end + 1
    elif rangetype == R_SCORE:
        lo, hi = rng.bounds(z)
    else:
        lo, hi = rng.span(z)
    deleted = z.remove_range(lo, hi) if hi > lo else 0
    if deleted:
        db = c.db
        srv = c.srv
        if not z.scores:
            db.delete(key)
            _notify(srv, ZNOTIFY, event, key, db.id)
            _notify(srv, GNOTIFY, b"del", key, db.id)
        else:
            db.modified(key)
            _notify(srv, ZNOTIFY, event, key, db.id)
        srv.dirty += deleted
    return _int(deleted)


@command("zremrangebyrank")
def zremrangebyrank(c, argv):
    return _zremrange(c, argv, R_RANK)


@command("zremrangebyscore")
def zremrangebyscore(c, argv):
    return _zremrange(c, argv, R_SCORE)


@command("zremrangebylex")
def zremrangebylex(c, argv):
    return _zremrange(c, argv, R_LEX)


# ------------------------------------------------------------------ set operations
OP_UNION, OP_INTER, OP_DIFF = 0, 1, 2
AGG_SUM, AGG_MIN, AGG_MAX = 0, 1, 2


class _Src:
    """One input of a set operation: a sorted set, a set (scores 1.0) or nothing."""

    __slots__ = ("obj", "scores", "members", "weight")

    def __init__(self, obj) -> None:
        self.obj = obj
        self.weight = 1.0
        if obj is None:
            self.scores = {}
            self.members = None
        elif type(obj) is ZSet:
            self.scores = obj.scores
            self.members = None
        else:
            self.scores = None
            self.members = obj

    def __len__(self) -> int:
        if self.scores is not None:
            return len(self.scores)
        return len(self.members)

    def items(self):
        """(member, score) pairs."""
        if self.scores is not None:
            return self.scores.items()
        m = self.members
        it = m.members() if hasattr(m, "members") else m
        return ((x, 1.0) for x in it)

    def find(self, member: bytes):
        if self.scores is not None:
            return self.scores.get(member)
        return 1.0 if member in self.members else None


def _aggregate(target: float, val: float, agg: int) -> float:
    if agg == AGG_SUM:
        t = target + val
        return 0.0 if t != t else t
    if agg == AGG_MIN:
        return val if val < target else target
    return val if val > target else target


def setop(c, argv, dst: bytes | None, numkeys_idx: int, op: int, name: str,
          card_only: bool = False):
    setnum = parse_int(argv[numkeys_idx])
    if setnum < 1:
        raise CommandError("ERR at least 1 input key is needed for '%s' command" % name)
    n = len(argv)
    if setnum > n - (numkeys_idx + 1):
        raise CommandError(SYNTAX)
    srcs = []
    j = numkeys_idx + 1
    for j in range(numkeys_idx + 1, numkeys_idx + 1 + setnum):
        v = lookup_read(c, argv[j])
        if v is not None and type(v) is not ZSet and type_name(v) != "set":
            raise CommandError(WRONGTYPE)
        srcs.append(_Src(v))
    j = numkeys_idx + 1 + setnum
    agg = AGG_SUM
    withscores = False
    limit = 0
    remaining = n - j
    while remaining:
        a = argv[j].lower()
        if op != OP_DIFF and not card_only and remaining >= setnum + 1 and a == b"weights":
            j += 1
            remaining -= 1
            for s in srcs:
                s.weight = parse_double(argv[j], "ERR weight value is not a float")
                j += 1
                remaining -= 1
        elif op != OP_DIFF and not card_only and remaining >= 2 and a == b"aggregate":
            g = argv[j + 1].lower()
            if g == b"sum":
                agg = AGG_SUM
            elif g == b"min":
                agg = AGG_MIN
            elif g == b"max":
                agg = AGG_MAX
            else:
                raise CommandError(SYNTAX)
            j += 2
            remaining -= 2
        elif remaining >= 1 and dst is None and not card_only and a == b"withscores":
            withscores = True
            j += 1
            remaining -= 1
        elif card_only and remaining >= 2 and a == b"limit":
            try:
                limit = parse_int(argv[j + 1])
            except CommandError:
                limit = -1
            if limit < 0:
                raise CommandError("ERR LIMIT can't be negative")
            j += 2
            remaining -= 2
        else:
            raise CommandError(SYNTAX)
    if op != OP_DIFF:
        srcs.sort(key=len)        # stable, like glibc's merge-sort qsort
    result: dict[bytes, float] = {}
    if op == OP_INTER:
        first = srcs[0]
        if len(first):
            others = srcs[1:]
            w0 = first.weight
            count = 0
            for member, s0 in first.items():
                score = w0 * s0
                if score != score:
                    score = 0.0
                for o in others:
                    if o.obj is first.obj:
                        value = s0 * o.weight
                    else:
                        v = o.find(member)
                        if v is None:
                            break
                        value = v * o.weight
                    score = _aggregate(score, value, agg)
                else:
                    if card_only:
                        count += 1
                        if limit and count >= limit:
                            break
                    else:
                        result[member] = score
            if card_only:
                return _int(count)
        elif card_only:
            return ZERO
    elif op == OP_UNION:
        for s in srcs:
            if not len(s):
                continue
            w = s.weight
            get = result.get
            for member, sc in s.items():
                score = w * sc
                if score != score:
                    score = 0.0
                cur = get(member)
                if cur is None:
                    result[member] = score
                else:
                    result[member] = _aggregate(cur, score, agg)
    else:
        first = srcs[0]
        if len(first) and not any(s.obj is first.obj for s in srcs[1:]):
            others = [s for s in srcs[1:] if len(s)]
            for member, sc in first.items():
                for o in others:
                    if o.find(member) is not None:
                        break
                else:
                    result[member] = sc
    if dst is not None:
        z = None
        if result:
            z = ZSet(SKIPLIST)
            z.scores = result
            z.sl.update((s, m) for m, s in result.items())
            z.shrink_if_small(max(map(len, result)))
        event = (b"zunionstore", b"zinterstore", b"zdiffstore")[op]
        return _int(store_result(c, dst, z, event))
    items = sorted((s, m) for m, s in result.items())
    return range_reply(c, items, withscores)


@command("zunionstore")
def zunionstore(c, argv):
    return setop(c, argv, argv[1], 2, OP_UNION, "zunionstore")


@command("zinterstore")
def zinterstore(c, argv):
    return setop(c, argv, argv[1], 2, OP_INTER, "zinterstore")


@command("zdiffstore")
def zdiffstore(c, argv):
    return setop(c, argv, argv[1], 2, OP_DIFF, "zdiffstore")


@command("zunion")
def zunion(c, argv):
    return setop(c, argv, None, 1, OP_UNION, "zunion")


@command("zinter")
def zinter(c, argv):
    return setop(c, argv, None, 1, OP_INTER, "zinter")


@command("zintercard")
def zintercard(c, argv):
    return setop(c, argv, None, 1, OP_INTER, "zintercard", True)


@command("zdiff")
def zdiff(c, argv):
    return setop(c, argv, None, 1, OP_DIFF, "zdiff")


# ------------------------------------------------------------------ ZRANDMEMBER
LONG_MAX = LLONG_MAX


@command("zrandmember")
def zrandmember(c, argv):
    n = len(argv)
    if n >= 3:
        count = parse_int(argv[2])
        if count < -LONG_MAX:
            raise CommandError("ERR value is out of range, value must between %d and %d"
                               % (-LONG_MAX, LONG_MAX))
        withscores = False
        if n > 4 or (n == 4 and argv[3].lower() != b"withscores"):
            raise CommandError(SYNTAX)
        if n == 4:
            withscores = True
            if count < -(LONG_MAX // 2) or count > LONG_MAX // 2:
                raise CommandError("ERR value is out of range")
        return _zrandmember_count(c, argv[1], count, withscores)
    z = lookup_read(c, argv[1], ZSet)
    if z is None:
        return c.nil
    m = z.sl[random.randrange(len(z.sl))][1]
    return b"$%d\r\n%s\r\n" % (len(m), m)


def _zrandmember_count(c, key: bytes, count: int, withscores: bool) -> bytes:
    z = lookup_read(c, key, ZSet)
    if z is None or count == 0:
        return EMPTY
    sl = z.sl
    size = len(sl)
    if count < 0 or count == 1:
        k = -count if count < 0 else 1
        rr = random.randrange
        items = [sl[rr(size)] for _ in range(k)]
    elif count >= size:
        items = reversed(sl)
    else:
        idx = random.sample(range(size), count)
        items = [sl[i] for i in idx]
    return range_reply(c, items, withscores)


# ------------------------------------------------------------------ pops
def _pop_reply(c, z: ZSet, key: bytes, where_max: bool, count: int, nested: bool,
               emitkey: bool) -> bytes:
    """Pop min(count, len) elements of z (stored at key) and build the reply:
    flat [m, s, ...], nested [[m, s], ...] and/or prefixed with the key."""
    db = c.db
    srv = c.srv
    llen = len(z.scores)
    n = count if count < llen else llen
    out = []
    if not nested and not emitkey:
        out.append(b"*%d\r\n" % (n * 2))
    elif nested and not emitkey:
        out.append(b"*%d\r\n" % n)
    elif not nested and emitkey:
        out.append(b"*%d\r\n$%d\r\n%s\r\n" % (n * 2 + 1, len(key), key))
    else:
        out.append(b"*2\r\n$%d\r\n%s\r\n*%d\r\n" % (len(key), key, n))
    pop = z.pop
    resp3 = c.resp == 3
    for i in range(n):
        s, m = pop(where_max)
        fs = b"%.17g" % s
        if nested:
            out.append(b"*2\r\n")
        if resp3:
            out.append(b"$%d\r\n%s\r\n,%s\r\n" % (len(m), m, fs))
        else:
            out.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(m), m, len(fs), fs))
    srv.dirty += n
    _notify(srv, ZNOTIFY, b"zpopmax" if where_max else b"zpopmin", key, db.id)
    if not z.scores:
        db.delete(key)
        _notify(srv, GNOTIFY, b"del", key, db.id)
    else:
        db.modified(key)
    return b"".join(out)


def zpop_generic(c, keys, where_max: bool, emitkey: bool, count: int, nested: bool,
                 nil_when_empty: bool, zmpop: bool = False) -> bytes:
    """genericZpopCommand over the first existing key of `keys`."""
    z = None
    key = None
    get = c.db.get
    for key in keys:
        v = get(key)
        if v is None:
            continue
        if type(v) is not ZSet:
            raise CommandError(WRONGTYPE)
        z = v
        break
    if z is None:
        return null_array(c) if nil_when_empty else EMPTY
    if count == 0:
        return EMPTY
    if count == -1:
        count = 1
    llen = len(z.scores)
    reply = _pop_reply(c, z, key, where_max, count, nested, emitkey)
    if zmpop:
        c.rewrite = [[b"ZPOPMAX" if where_max else b"ZPOPMIN", key,
                      b"%d" % (count if count < llen else llen)]]
    return reply


def _zpopminmax(c, argv, where_max: bool):
    if len(argv) > 3:
        raise CommandError(SYNTAX)
    count = -1
    if len(argv) == 3:
        try:
            count = parse_int(argv[2])
        except CommandError:
            raise CommandError(NOT_POSITIVE) from None
        if count < 0:
            raise CommandError(NOT_POSITIVE)
    return zpop_generic(c, (argv[1],), where_max, False, count, c.resp == 3 and count != -1,
                        False)


@command("zpopmin")
def zpopmin(c, argv):
    return _zpopminmax(c, argv, False)


@command("zpopmax")
def zpopmax(c, argv):
    return _zpopminmax(c, argv, True)


def _range_long(b: bytes, msg: str) -> int:
    """getRangeLongFromObjectOrReply(1, LONG_MAX, msg)."""
    try:
        v = parse_int(b)
    except CommandError:
        raise CommandError(msg) from None
    if v < 1:
        raise CommandError(msg)
    return v


def _zmpop_args(argv, numkeys_idx: int):
    """(keys, where_max, count) of ZMPOP / BZMPOP."""
    numkeys = _range_long(argv[numkeys_idx], "ERR numkeys should be greater than 0")
    where_idx = numkeys_idx + numkeys + 1
    n = len(argv)
    if where_idx >= n:
        raise CommandError(SYNTAX)
    w = argv[where_idx].lower()
    if w == b"min":
        where_max = False
    elif w == b"max":
        where_max = True
    else:
        raise CommandError(SYNTAX)
    count = -1
    j = where_idx + 1
    while j < n:
        if count == -1 and argv[j].lower() == b"count" and j + 1 < n:
            j += 1
            count = _range_long(argv[j], "ERR count should be greater than 0")
        else:
            raise CommandError(SYNTAX)
        j += 1
    if count == -1:
        count = 1
    return argv[numkeys_idx + 1:where_idx], where_max, count


@command("zmpop")
def zmpop(c, argv):
    keys, where_max, count = _zmpop_args(argv, 1)
    return zpop_generic(c, keys, where_max, True, count, True, True, zmpop=True)


# ------------------------------------------------------------------ blocking pops
def _blocking_pop(c, keys, where_max: bool, timeout_arg: bytes, count: int, nested: bool,
                  name: str):
    from pynode.blocking import parse_timeout
    timeout = parse_timeout(timeout_arg)
    get = c.db.get
    for key in keys:
        z = get(key)
        if z is None:
            continue
        if type(z) is not ZSet:
            raise CommandError(WRONGTYPE)
        llen = len(z.scores)
        if not llen:
            continue
        cmd = b"ZPOPMAX" if where_max else b"ZPOPMIN"
        if count == -1:
            reply = _pop_reply(c, z, key, where_max, 1, False, True)
            c.rewrite = [[cmd, key]]
        else:
            reply = _pop_reply(c, z, key, where_max, count, nested, True)
            c.rewrite = [[cmd, key, b"%d" % (count if count < llen else llen)]]
        return reply
    blocking = c.srv.blocking
    if not blocking.may_block(c):
        return null_array(c)

    def serve(cl, key):
        z = cl.db.get(key)
        if type(z) is not ZSet or not z.scores:
            return None
        llen = len(z.scores)
        cmd = b"ZPOPMAX" if where_max else b"ZPOPMIN"
        if count == -1:
            reply = _pop_reply(cl, z, key, where_max, 1, False, True)
            prop = [cmd, key]
        else:
            reply = _pop_reply(cl, z, key, where_max, count, nested, True)
            prop = [cmd, key, b"%d" % (count if count < llen else llen)]
        cl.srv.propagate(cl.db.id, prop)
        return reply

    return blocking.block(c, list(keys), timeout, serve, null_array(c), name)


@command("bzpopmin")
def bzpopmin(c, argv):
    return _blocking_pop(c, argv[1:-1], False, argv[-1], -1, False, "bzpopmin")


@command("bzpopmax")
def bzpopmax(c, argv):
    return _blocking_pop(c, argv[1:-1], True, argv[-1], -1, False, "bzpopmax")


@command("bzmpop")
def bzmpop(c, argv):
    keys, where_max, count = _zmpop_args(argv, 2)
    return _blocking_pop(c, keys, where_max, argv[1], count, True, "bzmpop")


# ------------------------------------------------------------------ ZSCAN
# A skiplist's cursor is (rank of the next element) | (deletions seen << 40):
# the rank goes back by the number of deletions since the last call, so an
# element present for the whole scan is never skipped (it may come twice,
# which SCAN allows).
_RANK_BITS = 40
_RANK_MASK = (1 << _RANK_BITS) - 1
_DELS_MASK = (1 << (64 - _RANK_BITS)) - 1


@command("zscan")
def zscan(c, argv):
    from pynode.commands.keys import _parse_cursor
    cursor = _parse_cursor(argv[2])
    z = lookup_read(c, argv[1], ZSet)
    if z is None:
        return EMPTY_SCAN
    count = 10
    pat = None
    i = 3
    n = len(argv)
    while i < n:
        j = n - i
        a = argv[i].lower()
        if a == b"count" and j >= 2:
            count = parse_int(argv[i + 1])
            if count < 1:
                raise CommandError(SYNTAX)
            i += 2
        elif a == b"match" and j >= 2:
            p = argv[i + 1]
            pat = None if p == b"*" else p
            i += 2
        else:
            raise CommandError(SYNTAX)
    sl = z.sl
    if z.encoding is LISTPACK:
        items = [(m, lp_score_bytes(s)) for s, m in sl]
        nxt = 0
    else:
        dels = z.dels & _DELS_MASK
        if cursor:
            rank = cursor & _RANK_MASK
            back = (dels - (cursor >> _RANK_BITS)) & _DELS_MASK
            start = rank - back if rank > back else 0
        else:
            start = 0
        stop = start + count
        items = [(m, b"%.17g" % s) for s, m in sl.islice(start, stop)]
        nxt = (dels << _RANK_BITS) | stop if stop < len(sl) else 0
    if pat is not None:
        ok = matcher(pat)
        items = [it for it in items if ok(it[0])]
    out = []
    for m, s in items:
        out.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(m), m, len(s), s))
    cur = b"%d" % nxt
    return b"*2\r\n$%d\r\n%s\r\n*%d\r\n%s" % (len(cur), cur, 2 * len(out), b"".join(out))

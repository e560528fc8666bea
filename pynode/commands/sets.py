"""Set commands (Redis 7.0 t_set.c): SADD SREM SMEMBERS SISMEMBER SMISMEMBER
SCARD SPOP SRANDMEMBER SMOVE SINTER SINTERCARD SINTERSTORE SUNION SUNIONSTORE
SDIFF SDIFFSTORE SSCAN.

Replies of an intset set come out in ascending order, as Redis iterates an
intset; hashtable order is unspecified in Redis too.  SPOP is propagated as
Redis 7.0 does: SREM of the popped member, SREMs wrapped in MULTI/EXEC for a
count, DEL when the count takes the whole set.
"""

from __future__ import annotations

import random

from pynode import notify
from pynode.commands import (SYNTAX, WRONGTYPE, CommandError, command, lookup_read, lookup_write,
                            parse_int)
from pynode.commands.hashes import EMPTY_SCAN, _scan_head, parse_scan_options, scan_batch
from pynode.commands.keys import _parse_cursor
from pynode.resp import ONE, ZERO, integer
from storage.sets import INTSET, Set, from_members, reply_order

LONG_MAX = 9223372036854775807
SPOP_MOVE_STRATEGY_MUL = 5


# ------------------------------------------------------------------ lookups
def _members_reply(c, members, resp3_set: bool = True) -> bytes:
    head = b"~%d\r\n" if resp3_set and c.resp == 3 else b"*%d\r\n"
    out = [head % len(members)]
    for m in members:
        out.append(b"$%d\r\n%s\r\n" % (len(m), m))
    return b"".join(out)


def _empty_set(c) -> bytes:
    return b"~0\r\n" if c.resp == 3 else b"*0\r\n"


def _propagate_many(c, cmds) -> None:
    """What Redis 7.0 propagates for a command that emits several commands:
    one alone, more wrapped in MULTI/EXEC (unless already inside EXEC)."""
    if len(cmds) > 1 and c.srv.also_propagate is None:
        cmds = [[b"MULTI"]] + cmds + [[b"EXEC"]]
    c.rewrite = cmds


# ------------------------------------------------------------------ SADD / SREM
@command("sadd")
def sadd(c, argv):
    key = argv[1]
    db = c.db
    s = db.get(key)
    if s is None:
        s = Set()
        new = True
    elif type(s) is not Set:
        raise CommandError(WRONGTYPE)
    else:
        new = False
    if len(argv) == 3:
        added = 1 if s.add(argv[2]) else 0
    else:
        add = s.add
        added = 0
        for m in argv[2:]:
            if add(m):
                added += 1
    if new:
        db.set(key, s)
    elif added:
        db.modified(key)
    if added:
        srv = c.srv
        srv.dirty += added
        if srv.notify_flags:
            notify.notify(srv, notify.SET, b"sadd", key, db.id)
    return integer(added)


@command("srem")
def srem(c, argv):
    key = argv[1]
    db = c.db
    s = lookup_write(c, key, Set)
    if s is None:
        return ZERO
    deleted = 0
    removed = False
    discard = s.discard
    for m in argv[2:]:
        if discard(m):
            deleted += 1
            if not s:
                db.delete(key)
                removed = True
                break
    if deleted:
        if not removed:
            db.modified(key)
        srv = c.srv
        srv.dirty += deleted
        if srv.notify_flags:
            notify.notify(srv, notify.SET, b"srem", key, db.id)
            if removed:
                notify.notify(srv, notify.GENERIC, b"del", key, db.id)
    return integer(deleted)


# ------------------------------------------------------------------ reads
@command("smembers")
def smembers(c, argv):
    s = lookup_read(c, argv[1], Set)
    if s is None:
        return _empty_set(c)
    return _members_reply(c, s.members())


@command("sismember")
def sismember(c, argv):
    s = lookup_read(c, argv[1], Set)
    return ONE if s is not None and argv[2] in s else ZERO


@command("smismember")
def smismember(c, argv):
    s = lookup_read(c, argv[1], Set)
    out = [b"*%d\r\n" % (len(argv) - 2)]
    if s is None:
        out.append(ZERO * (len(argv) - 2))
    else:
        for m in argv[2:]:
            out.append(ONE if m in s else ZERO)
    return b"".join(out)


@command("scard")
def scard(c, argv):
    s = lookup_read(c, argv[1], Set)
    return ZERO if s is None else integer(len(s))


# ------------------------------------------------------------------ SPOP
def _parse_range_long(b: bytes) -> int:
    """getRangeLongFromObjectOrReply(-LONG_MAX, LONG_MAX)."""
    v = parse_int(b)
    if v < -LONG_MAX:
        raise CommandError("ERR value is out of range, value must between %d and %d"
                           % (-LONG_MAX, LONG_MAX))
    return v


@command("spop")
def spop(c, argv):
    n = len(argv)
    if n == 3:
        return _spop_count(c, argv)
    if n > 3:
        raise CommandError(SYNTAX)
    key = argv[1]
    db = c.db
    s = lookup_write(c, key, Set)
    if s is None:
        return c.nil
    m = s.pop_random()
    srv = c.srv
    notify.notify(srv, notify.SET, b"spop", key, db.id)
    c.rewrite = [[b"SREM", key, m]]
    if not s:
        db.delete(key)
        notify.notify(srv, notify.GENERIC, b"del", key, db.id)
    else:
        db.modified(key)
    srv.dirty += 1
    return b"$%d\r\n%s\r\n" % (len(m), m)


def _spop_count(c, argv):
    count = parse_int(argv[2], "ERR value is out of range, must be positive")
    if count < 0:
        raise CommandError("ERR value is out of range, must be positive")
    key = argv[1]
    db = c.db
    s = lookup_write(c, key, Set)
    if s is None or count == 0:
        return _empty_set(c)
    srv = c.srv
    size = len(s)
    notify.notify(srv, notify.SET, b"spop", key, db.id)
    srv.dirty += count
    if count >= size:
        srv.stats.keyspace_hits += 1        # the reply is an SUNION of the key, a read
        reply = _members_reply(c, s.members())
        db.delete(key)
        notify.notify(srv, notify.GENERIC, b"del", key, db.id)
        c.rewrite = [[b"DEL", key]]
        return reply
    remaining = size - count
    if remaining * SPOP_MOVE_STRATEGY_MUL > count:
        pop = s.pop_random
        popped = [pop() for _ in range(count)]
        db.modified(key)
    else:
        # keep `remaining` random members in a new set, reply the rest in
        # the old set's order (spopWithCountCommand's CASE 3)
        keep = random.sample(s.arr, remaining)
        for m in keep:
            s.discard(m)
        popped = list(s.members())
        db.set(key, from_members(keep), keepttl=True)
    _propagate_many(c, [[b"SREM", key, m] for m in popped])
    return _members_reply(c, popped)


# ------------------------------------------------------------------ SRANDMEMBER
@command("srandmember")
def srandmember(c, argv):
    n = len(argv)
    if n == 3:
        count = _parse_range_long(argv[2])
        s = lookup_read(c, argv[1], Set)
        if s is None or count == 0:
            return b"*0\r\n"
        size = len(s)
        if count < 0 or count == 1:
            k = -count if count < 0 else 1
            return _members_reply(c, random.choices(s.arr, k=k), False)
        if count >= size:
            return _members_reply(c, s.members(), False)
        return _members_reply(c, random.sample(s.arr, count), False)
    if n > 3:
        raise CommandError(SYNTAX)
    s = lookup_read(c, argv[1], Set)
    if s is None:
        return c.nil
    m = s.random()
    return b"$%d\r\n%s\r\n" % (len(m), m)


# ------------------------------------------------------------------ SMOVE
@command("smove")
def smove(c, argv):
    src_key, dst_key, m = argv[1], argv[2], argv[3]
    db = c.db
    src = db.get(src_key)
    dst = db.get(dst_key)
    if src is None:
        return ZERO
    if type(src) is not Set or (dst is not None and type(dst) is not Set):
        raise CommandError(WRONGTYPE)
    if src is dst:
        return ONE if m in src else ZERO
    if not src.discard(m):
        return ZERO
    srv = c.srv
    notify.notify(srv, notify.SET, b"srem", src_key, db.id)
    if not src:
        db.delete(src_key)
        notify.notify(srv, notify.GENERIC, b"del", src_key, db.id)
    else:
        db.modified(src_key)
    new = dst is None
    if new:
        dst = Set()
    srv.dirty += 1
    if dst.add(m):
        if new:
            db.set(dst_key, dst)
        else:
            db.modified(dst_key)
        srv.dirty += 1
        notify.notify(srv, notify.SET, b"sadd", dst_key, db.id)
    return ONE


# ------------------------------------------------------------------ SINTER & co
def _source_sets(c, keys, write: bool):
    """The sets at keys (None for a missing key); WRONGTYPE at the first
    key holding another type.  Reads count keyspace hits/misses (Redis 7.0
    reads the sources of the *STORE variants as reads too)."""
    out = []
    lookup = lookup_write if write else lookup_read
    for k in keys:
        out.append(lookup(c, k, Set))
    return out


def _intersection(sets, limit: int = 0) -> list:
    """sinterGenericCommand: the members of the smallest set (in its order)
    that every other set holds; stops after `limit` members if limit > 0."""
    sets = sorted(sets, key=len)
    first = sets[0]
    others = sets[1:]
    if first.encoding == INTSET or limit:
        out = []
        for m in first.members():
            for o in others:
                if m not in o:
                    break
            else:
                out.append(m)
                if limit and len(out) >= limit:
                    break
        return out
    if not others:
        return list(first.arr)
    common = first.keys() & others[0].keys()
    for o in others[1:]:
        if not common:
            break
        common &= o.keys()
    return list(common)


def _store(c, dst_key, members, event: bytes) -> bytes:
    db = c.db
    srv = c.srv
    if members:
        s = from_members(members)
        db.set(dst_key, s)
        srv.dirty += 1
        notify.notify(srv, notify.SET, event, dst_key, db.id)
        return integer(len(s))
    if db.delete(dst_key):
        srv.dirty += 1
        notify.notify(srv, notify.GENERIC, b"del", dst_key, db.id)
    return ZERO


def _sinter(c, keys, dst_key=None):
    sets = _source_sets(c, keys, False)
    if None in sets:
        if dst_key is not None:
            return _store(c, dst_key, [], b"sinterstore")
        return _empty_set(c)
    members = _intersection(sets)
    if dst_key is not None:
        return _store(c, dst_key, members, b"sinterstore")
    return _members_reply(c, members)


@command("sinter")
def sinter(c, argv):
    return _sinter(c, argv[1:])


@command("sinterstore")
def sinterstore(c, argv):
    return _sinter(c, argv[2:], argv[1])


@command("sintercard")
def sintercard(c, argv):
    try:
        numkeys = parse_int(argv[1])
    except CommandError:
        numkeys = 0
    if numkeys < 1:
        raise CommandError("ERR numkeys should be greater than 0")
    if numkeys > len(argv) - 2:
        raise CommandError("ERR Number of keys can't be greater than number of args")
    limit = 0
    j = 2 + numkeys
    n = len(argv)
    while j < n:
        if argv[j].lower() == b"limit" and j + 1 < n:
            try:
                limit = parse_int(argv[j + 1])
            except CommandError:
                limit = -1
            if limit < 0:
                raise CommandError("ERR LIMIT can't be negative")
            j += 2
        else:
            raise CommandError(SYNTAX)
    sets = _source_sets(c, argv[2:2 + numkeys], False)
    if None in sets:
        return ZERO
    return integer(len(_intersection(sets, limit)))


def _union_diff(c, keys, union: bool, dst_key=None):
    sets = _source_sets(c, keys, False)
    if union:
        live = [s for s in sets if s is not None]
        if not live:
            members = []
        elif len(live) == 1:
            members = live[0].members()
        else:
            acc = dict.fromkeys(live[0].arr)
            for s in live[1:]:
                acc.update(dict.fromkeys(s.arr))
            members = list(acc)
    else:
        first = sets[0]
        if first is None:
            members = []
        else:
            others = [s for s in sets[1:] if s is not None]
            if not others:
                members = list(first.arr)
            else:
                rest = first.keys() - others[0].keys()
                for o in others[1:]:
                    if not rest:
                        break
                    rest -= o.keys()
                members = list(rest)
    if dst_key is not None:
        return _store(c, dst_key, members, b"sunionstore" if union else b"sdiffstore")
    if not members:
        return _empty_set(c)
    return _members_reply(c, reply_order(members))


@command("sunion")
def sunion(c, argv):
    return _union_diff(c, argv[1:], True)


@command("sunionstore")
def sunionstore(c, argv):
    return _union_diff(c, argv[2:], True, argv[1])


@command("sdiff")
def sdiff(c, argv):
    return _union_diff(c, argv[1:], False)


@command("sdiffstore")
def sdiffstore(c, argv):
    return _union_diff(c, argv[2:], False, argv[1])


# ------------------------------------------------------------------ SSCAN
@command("sscan")
def sscan(c, argv):
    cursor = _parse_cursor(argv[2])
    s = lookup_read(c, argv[1], Set)
    if s is None:
        return EMPTY_SCAN
    count, ok = parse_scan_options(argv, 3)
    if s.encoding == INTSET:
        nxt, batch = 0, s.members()
    else:
        nxt, batch = scan_batch(s, cursor, count, lambda: s.arr[:])
        batch = [m for m in batch if m in s]
    if ok is not None:
        batch = [m for m in batch if ok(m)]
    out = [_scan_head(nxt, len(batch))]
    for m in batch:
        out.append(b"$%d\r\n%s\r\n" % (len(m), m))
    return b"".join(out)

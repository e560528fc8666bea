"""List commands, blocking ones included (Redis 7.0 t_list.c).

Every list is a storage.lists.QuickList.  What Redis 7.0.15 propagates:
the command itself, except LMPOP -> LPOP/RPOP key count, and for the
blocking commands when they are served at once BLPOP/BRPOP -> LPOP/RPOP key,
BLMPOP -> LPOP/RPOP key count, BLMOVE -> LMOVE, BRPOPLPUSH -> RPOPLPUSH; a
client served later propagates the same from its serve function, after the
command that woke it.

Keyspace events as t_list.c: lpush/rpush, lpop/rpop, linsert, lset, lrem,
ltrim, and del when a list is emptied; a move notifies the push on the
destination before the pop on the source.
"""

from __future__ import annotations

from pynode import notify
from pynode.blocking import parse_timeout
from pynode.commands import (SYNTAX, WRONGTYPE, CommandError, command, lookup_read, lookup_write,
                            parse_int)
from pynode.resp import EMPTY_ARRAY, NIL3, NILARR2, OK, ZERO, integer
from storage.lists import QuickList

LIST = notify.LIST
GENERIC = notify.GENERIC
NOT_POSITIVE = "ERR value is out of range, must be positive"
RANK_ZERO = ("ERR RANK can't be zero: use 1 to start from the first match, 2 from the "
             "second ... or use negative to start from the end of the list")
LONG_MIN = -9223372036854775808
LONG_MAX = 9223372036854775807


# ------------------------------------------------------------------ helpers

def _bulk(v: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(v), v)


def _array(items) -> bytes:
    """An array of bulk strings: elements of one length are joined with one
    separator (2.5x faster than formatting each), others go through one %
    over a repeated template (a third faster than formatting each element
    for long ranges)."""
    n = len(items)
    if n < 4:
        return b"*%d\r\n" % n + b"".join([b"$%d\r\n%s\r\n" % (len(v), v) for v in items])
    lens = list(map(len, items))
    k = lens[0]
    if lens.count(k) == n:
        return b"*%d\r\n$%d\r\n" % (n, k) + (b"\r\n$%d\r\n" % k).join(items) + b"\r\n"
    args = [None] * (2 * n)
    args[::2] = lens
    args[1::2] = items
    return b"*%d\r\n" % n + (b"$%d\r\n%s\r\n" * n) % tuple(args)


def _null_array(c) -> bytes:
    return NIL3 if c.resp == 3 else NILARR2


def _event(c, event: bytes, key: bytes) -> None:
    srv = c.srv
    if srv.notify_flags:
        notify.notify(srv, LIST, event, key, c.db.id)


def _positive(b: bytes, msg: str = NOT_POSITIVE) -> int:
    """getPositiveLongFromObjectOrReply: 0..LONG_MAX, one message for both
    a non-integer and a negative value."""
    v = parse_int(b, msg)
    if v < 0:
        raise CommandError(msg)
    return v


def _range(b: bytes, msg: str) -> int:
    """getRangeLongFromObjectOrReply(1, LONG_MAX, msg)."""
    v = parse_int(b, msg)
    if v < 1:
        raise CommandError(msg)
    return v


def _where(b: bytes) -> bool:
    """LEFT (True) or RIGHT (False), else a syntax error."""
    w = b.lower()
    if w == b"left":
        return True
    if w == b"right":
        return False
    raise CommandError(SYNTAX)


def removed(c, key: bytes, head: bool, q: QuickList, n: int) -> None:
    """listElementsRemoved: the pop event, the key deleted when emptied
    (del event), WATCH, dirty."""
    db = c.db
    srv = c.srv
    if srv.notify_flags:
        notify.notify(srv, LIST, b"lpop" if head else b"rpop", key, db.id)
    if not q.count:
        db.delete(key)
        if srv.notify_flags:
            notify.notify(srv, GENERIC, b"del", key, db.id)
    else:
        db.modified(key)
    srv.dirty += n


def _push_to(c, dst: bytes, q, v: bytes, head: bool) -> None:
    """lmoveHandlePush: create the destination if needed, push, notify."""
    db = c.db
    if q is None:
        q = QuickList()
        db.set(dst, q)
    else:
        db.modified(dst)
    if head:
        q.push_head(v)
    else:
        q.push_tail(v)
    _event(c, b"lpush" if head else b"rpush", dst)


# ------------------------------------------------------------------ push

def _push(c, argv, head: bool, xx: bool) -> bytes:
    key = argv[1]
    db = c.db
    q = db.get(key)
    if q is None:
        if xx:
            return ZERO
        q = QuickList()
        db.set(key, q)
    elif type(q) is not QuickList:
        raise CommandError(WRONGTYPE)
    else:
        db.modified(key)
    if len(argv) == 3:
        if head:
            q.push_head(argv[2])
        else:
            q.push_tail(argv[2])
    else:
        push = q.push_head if head else q.push_tail
        for v in argv[2:]:
            push(v)
    srv = c.srv
    srv.dirty += len(argv) - 2
    if srv.notify_flags:
        notify.notify(srv, LIST, b"lpush" if head else b"rpush", key, db.id)
    return integer(q.count)


@command("lpush")
def lpush(c, argv):
    return _push(c, argv, True, False)


@command("rpush")
def rpush(c, argv):
    return _push(c, argv, False, False)


@command("lpushx")
def lpushx(c, argv):
    return _push(c, argv, True, True)


@command("rpushx")
def rpushx(c, argv):
    return _push(c, argv, False, True)


# ------------------------------------------------------------------ pop

def _pop(c, argv, head: bool) -> bytes:
    n = len(argv)
    if n > 3:
        raise CommandError("ERR wrong number of arguments for '%s' command"
                           % ("lpop" if head else "rpop"))
    count = _positive(argv[2]) if n == 3 else 0
    key = argv[1]
    q = c.db.get(key)                  # lookup_write, inline
    if q is None:
        return _null_array(c) if n == 3 else c.nil
    if type(q) is not QuickList:
        raise CommandError(WRONGTYPE)
    if n == 2:
        v = q.pop_head() if head else q.pop_tail()
        removed(c, key, head, q, 1)
        return b"$%d\r\n%s\r\n" % (len(v), v)
    if not count:
        return EMPTY_ARRAY
    if count > q.count:
        count = q.count
    items = q.pop_head_n(count) if head else q.pop_tail_n(count)
    removed(c, key, head, q, count)
    return _array(items)


@command("lpop")
def lpop(c, argv):
    return _pop(c, argv, True)


@command("rpop")
def rpop(c, argv):
    return _pop(c, argv, False)


def _mpop_keys(c, argv, numkeys_idx: int):
    """lmpopGenericCommand's parsing: (keys, head, count)."""
    numkeys = _range(argv[numkeys_idx], "ERR numkeys should be greater than 0")
    where_idx = numkeys_idx + numkeys + 1
    if where_idx >= len(argv):
        raise CommandError(SYNTAX)
    head = _where(argv[where_idx])
    count = -1
    j = where_idx + 1
    n = len(argv)
    while j < n:
        if count == -1 and argv[j].lower() == b"count" and j + 1 < n:
            j += 1
            count = _range(argv[j], "ERR count should be greater than 0")
        else:
            raise CommandError(SYNTAX)
        j += 1
    return argv[numkeys_idx + 1:where_idx], head, (1 if count == -1 else count)


def _pop_range_reply(c, key: bytes, q: QuickList, head: bool, count: int):
    """listPopRangeAndReplyWithKey: [key, [elements]]; returns (reply, n)."""
    n = count if count < q.count else q.count
    items = q.pop_head_n(n) if head else q.pop_tail_n(n)
    reply = b"*2\r\n$%d\r\n%s\r\n" % (len(key), key) + _array(items)
    removed(c, key, head, q, n)
    return reply, n


@command("lmpop")
def lmpop(c, argv):
    keys, head, count = _mpop_keys(c, argv, 1)
    for key in keys:
        q = lookup_write(c, key, QuickList)
        if q is None or not q.count:
            continue
        reply, n = _pop_range_reply(c, key, q, head, count)
        c.rewrite = [[b"LPOP" if head else b"RPOP", key, b"%d" % n]]
        return reply
    return _null_array(c)


# ------------------------------------------------------------------ reads

@command("llen")
def llen(c, argv):
    q = lookup_read(c, argv[1], QuickList)
    return ZERO if q is None else integer(q.count)


@command("lindex")
def lindex(c, argv):
    q = lookup_read(c, argv[1], QuickList)
    if q is None:
        return c.nil
    v = q.get(parse_int(argv[2]))
    return c.nil if v is None else b"$%d\r\n%s\r\n" % (len(v), v)


@command("lrange")
def lrange(c, argv):
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    q = lookup_read(c, argv[1], QuickList)
    if q is None:
        return EMPTY_ARRAY
    n = q.count
    if start < 0:
        start += n
    if end < 0:
        end += n
    if start < 0:
        start = 0
    if start > end or start >= n:
        return EMPTY_ARRAY
    if end >= n:
        end = n - 1
    return _array(q.range(start, end))


@command("lpos")
def lpos(c, argv):
    ele = argv[2]
    rank = 1
    count = -1                   # -1: COUNT not given
    maxlen = 0
    j = 3
    n = len(argv)
    while j < n:
        opt = argv[j].lower()
        more = j + 1 < n
        if opt == b"rank" and more:
            j += 1
            rank = parse_int(argv[j])
            if rank == 0:
                raise CommandError(RANK_ZERO)
        elif opt == b"count" and more:
            j += 1
            count = _positive(argv[j], "ERR COUNT can't be negative")
        elif opt == b"maxlen" and more:
            j += 1
            maxlen = _positive(argv[j], "ERR MAXLEN can't be negative")
        else:
            raise CommandError(SYNTAX)
        j += 1
    q = lookup_read(c, argv[1], QuickList)
    if q is None:
        return EMPTY_ARRAY if count != -1 else c.nil
    if rank == LONG_MIN:
        # -rank overflows in Redis: every match qualifies and COUNT never
        # stops the scan
        rank = -1
        if count > 0:
            count = 0
    found = q.positions(ele, rank, 1 if count == -1 else count, maxlen)
    if count != -1:
        return b"*%d\r\n" % len(found) + b"".join(integer(i) for i in found)
    return integer(found[0]) if found else c.nil


# ------------------------------------------------------------------ writes

@command("lset")
def lset(c, argv):
    key = argv[1]
    q = lookup_write(c, key, QuickList)
    if q is None:
        raise CommandError("ERR no such key")
    if not q.replace(parse_int(argv[2]), argv[3]):
        raise CommandError("ERR index out of range")
    c.db.modified(key)
    _event(c, b"lset", key)
    c.srv.dirty += 1
    return OK


@command("ltrim")
def ltrim(c, argv):
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    key = argv[1]
    q = lookup_write(c, key, QuickList)
    if q is None:
        return OK
    n = q.count
    if start < 0:
        start += n
    if end < 0:
        end += n
    if start < 0:
        start = 0
    if start > end or start >= n:
        left, right = n, 0
    else:
        if end >= n:
            end = n - 1
        left, right = start, n - end - 1
    q.trim(left, right)
    _event(c, b"ltrim", key)
    db = c.db
    if not q.count:
        db.delete(key)
        if c.srv.notify_flags:
            notify.notify(c.srv, GENERIC, b"del", key, db.id)
    else:
        db.modified(key)
    c.srv.dirty += left + right
    return OK


@command("lrem")
def lrem(c, argv):
    count = parse_int(argv[2])
    key = argv[1]
    q = lookup_write(c, key, QuickList)
    if q is None:
        return ZERO
    n = q.remove(argv[3], count)
    db = c.db
    if n:
        db.modified(key)
        _event(c, b"lrem", key)
        c.srv.dirty += n
    if not q.count:
        db.delete(key)
        if c.srv.notify_flags:
            notify.notify(c.srv, GENERIC, b"del", key, db.id)
    return integer(n)


@command("linsert")
def linsert(c, argv):
    w = argv[2].lower()
    if w == b"after":
        after = True
    elif w == b"before":
        after = False
    else:
        raise CommandError(SYNTAX)
    key = argv[1]
    q = lookup_write(c, key, QuickList)
    if q is None:
        return ZERO
    if not q.insert(argv[3], argv[4], after):
        return integer(-1)
    c.db.modified(key)
    _event(c, b"linsert", key)
    c.srv.dirty += 1
    return integer(q.count)


def _move(c, src: bytes, dst: bytes, from_head: bool, to_head: bool):
    """lmoveGenericCommand: the moved element's reply, or None when src is
    missing."""
    q = lookup_write(c, src, QuickList)
    if q is None:
        return None
    d = lookup_write(c, dst, QuickList)
    v = q.pop_head() if from_head else q.pop_tail()
    _push_to(c, dst, d, v, to_head)
    db = c.db
    srv = c.srv
    if srv.notify_flags:
        notify.notify(srv, LIST, b"lpop" if from_head else b"rpop", src, db.id)
    if not q.count:
        db.delete(src)
        if srv.notify_flags:
            notify.notify(srv, GENERIC, b"del", src, db.id)
    else:
        db.modified(src)
    srv.dirty += 1
    return b"$%d\r\n%s\r\n" % (len(v), v)


@command("lmove")
def lmove(c, argv):
    from_head = _where(argv[3])
    to_head = _where(argv[4])
    r = _move(c, argv[1], argv[2], from_head, to_head)
    return c.nil if r is None else r


@command("rpoplpush")
def rpoplpush(c, argv):
    r = _move(c, argv[1], argv[2], False, True)
    return c.nil if r is None else r


# ------------------------------------------------------------------ blocking

def _pop_name(head: bool) -> bytes:
    return b"LPOP" if head else b"RPOP"


def _serve_pop(head: bool):
    """The serve function of a blocked BLPOP (head) or BRPOP."""
    def serve(c, key):
        db = c.db
        q = db.get(key)
        if type(q) is not QuickList:
            return None
        c.srv.propagate(db.id, [_pop_name(head), key])
        v = q.pop_head() if head else q.pop_tail()
        srv = c.srv
        if srv.notify_flags:
            notify.notify(srv, LIST, b"lpop" if head else b"rpop", key, db.id)
        if not q.count:
            db.delete(key)
            if srv.notify_flags:
                notify.notify(srv, GENERIC, b"del", key, db.id)
        return b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(v), v)
    return serve


def _serve_mpop(head: bool, count: int):
    """The serve function of a blocked BLMPOP."""
    def serve(c, key):
        db = c.db
        q = db.get(key)
        if type(q) is not QuickList:
            return None
        n = count if count < q.count else q.count
        c.srv.propagate(db.id, [_pop_name(head), key, b"%d" % n])
        return _pop_range_reply(c, key, q, head, count)[0]
    return serve


def _serve_move(dst: bytes, from_head: bool, to_head: bool, rpoplpush: bool):
    """The serve function of a blocked BLMOVE / BRPOPLPUSH: a destination
    of the wrong type unblocks the client with WRONGTYPE."""
    def serve(c, key):
        db = c.db
        q = db.get(key)
        if type(q) is not QuickList:
            return None
        d = db.get(dst)
        if d is not None and type(d) is not QuickList:
            return c.srv.error_reply(WRONGTYPE)
        v = q.pop_head() if from_head else q.pop_tail()
        _push_to(c, dst, d, v, to_head)
        if rpoplpush:
            c.srv.propagate(db.id, [b"RPOPLPUSH", key, dst])
        else:
            # Redis's shared "left"/"right" objects are lower case
            c.srv.propagate(db.id, [b"LMOVE", key, dst, b"left" if from_head else b"right",
                                    b"left" if to_head else b"right"])
        srv = c.srv
        if srv.notify_flags:
            notify.notify(srv, LIST, b"lpop" if from_head else b"rpop", key, db.id)
        if not q.count:
            db.delete(key)
            if srv.notify_flags:
                notify.notify(srv, GENERIC, b"del", key, db.id)
        return b"$%d\r\n%s\r\n" % (len(v), v)
    return serve


def _blocking_pop(c, keys, head: bool, timeout: int, count: int, name: str):
    """blockingPopGenericCommand: serve from the first non-empty list or
    block (count -1: BLPOP/BRPOP, else BLMPOP)."""
    for key in keys:
        q = lookup_write(c, key, QuickList)
        if q is None or not q.count:
            continue
        if count != -1:
            reply, n = _pop_range_reply(c, key, q, head, count)
            c.rewrite = [[_pop_name(head), key, b"%d" % n]]
            return reply
        v = q.pop_head() if head else q.pop_tail()
        removed(c, key, head, q, 1)
        c.rewrite = [[_pop_name(head), key]]
        return b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(v), v)
    nil = _null_array(c)
    srv = c.srv
    if not srv.blocking.may_block(c):
        return nil
    serve = _serve_pop(head) if count == -1 else _serve_mpop(head, count)
    return srv.blocking.block(c, keys, timeout, serve, nil, name)


@command("blpop")
def blpop(c, argv):
    timeout = parse_timeout(argv[-1])
    return _blocking_pop(c, argv[1:-1], True, timeout, -1, "blpop")


@command("brpop")
def brpop(c, argv):
    timeout = parse_timeout(argv[-1])
    return _blocking_pop(c, argv[1:-1], False, timeout, -1, "brpop")


@command("blmpop")
def blmpop(c, argv):
    keys, head, count = _mpop_keys(c, argv, 2)
    timeout = parse_timeout(argv[1])
    return _blocking_pop(c, keys, head, timeout, count, "blmpop")


def _blocking_move(c, argv, from_head: bool, to_head: bool, timeout: int, rpoplpush: bool):
    """blmoveGenericCommand."""
    src = argv[1]
    dst = argv[2]
    q = lookup_write(c, src, QuickList)
    if q is None:
        srv = c.srv
        if not srv.blocking.may_block(c):
            return c.nil
        return srv.blocking.block(c, [src], timeout,
                                  _serve_move(dst, from_head, to_head, rpoplpush),
                                  _null_array(c), "brpoplpush" if rpoplpush else "blmove")
    r = _move(c, src, dst, from_head, to_head)
    if rpoplpush:
        c.rewrite = [[b"RPOPLPUSH", src, dst]]
    else:
        c.rewrite = [[b"LMOVE", src, dst, argv[3], argv[4]]]
    return r


@command("blmove")
def blmove(c, argv):
    from_head = _where(argv[3])
    to_head = _where(argv[4])
    timeout = parse_timeout(argv[5])
    return _blocking_move(c, argv, from_head, to_head, timeout, False)


@command("brpoplpush")
def brpoplpush(c, argv):
    timeout = parse_timeout(argv[3])
    return _blocking_move(c, argv, False, True, timeout, True)

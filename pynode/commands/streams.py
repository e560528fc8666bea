"""Stream commands (Redis 7.0 t_stream.c): XADD XRANGE XREVRANGE XLEN XDEL XTRIM
XSETID XREAD XREADGROUP XGROUP XACK XPENDING XCLAIM XAUTOCLAIM XINFO.

Propagation follows Redis 7.0.15: XADD with * or ms-* goes out with the id
it got, an approximate (~) trim as "= <what was kept>"; XREADGROUP, XCLAIM
and XAUTOCLAIM are never propagated as such but as what they did: one
`XCLAIM key group consumer 0 id TIME t RETRYCOUNT n FORCE JUSTID LASTID l`
per entry delivered or claimed (or dropped from the PEL because the entry is
gone), `XGROUP SETID key group id ENTRIESREAD n` when the group's last id
moved, `XGROUP CREATECONSUMER` for a consumer created by a NOACK read. More
than one such command is wrapped in MULTI/EXEC, as propagatePendingCommands
does (inside EXEC the transaction wraps them all).

Blocking (XREAD/XREADGROUP BLOCK) goes through pynode/blocking.py: the
served reply is built when the key is signalled (XADD, XGROUP DESTROY, the
key created, replaced or deleted), with the ids fixed when the client blocked
("$" is the last id at that time; ">" follows the group).
"""

from __future__ import annotations

import time
from itertools import islice

from pynode import notify
from pynode.blocking import parse_timeout
from pynode.commands import (SYNTAX, WRONGTYPE, CommandError, command, lookup_read, lookup_write,
                            parse_int)
from pynode.resp import OK, NIL2, NIL3, NILARR2, EMPTY_ARRAY, ZERO, integer
from storage.streams import (INVALID, MASK, MAX_ID, Group, Nack, Stream, fmt_id)
from storage.values import LIMITS

INVALID_ID = "ERR Invalid stream ID specified as stream command argument"
XADD_SMALLER = "ERR The ID specified in XADD is equal or smaller than the target stream top item"
XADD_ZERO = "ERR The ID specified in XADD must be greater than 0-0"
XADD_EXHAUSTED = ("ERR The stream has exhausted the last possible ID, unable to add more "
                  "items")
XADD_TOO_LARGE = "ERR Elements are too large to be stored"
NO_KEY = "ERR no such key"
BAD_START = "ERR invalid start ID for the interval"
BAD_END = "ERR invalid end ID for the interval"
XGROUP_NEEDS_KEY = ("ERR The XGROUP subcommand requires the key to exist. Note that for "
                    "CREATE you may want to use the MKSTREAM option to create an empty "
                    "stream automatically.")
BUSYGROUP = "BUSYGROUP Consumer Group name already exists"
UNBLOCKED_DELETED = "UNBLOCKED the stream key no longer exists"
NOGROUP_BLOCKED = "NOGROUP the consumer group this client was blocked on no longer exists"

XREAD_BLOCKED_DEFAULT_COUNT = 1000
TRIM_MAXLEN = 1
TRIM_MINID = 2

_NULLS = (None, None, NIL2, NIL3)                 # addReplyNull by protocol
_NULLARR = (None, None, NILARR2, NIL3)            # addReplyNullArray by protocol


# ------------------------------------------------------------------ helpers
def _s(b: bytes) -> str:
    """Bytes for an error message (addReplyErrorFormat turns newlines into spaces)."""
    return b.decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")


def _now(c) -> int:
    """The cached clock (0 while a replica applies its primary's stream: then
    the real time, as Redis's mstime())."""
    n = c.srv.ks.now
    return n if n else int(time.time() * 1000)


def _must_obey(c) -> bool:
    """mustObeyClient: the primary's link or the AOF loader."""
    return c.srv.loading or "M" in c.flags_extra


def _str2ull(s: bytes) -> int | None:
    """string2ull: string2ll (non negative) or else strtoull base 10."""
    if s and (s[0] == 45 or 48 <= s[0] <= 57):
        digits = s[1:] if s[0] == 45 else s
        if digits.isdigit() and digits.isascii() and (digits[0] != 48 or s == b"0"):
            v = int(s)
            if -(1 << 63) <= v < (1 << 63):
                return v if v >= 0 else None
    # strtoull: leading spaces, optional sign, decimal digits up to the end
    t = s.lstrip(b" \t\n\v\f\r")
    neg = False
    if t[:1] in (b"+", b"-"):
        neg = t[:1] == b"-"
        t = t[1:]
    if not t or not t.isdigit() or not t.isascii():
        return None
    v = int(t)
    if v > MASK:
        return None
    return (-v) & MASK if neg else v


def parse_id(arg: bytes, missing_seq: int = 0, strict: bool = False,
             seq_star: bool = False):
    """streamGenericParseIDOrReply: the id as an int; with seq_star, a pair
    (id, seq_given) where "<ms>-*" gives seq_given False."""
    if len(arg) > 127:
        raise CommandError(INVALID_ID)
    nul = arg.find(b"\0")
    if nul >= 0:
        arg = arg[:nul]
    if arg == b"-" or arg == b"+":
        if strict:
            raise CommandError(INVALID_ID)
        v = 0 if arg == b"-" else MAX_ID
        return (v, True) if seq_star else v
    dash = arg.find(b"-")
    seq_given = True
    if dash >= 0:
        ms = _str2ull(arg[:dash])
        tail = arg[dash + 1:]
        if seq_star and tail == b"*":
            seq = 0
            seq_given = False
        else:
            seq = _str2ull(tail)
    else:
        ms = _str2ull(arg)
        seq = missing_seq
    if ms is None or seq is None:
        raise CommandError(INVALID_ID)
    v = (ms << 64) | seq
    return (v, seq_given) if seq_star else v


def _interval(arg: bytes, missing_seq: int, is_start: bool) -> int:
    """streamParseIntervalIDOrReply + the ( exclusion step."""
    if len(arg) > 1 and arg[0] == 40:      # "("
        v = parse_id(arg[1:], missing_seq, strict=True)
        if is_start:
            if v == MAX_ID:
                raise CommandError(BAD_START)
            return v + 1
        if v == 0:
            raise CommandError(BAD_END)
        return v - 1
    return parse_id(arg, missing_seq)


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


_ENTRY_FMT: dict = {}


def _entry_fmt(n: int) -> bytes:
    """The format of one [id, [field, value, ...]] reply with n strings."""
    f = _ENTRY_FMT[n] = b"*2\r\n$%%d\r\n%%s\r\n*%d\r\n" % n + b"$%d\r\n%s\r\n" * n
    return f


def _entries(out: list, entries) -> None:
    """Append [id, [field, value, ...]] for each (id, fv)."""
    fmts = _ENTRY_FMT
    for id_, fv in entries:
        s = b"%d-%d" % (id_ >> 64, id_ & MASK)
        n = len(fv)
        f = fmts.get(n) or _entry_fmt(n)
        if n == 2:
            a, b = fv
            out.append(f % (len(s), s, len(a), a, len(b), b))
        else:
            args = [len(s), s]
            for x in fv:
                args.append(len(x))
                args.append(x)
            out.append(f % tuple(args))


def _entries_reply(entries) -> bytes:
    out = [b"*%d\r\n" % len(entries)]
    _entries(out, entries)
    return b"".join(out)


def _map(c, n: int) -> bytes:
    return b"%%%d\r\n" % n if c.resp == 3 else b"*%d\r\n" % (2 * n)


def _field(name: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(name), name)


def _propagate(c, ops: list, dirty0: int | None) -> None:
    """Replicate what a group command did (ops: argv lists) instead of the
    command itself (preventCommandPropagation + alsoPropagate). As Redis's
    propagatePendingCommands, several commands go inside MULTI/EXEC unless
    already inside a transaction.  dirty0 None: c is a blocked client served
    after another command, its commands go out now; otherwise the command
    propagates them (c.rewrite) if it changed anything since dirty0."""
    srv = c.srv
    if dirty0 is None:
        if len(ops) > 1 and srv.also_propagate is None:
            ops = [[b"MULTI"]] + ops + [[b"EXEC"]]
        for a in ops:
            srv.propagate(c.db.id, a)
        return
    if srv.dirty == dirty0:
        return                           # nothing changed: nothing goes out
    if len(ops) > 1 and not c.in_multi:
        ops = [[b"MULTI"]] + ops + [[b"EXEC"]]
    c.rewrite = ops


def _xclaim_op(key, gname, nack, idarg: bytes, g: Group) -> list:
    """streamPropagateXCLAIM."""
    return [b"XCLAIM", key, gname, nack.consumer.name, b"0", idarg, b"TIME",
            b"%d" % nack.delivery_time, b"RETRYCOUNT", b"%d" % nack.delivery_count,
            b"FORCE", b"JUSTID", b"LASTID", fmt_id(g.last_id)]


def _setid_op(key, gname, g: Group) -> list:
    """streamPropagateGroupID."""
    return [b"XGROUP", b"SETID", key, gname, fmt_id(g.last_id), b"ENTRIESREAD",
            b"%d" % g.entries_read]


def _create_consumer(c, g: Group, name: bytes, key: bytes, now: int):
    """streamCreateConsumer with SCC_DEFAULT: dirty++ and the event."""
    consumer = g.create_consumer(name, now)
    if consumer is not None:
        c.srv.dirty += 1
        notify.notify(c.srv, notify.STREAM, b"xgroup-createconsumer", key, c.db.id)
    return consumer


def _lookup_consumer(g: Group, name: bytes, now: int):
    """streamLookupConsumer with SLC_DEFAULT: a found consumer is seen now."""
    consumer = g.consumers.get(name)
    if consumer is not None:
        consumer.seen_time = now
    return consumer


# ------------------------------------------------------------------ XADD / XTRIM
class _TrimArgs:
    __slots__ = ("strategy", "arg_idx", "approx", "limit", "maxlen", "minid",
                 "id", "id_given", "seq_given", "nomkstream", "idpos")


def _parse_add_trim(c, argv, xadd: bool) -> _TrimArgs:
    """streamParseAddOrTrimArgsOrReply."""
    a = _TrimArgs()
    a.strategy = 0
    a.arg_idx = 0
    a.approx = False
    a.limit = 0
    a.maxlen = 0
    a.minid = 0
    a.id = 0
    a.id_given = False
    a.seq_given = True
    a.nomkstream = False
    n = len(argv)
    i = 2
    limit_given = False
    while i < n:
        more = n - 1 - i
        opt = argv[i]
        if xadd and opt == b"*":
            break
        lo = opt.lower()
        if lo == b"maxlen" and more:
            if a.strategy:
                raise CommandError("ERR syntax error, MAXLEN and MINID options at the same "
                                   "time are not compatible")
            a.approx = False
            nxt = argv[i + 1]
            if more >= 2 and nxt == b"~":
                a.approx = True
                i += 1
            elif more >= 2 and nxt == b"=":
                i += 1
            a.maxlen = parse_int(argv[i + 1])
            if a.maxlen < 0:
                raise CommandError("ERR The MAXLEN argument must be >= 0.")
            i += 1
            a.strategy = TRIM_MAXLEN
            a.arg_idx = i
        elif lo == b"minid" and more:
            if a.strategy:
                raise CommandError("ERR syntax error, MAXLEN and MINID options at the same "
                                   "time are not compatible")
            a.approx = False
            nxt = argv[i + 1]
            if more >= 2 and nxt == b"~":
                a.approx = True
                i += 1
            elif more >= 2 and nxt == b"=":
                i += 1
            a.minid = parse_id(argv[i + 1], 0, strict=True)
            i += 1
            a.strategy = TRIM_MINID
            a.arg_idx = i
        elif lo == b"limit" and more:
            a.limit = parse_int(argv[i + 1])
            if a.limit < 0:
                raise CommandError("ERR The LIMIT argument must be >= 0.")
            limit_given = True
            i += 1
        elif xadd and lo == b"nomkstream":
            a.nomkstream = True
        elif xadd:
            a.id, a.seq_given = parse_id(opt, 0, strict=True, seq_star=True)
            a.id_given = True
            break
        else:
            raise CommandError(SYNTAX)
        i += 1
    a.idpos = i
    if a.limit and not a.strategy:
        raise CommandError("ERR syntax error, LIMIT cannot be used without specifying a "
                           "trimming strategy")
    if not xadd and not a.strategy:
        raise CommandError("ERR syntax error, XTRIM must be called with a trimming strategy")
    if _must_obey(c):
        a.limit = 0
    elif limit_given:
        if not a.approx:
            raise CommandError("ERR syntax error, LIMIT cannot be used without the special "
                               "~ option")
    elif a.approx:
        lim = 100 * LIMITS.stream_node_max_entries
        if lim <= 0:
            lim = 10000
        if lim > 1000000:
            lim = 1000000
        a.limit = lim
    else:
        a.limit = 0
    return a


def _trim(s: Stream, a: _TrimArgs) -> int:
    if a.strategy == TRIM_MAXLEN:
        return s.trim(a.maxlen, None, a.approx, a.limit)
    return s.trim(None, a.minid, a.approx, a.limit)


def _rewrite_trim(s: Stream, a: _TrimArgs, argv: list) -> None:
    """MAXLEN/MINID ~ x goes out as = <what the stream kept>."""
    argv[a.arg_idx - 1] = b"="
    if a.strategy == TRIM_MAXLEN:
        argv[a.arg_idx] = b"%d" % s.length
    else:
        argv[a.arg_idx] = fmt_id(s.first_edge(False))


@command("xadd")
def xadd(c, argv):
    n = len(argv)
    if argv[2] == b"*" and n & 1:
        return _xadd_auto(c, argv, n)
    a = _parse_add_trim(c, argv, True)
    fpos = a.idpos + 1
    nvals = len(argv) - fpos
    if nvals < 2 or nvals & 1:
        raise CommandError("ERR wrong number of arguments for 'xadd' command")
    if a.id_given and a.seq_given and a.id == 0:
        raise CommandError(XADD_ZERO)
    key = argv[1]
    db = c.db
    s = db.get(key)
    created = s is None
    if created:
        if a.nomkstream:
            return c.nil
        s = Stream()
        db.set(key, s)
    elif type(s) is not Stream:
        raise CommandError(WRONGTYPE)
    last = s.last_id
    if last == MAX_ID:
        raise CommandError(XADD_EXHAUSTED)
    if a.id_given:
        id_ = a.id
        if not a.seq_given and last >> 64 == id_ >> 64:
            if last & MASK == MASK:
                raise CommandError(XADD_TOO_LARGE)      # sic: Redis 7.0's errno
            id_ = last + 1
    else:
        id_ = s.next_id(_now(c))
    if id_ <= last:
        raise CommandError(XADD_SMALLER)
    fv = argv[fpos:]
    if nvals > 2 and sum(map(len, fv)) > (1 << 30) or nvals == 2 and \
            len(fv[0]) + len(fv[1]) > (1 << 30):
        raise CommandError(XADD_TOO_LARGE)
    s.add(id_, fv)
    idstr = b"%d-%d" % (id_ >> 64, id_ & MASK)
    srv = c.srv
    if srv.notify_flags:
        notify.notify(srv, notify.STREAM, b"xadd", key, db.id)
    srv.dirty += 1
    rewritten = None
    if a.strategy:
        if _trim(s, a) and srv.notify_flags:
            notify.notify(srv, notify.STREAM, b"xtrim", key, db.id)
        if a.approx:
            rewritten = argv[:]
            _rewrite_trim(s, a, rewritten)
    if not created:
        db.modified(key)
    if not a.id_given or not a.seq_given:
        if rewritten is None:
            rewritten = argv[:]
        rewritten[a.idpos] = idstr
    if rewritten is not None:
        c.rewrite = [rewritten]
    if not created:
        db.signal_ready(key)
    return b"$%d\r\n%s\r\n" % (len(idstr), idstr)


def _xadd_auto(c, argv, n: int):
    """XADD key * field value ...: the common case, without options."""
    key = argv[1]
    db = c.db
    s = db.get(key)
    created = s is None
    if created:
        s = Stream()
        db.set(key, s)
    elif type(s) is not Stream:
        raise CommandError(WRONGTYPE)
    if s.last_id == MAX_ID:
        raise CommandError(XADD_EXHAUSTED)
    srv = c.srv
    fv = argv[3:]
    if n > 5 and sum(map(len, fv)) > (1 << 30):
        raise CommandError(XADD_TOO_LARGE)
    # streamNextID: now-0, or the last id + 1 (its sequence wrapping into
    # the next ms) when the clock did not move on
    now = srv.ks.now or int(time.time() * 1000)
    last = s.last_id
    ms = last >> 64
    if now > ms:
        s.add_parts(now << 64, now, 0, fv)
        idstr = b"%d-0" % now
    else:
        seq = (last & MASK) + 1
        if seq > MASK:
            ms += 1
            seq = 0
        s.add_parts(last + 1, ms, seq, fv)
        idstr = b"%d-%d" % (ms, seq)
    if srv.notify_flags:
        notify.notify(srv, notify.STREAM, b"xadd", key, db.id)
    srv.dirty += 1
    if (srv.aof is not None or srv.repl_feed is not None or srv.also_propagate is not None
            or srv.slot_feed is not None):
        rewritten = argv[:]
        rewritten[2] = idstr
        c.rewrite = [rewritten]
    if not created:
        # db.modified(key) and db.signal_ready(key), tested here first
        if db.watched or db.tracked is not None:
            db.touch(key)
        if db.blocking_keys and key in db.blocking_keys:
            db.ks.on_key_ready(db, key)
    return b"$%d\r\n%s\r\n" % (len(idstr), idstr)


@command("xtrim")
def xtrim(c, argv):
    a = _parse_add_trim(c, argv, False)
    key = argv[1]
    s = lookup_write(c, key, Stream)
    if s is None:
        return ZERO
    deleted = _trim(s, a)
    if deleted:
        notify.notify(c.srv, notify.STREAM, b"xtrim", key, c.db.id)
        if a.approx:
            rewritten = argv[:]
            _rewrite_trim(s, a, rewritten)
            c.rewrite = [rewritten]
        c.db.modified(key)
        c.srv.dirty += deleted
    return integer(deleted)


# ------------------------------------------------------------------ reading
def _xrange(c, argv, rev: bool):
    startarg, endarg = (argv[3], argv[2]) if rev else (argv[2], argv[3])
    start = _interval(startarg, 0, True)
    end = _interval(endarg, MASK, False)
    count = -1
    n = len(argv)
    j = 4
    while j < n:
        if argv[j].lower() == b"count" and n - j - 1 >= 1:
            count = parse_int(argv[j + 1])
            if count < 0:
                count = 0
            j += 2
        else:
            raise CommandError(SYNTAX)
    s = lookup_read(c, argv[1], Stream)
    if s is None:
        return EMPTY_ARRAY
    if count == 0:
        return _NULLARR[c.resp]
    return _entries_reply(s.range(start, end, count if count > 0 else 0, rev))


@command("xrange")
def xrange_(c, argv):
    return _xrange(c, argv, False)


@command("xrevrange")
def xrevrange(c, argv):
    return _xrange(c, argv, True)


@command("xlen")
def xlen(c, argv):
    s = lookup_read(c, argv[1], Stream)
    return ZERO if s is None else integer(s.length)


@command("xdel")
def xdel(c, argv):
    key = argv[1]
    s = lookup_write(c, key, Stream)
    if s is None:
        return ZERO
    ids = [parse_id(a, 0, strict=True) for a in argv[2:]]
    deleted = s.xdel(ids)
    if deleted:
        c.db.modified(key)
        notify.notify(c.srv, notify.STREAM, b"xdel", key, c.db.id)
        c.srv.dirty += deleted
    return integer(deleted)


@command("xsetid")
def xsetid(c, argv):
    id_ = parse_id(argv[2], 0, strict=True)
    entries_added = -1
    max_xdel = 0
    n = len(argv)
    i = 3
    while i < n:
        more = n - 1 - i
        opt = argv[i].lower()
        if opt == b"entriesadded" and more:
            entries_added = parse_int(argv[i + 1])
            if entries_added < 0:
                raise CommandError("ERR entries_added must be positive")
            i += 2
        elif opt == b"maxdeletedid" and more:
            max_xdel = parse_id(argv[i + 1], 0, strict=True)
            if id_ < max_xdel:
                raise CommandError("ERR The ID specified in XSETID is smaller than the "
                                   "provided max_deleted_entry_id")
            i += 2
        else:
            raise CommandError(SYNTAX)
    key = argv[1]
    s = lookup_write(c, key, Stream)
    if s is None:
        raise CommandError(NO_KEY)
    if s.length > 0:
        if id_ < s.last_valid():
            raise CommandError("ERR The ID specified in XSETID is smaller than the target "
                               "stream top item")
        if entries_added != -1 and s.length > entries_added:
            raise CommandError("ERR The entries_added specified in XSETID is smaller than "
                               "the target stream length")
    s.last_id = id_
    if entries_added != -1:
        s.entries_added = entries_added
    if max_xdel:
        s.max_deleted = max_xdel
    c.srv.dirty += 1
    notify.notify(c.srv, notify.STREAM, b"xsetid", key, c.db.id)
    return OK


# ------------------------------------------------------------------ XREAD / XREADGROUP
def _deliver(c, s: Stream, key: bytes, g: Group, gname: bytes, consumer, start: int,
             count: int, noack: bool, now: int, out: list, ops: list) -> None:
    """streamReplyWithRange with a group: new entries for a consumer, its
    PEL, the group's last id and read counter, the commands to propagate."""
    entries = s.range(start, MAX_ID, count)
    out.append(b"*%d\r\n" % len(entries))
    _entries(out, entries)
    moved = False
    pel = g.pel
    cpel = consumer.pel
    for id_, _fv in entries:
        if id_ > g.last_id:
            s.advance_group(g, id_)
            moved = True
        if noack:
            continue
        nack = pel.get(id_)
        if nack is None:
            nack = Nack(now, consumer)
            pel[id_] = nack
            cpel[id_] = nack
        else:
            # the group's last id was set back: the entry changes hands
            del nack.consumer.pel[id_]
            nack.consumer = consumer
            nack.delivery_time = now
            nack.delivery_count = 1
            cpel[id_] = nack
        ops.append(_xclaim_op(key, gname, nack, fmt_id(id_), g))
    if moved and noack:
        # without NOACK the XCLAIMs' LASTID carry the group's new last id
        ops.append(_setid_op(key, gname, g))


def _history(s: Stream, consumer, start: int, count: int, now: int, out: list) -> None:
    """streamReplyWithRangeFromConsumerPEL: the consumer's pending entries
    from start (deleted ones as [id, nil])."""
    pel = consumer.pel
    n = 0
    parts = []
    for id_ in pel.irange(start):
        if count and n >= count:
            break
        fv = s.get(id_)
        idb = fmt_id(id_)
        if fv is None:
            parts.append(b"*2\r\n$%d\r\n%s\r\n*-1\r\n" % (len(idb), idb))
        else:
            _entries(parts, ((id_, fv),))
            nack = pel[id_]
            nack.delivery_time = now
            nack.delivery_count += 1
        n += 1
    out.append(b"*%d\r\n" % n)
    out.extend(parts)


def _xread(c, argv, group_cmd: bool):
    timeout = -1
    count = 0
    streams_arg = 0
    nstreams = 0
    noack = False
    gname = cname = None
    n = len(argv)
    i = 1
    while i < n:
        more = n - i - 1
        o = argv[i].lower()
        if o == b"block" and more:
            i += 1
            timeout = parse_timeout(argv[i], unit_seconds=False)
        elif o == b"count" and more:
            i += 1
            count = parse_int(argv[i])
            if count < 0:
                count = 0
        elif o == b"streams" and more:
            streams_arg = i + 1
            nstreams = n - streams_arg
            if nstreams % 2:
                raise CommandError("ERR Unbalanced XREAD list of streams: for each stream "
                                   "key an ID or '$' must be specified.")
            nstreams //= 2
            break
        elif o == b"group" and more >= 2:
            if not group_cmd:
                raise CommandError("ERR The GROUP option is only supported by XREADGROUP. "
                                   "You called XREAD instead.")
            gname = argv[i + 1]
            cname = argv[i + 2]
            i += 2
        elif o == b"noack":
            if not group_cmd:
                raise CommandError("ERR The NOACK option is only supported by XREADGROUP. "
                                   "You called XREAD instead.")
            noack = True
        else:
            raise CommandError(SYNTAX)
        i += 1
    if not streams_arg:
        raise CommandError(SYNTAX)
    if group_cmd and gname is None:
        raise CommandError("ERR Missing GROUP option for XREADGROUP")
    keys = argv[streams_arg:streams_arg + nstreams]
    ids: list = []
    groups: list = []
    for k, key in enumerate(keys):
        arg = argv[streams_arg + nstreams + k]
        s = lookup_read(c, key, Stream)
        if gname is not None:
            g = s.groups.get(gname) if s is not None and s.groups else None
            if g is None:
                raise CommandError("NOGROUP No such key '%s' or consumer group '%s' in "
                                   "XREADGROUP with GROUP option" % (_s(key), _s(gname)))
            groups.append(g)
        if arg == b"$":
            if group_cmd:
                raise CommandError(
                    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to "
                    "read the history of this consumer by specifying a proper ID, or use "
                    "the > ID to get new messages. The $ ID would just return an empty "
                    "result set.")
            ids.append(s.last_id if s is not None else 0)
            continue
        if arg == b">":
            if not group_cmd:
                raise CommandError("ERR The > ID can be specified only when calling "
                                   "XREADGROUP using the GROUP <group> <consumer> option.")
            ids.append(MAX_ID)
            continue
        ids.append(parse_id(arg, 0, strict=True))
    # serve at once what can be served
    out: list = []
    served = 0
    ops: list = []
    now = _now(c)
    srv = c.srv
    dirty0 = srv.dirty
    for k, key in enumerate(keys):
        s = lookup_read(c, key, Stream)
        if s is None:
            continue
        gt = ids[k]
        history = False
        if groups:
            if gt != MAX_ID:
                history = True
            elif s.length:
                last = groups[k].last_id
                if s.last_valid() > last:
                    gt = last
                else:
                    continue
            else:
                continue
        elif not s.length or s.last_valid() <= gt:
            continue
        served += 1
        if c.resp == 2:
            out.append(b"*2\r\n")
        out.append(_bulk(key))
        start = gt + 1 if gt != MAX_ID else 0
        if groups:
            g = groups[k]
            consumer = _lookup_consumer(g, cname, now)
            if consumer is None:
                consumer = _create_consumer(c, g, cname, key, now)
                if noack:
                    ops.append([b"XGROUP", b"CREATECONSUMER", key, gname, cname])
            if history:
                _history(s, consumer, start, count, now, out)
            else:
                _deliver(c, s, key, g, gname, consumer, start, count, noack, now, out, ops)
            srv.dirty += 1
        else:
            entries = s.range(start, MAX_ID, count)
            out.append(b"*%d\r\n" % len(entries))
            _entries(out, entries)
    if groups:
        _propagate(c, ops, dirty0)
    if served:
        head = (b"*%d\r\n" if c.resp == 2 else b"%%%d\r\n") % served
        return head + b"".join(out)
    if timeout != -1 and srv.blocking.may_block(c):
        # "$" is fixed now: later data beyond the last id at this time
        wanted = {}
        for k, key in enumerate(keys):
            wanted.setdefault(key, ids[k])
        bcount = count if count else XREAD_BLOCKED_DEFAULT_COUNT
        if group_cmd:
            serve = _group_server(gname, cname, noack, bcount)
        else:
            serve = _reader(wanted, bcount)
        return srv.blocking.block(c, list(keys), timeout, serve, _NULLARR[c.resp],
                                  "xreadgroup" if group_cmd else "xread", group_cmd)
    return _NULLARR[c.resp]


def _served(c, key: bytes, body: list) -> bytes:
    head = b"*1\r\n*2\r\n" if c.resp == 2 else b"%1\r\n"
    return head + _bulk(key) + b"".join(body)


def _reader(wanted: dict, count: int):
    """serve() of a blocked XREAD: entries after the id it blocked with."""

    def serve(c, key):
        s = c.db.get(key)
        if type(s) is not Stream:
            return None
        gt = wanted[key]
        if s.last_id <= gt:
            return None
        out: list = []
        entries = s.range(gt + 1, MAX_ID, count)
        out.append(b"*%d\r\n" % len(entries))
        _entries(out, entries)
        return _served(c, key, out)

    return serve


def _group_server(gname: bytes, cname: bytes, noack: bool, count: int):
    """serve() of a blocked XREADGROUP: new entries for the group, or the
    error when the key or the group went away."""

    def serve(c, key):
        s = c.db.get(key)
        if type(s) is not Stream:
            raise CommandError(UNBLOCKED_DELETED)
        g = s.groups.get(gname) if s.groups else None
        if g is None:
            raise CommandError(NOGROUP_BLOCKED)
        gt = g.last_id
        if s.last_id <= gt:
            return None
        now = _now(c)
        ops: list = []
        consumer = _lookup_consumer(g, cname, now)
        if consumer is None:
            consumer = _create_consumer(c, g, cname, key, now)
            if noack:
                ops.append([b"XGROUP", b"CREATECONSUMER", key, gname, cname])
        out: list = []
        _deliver(c, s, key, g, gname, consumer, gt + 1, count, noack, now, out, ops)
        c.srv.dirty += len(ops)
        _propagate(c, ops, None)
        return _served(c, key, out)

    return serve


def _xread_keys(argv) -> list:
    """The keys of XREAD/XREADGROUP (the streams after STREAMS)."""
    n = len(argv)
    for i in range(1, n):
        if argv[i].lower() == b"streams":
            rest = n - i - 1
            return argv[i + 1:i + 1 + rest // 2]
    return []


@command("xread", keys=_xread_keys)
def xread(c, argv):
    return _xread(c, argv, False)


@command("xreadgroup", keys=_xread_keys)
def xreadgroup(c, argv):
    return _xread(c, argv, True)


# ------------------------------------------------------------------ XGROUP
XGROUP_HELP = [
    b"XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    b"CREATE <key> <groupname> <id|$> [option]",
    b"    Create a new consumer group. Options are:",
    b"    * MKSTREAM",
    b"      Create the empty stream if it does not exist.",
    b"    * ENTRIESREAD entries_read",
    b"      Set the group's entries_read counter (internal use).",
    b"CREATECONSUMER <key> <groupname> <consumer>",
    b"    Create a new consumer in the specified group.",
    b"DELCONSUMER <key> <groupname> <consumer>",
    b"    Remove the specified consumer.",
    b"DESTROY <key> <groupname>",
    b"    Remove the specified group.",
    b"SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    b"    Set the current group ID and entries_read counter.",
    b"HELP",
    b"    Prints this help.",
]

XINFO_HELP = [
    b"XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    b"CONSUMERS <key> <groupname>",
    b"    Show consumers of <groupname>.",
    b"GROUPS <key>",
    b"    Show the stream consumer groups.",
    b"STREAM <key> [FULL [COUNT <count>]",
    b"    Show information about the stream.",
    b"HELP",
    b"    Prints this help.",
]


def _help(lines: list) -> bytes:
    return b"*%d\r\n" % len(lines) + b"".join(b"+" + s + b"\r\n" for s in lines)


def _subcommand_error(argv) -> CommandError:
    return CommandError("ERR unknown subcommand or wrong number of arguments for '%s'. "
                        "Try %s HELP." % (_s(argv[1][:128]), _s(argv[0]).upper()))


@command("xgroup|create", "xgroup|setid", "xgroup|destroy", "xgroup|createconsumer",
         "xgroup|delconsumer", "xgroup|help")
def xgroup(c, argv):
    opt = argv[1].lower()
    n = len(argv)
    s = g = None
    mkstream = False
    entries_read = INVALID
    db = c.db
    key = gname = None
    if n >= 4:
        create = opt == b"create"
        setid = opt == b"setid"
        i = 5
        while i < n:
            a = argv[i].lower()
            if create and a == b"mkstream":
                mkstream = True
                i += 1
            elif (create or setid) and a == b"entriesread" and i + 1 < n:
                entries_read = parse_int(argv[i + 1])
                if entries_read < 0 and entries_read != INVALID:
                    raise CommandError("ERR value for ENTRIESREAD must be positive or -1")
                i += 2
            else:
                raise _subcommand_error(argv)
        key = argv[2]
        s = lookup_write(c, key, Stream)
        gname = argv[3]
    if n >= 4 and not mkstream:
        if s is None:
            raise CommandError(XGROUP_NEEDS_KEY)
        g = s.groups.get(gname) if s.groups else None
        if g is None and opt in (b"setid", b"createconsumer", b"delconsumer"):
            raise CommandError("NOGROUP No such consumer group '%s' for key name '%s'"
                               % (_s(gname), _s(key)))
    srv = c.srv
    if n == 2 and opt == b"help":
        return _help(XGROUP_HELP)
    if opt == b"create" and 5 <= n <= 8:
        if argv[4] == b"$":
            id_ = s.last_id if s is not None else 0
        else:
            id_ = parse_id(argv[4], 0, strict=True)
        if s is None:
            s = Stream()
            db.set(key, s)
        if s.groups is None:
            s.groups = {}
        if gname in s.groups:
            raise CommandError(BUSYGROUP)
        s.groups[gname] = Group(id_, entries_read)
        srv.dirty += 1
        notify.notify(srv, notify.STREAM, b"xgroup-create", key, db.id)
        return OK
    if opt == b"setid" and (n == 5 or n == 7):
        if argv[4] == b"$":
            id_ = s.last_id
        else:
            id_ = parse_id(argv[4], 0)
        g.last_id = id_
        g.entries_read = entries_read
        srv.dirty += 1
        notify.notify(srv, notify.STREAM, b"xgroup-setid", key, db.id)
        return OK
    if opt == b"destroy" and n == 4:
        if g is None:
            return ZERO
        del s.groups[gname]
        srv.dirty += 1
        notify.notify(srv, notify.STREAM, b"xgroup-destroy", key, db.id)
        db.signal_ready(key)          # XREADGROUP clients blocked on it get -NOGROUP
        return integer(1)
    if opt == b"createconsumer" and n == 5:
        created = _create_consumer(c, g, argv[4], key, _now(c))
        return integer(1 if created is not None else 0)
    if opt == b"delconsumer" and n == 5:
        consumer = g.consumers.get(argv[4])
        pending = 0
        if consumer is not None:
            pending = g.delete_consumer(consumer)
            srv.dirty += 1
            notify.notify(srv, notify.STREAM, b"xgroup-delconsumer", key, db.id)
        return integer(pending)
    raise _subcommand_error(argv)


# ------------------------------------------------------------------ XACK / XPENDING
def _group_of(c, key: bytes, gname: bytes):
    """lookupKeyRead + the group (NOGROUP error when either is missing)."""
    s = lookup_read(c, key, Stream)
    g = s.groups.get(gname) if s is not None and s.groups else None
    if g is None:
        raise CommandError("NOGROUP No such key '%s' or consumer group '%s'"
                           % (_s(key), _s(gname)))
    return s, g


@command("xack")
def xack(c, argv):
    s = lookup_read(c, argv[1], Stream)
    g = s.groups.get(argv[2]) if s is not None and s.groups else None
    if g is None:
        return ZERO
    ids = [parse_id(a, 0, strict=True) for a in argv[3:]]
    acked = 0
    pel = g.pel
    for id_ in ids:
        nack = pel.pop(id_, None)
        if nack is not None:
            del nack.consumer.pel[id_]
            acked += 1
    c.srv.dirty += acked
    return integer(acked)


@command("xpending")
def xpending(c, argv):
    n = len(argv)
    if n != 3 and (n < 6 or n > 9):
        raise CommandError(SYNTAX)
    minidle = 0
    cname = None
    if n >= 6:
        si = 3
        if argv[3].lower() == b"idle":
            minidle = parse_int(argv[4])
            if n < 8:
                raise CommandError(SYNTAX)
            si += 2
        count = parse_int(argv[si + 2])
        if count < 0:
            count = 0
        start = _interval(argv[si], 0, True)
        end = _interval(argv[si + 1], MASK, False)
        if si + 3 < n:
            cname = argv[si + 3]
    s, g = _group_of(c, argv[1], argv[2])
    if n == 3:
        pel = g.pel
        if not pel:
            nul = _NULLS[c.resp]
            return b"*4\r\n:0\r\n" + nul + nul + _NULLARR[c.resp]
        first = fmt_id(pel.peekitem(0)[0])
        last = fmt_id(pel.peekitem(-1)[0])
        out = [b"*4\r\n:%d\r\n" % len(pel), _bulk(first), _bulk(last)]
        rows = []
        for name in sorted(g.consumers):
            cp = g.consumers[name].pel
            if cp:
                cnt = b"%d" % len(cp)
                rows.append(b"*2\r\n" + _bulk(name) + _bulk(cnt))
        out.append(b"*%d\r\n" % len(rows))
        out.extend(rows)
        return b"".join(out)
    if cname is not None:
        consumer = g.consumers.get(cname)
        if consumer is None:
            return EMPTY_ARRAY
        pel = consumer.pel
    else:
        pel = g.pel
    now = _now(c)
    rows = []
    if count and start <= end:
        for id_ in pel.irange(start, end):
            nack = pel[id_]
            if minidle and now - nack.delivery_time < minidle:
                continue
            elapsed = now - nack.delivery_time
            if elapsed < 0:
                elapsed = 0
            rows.append(b"*4\r\n" + _bulk(fmt_id(id_)) + _bulk(nack.consumer.name)
                        + b":%d\r\n:%d\r\n" % (elapsed, nack.delivery_count))
            if len(rows) == count:
                break
    return b"*%d\r\n" % len(rows) + b"".join(rows)


# ------------------------------------------------------------------ XCLAIM / XAUTOCLAIM
@command("xclaim")
def xclaim(c, argv):
    key, gname = argv[1], argv[2]
    s, g = _group_of(c, key, gname)
    minidle = parse_int(argv[4], "ERR Invalid min-idle-time argument for XCLAIM")
    if minidle < 0:
        minidle = 0
    n = len(argv)
    ids = []
    j = 5
    while j < n:
        try:
            ids.append(parse_id(argv[j], 0, strict=True))
        except CommandError:
            break
        j += 1
    last_id_arg = j - 1
    now = _now(c)
    retrycount = -1
    deliverytime = -1
    force = justid = False
    last_id = 0
    while j < n:
        more = n - 1 - j
        opt = argv[j].lower()
        if opt == b"force":
            force = True
        elif opt == b"justid":
            justid = True
        elif opt == b"idle" and more:
            j += 1
            deliverytime = now - parse_int(argv[j], "ERR Invalid IDLE option argument for "
                                                    "XCLAIM")
        elif opt == b"time" and more:
            j += 1
            deliverytime = parse_int(argv[j], "ERR Invalid TIME option argument for XCLAIM")
        elif opt == b"retrycount" and more:
            j += 1
            retrycount = parse_int(argv[j], "ERR Invalid RETRYCOUNT option argument for "
                                            "XCLAIM")
        elif opt == b"lastid" and more:
            j += 1
            last_id = parse_id(argv[j], 0, strict=True)
        else:
            raise CommandError("ERR Unrecognized XCLAIM option '%s'" % _s(argv[j]))
        j += 1
    propagate_last = False
    if last_id > g.last_id:
        g.last_id = last_id
        propagate_last = True
    if deliverytime != -1:
        if deliverytime < 0 or deliverytime > now:
            deliverytime = now
    else:
        deliverytime = now
    srv = c.srv
    dirty0 = srv.dirty
    consumer = None                      # looked up (or created) at the first claim
    pel = g.pel
    out = []
    ops = []
    nclaimed = 0
    for k in range(5, last_id_arg + 1):
        id_ = ids[k - 5]
        nack = pel.get(id_)
        fv = s.get(id_)
        if fv is None:
            if nack is not None:
                # the entry is gone: drop it from the PEL, and say so downstream
                ops.append(_xclaim_op(key, gname, nack, argv[k], g))
                propagate_last = False
                srv.dirty += 1
                del pel[id_]
                del nack.consumer.pel[id_]
            continue
        if force and nack is None:
            nack = Nack(now, None)
            pel[id_] = nack
        if nack is None:
            continue
        if nack.consumer is not None and minidle and now - nack.delivery_time < minidle:
            continue
        if consumer is None:
            consumer = _lookup_consumer(g, argv[3], now)
            if consumer is None:
                consumer = _create_consumer(c, g, argv[3], key, now)
        if nack.consumer is not consumer and nack.consumer is not None:
            del nack.consumer.pel[id_]
        nack.delivery_time = deliverytime
        if retrycount >= 0:
            nack.delivery_count = retrycount
        elif not justid:
            nack.delivery_count += 1
        if nack.consumer is not consumer:
            consumer.pel[id_] = nack
            nack.consumer = consumer
        if justid:
            out.append(_bulk(fmt_id(id_)))
        else:
            _entries(out, ((id_, fv),))
        nclaimed += 1
        ops.append(_xclaim_op(key, gname, nack, argv[k], g))
        propagate_last = False
        srv.dirty += 1
    if propagate_last:
        ops.append(_setid_op(key, gname, g))
        srv.dirty += 1
    _propagate(c, ops, dirty0)
    return b"*%d\r\n" % nclaimed + b"".join(out)


@command("xautoclaim")
def xautoclaim(c, argv):
    key, gname = argv[1], argv[2]
    minidle = parse_int(argv[4], "ERR Invalid min-idle-time argument for XAUTOCLAIM")
    if minidle < 0:
        minidle = 0
    start = _interval(argv[5], 0, True)
    count = 100
    justid = False
    n = len(argv)
    j = 6
    while j < n:
        more = n - 1 - j
        opt = argv[j].lower()
        if opt == b"count" and more:
            count = parse_int(argv[j + 1], "ERR COUNT must be > 0")
            if count < 1 or count > ((1 << 63) - 1) // 16:
                raise CommandError("ERR COUNT must be > 0")
            j += 1
        elif opt == b"justid":
            justid = True
        else:
            raise CommandError(SYNTAX)
        j += 1
    s, g = _group_of(c, key, gname)
    now = _now(c)
    srv = c.srv
    dirty0 = srv.dirty
    consumer = None                      # looked up (or created) at the first claim
    attempts = count * 10
    pel = g.pel
    claimed = []
    deleted = []
    ops = []
    # the PEL changes while we go: walk a snapshot of the ids we may visit
    ids = list(islice(pel.irange(start), attempts + 1))
    k = 0
    while attempts > 0 and count > 0 and k < len(ids):
        attempts -= 1
        id_ = ids[k]
        k += 1
        nack = pel[id_]
        fv = s.get(id_)
        if fv is None:
            ops.append(_xclaim_op(key, gname, nack, fmt_id(id_), g))
            srv.dirty += 1
            del pel[id_]
            del nack.consumer.pel[id_]
            deleted.append(id_)
            count -= 1
            continue
        if minidle and now - nack.delivery_time < minidle:
            continue
        if consumer is None:
            consumer = _lookup_consumer(g, argv[3], now)
            if consumer is None:
                consumer = _create_consumer(c, g, argv[3], key, now)
        if nack.consumer is not consumer:
            del nack.consumer.pel[id_]
        nack.delivery_time = now
        if not justid:
            nack.delivery_count += 1
        if nack.consumer is not consumer:
            consumer.pel[id_] = nack
            nack.consumer = consumer
        claimed.append((id_, fv))
        count -= 1
        ops.append(_xclaim_op(key, gname, nack, fmt_id(id_), g))
        srv.dirty += 1
    nxt = ids[k] if k < len(ids) else None
    _propagate(c, ops, dirty0)
    cursor = fmt_id(nxt) if nxt is not None else b"0-0"
    out = [b"*3\r\n", _bulk(cursor), b"*%d\r\n" % len(claimed)]
    if justid:
        out.extend(_bulk(fmt_id(i)) for i, _ in claimed)
    else:
        _entries(out, claimed)
    out.append(b"*%d\r\n" % len(deleted))
    out.extend(_bulk(fmt_id(i)) for i in deleted)
    return b"".join(out)


# ------------------------------------------------------------------ XINFO
@command("xinfo|help")
def xinfo_help(c, argv):
    return _help(XINFO_HELP)


def _info_key(c, argv) -> Stream:
    s = lookup_read(c, argv[2], Stream)
    if s is None:
        raise CommandError(NO_KEY)
    return s


def _int(v: int) -> bytes:
    return b":%d\r\n" % v


@command("xinfo|stream")
def xinfo_stream(c, argv):
    s = _info_key(c, argv)
    optc = len(argv) - 3
    full = optc > 0
    count = 10
    if full:
        if optc != 1 and optc != 3:
            raise _subcommand_error(argv)
        if argv[3].lower() != b"full":
            raise _subcommand_error(argv)
        if optc == 3:
            if argv[4].lower() != b"count":
                raise _subcommand_error(argv)
            count = parse_int(argv[5])
            if count < 0:
                count = 10
    out = [_map(c, 9 if full else 10),
           _field(b"length"), _int(s.length),
           _field(b"radix-tree-keys"), _int(len(s.nodes)),
           _field(b"radix-tree-nodes"), _int(s.rax_nodes()),
           _field(b"last-generated-id"), _bulk(fmt_id(s.last_id)),
           _field(b"max-deleted-entry-id"), _bulk(fmt_id(s.max_deleted)),
           _field(b"entries-added"), _int(s.entries_added),
           _field(b"recorded-first-entry-id"), _bulk(fmt_id(s.first_id))]
    nul = _NULLS[c.resp]
    if not full:
        out += [_field(b"groups"), _int(len(s.groups) if s.groups else 0)]
        out.append(_field(b"first-entry"))
        e = s.range(0, MAX_ID, 1)
        if e:
            _entries(out, e)
        else:
            out.append(nul)
        out.append(_field(b"last-entry"))
        e = s.range(0, MAX_ID, 1, rev=True)
        if e:
            _entries(out, e)
        else:
            out.append(nul)
        return b"".join(out)
    out.append(_field(b"entries"))
    e = s.range(0, MAX_ID, count)
    out.append(b"*%d\r\n" % len(e))
    _entries(out, e)
    out.append(_field(b"groups"))
    groups = s.groups or {}
    out.append(b"*%d\r\n" % len(groups))
    for name in sorted(groups):
        g = groups[name]
        out += [_map(c, 7), _field(b"name"), _bulk(name),
                _field(b"last-delivered-id"), _bulk(fmt_id(g.last_id)),
                _field(b"entries-read"),
                _int(g.entries_read) if g.entries_read != INVALID else nul]
        lag = s.lag(g)
        out += [_field(b"lag"), _int(lag) if lag is not None else nul,
                _field(b"pel-count"), _int(len(g.pel)), _field(b"pending")]
        rows = []
        for id_, nack in g.pel.items():
            if count and len(rows) >= count:
                break
            rows.append(b"*4\r\n" + _bulk(fmt_id(id_)) + _bulk(nack.consumer.name)
                        + b":%d\r\n:%d\r\n" % (nack.delivery_time, nack.delivery_count))
        out.append(b"*%d\r\n" % len(rows))
        out += rows
        out += [_field(b"consumers"), b"*%d\r\n" % len(g.consumers)]
        for cname in sorted(g.consumers):
            cons = g.consumers[cname]
            out += [_map(c, 4), _field(b"name"), _bulk(cname),
                    _field(b"seen-time"), _int(cons.seen_time),
                    _field(b"pel-count"), _int(len(cons.pel)), _field(b"pending")]
            rows = []
            for id_, nack in cons.pel.items():
                if count and len(rows) >= count:
                    break
                rows.append(b"*3\r\n" + _bulk(fmt_id(id_))
                            + b":%d\r\n:%d\r\n" % (nack.delivery_time, nack.delivery_count))
            out.append(b"*%d\r\n" % len(rows))
            out += rows
    return b"".join(out)


@command("xinfo|groups")
def xinfo_groups(c, argv):
    s = _info_key(c, argv)
    groups = s.groups or {}
    out = [b"*%d\r\n" % len(groups)]
    nul = _NULLS[c.resp]
    for name in sorted(groups):
        g = groups[name]
        lag = s.lag(g)
        out += [_map(c, 6), _field(b"name"), _bulk(name),
                _field(b"consumers"), _int(len(g.consumers)),
                _field(b"pending"), _int(len(g.pel)),
                _field(b"last-delivered-id"), _bulk(fmt_id(g.last_id)),
                _field(b"entries-read"),
                _int(g.entries_read) if g.entries_read != INVALID else nul,
                _field(b"lag"), _int(lag) if lag is not None else nul]
    return b"".join(out)


@command("xinfo|consumers")
def xinfo_consumers(c, argv):
    s = _info_key(c, argv)
    g = s.groups.get(argv[3]) if s.groups else None
    if g is None:
        raise CommandError("NOGROUP No such consumer group '%s' for key name '%s'"
                           % (_s(argv[3]), _s(argv[2])))
    now = _now(c)
    out = [b"*%d\r\n" % len(g.consumers)]
    for cname in sorted(g.consumers):
        cons = g.consumers[cname]
        idle = now - cons.seen_time
        if idle < 0:
            idle = 0
        out += [_map(c, 3), _field(b"name"), _bulk(cname),
                _field(b"pending"), _int(len(cons.pel)),
                _field(b"idle"), _int(idle)]
    return b"".join(out)

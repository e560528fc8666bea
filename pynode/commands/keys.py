"""Generic key commands: DEL, EXISTS, TYPE, RENAME, COPY, MOVE, SCAN, OBJECT,
the EXPIRE family, TTL, PERSIST, DBSIZE, FLUSHALL/FLUSHDB, SWAPDB.

Semantics, reply shapes and error texts follow Redis 7.0's db.c, expire.c and
object.c, keyspace events included (del, rename_from/rename_to, copy_to,
move_from/move_to, expire, persist; keymiss on read misses).  TYPE, EXISTS,
the TTL family and OBJECT look keys up without counting as an access
(LOOKUP_NOTOUCH), so they leave OBJECT IDLETIME/FREQ alone.
"""

from __future__ import annotations

from pynode import notify
from pynode.commands import NOT_INT, SYNTAX, CommandError, command, lookup_read, parse_int
from pynode.resp import OK
from storage import values
from storage.keyspace import type_name

ZERO = b":0\r\n"
ONE = b":1\r\n"

LLONG_MAX = 9223372036854775807
ULONG_MAX = 18446744073709551615
INT_MIN = -2147483648
INT_MAX = 2147483647

NO_SUCH_KEY = "ERR no such key"
SAME_OBJECT = "ERR source and destination objects are the same"
DB_RANGE = "ERR DB index is out of range"
INT_RANGE = "ERR value is out of range, value must between %d and %d" % (INT_MIN, INT_MAX)
LFU_NOT_SELECTED = ("ERR An LFU maxmemory policy is not selected, access frequency not "
                    "tracked. Please note that when switching between policies at runtime "
                    "LRU and LFU data will take some time to adjust.")
LFU_SELECTED = ("ERR An LFU maxmemory policy is selected, idle time not tracked. Please "
                "note that when switching between policies at runtime LRU and LFU data "
                "will take some time to adjust.")

OBJECT_HELP = [
    b"OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    b"ENCODING <key>",
    b"    Return the kind of internal representation used in order to store the value",
    b"    associated with a <key>.",
    b"FREQ <key>",
    b"    Return the access frequency index of the <key>. The returned integer is",
    b"    proportional to the logarithm of the recent access frequency of the key.",
    b"IDLETIME <key>",
    b"    Return the idle time of the <key>, that is the approximated number of",
    b"    seconds elapsed since the last access to the key.",
    b"REFCOUNT <key>",
    b"    Return the number of references of the value associated with the specified",
    b"    <key>.",
    b"HELP",
    b"    Prints this help.",
]


def _int(n: int) -> bytes:
    return b":%d\r\n" % n


def _keys_array(keys) -> bytes:
    out = [b"*%d\r\n" % len(keys)]
    for k in keys:
        out.append(b"$%d\r\n%s\r\n" % (len(k), k))
    return b"".join(out)


def _int32(b: bytes, msg: str | None = None) -> int:
    """getIntFromObjectOrReply: an int64 first, then the C int range."""
    v = parse_int(b, msg or NOT_INT)
    if v < INT_MIN or v > INT_MAX:
        raise CommandError(msg or INT_RANGE)
    return v


def _cluster(srv) -> bool:
    return srv.cfg.bool("cluster-enabled")


def _db_or_error(srv, idx: int):
    if idx < 0 or idx >= len(srv.ks.dbs):
        raise CommandError(DB_RANGE)
    return srv.ks.db(idx)


def _event(c, cls: int, event: bytes, key: bytes, db=None) -> None:
    notify.notify(c.srv, cls, event, key, (db or c.db).id)


def _expire_if_needed(db, key: bytes) -> None:
    """Delete key now if it has expired (so the DEL is counted and propagated)."""
    if db.expires and key in db.expires:
        db.get(key)


# ------------------------------------------------------------------ DEL / EXISTS
@command("del")
def del_(c, argv):
    return _delete(c, argv, c.srv.lazyfree.user_del)


@command("unlink")
def unlink(c, argv):
    """DEL whose big values are freed in pieces after the reply."""
    return _delete(c, argv, True)


def _delete(c, argv, lazy: bool):
    db = c.db
    n = 0
    events = c.srv.notify_flags
    for key in argv[1:]:
        _expire_if_needed(db, key)
        if db.delete(key, lazy):
            n += 1
            if events:
                _event(c, notify.GENERIC, b"del", key)
    if n:
        c.srv.dirty += n
    return _int(n)


@command("exists")
def exists(c, argv):
    n = 0
    for key in argv[1:]:
        if lookup_read(c, key, touch=False) is not None:
            n += 1
    return _int(n)


@command("touch")
def touch(c, argv):
    n = 0
    for key in argv[1:]:
        if lookup_read(c, key) is not None:
            n += 1
    return _int(n)


@command("type")
def type_(c, argv):
    v = lookup_read(c, argv[1], touch=False)
    if v is None:
        return b"+none\r\n"
    return b"+%s\r\n" % type_name(v).encode()


# ------------------------------------------------------------------ RENAME / COPY / MOVE
def _rename(c, argv, nx: bool):
    db = c.db
    src, dst = argv[1], argv[2]
    v = db.get(src)
    if v is None:
        raise CommandError(NO_SUCH_KEY)
    if src == dst:
        return ZERO if nx else OK
    expire = db.get_expire(src)
    if db.get(dst) is not None:
        if nx:
            return ZERO
        db.delete(dst)
    raw = src in db.raw
    clock = db.get_clock(src)
    db.delete(src)
    db.put(dst, v, expire, raw, clock)
    c.srv.dirty += 1
    if c.srv.notify_flags:
        _event(c, notify.GENERIC, b"rename_from", src)
        _event(c, notify.GENERIC, b"rename_to", dst)
    return ONE if nx else OK


@command("rename")
def rename(c, argv):
    return _rename(c, argv, False)


@command("renamenx")
def renamenx(c, argv):
    return _rename(c, argv, True)


@command("copy")
def copy(c, argv):
    srv = c.srv
    src_db = c.db
    dst_db = src_db
    replace = False
    dbid = src_db.id
    j = 3
    n = len(argv)
    while j < n:
        opt = argv[j].lower()
        if opt == b"replace":
            replace = True
        elif opt == b"db" and j + 1 < n:
            dbid = _int32(argv[j + 1])
            dst_db = _db_or_error(srv, dbid)
            j += 1
        else:
            raise CommandError(SYNTAX)
        j += 1
    if _cluster(srv) and (src_db.id != 0 or dbid != 0):
        raise CommandError("ERR Copying to another database is not allowed in cluster mode")
    key, newkey = argv[1], argv[2]
    if src_db is dst_db and key == newkey:
        raise CommandError(SAME_OBJECT)
    v = lookup_read(c, key)
    if v is None:
        return ZERO
    expire = src_db.get_expire(key)
    if dst_db.get(newkey) is not None:
        if not replace:
            return ZERO
        dst_db.delete(newkey)
    dst_db.put(newkey, values.dup(v), expire, key in src_db.raw)
    srv.dirty += 1
    if srv.notify_flags:
        _event(c, notify.GENERIC, b"copy_to", newkey, dst_db)
    return ONE


@command("move")
def move(c, argv):
    srv = c.srv
    if _cluster(srv):
        raise CommandError("ERR MOVE is not allowed in cluster mode")
    src = c.db
    dst = _db_or_error(srv, _int32(argv[2]))
    if src is dst:
        raise CommandError(SAME_OBJECT)
    key = argv[1]
    v = src.get(key)
    if v is None:
        return ZERO
    expire = src.get_expire(key)
    if dst.get(key) is not None:
        return ZERO
    dst.put(key, v, expire, key in src.raw, src.get_clock(key))
    src.delete(key)
    srv.dirty += 1
    if srv.notify_flags:
        _event(c, notify.GENERIC, b"move_from", key, src)
        _event(c, notify.GENERIC, b"move_to", key, dst)
    return ONE


# ------------------------------------------------------------------ KEYS / SCAN / RANDOMKEY
@command("keys")
def keys(c, argv):
    return _keys_array(list(c.db.iter_keys(argv[1])))


def _parse_cursor(b: bytes) -> int:
    """strtoul() as Redis's parseScanCursorOrReply uses it."""
    if not b:
        return 0
    s = b
    neg = False
    if s[:1] in (b"+", b"-"):
        neg = s[:1] == b"-"
        s = s[1:]
    if not s or not s.isdigit() or not s.isascii():
        raise CommandError("ERR invalid cursor")
    v = int(s)
    if v > ULONG_MAX:
        raise CommandError("ERR invalid cursor")
    if neg:
        v = (-v) & ULONG_MAX
    return v


@command("scan")
def scan(c, argv):
    cursor = _parse_cursor(argv[1])
    count = 10
    pattern = None
    typ = None
    i = 2
    n = len(argv)
    while i < n:
        opt = argv[i].lower()
        if n - i < 2:
            raise CommandError(SYNTAX)
        if opt == b"count":
            count = parse_int(argv[i + 1])
            if count < 1:
                raise CommandError(SYNTAX)
        elif opt == b"match":
            p = argv[i + 1]
            pattern = None if p == b"*" else p
        elif opt == b"type":
            typ = argv[i + 1].lower().decode("latin-1")
        else:
            raise CommandError(SYNTAX)
        i += 2
    db = c.db
    nxt, found = db.scan(cursor, count, pattern, typ)
    cur = b"%d" % nxt
    return b"*2\r\n$%d\r\n%s\r\n%s" % (len(cur), cur, _keys_array(found))


@command("randomkey")
def randomkey(c, argv):
    db = c.db
    for _ in range(100):
        k = db.random_key()
        if k is None:
            return c.nil
        if db.get(k) is not None:
            return b"$%d\r\n%s\r\n" % (len(k), k)
    return b"$%d\r\n%s\r\n" % (len(k), k)


@command("dbsize")
def dbsize(c, argv):
    return _int(c.db.size())


# ------------------------------------------------------------------ OBJECT
def _lfu(srv) -> bool:
    return "lfu" in srv.cfg.get("maxmemory-policy")


def _object_lookup(c, argv):
    """objectCommandLookup: LOOKUP_NOTOUCH | LOOKUP_NONOTIFY."""
    return lookup_read(c, argv[2], touch=False, miss_event=False)


@command("object|encoding")
def object_encoding(c, argv):
    v = _object_lookup(c, argv)
    if v is None:
        return c.nil
    if type(v) is bytes and argv[2] in c.db.raw:
        enc = b"raw"
    else:
        enc = values.encoding(v).encode()
    return b"$%d\r\n%s\r\n" % (len(enc), enc)


@command("object|refcount")
def object_refcount(c, argv):
    v = _object_lookup(c, argv)
    if v is None:
        return c.nil
    srv = c.srv
    policy = srv.cfg.get("maxmemory-policy")
    shared = srv.cfg.memory("maxmemory") == 0 or not ("lru" in policy or "lfu" in policy)
    return _int(values.refcount(v, shared))


@command("object|idletime")
def object_idletime(c, argv):
    v = _object_lookup(c, argv)
    if v is None:
        return c.nil
    srv = c.srv
    if _lfu(srv):
        raise CommandError(LFU_SELECTED)
    db = c.db
    ks = srv.ks
    return _int(ks.idle_ms(db.clock.get(argv[2], ks.default_clock())) // 1000)


@command("object|freq")
def object_freq(c, argv):
    v = _object_lookup(c, argv)
    if v is None:
        return c.nil
    srv = c.srv
    if not _lfu(srv):
        raise CommandError(LFU_NOT_SELECTED)
    ks = srv.ks
    return _int(ks.lfu_decr(c.db.clock.get(argv[2], ks.default_clock())))


@command("object|help")
def object_help(c, argv):
    out = [b"*%d\r\n" % len(OBJECT_HELP)]
    for line in OBJECT_HELP:
        out.append(b"+%s\r\n" % line)
    return b"".join(out)


# ------------------------------------------------------------------ EXPIRE family
NX, XX, GT, LT = 1, 2, 4, 8
_FLAG = {b"nx": NX, b"xx": XX, b"gt": GT, b"lt": LT}


def _expire_generic(c, argv, name: str, seconds: bool, relative: bool):
    flags = 0
    for opt in argv[3:]:
        f = _FLAG.get(opt.lower())
        if f is None:
            raise CommandError("ERR Unsupported option %s" % opt.decode("utf-8", "replace"))
        flags |= f
    if flags & NX and flags & (XX | GT | LT):
        raise CommandError("ERR NX and XX, GT or LT options at the same time are not "
                           "compatible")
    if flags & GT and flags & LT:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    when = parse_int(argv[2])
    srv = c.srv
    db = c.db
    now = srv.ks.now
    if seconds:
        if when > LLONG_MAX // 1000 or when < -(LLONG_MAX // 1000):
            raise CommandError("ERR invalid expire time in '%s' command" % name)
        when *= 1000
    basetime = now if relative else 0
    if when > LLONG_MAX - basetime:
        raise CommandError("ERR invalid expire time in '%s' command" % name)
    when += basetime
    key = argv[1]
    if db.get(key) is None:
        return ZERO
    if flags:
        cur = db.get_expire(key)
        if flags & NX and cur != -1:
            return ZERO
        if flags & XX and cur == -1:
            return ZERO
        if flags & GT and (cur == -1 or when <= cur):
            return ZERO
        if flags & LT and cur != -1 and when >= cur:
            return ZERO
    if when <= now and not srv.loading and srv.replication.masterhost is None:
        db.delete(key)
        srv.dirty += 1
        lazy = srv.cfg.bool("lazyfree-lazy-expire")
        c.rewrite = [[b"UNLINK" if lazy else b"DEL", key]]
        if srv.notify_flags:
            _event(c, notify.GENERIC, b"del", key)
        return ONE
    db.set_expire(key, when)
    srv.dirty += 1
    c.rewrite = [[b"PEXPIREAT", key, b"%d" % when]]
    if srv.notify_flags:
        _event(c, notify.GENERIC, b"expire", key)
    return ONE


@command("expire")
def expire(c, argv):
    return _expire_generic(c, argv, "expire", True, True)


@command("pexpire")
def pexpire(c, argv):
    return _expire_generic(c, argv, "pexpire", False, True)


@command("expireat")
def expireat(c, argv):
    return _expire_generic(c, argv, "expireat", True, False)


@command("pexpireat")
def pexpireat(c, argv):
    return _expire_generic(c, argv, "pexpireat", False, False)


def _ttl(c, key: bytes, ms: bool, absolute: bool) -> bytes:
    db = c.db
    if lookup_read(c, key, touch=False) is None:
        return b":-2\r\n"
    when = db.get_expire(key)
    if when == -1:
        return b":-1\r\n"
    t = when if absolute else when - c.srv.ks.now
    if t < 0:
        t = 0
    return _int(t if ms else (t + 500) // 1000)


@command("ttl")
def ttl(c, argv):
    return _ttl(c, argv[1], False, False)


@command("pttl")
def pttl(c, argv):
    return _ttl(c, argv[1], True, False)


@command("expiretime")
def expiretime(c, argv):
    return _ttl(c, argv[1], False, True)


@command("pexpiretime")
def pexpiretime(c, argv):
    return _ttl(c, argv[1], True, True)


@command("persist")
def persist(c, argv):
    db = c.db
    key = argv[1]
    if db.get(key) is None:
        return ZERO
    if db.persist(key):
        c.srv.dirty += 1
        if c.srv.notify_flags:
            _event(c, notify.GENERIC, b"persist", key)
        return ONE
    return ZERO


# ------------------------------------------------------------------ FLUSH / SWAPDB
def _flush_lazy(c, argv) -> bool:
    """FLUSHALL/FLUSHDB [ASYNC|SYNC]; no flag: lazyfree-lazy-user-flush."""
    if len(argv) == 2:
        flag = argv[1].lower()
        if flag not in (b"sync", b"async"):
            raise CommandError(SYNTAX)
        return flag == b"async"
    if len(argv) != 1:
        raise CommandError(SYNTAX)
    return c.srv.lazyfree.user_flush


def _forced(c, argv, n: int) -> None:
    """Redis force-propagates FLUSHALL/FLUSHDB even when nothing was removed."""
    srv = c.srv
    if n:
        srv.dirty += n
    else:
        srv.propagate(c.db.id, argv)


@command("flushall")
def flushall(c, argv):
    lazy = _flush_lazy(c, argv)
    _forced(c, argv, c.srv.ks.flushall(lazy))
    c.srv.snapshots.after_flushall()
    return OK


@command("flushdb")
def flushdb(c, argv):
    lazy = _flush_lazy(c, argv)
    _forced(c, argv, c.db.flush(lazy))
    return OK


@command("swapdb")
def swapdb(c, argv):
    srv = c.srv
    if _cluster(srv):
        raise CommandError("ERR SWAPDB is not allowed in cluster mode")
    a = _int32(argv[1], "ERR invalid first DB index")
    b = _int32(argv[2], "ERR invalid second DB index")
    ndb = len(srv.ks.dbs)
    if a < 0 or a >= ndb or b < 0 or b >= ndb:
        raise CommandError(DB_RANGE)
    srv.ks.db(a).swap(srv.ks.db(b))
    srv.dirty += 1
    return OK

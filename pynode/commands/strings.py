"""String commands: GET/SET and friends, counters, ranges, LCS (Redis 7.0 t_string.c).

Keyspace events as t_string.c: set (plus expire for a TTL), setrange, append,
incrby, incrbyfloat, del/expire/persist from GETDEL/GETEX, keymiss on read
misses.  Writes with an expiry are propagated with absolute times, as Redis 7.0.15
does (SET k v EX|PX|EXAT|PXAT t -> SET k v PXAT <ms>; GETEX with a time ->
PEXPIREAT, or DEL when already past; SET .. GET without a time drops GET; GETSET -> SET;
GETDEL -> DEL; INCRBYFLOAT -> SET k v KEEPTTL).  INCRBYFLOAT emulates the x87
80-bit `long double` arithmetic and `%.17Lf` formatting Redis uses, with exact
rational arithmetic.
"""

from __future__ import annotations

import re
from fractions import Fraction

from pynode import notify
from pynode.commands import (NOT_INT, SYNTAX, WRONGTYPE, CommandError, command, lookup_read,
                            lookup_write, parse_int)
from pynode.resp import OK, ZERO, ONE, integer

LLONG_MAX = 9223372036854775807
LLONG_MIN = -9223372036854775808

EMPTY_BULK = b"$0\r\n\r\n"

# option flags of SET / GETEX (parseExtendedStringArgumentsOrReply)
F_NX, F_XX, F_GET, F_KEEPTTL, F_PERSIST = 1, 2, 4, 8, 16
F_EX, F_PX, F_EXAT, F_PXAT = 32, 64, 128, 256
_F_EXPIRE = F_EX | F_PX | F_EXAT | F_PXAT


# ------------------------------------------------------------------ helpers

def _event(c, event: bytes, key: bytes, cls: int = notify.STRING) -> None:
    """notifyKeyspaceEvent for the client's database (callers test
    srv.notify_flags first, so this costs nothing when events are off)."""
    notify.notify(c.srv, cls, event, key, c.db.id)


def _check_len(c, total: int) -> None:
    if total > c.srv.proto_max_bulk_len:
        raise CommandError("ERR string exceeds maximum allowed size (proto-max-bulk-len)")


def _parse_ext(argv, is_set: bool):
    """Parse SET (is_set) or GETEX options; returns (flags, expire_arg)."""
    flags = 0
    expire = None
    j = 3 if is_set else 2
    n = len(argv)
    while j < n:
        opt = argv[j].upper()
        nxt = j + 1 < n
        if opt == b"NX" and is_set and not flags & F_XX:
            flags |= F_NX
        elif opt == b"XX" and is_set and not flags & F_NX:
            flags |= F_XX
        elif opt == b"GET" and is_set:
            flags |= F_GET
        elif opt == b"KEEPTTL" and is_set and not flags & (F_PERSIST | _F_EXPIRE):
            flags |= F_KEEPTTL
        elif opt == b"PERSIST" and not is_set and not flags & (_F_EXPIRE | F_KEEPTTL):
            flags |= F_PERSIST
        elif opt == b"EX" and nxt and not flags & (F_KEEPTTL | F_PERSIST | F_EXAT | F_PX | F_PXAT):
            flags |= F_EX
            j += 1
            expire = argv[j]
        elif opt == b"PX" and nxt and not flags & (F_KEEPTTL | F_PERSIST | F_EX | F_EXAT | F_PXAT):
            flags |= F_PX
            j += 1
            expire = argv[j]
        elif opt == b"EXAT" and nxt and not flags & (F_KEEPTTL | F_PERSIST | F_EX | F_PX | F_PXAT):
            flags |= F_EXAT
            j += 1
            expire = argv[j]
        elif opt == b"PXAT" and nxt and not flags & (F_KEEPTTL | F_PERSIST | F_EX | F_EXAT | F_PX):
            flags |= F_PXAT
            j += 1
            expire = argv[j]
        else:
            raise CommandError(SYNTAX)
        j += 1
    return flags, expire


def _expire_ms(c, arg: bytes, flags: int, name: str) -> int:
    """getExpireMillisecondsOrReply: the absolute expiry time in ms."""
    ms = parse_int(arg)
    seconds = flags & (F_EX | F_EXAT)
    if ms <= 0 or (seconds and ms > LLONG_MAX // 1000):
        raise CommandError("ERR invalid expire time in '%s' command" % name)
    if seconds:
        ms *= 1000
    if flags & (F_EX | F_PX):
        ms += c.srv.ks.now
        if ms > LLONG_MAX:
            raise CommandError("ERR invalid expire time in '%s' command" % name)
    return ms


# ------------------------------------------------------------------ GET / SET

@command("get")
def get(c, argv):
    # lookup_read(c, argv[1], bytes) written out: GET is the hot path
    v = c.db.get(argv[1])
    if v is None:
        srv = c.srv
        srv.stats.keyspace_misses += 1
        if srv.notify_flags:
            _event(c, b"keymiss", argv[1], notify.KEY_MISS)
        return c.nil
    c.srv.stats.keyspace_hits += 1
    if type(v) is not bytes:
        raise CommandError(WRONGTYPE)
    return b"$%d\r\n%s\r\n" % (len(v), v)


@command("set")
def set_(c, argv):
    if len(argv) == 3:
        c.db.set(argv[1], argv[2])
        srv = c.srv
        srv.dirty += 1
        if srv.notify_flags:
            _event(c, b"set", argv[1])
        return OK
    flags, expire = _parse_ext(argv, True)
    key = argv[1]
    val = argv[2]
    when = 0
    if expire is not None:
        when = _expire_ms(c, expire, flags, "set")
    db = c.db
    reply = None
    if flags & F_GET:
        old = lookup_read(c, key, bytes)
        reply = c.nil if old is None else b"$%d\r\n%s\r\n" % (len(old), old)
    found = db.get(key) is not None     # the write lookup (a second access with GET)
    if (flags & F_NX and found) or (flags & F_XX and not found):
        return reply if reply is not None else c.nil
    db.set(key, val, keepttl=bool(flags & F_KEEPTTL))
    srv = c.srv
    srv.dirty += 1
    if srv.notify_flags:
        _event(c, b"set", key)
    if expire is not None:
        db.set_expire(key, when)
        if srv.notify_flags:
            _event(c, b"expire", key, notify.GENERIC)
        c.rewrite = [[b"SET", key, val, b"PXAT", b"%d" % when]]
    elif flags & F_GET:
        # Redis propagates SET ... GET without the GET option(s)
        c.rewrite = [argv[:3] + [a for a in argv[3:] if a.upper() != b"GET"]]
    return reply if reply is not None else OK


@command("setnx")
def setnx(c, argv):
    key = argv[1]
    db = c.db
    if db.get(key) is not None:
        return ZERO
    db.set(key, argv[2])
    c.srv.dirty += 1
    if c.srv.notify_flags:
        _event(c, b"set", key)
    return ONE


def _setex(c, argv, flags, name):
    key = argv[1]
    val = argv[3]
    when = _expire_ms(c, argv[2], flags, name)
    c.db.set(key, val)
    c.db.set_expire(key, when)
    c.srv.dirty += 1
    if c.srv.notify_flags:
        _event(c, b"set", key)
        _event(c, b"expire", key, notify.GENERIC)
    c.rewrite = [[b"SET", key, val, b"PXAT", b"%d" % when]]
    return OK


@command("setex")
def setex(c, argv):
    return _setex(c, argv, F_EX, "setex")


@command("psetex")
def psetex(c, argv):
    return _setex(c, argv, F_PX, "psetex")


@command("getset")
def getset(c, argv):
    key = argv[1]
    old = lookup_read(c, key, bytes)
    c.srv.ks.last_lookup = None         # GET then SET: Redis accesses the key twice
    c.db.set(key, argv[2])
    c.srv.dirty += 1
    if c.srv.notify_flags:
        _event(c, b"set", key)
    c.rewrite = [[b"SET", key, argv[2]]]
    if old is None:
        return c.nil
    return b"$%d\r\n%s\r\n" % (len(old), old)


@command("getdel")
def getdel(c, argv):
    key = argv[1]
    old = lookup_read(c, key, bytes)
    if old is None:
        return c.nil
    if c.db.delete(key):
        c.srv.dirty += 1
        if c.srv.notify_flags:
            _event(c, b"del", key, notify.GENERIC)
        lazy = c.srv.cfg.bool("lazyfree-lazy-user-del")
        c.rewrite = [[b"UNLINK" if lazy else b"DEL", key]]
    return b"$%d\r\n%s\r\n" % (len(old), old)


@command("getex")
def getex(c, argv):
    flags, expire = _parse_ext(argv, False)
    key = argv[1]
    v = lookup_read(c, key, bytes)
    if v is None:
        return c.nil
    when = 0
    if expire is not None:
        when = _expire_ms(c, expire, flags, "getex")
    reply = b"$%d\r\n%s\r\n" % (len(v), v)
    db = c.db
    srv = c.srv
    if flags & (F_PXAT | F_EXAT) and when <= srv.ks.now and srv.ks.expire_on_read:
        db.delete(key)
        lazy = srv.cfg.bool("lazyfree-lazy-expire")
        c.rewrite = [[b"UNLINK" if lazy else b"DEL", key]]
        srv.dirty += 1
        if srv.notify_flags:
            _event(c, b"del", key, notify.GENERIC)
    elif expire is not None:
        db.set_expire(key, when)
        c.rewrite = [[b"PEXPIREAT", key, b"%d" % when]]
        srv.dirty += 1
        if srv.notify_flags:
            _event(c, b"expire", key, notify.GENERIC)
    elif flags & F_PERSIST:
        if db.persist(key):
            c.rewrite = [[b"PERSIST", key]]
            srv.dirty += 1
            if srv.notify_flags:
                _event(c, b"persist", key, notify.GENERIC)
    return reply


@command("mget")
def mget(c, argv):
    get = c.db.get
    srv = c.srv
    nil = c.nil
    out = [b"*%d\r\n" % (len(argv) - 1)]
    append = out.append
    hits = 0
    events = srv.notify_flags
    for k in argv[1:]:
        v = get(k)
        if v is None:
            append(nil)
            if events:
                _event(c, b"keymiss", k, notify.KEY_MISS)
        else:
            hits += 1
            if type(v) is bytes:
                append(b"$%d\r\n%s\r\n" % (len(v), v))
            else:
                append(nil)
    srv.stats.keyspace_hits += hits
    srv.stats.keyspace_misses += len(argv) - 1 - hits
    return b"".join(out)


@command("mset")
def mset(c, argv):
    n = len(argv)
    if not n & 1:
        raise CommandError("ERR wrong number of arguments for 'mset' command")
    if c.srv.notify_flags:
        db = c.db
        for i in range(1, n, 2):
            db.set(argv[i], argv[i + 1])
            _event(c, b"set", argv[i])
    else:
        c.db.set_pairs(argv)
    c.srv.dirty += (n - 1) >> 1
    return OK


@command("msetnx")
def msetnx(c, argv):
    n = len(argv)
    if not n & 1:
        raise CommandError("ERR wrong number of arguments for 'msetnx' command")
    db = c.db
    for i in range(1, n, 2):
        if db.get(argv[i]) is not None:
            return ZERO
    events = c.srv.notify_flags
    for i in range(1, n, 2):
        db.set(argv[i], argv[i + 1])
        if events:
            _event(c, b"set", argv[i])
    c.srv.dirty += (n - 1) >> 1
    return ONE


@command("append")
def append(c, argv):
    key = argv[1]
    v = lookup_write(c, key, bytes)
    add = argv[2]
    if v is None:
        c.db.set(key, add)
        nv = add
    else:
        _check_len(c, len(v) + len(add))
        nv = v + add
        c.db.set(key, nv, keepttl=True)
        c.db.mark_raw(key)
    c.srv.dirty += 1
    if c.srv.notify_flags:
        _event(c, b"append", key)
    return integer(len(nv))


@command("strlen")
def strlen(c, argv):
    v = lookup_read(c, argv[1], bytes)
    if v is None:
        return ZERO
    return integer(len(v))


# ------------------------------------------------------------------ counters

def _incr(c, key, incr):
    db = c.db
    v = db.get(key)
    if v is None:
        n = incr
        db.set(key, b"%d" % n)
        c.srv.dirty += 1
        if c.srv.notify_flags:
            _event(c, b"incrby", key)
        return integer(n)
    if type(v) is not bytes:
        raise CommandError(WRONGTYPE)
    try:
        if len(v) > 20:
            raise ValueError
        old = int(v)
        if b"%d" % old != v or old > LLONG_MAX or old < LLONG_MIN:
            raise ValueError
    except ValueError:
        raise CommandError(NOT_INT) from None
    n = old + incr
    if n > LLONG_MAX or n < LLONG_MIN:
        raise CommandError("ERR increment or decrement would overflow")
    db.set(key, b"%d" % n, keepttl=True)
    c.srv.dirty += 1
    if c.srv.notify_flags:
        _event(c, b"incrby", key)
    return integer(n)


# The last value INCR's fast path stored and its integer: a counter
# incremented again (the same bytes object found) skips the checks and the
# parse.  Only values of fewer than 19 digits are kept (no overflow test).
_LAST_INCR: list = [object(), 0]


@command("incr")
def incr(c, argv):
    # the common case inlined: an existing canonical integer, no overflow
    db = c.db
    key = argv[1]
    d = db.slot_dict(key)
    v = d.get(key)
    last = _LAST_INCR
    if v is last[0] and not (db.expires and key in db.expires):
        n = last[1] + 1
    elif type(v) is bytes and 0 < len(v) < 19 and v.isdigit() and (v[0] != 48 or len(v) == 1) \
            and not (db.expires and key in db.expires):
        n = int(v) + 1
    else:
        return _incr(c, key, 1)
    nb = b"%d" % n
    if len(nb) < 19:
        last[0] = nb
        last[1] = n
    d[key] = nb
    if db.watched or db.tracked is not None:
        db.touch(key)
    srv = c.srv
    srv.dirty += 1
    if srv.notify_flags:
        _event(c, b"incrby", key)
    return b":" + nb + b"\r\n"


@command("decr")
def decr(c, argv):
    return _incr(c, argv[1], -1)


@command("incrby")
def incrby(c, argv):
    return _incr(c, argv[1], parse_int(argv[2]))


@command("decrby")
def decrby(c, argv):
    n = parse_int(argv[2])
    if n == LLONG_MIN:
        raise CommandError("ERR decrement would overflow")
    return _incr(c, argv[1], -n)


# --- x87 long double emulation for INCRBYFLOAT --------------------------------

_INF = float("inf")
_LD_MAX_EXP = 16384          # values >= 2**16384 overflow
_LD_MIN_Q = -16445           # quantum of the smallest subnormal
_DEC_RE = re.compile(rb"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\Z")
_HEX_RE = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?\Z")
_INF_RE = re.compile(rb"([+-]?)(?:inf|infinity)\Z", re.I)


_CHUNK = 10 ** 4000


def _dec_str(n: int) -> bytes:
    """b"%d" % n for a non-negative int of any size (no 4300-digit limit)."""
    if n < _CHUNK:
        return b"%d" % n
    hi, lo = divmod(n, _CHUNK)
    return _dec_str(hi) + b"%04000d" % lo


def _dec_int(d: bytes) -> int:
    """int(d) for a digit string of any length."""
    if len(d) <= 4000:
        return int(d)
    return _dec_int(d[:-4000]) * _CHUNK + int(d[-4000:])


def _ld_round(x: Fraction):
    """Round an exact rational to the nearest x87 extended value (inf on overflow)."""
    if not x:
        return x
    neg = x < 0
    a = -x if neg else x
    p, q = a.numerator, a.denominator
    e = p.bit_length() - q.bit_length()
    if (p >= (q << e)) if e >= 0 else ((p << -e) >= q):
        fl = e
    else:
        fl = e - 1
    s = max(fl - 63, _LD_MIN_Q)
    if s >= 0:
        num, den = p, q << s
    else:
        num, den = p << -s, q
    m, rem = divmod(num, den)
    r2 = rem * 2
    if r2 > den or (r2 == den and m & 1):
        m += 1
    if m.bit_length() + s > _LD_MAX_EXP:
        return -_INF if neg else _INF
    v = Fraction(m << s) if s >= 0 else Fraction(m, 1 << -s)
    return -v if neg else v


def _ld_parse(b: bytes):
    """string2ld(): an exact Fraction / +-inf, or None if not a valid float."""
    if not b or len(b) >= 5120:
        return None
    m = _DEC_RE.match(b)
    if m is not None:
        sign, ip, fp, ex = m.groups()
        fp = fp or b""
        if not ip and not fp:
            return None
        digits = (ip + fp).lstrip(b"0")
        if not digits:
            return Fraction(0)
        exp = int(ex) if ex else 0
        exp -= len(fp)
        mag = exp + len(digits)          # value is in [10**(mag-1), 10**mag)
        if mag > 4940:
            return None                  # ERANGE overflow
        if mag < -4960:
            return None                  # ERANGE underflow to zero
        n = _dec_int(digits)
        v = Fraction(n * 10 ** exp) if exp >= 0 else Fraction(n, 10 ** -exp)
    else:
        m = _HEX_RE.match(b)
        if m is not None:
            sign, ip, fp, ex = m.groups()
            fp = fp or b""
            if not ip and not fp:
                return None
            digits = (ip + fp).lstrip(b"0")
            if not digits:
                return Fraction(0)
            exp = (int(ex) if ex else 0) - 4 * len(fp)
            mag = exp + 4 * len(digits)
            if mag > _LD_MAX_EXP + 8:
                return None
            if mag < _LD_MIN_Q - 8:
                return None
            n = int(digits, 16)
            v = Fraction(n << exp) if exp >= 0 else Fraction(n, 1 << -exp)
        else:
            m = _INF_RE.match(b)
            if m is None:
                return None
            return -_INF if m.group(1) == b"-" else _INF
    v = _ld_round(v)
    if v == 0 or v == _INF or v == -_INF:
        return None
    return -v if sign == b"-" else v


def _ld_format(x: Fraction) -> bytes:
    """ld2string(LD_STR_HUMAN): %.17Lf with trailing zeroes removed."""
    neg = x < 0
    a = -x if neg else x
    n, rem = divmod(a.numerator * 10 ** 17, a.denominator)
    r2 = rem * 2
    if r2 > a.denominator or (r2 == a.denominator and n & 1):
        n += 1
    s = _dec_str(n).rjust(18, b"0")
    ip, fp = s[:-17], s[-17:].rstrip(b"0")
    out = ip + b"." + fp if fp else ip
    if neg and out != b"0":
        out = b"-" + out
    return out


@command("incrbyfloat")
def incrbyfloat(c, argv):
    key = argv[1]
    v = lookup_write(c, key, bytes)
    if v is None:
        cur = Fraction(0)
    else:
        cur = _ld_parse(v)
        if cur is None:
            raise CommandError("ERR value is not a valid float")
    inc = _ld_parse(argv[2])
    if inc is None:
        raise CommandError("ERR value is not a valid float")
    if type(cur) is float or type(inc) is float:
        raise CommandError("ERR increment would produce NaN or Infinity")
    res = _ld_round(cur + inc)
    if type(res) is float:
        raise CommandError("ERR increment would produce NaN or Infinity")
    out = _ld_format(res)
    c.db.set(key, out, keepttl=True)
    c.srv.dirty += 1
    if c.srv.notify_flags:
        _event(c, b"incrbyfloat", key)
    c.rewrite = [[b"SET", key, out, b"KEEPTTL"]]
    return b"$%d\r\n%s\r\n" % (len(out), out)


# ------------------------------------------------------------------ ranges

@command("getrange", "substr")
def getrange(c, argv):
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    v = lookup_read(c, argv[1], bytes)
    if v is None:
        return EMPTY_BULK
    n = len(v)
    if start < 0 and end < 0 and start > end:
        return EMPTY_BULK
    if start < 0:
        start += n
    if end < 0:
        end += n
    if start < 0:
        start = 0
    if end < 0:
        end = 0
    if end >= n:
        end = n - 1
    if start > end or n == 0:
        return EMPTY_BULK
    r = v[start:end + 1]
    return b"$%d\r\n%s\r\n" % (len(r), r)


@command("setrange")
def setrange(c, argv):
    key = argv[1]
    offset = parse_int(argv[2])
    val = argv[3]
    if offset < 0:
        raise CommandError("ERR offset is out of range")
    v = lookup_write(c, key, bytes)
    if v is None:
        if not val:
            return ZERO
        _check_len(c, offset + len(val))
        nv = b"\x00" * offset + val
        c.db.set(key, nv)
    else:
        if not val:
            return integer(len(v))
        _check_len(c, offset + len(val))
        end = offset + len(val)
        if offset > len(v):
            nv = v + b"\x00" * (offset - len(v)) + val
        else:
            nv = v[:offset] + val + v[end:]
        c.db.set(key, nv, keepttl=True)
    c.db.mark_raw(key)
    c.srv.dirty += 1
    if c.srv.notify_flags:
        _event(c, b"setrange", key)
    return integer(len(nv))


# ------------------------------------------------------------------ LCS

def _lcs_key(c, key):
    return lookup_read(c, key)


_MATCH_TABLES = [bytes(49 if x == ch else 48 for x in range(256)) for ch in range(256)]


@command("lcs")
def lcs(c, argv):
    a = _lcs_key(c, argv[1])
    b = _lcs_key(c, argv[2])
    if (a is not None and type(a) is not bytes) or (b is not None and type(b) is not bytes):
        raise CommandError("ERR The specified keys must contain string values")
    a = a or b""
    b = b or b""
    getlen = getidx = withmatchlen = False
    minmatchlen = 0
    j = 3
    n = len(argv)
    while j < n:
        opt = argv[j].upper()
        if opt == b"IDX":
            getidx = True
        elif opt == b"LEN":
            getlen = True
        elif opt == b"WITHMATCHLEN":
            withmatchlen = True
        elif opt == b"MINMATCHLEN" and j + 1 < n:
            minmatchlen = parse_int(argv[j + 1])
            if minmatchlen < 0:
                minmatchlen = 0
            j += 1
        else:
            raise CommandError(SYNTAX)
        j += 1
    if getidx and getlen:
        raise CommandError("ERR If you want both the length and indexes, please just use IDX.")
    alen, blen = len(a), len(b)
    # Bit-parallel LCS (Allison-Dix / Hyyro): after i bytes of a, bit j of
    # rows[i] is 0 iff LCS(i, j+1) == LCS(i, j) + 1, so
    # LCS(i, j) = j - popcount(rows[i] & ((1 << j) - 1)).  Same table as
    # Redis's dynamic programming, in O(alen * blen / 64) word operations.
    full = (1 << blen) - 1
    masks: dict[int, int] = {}
    rb = b[::-1]
    for ch in set(b):
        # bit jj set where b[jj] == ch (built in O(blen) per distinct byte)
        masks[ch] = int(rb.translate(_MATCH_TABLES[ch]), 2)
    keep = getidx or not getlen
    v = full
    rows = [v]
    get_mask = masks.get
    for ch in a:
        u = v & get_mask(ch, 0)
        v = ((v + u) | (v - u)) & full
        if keep:
            rows.append(v)
    if not keep:
        return integer(blen - v.bit_count())

    def LCS(i, jj):
        return jj - (rows[i] & ((1 << jj) - 1)).bit_count()

    total = blen - rows[alen].bit_count()
    if getlen and not getidx:
        return integer(total)
    result = bytearray(total)
    idx = total
    matches = []
    ast = alen
    aend = bst = bend = 0
    i, jj = alen, blen
    while i > 0 and jj > 0:
        emit = False
        if a[i - 1] == b[jj - 1]:
            result[idx - 1] = a[i - 1]
            if ast == alen:
                ast = aend = i - 1
                bst = bend = jj - 1
            elif ast == i and bst == jj:
                ast -= 1
                bst -= 1
            else:
                emit = True
            if ast == 0 or bst == 0:
                emit = True
            idx -= 1
            i -= 1
            jj -= 1
        else:
            if LCS(i - 1, jj) > LCS(i, jj - 1):
                i -= 1
            else:
                jj -= 1
            if ast != alen:
                emit = True
        mlen = aend - ast + 1
        if emit:
            if minmatchlen == 0 or mlen >= minmatchlen:
                if getidx:
                    m = [[ast, aend], [bst, bend]]
                    if withmatchlen:
                        m.append(mlen)
                    matches.append(m)
            ast = alen
    if not getidx:
        r = bytes(result)
        return b"$%d\r\n%s\r\n" % (len(r), r)
    out = [b"%2\r\n" if c.resp == 3 else b"*4\r\n", b"$7\r\nmatches\r\n",
           b"*%d\r\n" % len(matches)]
    for m in matches:
        out.append(b"*%d\r\n*2\r\n:%d\r\n:%d\r\n*2\r\n:%d\r\n:%d\r\n"
                   % (len(m), m[0][0], m[0][1], m[1][0], m[1][1]))
        if withmatchlen:
            out.append(b":%d\r\n" % m[2])
    out.append(b"$3\r\nlen\r\n:%d\r\n" % total)
    return b"".join(out)

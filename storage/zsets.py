"""Sorted sets: the value class, score parsing/formatting as Redis 7.0 does it,
RDB encodings (listpack, zset2, and the older ziplist/zset ones on load) and
the AOF rewrite.

A ZSet keeps a dict member -> score and a SortedList of (score, member)
tuples: ties are ordered by member bytes, exactly as Redis's skiplist and
listpack (memcmp, then length).  Both of Redis's encodings share this
structure; `encoding` is the name OBJECT ENCODING reports and it changes where
Redis 7.0 converts: a listpack becomes a skiplist when an insertion would
exceed zset-max-listpack-entries or adds a member longer than
zset-max-listpack-value, and never goes back except for the results of the
*STORE commands (`shrink_if_small`).

A listpack keeps integral scores as integers, so a listpack zset never holds
-0.0 (it reads back as 0); a skiplist keeps the double as is.  `insert` and
`update` normalise -0.0 for listpacks so replies and DUMP payloads match.
"""

from __future__ import annotations

import re
import struct

from sortedcontainers import SortedList

from storage import digest, keyspace, rdb, rewrite
from storage.listpack import lp_decode_raw, lp_encode, zl_decode
from storage.values import LIMITS

LISTPACK = "listpack"
SKIPLIST = "skiplist"

INF = float("inf")
NINF = float("-inf")

RDB_TYPE_ZSET = 3
RDB_TYPE_ZSET_2 = 5
RDB_TYPE_ZSET_ZIPLIST = 12
RDB_TYPE_ZSET_LISTPACK = 17

# (double)(LLONG_MAX/2): double2ll()'s range for integral scores
_LL_HALF = 4611686018427387904.0


class ZSet:
    """A sorted set: `scores` (member -> score) and `sl` (sorted (score, member))."""

    __slots__ = ("scores", "sl", "encoding", "dels")

    def __init__(self, encoding: str = LISTPACK) -> None:
        self.scores: dict[bytes, float] = {}
        self.sl = SortedList()
        self.encoding = encoding
        self.dels = 0           # members removed or moved so far (ZSCAN cursors)

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        return "ZSet(%s, %r)" % (self.encoding, list(self.sl))

    def __deepcopy__(self, memo) -> "ZSet":
        z = ZSet(self.encoding)
        z.scores = self.scores.copy()
        z.sl = self.sl.copy()
        return z

    # ------------------------------------------------------------ writes
    def insert(self, member: bytes, score: float) -> None:
        """Add a member that is not there (zsetAdd's insertion branch)."""
        if self.encoding is LISTPACK:
            if (len(self.scores) >= LIMITS.zset_max_listpack_entries
                    or len(member) > LIMITS.zset_max_listpack_value):
                self.encoding = SKIPLIST
            elif score == 0.0:
                score = 0.0
        self.scores[member] = score
        self.sl.add((score, member))

    def update(self, member: bytes, old: float, new: float) -> None:
        """Change the score of a member (old is its current score, new != old)."""
        if new == 0.0 and self.encoding is LISTPACK:
            new = 0.0
        sl = self.sl
        sl.remove((old, member))
        sl.add((new, member))
        self.scores[member] = new
        self.dels += 1

    def delete(self, member: bytes) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        self.sl.remove((score, member))
        self.dels += 1
        return True

    def pop(self, where_max: bool) -> tuple[float, bytes]:
        """Remove and return the (score, member) with the lowest/highest rank."""
        score, member = self.sl.pop(-1 if where_max else 0)
        del self.scores[member]
        self.dels += 1
        return score, member

    def remove_range(self, start: int, stop: int) -> int:
        """Delete ranks [start, stop) (0-based); the number removed."""
        sl = self.sl
        n = stop - start
        if n <= 0:
            return 0
        self.dels += n
        scores = self.scores
        if n == len(scores):
            scores.clear()
            sl.clear()
            return n
        for _, m in sl.islice(start, stop):
            del scores[m]
        del sl[start:stop]
        return n

    def shrink_if_small(self, maxlen: int) -> None:
        """zsetConvertToListpackIfNeeded: results of the *STORE commands."""
        if (self.encoding is SKIPLIST and len(self.scores) <= LIMITS.zset_max_listpack_entries
                and maxlen <= LIMITS.zset_max_listpack_value):
            self.to_listpack()

    def to_listpack(self) -> None:
        self.encoding = LISTPACK
        if any(s == 0.0 for s in self.scores.values()):
            # -0.0 is stored as the integer 0 in a listpack
            items = [(0.0 if s == 0.0 else s, m) for s, m in self.sl]
            self.sl = SortedList(items)
            self.scores = {m: s for s, m in items}

    # ------------------------------------------------------------ reads
    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        if score is None:
            return None
        return self.sl.index((score, member))


def new_zset(size_hint: int, first_member_len: int) -> ZSet:
    """The encoding ZADD (7.0) creates a key with."""
    if LIMITS.zset_max_listpack_entries == 0 or first_member_len > LIMITS.zset_max_listpack_value:
        return ZSet(SKIPLIST)
    return ZSet(LISTPACK)


# ------------------------------------------------------------------ numbers
_WS = b" \t\n\v\f\r"
_NUM = re.compile(
    rb"[+-]?(?:"
    rb"(?P<inf>[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"
    rb"|(?P<nan>[nN][aA][nN](?:\([0-9A-Za-z_]*\))?)"
    rb"|(?P<hex>0[xX](?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    rb"|(?P<dec>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    rb")")
_NONZERO = re.compile(rb"[1-9a-fA-F]").search
_NONZERO_DIGIT = re.compile(rb"[1-9]").search   # a decimal zero with none is exact


def strtod(s: bytes, pos: int = 0) -> tuple[float, int, bool]:
    """C's strtod() on s[pos:] (glibc): (value, end offset, ERANGE).

    Leading whitespace is skipped; when nothing converts the end is `pos`
    and the value 0.0.  Decimal, hexadecimal, inf/infinity and nan forms."""
    n = len(s)
    p = pos
    while p < n and s[p] in _WS:
        p += 1
    m = _NUM.match(s, p)
    if m is None:
        return 0.0, pos, False
    text = m.group(0)
    neg = text[:1] == b"-"
    if m.group("inf") is not None:
        return (NINF if neg else INF), m.end(), False
    if m.group("nan") is not None:
        return float("nan"), m.end(), False
    hx = m.group("hex")
    if hx is not None:
        try:
            v = float.fromhex(hx.decode())
        except OverflowError:
            return (NINF if neg else INF), m.end(), True
        mant = hx[2:].split(b"p")[0].split(b"P")[0]
    else:
        dec = m.group("dec")
        v = float(dec)
        mant = dec.split(b"e")[0].split(b"E")[0]
    if v == INF:
        return (NINF if neg else INF), m.end(), True
    erange = v == 0.0 and _NONZERO(mant) is not None
    return (-v if neg else v), m.end(), erange


def string2d(s: bytes) -> float | None:
    """Redis's string2d (getDoubleFromObject): the double, or None when s is
    not exactly a valid, finite-or-inf, non-NaN number."""
    try:
        v = float(s)
    except ValueError:
        pass            # hex, nan(...), garbage: the exact path decides
    else:
        # float() also takes surrounding blanks and "1_0"; inf and a zero
        # written with a nonzero digit need the exact path (overflow, underflow)
        if (v == v and v != INF and v != NINF and s[0] not in _WS
                and s[-1] not in _WS and 95 not in s
                and (v != 0.0 or s == b"0" or _NONZERO_DIGIT(s) is None)):
            return v
    if not s or s[0] in _WS:
        return None
    v, end, erange = strtod(s)
    if end != len(s) or v != v:
        return None
    if erange and (v == 0.0 or v == INF or v == NINF):
        return None
    return v


def range_double(s: bytes) -> float | None:
    """strtod as zslParseRange uses it: the C string (up to a NUL byte) must be
    consumed; NaN is refused, nothing else is (overflow gives inf)."""
    z = s.find(b"\x00")
    if z >= 0:
        s = s[:z]
    v, end, _ = strtod(s)
    if end != len(s) or v != v:
        return None
    return v


def fmt(x: float) -> bytes:
    """A score as Redis 7.0 replies it (addReplyDouble: %.17g, inf, -inf, -0)."""
    return b"%.17g" % x


def lp_score(x: float):
    """A score as a Redis 7.0 listpack stores it: an integer when double2ll
    succeeds, else the %.17g text."""
    if -_LL_HALF <= x <= _LL_HALF:
        i = int(x)
        if i == x:
            return i
    return b"%.17g" % x


def lp_score_bytes(x: float) -> bytes:
    """lp_score as the text ZSCAN returns for a listpack."""
    if -_LL_HALF <= x <= _LL_HALF:
        i = int(x)
        if i == x:
            return b"%d" % i
    return b"%.17g" % x


# ------------------------------------------------------------------ RDB
def _blob(b: bytes) -> bytes:
    """rdbSaveRawString: storage.rdb's encode_blob (LZF as Redis) when it
    has one, else a plain string."""
    enc = getattr(rdb, "encode_blob", None)
    return enc(b) if enc is not None else rdb.encode_string(b)


def _rdb_encode(z: ZSet) -> tuple[int, bytes]:
    if z.encoding is LISTPACK:
        items = []
        append = items.append
        for score, member in z.sl:
            append(member)
            append(lp_score(score))
        return RDB_TYPE_ZSET_LISTPACK, _blob(lp_encode(items))
    out = [rdb.encode_length(len(z.scores))]
    append = out.append
    pack = struct.Struct("<d").pack
    es = _blob
    # from the greatest to the smallest, as rdbSaveObject walks the skiplist
    for score, member in reversed(z.sl):
        append(es(member))
        append(pack(score))
    return RDB_TYPE_ZSET_2, b"".join(out)


def _build(pairs, from_listpack: bool) -> ZSet:
    """A ZSet from loaded (member, score) pairs, with the encoding Redis picks."""
    if not pairs:
        raise rdb.RDBError("empty sorted set")
    scores: dict[bytes, float] = {}
    maxlen = 0
    for member, score in pairs:
        if score != score:
            raise rdb.RDBError("sorted set score is NaN (member %r)" % member[:64])
        if member in scores:
            raise rdb.RDBError("duplicate sorted set member %r" % member[:64])
        scores[member] = score
        if len(member) > maxlen:
            maxlen = len(member)
    n = len(scores)
    if from_listpack:
        small = n <= LIMITS.zset_max_listpack_entries
    else:
        small = n <= LIMITS.zset_max_listpack_entries and maxlen <= LIMITS.zset_max_listpack_value
    z = ZSet(LISTPACK if small else SKIPLIST)
    if small:
        for m, s in scores.items():
            if s == 0.0:
                scores[m] = 0.0
    z.scores = scores
    z.sl = SortedList((s, m) for m, s in scores.items())
    return z


def _pairs_from_blob(items: list) -> list:
    if len(items) % 2:
        raise rdb.RDBError("sorted set listpack with an odd number of entries")
    pairs = []
    for i in range(0, len(items), 2):
        member = items[i]
        sc = items[i + 1]
        if type(member) is int:
            member = b"%d" % member
        if type(sc) is int:
            score = float(sc)
        else:
            score = strtod(sc[:127])[0]     # zzlStrtod
        pairs.append((member, score))
    return pairs


def _load_listpack(r: rdb.Reader) -> ZSet:
    try:
        items = lp_decode_raw(r.string())
    except ValueError as e:
        raise rdb.RDBError("sorted set listpack: %s" % e) from None
    return _build(_pairs_from_blob(items), True)


def _load_ziplist(r: rdb.Reader) -> ZSet:
    try:
        items = zl_decode(r.string())
    except ValueError as e:
        raise rdb.RDBError("sorted set ziplist: %s" % e) from None
    return _build(_pairs_from_blob(items), True)


_unpack_d = struct.Struct("<d").unpack


def _load_zset2(r: rdb.Reader) -> ZSet:
    n = r.plain_length()
    pairs = []
    for _ in range(n):
        member = r.string()
        pairs.append((member, _unpack_d(r.take(8))[0]))
    return _build(pairs, False)


def _load_double(r: rdb.Reader) -> float:
    """rdbLoadDoubleValue: a length byte (253 nan, 254 inf, 255 -inf) and text."""
    n = r.byte()
    if n == 255:
        return NINF
    if n == 254:
        return INF
    if n == 253:
        return float("nan")
    text = bytes(r.take(n))
    v, end, _ = strtod(text)
    if end == 0:
        raise rdb.RDBError("bad sorted set score %r" % text)
    return v


def _load_zset1(r: rdb.Reader) -> ZSet:
    n = r.plain_length()
    pairs = []
    for _ in range(n):
        member = r.string()
        pairs.append((member, _load_double(r)))
    return _build(pairs, False)


# ------------------------------------------------------------------ DEBUG DIGEST
def _digest(d: bytearray, z: ZSet) -> None:
    """xorObjectDigest for a zset: the xor of mix(member) + mix("%.17g" score)
    per element, so the order does not matter."""
    mix = digest.mix_digest
    xor = digest.xor_digest
    for score, member in z.sl:
        e = bytearray(20)
        mix(e, member)
        mix(e, b"%.17g" % score)
        xor(d, bytes(e))


# ------------------------------------------------------------------ AOF rewrite
def _rewrite(key: bytes, z: ZSet) -> list:
    return rewrite.chunked(b"ZADD", key, ((b"%.17g" % s, m) for s, m in z.sl))


keyspace.TYPE_NAMES[ZSet] = "zset"
rdb.ENCODERS[ZSet] = _rdb_encode
rdb.DECODERS[RDB_TYPE_ZSET_LISTPACK] = _load_listpack
rdb.DECODERS[RDB_TYPE_ZSET_ZIPLIST] = _load_ziplist
rdb.DECODERS[RDB_TYPE_ZSET_2] = _load_zset2
rdb.DECODERS[RDB_TYPE_ZSET] = _load_zset1
rewrite.register(ZSet, _rewrite)
digest.DIGESTERS[ZSet] = (digest.OBJ_ZSET, _digest)

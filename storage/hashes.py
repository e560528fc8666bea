"""Hashes: the value class, its RDB encodings and its AOF rewrite (Redis 7.0 t_hash.c).

A Hash is a dict field -> value (both bytes).  Its `encoding` is what OBJECT
ENCODING reports: "listpack" while the hash is small, "hashtable" once it has
more than hash-max-listpack-entries fields or a field or value longer than
hash-max-listpack-value bytes (never back, as in Redis).  Python dicts keep
insertion order, and an update keeps a field's position, which is exactly a
listpack's order: replies of listpack hashes come out in Redis's order.

RDB: a listpack hash is written as RDB_TYPE_HASH_LISTPACK (16), a hashtable
one as RDB_TYPE_HASH (4), with Redis's string encoding (int forms, LZF), so a
DUMP of a listpack hash is byte-identical to redis-server's.  Loaded too: the
ziplist (13) and zipmap (9) forms older Redis versions wrote.
"""

from __future__ import annotations

import struct

from storage import digest, keyspace, rdb, rewrite
from storage.listpack import lp_decode, lp_encode, zl_decode
from storage.values import LIMITS

LISTPACK = "listpack"
HASHTABLE = "hashtable"

RDB_TYPE_HASH = 4
RDB_TYPE_HASH_ZIPMAP = 9
RDB_TYPE_HASH_ZIPLIST = 13
RDB_TYPE_HASH_LISTPACK = 16


class Hash(dict):
    """field -> value; `encoding` is "listpack" or "hashtable"."""

    __slots__ = ("encoding",)

    def __init__(self, *args) -> None:
        dict.__init__(self, *args)
        self.encoding = LISTPACK

    def __deepcopy__(self, memo) -> "Hash":
        h = Hash(self)
        h.encoding = self.encoding
        return h

    def check_entries(self) -> None:
        """Convert when there are more fields than a listpack may hold."""
        if self.encoding == LISTPACK and len(self) > LIMITS.hash_max_listpack_entries:
            self.encoding = HASHTABLE

    def fit(self, items, start: int = 0) -> None:
        """hashTypeTryConversion: convert before adding any of items[start:]
        if one of them is longer than hash-max-listpack-value."""
        if self.encoding == LISTPACK:
            lim = LIMITS.hash_max_listpack_value
            if start == len(items) - 2:
                if len(items[start]) > lim or len(items[start + 1]) > lim:
                    self.encoding = HASHTABLE
                return
            for i in range(start, len(items)):
                if len(items[i]) > lim:
                    self.encoding = HASHTABLE
                    return


# ------------------------------------------------------------------ RDB
# rdbSaveRawString compresses every string over 20 bytes; pure-Python LZF
# costs about a microsecond per byte, so without a compiled compressor
# elements longer than this are written plain (a valid encoding; DUMP bytes
# then differ from Redis's)
LZF_MAX_ITEM = 1 << 16
_SLOW_LZF = getattr(rdb, "lzf_compress_python", rdb.lzf_compress) is rdb.lzf_compress


def encode_item(s: bytes) -> bytes:
    """One element of a hashtable hash or set, as rdbSaveRawString writes it."""
    if _SLOW_LZF and len(s) > LZF_MAX_ITEM:
        return rdb.encode_string(s)
    return rdb.encode_blob(s)


def _encode(h: Hash) -> tuple[int, bytes]:
    if h.encoding == LISTPACK:
        items = []
        for f, v in h.items():
            items.append(f)
            items.append(v)
        return RDB_TYPE_HASH_LISTPACK, rdb.encode_blob(lp_encode(items))
    raw = encode_item
    out = [rdb.encode_length(len(h))]
    for f, v in h.items():
        out.append(raw(f))
        out.append(raw(v))
    return RDB_TYPE_HASH, b"".join(out)


def _from_flat(items, what: str) -> Hash:
    if len(items) & 1:
        raise rdb.RDBError("%s with an odd number of entries (%d)" % (what, len(items)))
    if not items:
        raise rdb.RDBError("empty %s" % what)
    h = Hash()
    for i in range(0, len(items), 2):
        h[items[i]] = items[i + 1]
    if len(h) * 2 != len(items):
        raise rdb.RDBError("%s with duplicate fields" % what)
    h.check_entries()
    return h


def _decode_listpack(r: rdb.Reader) -> Hash:
    try:
        items = lp_decode(r.string())
    except ValueError as e:
        raise rdb.RDBError("hash listpack integrity check failed: %s" % e) from None
    return _from_flat(items, "hash listpack")


def _decode_ziplist(r: rdb.Reader) -> Hash:
    try:
        items = zl_decode(r.string())
    except ValueError as e:
        raise rdb.RDBError("hash ziplist integrity check failed: %s" % e) from None
    return _from_flat(items, "hash ziplist")


def _decode_hash(r: rdb.Reader) -> Hash:
    n = r.plain_length()
    if n == 0:
        raise rdb.RDBError("empty hash")
    lim = LIMITS.hash_max_listpack_value
    h = Hash()
    if n > LIMITS.hash_max_listpack_entries:
        h.encoding = HASHTABLE
    for _ in range(n):
        f = r.string()
        v = r.string()
        if f in h:
            raise rdb.RDBError("duplicate hash fields detected")
        if len(f) > lim or len(v) > lim:
            h.encoding = HASHTABLE
        h[f] = v
    return h


def zipmap_decode(blob) -> list[bytes]:
    """The field, value items of a zipmap (Redis < 2.6 small hashes)."""
    b = bytes(blob)
    end = len(b)
    if end < 2 or b[-1] != 0xFF:
        raise ValueError("zipmap does not end with 0xFF")
    p = 1                                   # the first byte is the (capped) count

    def length():
        nonlocal p
        if p >= end:
            raise ValueError("zipmap entry past the end")
        c = b[p]
        if c < 254:
            p += 1
            return c
        if c == 254:
            if p + 5 > end:
                raise ValueError("zipmap length past the end")
            v = struct.unpack_from("<I", b, p + 1)[0]
            p += 5
            return v
        p += 1
        return -1                           # 255: the end

    out: list[bytes] = []
    while True:
        n = length()
        if n < 0:
            break
        if p + n > end - 1:
            raise ValueError("zipmap field past the end")
        out.append(b[p:p + n])
        p += n
        n = length()
        if n < 0:
            raise ValueError("zipmap field without a value")
        if p >= end:
            raise ValueError("zipmap value past the end")
        free = b[p]
        p += 1
        if p + n + free > end - 1:
            raise ValueError("zipmap value past the end")
        out.append(b[p:p + n])
        p += n + free
    if p != end:
        raise ValueError("zipmap has %d bytes after its end marker" % (end - p))
    if b[0] < 254 and b[0] * 2 != len(out):
        raise ValueError("zipmap count %d != %d pairs" % (b[0], len(out) // 2))
    return out


def _decode_zipmap(r: rdb.Reader) -> Hash:
    try:
        items = zipmap_decode(r.string())
    except ValueError as e:
        raise rdb.RDBError("zipmap integrity check failed: %s" % e) from None
    h = _from_flat(items, "hash zipmap")
    h.fit(items)
    return h


# ------------------------------------------------------------------ AOF rewrite
def _rewrite(key: bytes, h: Hash) -> list:
    # Redis's rewriteHashObject emits HMSET, 64 pairs per command
    return rewrite.chunked(b"HMSET", key, h.items())


# ------------------------------------------------------------------ DEBUG DIGEST
def _digest(d: bytearray, h: Hash) -> None:
    """xorObjectDigest for a hash: each pair mixed on its own, then xored in,
    so the order of the fields does not matter."""
    mix = digest.mix_digest
    xor = digest.xor_digest
    for f, v in h.items():
        e = bytearray(20)
        mix(e, f)
        mix(e, v)
        xor(d, bytes(e))


keyspace.TYPE_NAMES[Hash] = "hash"
digest.DIGESTERS[Hash] = (digest.OBJ_HASH, _digest)
rdb.ENCODERS[Hash] = _encode
rdb.DECODERS[RDB_TYPE_HASH] = _decode_hash
rdb.DECODERS[RDB_TYPE_HASH_ZIPMAP] = _decode_zipmap
rdb.DECODERS[RDB_TYPE_HASH_ZIPLIST] = _decode_ziplist
rdb.DECODERS[RDB_TYPE_HASH_LISTPACK] = _decode_listpack
rewrite.register(Hash, _rewrite)

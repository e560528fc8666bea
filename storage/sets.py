"""Sets: the value class, its RDB encodings and its AOF rewrite (Redis 7.0 t_set.c).

A Set maps each member (bytes) to its index in `arr`, the list of members:
membership is a dict lookup, a random member (SPOP, SRANDMEMBER) is an index
into `arr`, and a removal moves the last member into the hole, so every
operation is O(1).  The dict's key views give C-speed intersections, unions
and differences.

`encoding` is what OBJECT ENCODING reports, as in Redis 7.0 (which has no
listpack sets): "intset" while every member is an integer in its canonical
form and there are at most set-max-intset-entries of them, "hashtable" after
that (never back).  An intset is sorted, so `members()` of an intset set is in
ascending numeric order, which is the order Redis replies in.

RDB: an intset set is written as RDB_TYPE_SET_INTSET (11), byte-identical to
redis-server's DUMP; a hashtable set as RDB_TYPE_SET (2).
"""

from __future__ import annotations

import random

from storage import digest, keyspace, rdb, rewrite
from storage.hashes import encode_item
from storage.listpack import intset_decode, intset_encode
from storage.values import LIMITS, string_int

INTSET = "intset"
HASHTABLE = "hashtable"

RDB_TYPE_SET = 2
RDB_TYPE_SET_INTSET = 11

_randrange = random.randrange


def max_intset_entries() -> int:
    n = LIMITS.set_max_intset_entries
    return n if n < 1 << 30 else 1 << 30


class Set(dict):
    """member -> index in arr; `encoding` is "intset" or "hashtable"."""

    __slots__ = ("arr", "encoding")

    def __init__(self) -> None:
        self.arr: list[bytes] = []
        self.encoding = INTSET

    def __deepcopy__(self, memo) -> "Set":
        s = Set()
        s.update(self)
        s.arr = self.arr[:]
        s.encoding = self.encoding
        return s

    def add(self, m: bytes) -> bool:
        """setTypeAdd: True if m was not a member."""
        if m in self:
            return False
        arr = self.arr
        self[m] = len(arr)
        arr.append(m)
        if self.encoding == INTSET and (len(arr) > LIMITS.set_max_intset_entries
                                        or len(arr) > 1 << 30 or string_int(m) is None):
            self.encoding = HASHTABLE
        return True

    def discard(self, m: bytes) -> bool:
        """setTypeRemove: True if m was a member."""
        i = self.pop(m, None)
        if i is None:
            return False
        arr = self.arr
        last = arr.pop()
        if i < len(arr):
            arr[i] = last
            self[last] = i
        return True

    def members(self) -> list:
        """The members in Redis's iteration order where it is defined (an
        intset is sorted); the caller must not change the list."""
        if self.encoding == INTSET:
            return sorted(self.arr, key=int)
        return self.arr

    def random(self) -> bytes:
        arr = self.arr
        return arr[_randrange(len(arr))]

    def pop_random(self) -> bytes:
        arr = self.arr
        i = _randrange(len(arr))
        m = arr[i]
        last = arr.pop()
        del self[m]
        if i < len(arr):
            arr[i] = last
            self[last] = i
        return m


def from_members(members) -> Set:
    """A new set holding members, encoded as Redis encodes a set built by
    adding them one by one to an empty intset (SINTERSTORE & co)."""
    s = Set()
    arr = list(members) if not isinstance(members, list) else members[:]
    if len(set(arr)) != len(arr):
        arr = list(dict.fromkeys(arr))
    s.arr = arr
    s.update(zip(arr, range(len(arr))))
    if len(arr) > max_intset_entries():
        s.encoding = HASHTABLE
    else:
        for m in arr:
            if string_int(m) is None:
                s.encoding = HASHTABLE
                break
    return s


def reply_order(members: list) -> list:
    """The order Redis replies with a set built from distinct members: an
    intset (all integers, few enough) is sorted, a hashtable is not."""
    if len(members) > max_intset_entries():
        return members
    for m in members:
        if string_int(m) is None:
            return members
    return sorted(members, key=int)


# ------------------------------------------------------------------ RDB
def _encode(s: Set) -> tuple[int, bytes]:
    if s.encoding == INTSET:
        return RDB_TYPE_SET_INTSET, rdb.encode_blob(intset_encode([int(m) for m in s.arr]))
    raw = encode_item
    out = [rdb.encode_length(len(s))]
    for m in s.arr:
        out.append(raw(m))
    return RDB_TYPE_SET, b"".join(out)


def _decode_set(r: rdb.Reader) -> Set:
    n = r.plain_length()
    if n == 0:
        raise rdb.RDBError("empty set")
    s = Set()
    if n > max_intset_entries():
        s.encoding = HASHTABLE
    for _ in range(n):
        m = r.string()
        if not s.add(m):
            raise rdb.RDBError("duplicate set members detected")
    return s


def _decode_intset(r: rdb.Reader) -> Set:
    try:
        vals = intset_decode(r.string())
    except ValueError as e:
        raise rdb.RDBError("intset integrity check failed: %s" % e) from None
    if not vals:
        raise rdb.RDBError("empty intset")
    s = from_members([b"%d" % v for v in vals])
    return s


# ------------------------------------------------------------------ AOF rewrite
def _rewrite(key: bytes, s: Set) -> list:
    return rewrite.chunked(b"SADD", key, ((m,) for m in s.arr))


# ------------------------------------------------------------------ DEBUG DIGEST
def _digest(d: bytearray, s: Set) -> None:
    xor = digest.xor_digest
    for m in s.arr:
        xor(d, m)


keyspace.TYPE_NAMES[Set] = "set"
digest.DIGESTERS[Set] = (digest.OBJ_SET, _digest)
rdb.ENCODERS[Set] = _encode
rdb.DECODERS[RDB_TYPE_SET] = _decode_set
rdb.DECODERS[RDB_TYPE_SET_INTSET] = _decode_intset
rewrite.register(Set, _rewrite)

"""storage/listpack.py: listpack / ziplist / intset codecs, against Redis's own bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from storage import rdb
from storage.listpack import (intset_decode, intset_encode, lp_decode, lp_decode_raw,
                              lp_encode, zl_decode)

ints = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
items = st.one_of(st.binary(max_size=70), ints.map(lambda v: b"%d" % v))
big = st.binary(min_size=4090, max_size=4100)       # the 12-bit / 32-bit length boundary


@settings(max_examples=150, deadline=None)
@given(st.lists(items, max_size=40), st.lists(big, max_size=2))
def test_listpack_round_trip(xs, bigs):
    xs = xs + bigs
    assert lp_decode(lp_encode(xs)) == xs


@settings(max_examples=200, deadline=None)
@given(st.lists(ints, max_size=40, unique=True))
def test_intset_round_trip(xs):
    assert intset_decode(intset_encode(xs)) == sorted(xs)


def test_listpack_integer_forms():
    # every integer width keeps its value, strings that only look numeric stay strings
    xs = [0, 127, 128, -1, 4095, -4096, 4096, 32767, -32768, 8388607, -8388608,
          2147483647, -2147483648, 2147483648, -(1 << 63), (1 << 63) - 1]
    assert lp_decode_raw(lp_encode(xs)) == xs
    assert lp_decode_raw(lp_encode([b"01", b"+1", b" 1", b"-0"])) == [b"01", b"+1", b" 1", b"-0"]


@pytest.mark.parametrize("damage", ["size", "end", "backlen", "count", "truncate"])
def test_listpack_damage_is_refused(damage):
    good = bytearray(lp_encode([b"abc", b"12", b"x" * 100]))
    if damage == "size":
        good[0] ^= 1
    elif damage == "end":
        good[-1] = 0
    elif damage == "backlen":
        good[6 + 4] ^= 0x7F        # the first entry's back-length
    elif damage == "count":
        good[4] = 7
    else:
        good = good[:-3]
    with pytest.raises(ValueError):
        lp_decode(bytes(good))


def test_intset_damage_is_refused():
    with pytest.raises(ValueError):
        intset_decode(struct.pack("<II", 3, 1) + b"\x00\x00\x00")
    with pytest.raises(ValueError):
        intset_decode(struct.pack("<IIhh", 2, 2, 5, 1))      # not sorted
    with pytest.raises(ValueError):
        intset_decode(struct.pack("<IIh", 2, 2, 5))          # short


def _dump_blob(c, key):
    """(RDB type, the blob string) of DUMP key."""
    d = c.dump(key)
    r = rdb.Reader(d[1:])
    return d[0], r.string()


def test_same_bytes_as_redis(real):
    c = real.client()
    c.flushall()
    c.config_set("hash-max-listpack-value", "100000")
    pairs = [b"a", b"1", b"b", b"-5000", b"c" * 100, b"70000", b"x" * 5000, b"-9000000000",
             b"127", b"128", b"-1", b"300000", b"-2147483649", b"0", b"01", b"\xff"]
    c.hset("h", mapping=dict(zip(pairs[::2], pairs[1::2])))
    t, blob = _dump_blob(c, "h")
    assert t == 16                                   # RDB_TYPE_HASH_LISTPACK
    assert lp_decode(blob) == pairs
    assert lp_encode(pairs) == blob
    c.sadd("s", 1, 2, 3, -70000)
    t, blob = _dump_blob(c, "s")
    assert t == 11                                   # RDB_TYPE_SET_INTSET
    assert intset_encode([1, 2, 3, -70000]) == blob
    c.config_set("hash-max-listpack-value", "64")
    c.close()


def test_ziplist_decoding():
    # a ziplist as Redis 6 wrote it: "ab", 7 (immediate), -2 (int8), 300 (int16),
    # 100000 (int24), 1<<40 (int64), a 70-byte string (14-bit length)
    entries = [b"\x02ab", b"\xf8", b"\xfe\xfe", b"\xc0" + struct.pack("<h", 300),
               b"\xf0" + struct.pack("<i", 100000)[:3], b"\xe0" + struct.pack("<q", 1 << 40),
               bytes((0x40, 70)) + b"z" * 70]
    body = b""
    prev = 0
    for e in entries:
        body += bytes((prev,)) + e
        prev = len(e) + 1
    blob = struct.pack("<IIH", 10 + len(body) + 1, 0, len(entries)) + body + b"\xff"
    assert zl_decode(blob) == [b"ab", b"7", b"-2", b"300", b"100000", b"%d" % (1 << 40),
                               b"z" * 70]
    with pytest.raises(ValueError):
        zl_decode(blob[:-2] + b"\xff")

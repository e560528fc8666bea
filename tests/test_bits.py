"""Bit commands, checked against Redis 7.0 replies and error texts."""

from __future__ import annotations

import pytest
import redis

from pynode.commands import CommandError, bits
from tests.test_strings import _Client, call

BIT_OFF = "bit offset is not an integer or out of range"
BF_TYPE = ("Invalid bitfield type. Use something like i16 u8. "
           "Note that u64 is not supported but i64 is.")
ERR_INT = "value is not an integer or out of range"


def err(r, *cmd) -> str:
    with pytest.raises(redis.ResponseError) as ei:
        r.execute_command(*cmd)
    return str(ei.value)


# ---------------------------------------------------------------- SETBIT / GETBIT

def test_setbit_getbit(r):
    assert r.setbit("b", 7, 1) == 0
    assert r.setbit("b", 7, 1) == 1
    assert r.get("b") == b"\x01"
    assert r.setbit("b", 0, 1) == 0
    assert r.get("b") == b"\x81"
    assert r.setbit("b", 100, 0) == 0
    assert r.strlen("b") == 13
    assert r.getbit("b", 0) == 1
    assert r.getbit("b", 1) == 0
    assert r.getbit("b", 7) == 1
    assert r.getbit("b", 1000000) == 0
    assert r.getbit("nokey", 5) == 0
    assert r.setbit("b", 7, 0) == 1
    assert r.get("b")[:1] == b"\x80"
    r.expire("b", 100)
    r.setbit("b", 3, 1)
    assert r.ttl("b") > 0
    assert r.setbit("z", 4294967295, 0) == 0
    assert r.strlen("z") == 536870912
    r.delete("z")


def test_setbit_errors(r):
    assert err(r, "SETBIT", "b", "-1", "1") == BIT_OFF
    assert err(r, "SETBIT", "b", "abc", "1") == BIT_OFF
    assert err(r, "SETBIT", "b", "4294967296", "1") == BIT_OFF
    assert err(r, "SETBIT", "b", "#8", "1") == BIT_OFF
    assert err(r, "SETBIT", "b", "1", "2") == "bit is not an integer or out of range"
    assert err(r, "SETBIT", "b", "1", "-1") == "bit is not an integer or out of range"
    assert err(r, "SETBIT", "b", "1", "x") == "bit is not an integer or out of range"
    assert err(r, "GETBIT", "b", "-1") == BIT_OFF
    assert err(r, "GETBIT", "b", "4294967296") == BIT_OFF
    assert r.exists("b") == 0


# ---------------------------------------------------------------- BITCOUNT

def test_bitcount(r):
    r.set("s", "foobar")
    assert r.bitcount("s") == 26
    assert r.bitcount("s", 0, 0) == 4
    assert r.bitcount("s", 1, 1) == 6
    assert r.execute_command("BITCOUNT", "s", "1", "1", "BYTE") == 6
    assert r.execute_command("BITCOUNT", "s", "5", "30", "BIT") == 17
    assert r.execute_command("BITCOUNT", "s", "5", "30", "bit") == 17
    assert r.execute_command("BITCOUNT", "s", "0", "-1", "BIT") == 26
    assert r.execute_command("BITCOUNT", "s", "-3", "-1", "BIT") == 1
    assert r.execute_command("BITCOUNT", "s", "9", "9", "BIT") == 1
    assert r.execute_command("BITCOUNT", "s", "9", "10", "BIT") == 2
    assert r.bitcount("s", -1, -2) == 0
    assert r.bitcount("s", -2, -1) == 7
    assert r.bitcount("s", -100, 100) == 26
    assert r.bitcount("s", 100, 200) == 0
    assert r.bitcount("nokey") == 0
    r.set("e", "")
    assert r.bitcount("e") == 0
    assert r.execute_command("BITCOUNT", "e", "0", "-1", "BIT") == 0


def test_bitcount_errors(r):
    r.set("s", "foobar")
    assert err(r, "BITCOUNT", "s", "1") == "syntax error"
    assert err(r, "BITCOUNT", "s", "1", "2", "3") == "syntax error"
    assert err(r, "BITCOUNT", "s", "1", "2", "foo") == "syntax error"
    assert err(r, "BITCOUNT", "s", "a", "2") == ERR_INT
    # a missing key answers 0 before the arguments are looked at
    assert r.execute_command("BITCOUNT", "nokey", "1") == 0
    assert r.execute_command("BITCOUNT", "nokey", "a", "b") == 0


# ---------------------------------------------------------------- BITPOS

def test_bitpos(r):
    r.set("bp", b"\xff\xf0\x00")
    assert r.bitpos("bp", 0) == 12
    assert r.bitpos("bp", 1) == 0
    assert r.bitpos("bp", 1, 2) == -1
    assert r.bitpos("bp", 0, 0, 0) == -1
    assert r.bitpos("bp", 0, 0, 1) == 12
    assert r.bitpos("bp", 0, 2, -1) == 16
    assert r.bitpos("bp", 1, 7, 15, "BIT") == 7
    assert r.bitpos("bp", 0, 7, 15, "bit") == 12
    assert r.bitpos("bp", 0, 7, 11, "BIT") == -1
    assert r.bitpos("bp", 0, 0, 7, "BYTE") == 12
    assert r.bitpos("bp", 1, -1, -1, "BIT") == -1
    assert r.execute_command("BITPOS", "bp", "0", "9", "0", "BIT") == -1
    assert r.execute_command("BITPOS", "bp", "0", "9", "-1", "BIT") == 12
    r.set("ones", b"\xff\xff")
    # no explicit end: the string is taken as padded with zeros on the right
    assert r.bitpos("ones", 0) == 16
    assert r.bitpos("ones", 0, 0) == 16
    assert r.bitpos("ones", 0, 1) == 16
    assert r.execute_command("BITPOS", "ones", "0", "3", "15", "BIT") == -1
    assert r.bitpos("ones", 0, 0, -1) == -1
    r.set("zeros", b"\x00\x00")
    assert r.bitpos("zeros", 1) == -1
    assert r.bitpos("zeros", 0) == 0
    assert r.bitpos("zeros", 0, 1, 1) == 8
    assert r.bitpos("zeros", 1, 3, -1, "BIT") == -1
    assert r.bitpos("nokey", 0) == 0
    assert r.bitpos("nokey", 1) == -1
    r.set("e", "")
    assert r.bitpos("e", 0) == -1
    assert r.bitpos("e", 1) == -1


def test_bitpos_exact_bits(r):
    r.set("k", b"\x00\x10\x00\x01")
    assert r.bitpos("k", 1) == 11
    assert r.bitpos("k", 1, 12, 31, "BIT") == 31
    assert r.bitpos("k", 1, 2) == 31
    assert r.bitpos("k", 0, 11, 11, "BIT") == -1
    assert r.bitpos("k", 0, 11, 12, "BIT") == 12


def test_bitpos_errors(r):
    r.set("bp", "x")
    assert err(r, "BITPOS", "bp", "2") == "The bit argument must be 1 or 0."
    assert err(r, "BITPOS", "bp", "-1") == "The bit argument must be 1 or 0."
    assert err(r, "BITPOS", "bp", "x") == ERR_INT
    assert err(r, "BITPOS", "bp", "0", "0", "7", "foo") == "syntax error"
    assert err(r, "BITPOS", "bp", "0", "1", "2", "BIT", "4") == "syntax error"
    assert err(r, "BITPOS", "bp", "0", "a") == ERR_INT
    assert err(r, "BITPOS", "nokey", "2") == "The bit argument must be 1 or 0."


# ---------------------------------------------------------------- BITOP

def test_bitop(r):
    r.set("a", b"\xf0\x0f\xaa")
    r.set("b", b"\xff\x00")
    assert r.bitop("AND", "d", "a", "b") == 3
    assert r.get("d") == b"\xf0\x00\x00"
    assert r.bitop("or", "d", "a", "b", "nokey") == 3
    assert r.get("d") == b"\xff\x0f\xaa"
    assert r.bitop("XOR", "d", "a", "b") == 3
    assert r.get("d") == b"\x0f\x0f\xaa"
    assert r.bitop("NOT", "d", "a") == 3
    assert r.get("d") == b"\x0f\xf0\x55"
    assert r.bitop("AND", "d", "a", "nokey") == 3
    assert r.get("d") == b"\x00\x00\x00"
    r.expire("d", 100)
    assert r.bitop("XOR", "d", "a") == 3
    assert r.ttl("d") == -1
    # an all-empty result deletes the destination
    assert r.bitop("AND", "d", "nokey", "nokey2") == 0
    assert r.exists("d") == 0
    r.set("e", "")
    r.set("d", "x")
    assert r.bitop("OR", "d", "e") == 0
    assert r.exists("d") == 0


def test_bitop_errors(r):
    r.set("a", "x")
    assert err(r, "BITOP", "NOT", "d", "a", "a") == \
        "BITOP NOT must be called with a single source key."
    assert err(r, "BITOP", "NAND", "d", "a") == "syntax error"
    assert err(r, "BITOP", "AND", "d") == "wrong number of arguments for 'bitop' command"


# ---------------------------------------------------------------- BITFIELD

def test_bitfield_basic(r):
    assert r.execute_command("BITFIELD", "bf", "SET", "u8", "0", "255", "GET", "u8", "0") == \
        [0, 255]
    assert r.execute_command("BITFIELD", "bf", "SET", "i8", "0", "-1", "GET", "i8", "0",
                             "GET", "u8", "0") == [-1, -1, 255]
    assert r.execute_command("BITFIELD", "bf2", "SET", "u4", "6", "15", "SET", "i7", "13",
                             "-13", "GET", "u16", "0", "GET", "i12", "3") == [0, 0, 967, 483]
    assert r.get("bf2") == b"\x03\xc70"
    assert r.execute_command("BITFIELD", "bf2", "INCRBY", "i7", "13", "100", "GET", "u32",
                             "0", "INCRBY", "u9", "3", "700") == [-41, 63270912, 248]
    assert r.get("bf2") == b"\x0f\x85p"
    # #N offsets are multiplied by the type width
    assert r.execute_command("BITFIELD", "h", "SET", "u8", "#1", "65", "GET", "u8", "8",
                             "GET", "u4", "#3") == [0, 65, 1]
    assert r.get("h") == b"\x00A"
    assert r.execute_command("BITFIELD", "nokey", "GET", "u8", "0", "GET", "i16", "3") == [0, 0]
    assert r.exists("nokey") == 0
    assert r.execute_command("BITFIELD", "bf") == []


def test_bitfield_overflow(r):
    cmd = ("BITFIELD", "c", "INCRBY", "u2", "100", "1", "OVERFLOW", "SAT", "INCRBY", "u2",
           "102", "1")
    assert r.execute_command(*cmd) == [1, 1]
    assert r.execute_command(*cmd) == [2, 2]
    assert r.execute_command(*cmd) == [3, 3]
    assert r.execute_command(*cmd) == [0, 3]
    assert r.execute_command("BITFIELD", "c", "OVERFLOW", "FAIL", "INCRBY", "u2", "102",
                             "1") == [None]
    assert r.execute_command("BITFIELD", "c", "OVERFLOW", "SAT", "INCRBY", "u2", "102",
                             "-5") == [0]
    assert r.execute_command("BITFIELD", "c", "OVERFLOW", "WRAP", "INCRBY", "u2", "102",
                             "-5") == [3]
    assert r.execute_command("BITFIELD", "s", "INCRBY", "i5", "30", "100", "INCRBY", "i5",
                             "30", "100", "INCRBY", "i5", "30", "-200") == [4, 8, 0]
    assert r.execute_command("BITFIELD", "s", "OVERFLOW", "SAT", "INCRBY", "i5", "30",
                             "100", "INCRBY", "i5", "30", "-200") == [15, -16]
    assert r.execute_command("BITFIELD", "s", "OVERFLOW", "FAIL", "INCRBY", "i5", "30",
                             "100", "GET", "i5", "30") == [None, -16]
    # SET with overflow: the new value is wrapped / saturated / refused
    assert r.execute_command("BITFIELD", "t", "OVERFLOW", "SAT", "SET", "u8", "#0", "-1",
                             "SET", "u8", "#1", "300", "SET", "i8", "#2", "-300", "SET",
                             "i8", "#3", "300", "GET", "u8", "#0", "GET", "u8", "#1",
                             "GET", "i8", "#2", "GET", "i8", "#3") == \
        [0, 0, 0, 0, 255, 255, -128, 127]
    assert r.execute_command("BITFIELD", "t", "OVERFLOW", "WRAP", "SET", "u8", "#0", "-1",
                             "SET", "u8", "#1", "300", "SET", "i8", "#2", "-300", "SET",
                             "i8", "#3", "300", "GET", "u8", "#0", "GET", "u8", "#1",
                             "GET", "i8", "#2", "GET", "i8", "#3") == \
        [255, 255, -128, 127, 255, 44, -44, 44]
    assert r.execute_command("BITFIELD", "t", "OVERFLOW", "FAIL", "SET", "u8", "#0", "-1",
                             "SET", "u8", "#1", "3") == [None, 44]
    # 64-bit signed limits
    assert r.execute_command("BITFIELD", "w", "SET", "i64", "0", "9223372036854775807",
                             "INCRBY", "i64", "0", "1") == [0, -9223372036854775808]
    assert r.execute_command("BITFIELD", "w", "OVERFLOW", "SAT", "INCRBY", "i64", "0",
                             "-1") == [-9223372036854775808]
    assert r.execute_command("BITFIELD", "w", "SET", "u63", "0", "9223372036854775807",
                             "OVERFLOW", "SAT", "INCRBY", "u63", "0", "1") == \
        [4611686018427387904, 9223372036854775807]


def test_bitfield_fail_creates_key(r):
    assert r.execute_command("BITFIELD", "n", "OVERFLOW", "FAIL", "SET", "u8", "0",
                             "256") == [None]
    assert r.get("n") == b"\x00"


def test_bitfield_errors(r):
    r.set("bf", "x")
    for t in ("u64", "i65", "i0", "x8", "I8", "u", "u-1", "i8a"):
        assert err(r, "BITFIELD", "bf", "GET", t, "0") == BF_TYPE, t
    for off in ("-1", "#-1", "#", "#a", "4294967296", "#536870912", "1.5"):
        assert err(r, "BITFIELD", "bf", "GET", "u8", off) == BIT_OFF, off
    assert err(r, "BITFIELD", "bf", "SET", "u8", "0") == "syntax error"
    assert err(r, "BITFIELD", "bf", "GET", "u8") == "syntax error"
    assert err(r, "BITFIELD", "bf", "foo", "u8", "0") == "syntax error"
    assert err(r, "BITFIELD", "bf", "SET", "u8", "0", "x") == ERR_INT
    assert err(r, "BITFIELD", "bf", "OVERFLOW", "foo", "GET", "u8", "0") == \
        "Invalid OVERFLOW type specified"
    assert err(r, "BITFIELD", "bf", "OVERFLOW") == "syntax error"
    assert r.execute_command("BITFIELD", "bf", "OVERFLOW", "FAIL") == []
    assert r.get("bf") == b"x"


def test_bitfield_ro(r):
    r.set("k", b"\xa5\x0f")
    assert r.execute_command("BITFIELD_RO", "k", "GET", "u8", "0", "GET", "i4", "3") == \
        [165, 2]
    assert r.execute_command("BITFIELD_RO", "k", "GET", "u4", "#3") == [15]
    assert r.execute_command("BITFIELD_RO", "nokey", "GET", "u8", "100") == [0]
    assert r.execute_command("BITFIELD_RO", "k") == []
    assert err(r, "BITFIELD_RO", "k", "SET", "u8", "0", "1") == \
        "BITFIELD_RO only supports the GET subcommand"
    assert err(r, "BITFIELD_RO", "k", "INCRBY", "u8", "0", "1") == \
        "BITFIELD_RO only supports the GET subcommand"
    assert r.get("k") == b"\xa5\x0f"


def test_bitfield_resp3_null(server):
    c = redis.Redis(host="127.0.0.1", port=server.port, protocol=3, socket_timeout=10)
    try:
        c.delete("k")
        assert c.execute_command("BITFIELD", "k", "OVERFLOW", "FAIL", "INCRBY", "u2", "0",
                                 "9", "GET", "u2", "0") == [None, 0]
    finally:
        c.close()


# ---------------------------------------------------------------- handler level

def test_wrongtype_and_dirty():
    c = _Client()
    c.db.set(b"h", {"not": "a string"})
    cases = [
        (bits.setbit, "SETBIT", "h", "1", "1"), (bits.getbit, "GETBIT", "h", "1"),
        (bits.bitcount, "BITCOUNT", "h"), (bits.bitpos, "BITPOS", "h", "1"),
        (bits.bitop, "BITOP", "AND", "d", "h"),
        (bits.bitfield, "BITFIELD", "h", "GET", "u8", "0"),
        (bits.bitfield, "BITFIELD", "h", "SET", "u8", "0", "1"),
        (bits.bitfield_ro, "BITFIELD_RO", "h", "GET", "u8", "0"),
    ]
    for fn, *args in cases:
        with pytest.raises(CommandError) as ei:
            call(c, fn, *args)
        assert ei.value.msg.startswith("WRONGTYPE "), args
    assert c.srv.dirty == 0
    call(c, bits.setbit, "SETBIT", "b", "1", "0")        # always a change in Redis
    assert c.srv.dirty == 1 and c.db.get(b"b") == b"\x00"
    call(c, bits.bitfield, "BITFIELD", "b", "SET", "u8", "0", "1", "INCRBY", "u8", "0", "1",
         "GET", "u8", "0")
    assert c.srv.dirty == 3
    call(c, bits.bitop, "BITOP", "AND", "d", "nokey")    # nothing to delete
    assert c.srv.dirty == 3
    assert type(c.db.get(b"b")) is bytes

"""String commands, checked against Redis 7.0 behaviour (replies and error texts)."""

from __future__ import annotations

import time

import pytest
import redis

from pynode.commands import CommandError, strings
from pynode.info import Stats
from pynode.resp import NIL2
from storage.keyspace import Keyspace

ERR_INT = "value is not an integer or out of range"
ERR_FLOAT = "value is not a valid float"


def raw(r, *cmd):
    """Send a command and return the reply without redis-py's reply callbacks."""
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command(*cmd)
        reply = conn.read_response()
    finally:
        r.connection_pool.release(conn)
    if isinstance(reply, redis.ResponseError):
        raise reply
    return reply


def err(r, *cmd) -> str:
    with pytest.raises(redis.ResponseError) as ei:
        r.execute_command(*cmd)
    return str(ei.value)


# ---------------------------------------------------------------- GET / SET

def test_get_set_basic(r):
    assert r.get("nokey") is None
    assert r.set("k", b"v\x00\xff") is True
    assert r.get("k") == b"v\x00\xff"
    assert raw(r, "SET", "k", "") == b"OK"
    assert r.get("k") == b""


def test_set_nx_xx(r):
    assert r.set("k", "a", nx=True) is True
    assert r.set("k", "b", nx=True) is None
    assert r.get("k") == b"a"
    assert r.set("k", "c", xx=True) is True
    assert r.get("k") == b"c"
    assert r.set("missing", "c", xx=True) is None
    assert r.exists("missing") == 0
    assert err(r, "SET", "k", "v", "NX", "XX") == "syntax error"
    assert err(r, "SET", "k", "v", "XX", "NX") == "syntax error"
    # repeated identical flags are accepted, as in Redis
    assert raw(r, "SET", "k", "v", "NX", "NX") is None
    assert raw(r, "SET", "k", "v", "xx", "XX") == b"OK"


def test_set_get_option(r):
    assert r.set("k", "v1", get=True) is None
    assert r.set("k", "v2", get=True) == b"v1"
    assert raw(r, "SET", "k", "v3", "NX", "GET") == b"v2"
    assert r.get("k") == b"v2"
    assert raw(r, "SET", "k", "v4", "XX", "GET") == b"v2"
    assert r.get("k") == b"v4"
    assert raw(r, "SET", "new", "x", "XX", "GET") is None
    assert r.exists("new") == 0
    assert raw(r, "SET", "new", "x", "NX", "GET") is None
    assert r.get("new") == b"x"
    assert raw(r, "SET", "k", "v", "GET", "GET") == b"v4"


def test_set_expire_options(r):
    assert r.set("k", "v", ex=100) is True
    assert 99 <= r.ttl("k") <= 100
    assert r.set("k", "v", px=100000) is True
    assert 99000 <= r.pttl("k") <= 100000
    at = int(time.time()) + 200
    assert r.set("k", "v", exat=at) is True
    assert 198 <= r.ttl("k") <= 200
    atms = int(time.time() * 1000) + 300000
    assert r.set("k", "v", pxat=atms) is True
    assert 298000 <= r.pttl("k") <= 300000
    # KEEPTTL keeps it, a plain SET clears it
    assert r.set("k", "w", keepttl=True) is True
    assert r.pttl("k") > 290000
    assert r.get("k") == b"w"
    assert r.set("k", "x") is True
    assert r.ttl("k") == -1
    # last of repeated EX wins
    assert raw(r, "SET", "k", "v", "EX", "10", "EX", "500") == b"OK"
    assert r.ttl("k") > 400
    # an absolute time in the past: the key is set but already expired
    assert raw(r, "SET", "k", "v", "PXAT", "1") == b"OK"
    assert r.get("k") is None


def test_set_expire_errors(r):
    bad = "invalid expire time in 'set' command"
    for args in (("EX", "0"), ("EX", "-1"), ("PX", "0"), ("EXAT", "0"), ("PXAT", "-5"),
                 ("EX", "9223372036854776"), ("PX", "9223372036854775807"),
                 ("EXAT", "9223372036854776")):
        assert err(r, "SET", "k", "v", *args) == bad, args
    assert err(r, "SET", "k", "v", "EX", "abc") == ERR_INT
    assert err(r, "SET", "k", "v", "EX", "1.5") == ERR_INT
    for args in (("EX",), ("EX", "10", "PX", "10"), ("EX", "10", "KEEPTTL"),
                 ("KEEPTTL", "EX", "10"), ("PERSIST",), ("foo",), ("EXAT", "1", "PXAT", "1")):
        assert err(r, "SET", "k", "v", *args) == "syntax error", args
    # syntax is checked before the expire value
    assert err(r, "SET", "k", "v", "EX", "0", "bogus") == "syntax error"
    assert r.exists("k") == 0
    assert raw(r, "SET", "k", "v", "pxat", "9223372036854775807") == b"OK"


def test_setnx_setex_psetex(r):
    assert r.setnx("k", "a") is True
    assert r.setnx("k", "b") is False
    assert r.get("k") == b"a"
    assert raw(r, "SETEX", "e", "100", "v") == b"OK"
    assert r.get("e") == b"v" and 99 <= r.ttl("e") <= 100
    assert r.psetex("p", 100000, "v") is True
    assert 99000 <= r.pttl("p") <= 100000
    assert err(r, "SETEX", "e", "0", "v") == "invalid expire time in 'setex' command"
    assert err(r, "SETEX", "e", "-1", "v") == "invalid expire time in 'setex' command"
    assert err(r, "SETEX", "e", "x", "v") == ERR_INT
    assert err(r, "PSETEX", "e", "0", "v") == "invalid expire time in 'psetex' command"
    assert err(r, "SETEX", "e", "1") == "wrong number of arguments for 'setex' command"


def test_getset_getdel(r):
    assert r.getset("k", "a") is None
    assert r.getset("k", "b") == b"a"
    r.expire("k", 100)
    assert r.getset("k", "c") == b"b"
    assert r.ttl("k") == -1
    assert r.getdel("k") == b"c"
    assert r.exists("k") == 0
    assert r.getdel("k") is None


def test_getex(r):
    assert r.getex("nokey", ex=10) is None
    r.set("k", "v")
    assert r.getex("k") == b"v"
    assert r.ttl("k") == -1
    assert r.getex("k", ex=100) == b"v"
    assert 99 <= r.ttl("k") <= 100
    assert r.getex("k", px=200000) == b"v"
    assert r.pttl("k") > 190000
    assert r.getex("k", exat=int(time.time()) + 300) == b"v"
    assert 298 <= r.ttl("k") <= 300
    assert r.getex("k", persist=True) == b"v"
    assert r.ttl("k") == -1
    # absolute time in the past deletes the key, after returning it
    assert r.getex("k", pxat=1) == b"v"
    assert r.exists("k") == 0
    r.set("k", "v")
    for args in (("PERSIST", "EX", "10"), ("EX", "10", "PERSIST"), ("KEEPTTL",), ("NX",),
                 ("GET",), ("EX",), ("EX", "1", "PX", "1")):
        assert err(r, "GETEX", "k", *args) == "syntax error", args
    assert err(r, "GETEX", "k", "EX", "0") == "invalid expire time in 'getex' command"
    assert err(r, "GETEX", "k", "PX", "-1") == "invalid expire time in 'getex' command"
    assert err(r, "GETEX", "k", "EX", "x") == ERR_INT
    # on a missing key the expire value is not even looked at
    assert r.execute_command("GETEX", "nokey", "EX", "0") is None


def test_mget_mset_msetnx(r):
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget("a", "nokey", "b") == [b"1", None, b"2"]
    assert err(r, "MSET", "a", "1", "b") == "wrong number of arguments for 'mset' command"
    assert err(r, "MSET", "a") == "wrong number of arguments for 'mset' command"
    assert r.msetnx({"a": "x", "c": "3"}) is False
    assert r.exists("c") == 0
    assert r.msetnx({"c": "3", "d": "4"}) is True
    assert r.mget("a", "c", "d") == [b"1", b"3", b"4"]
    assert err(r, "MSETNX", "e", "1", "f") == "wrong number of arguments for 'msetnx' command"
    r.expire("a", 100)
    r.mset({"a": "z"})
    assert r.ttl("a") == -1


def test_mset_key_given_again(r):
    # a key given twice or more ends with its last value, whether the pairs
    # repeat one after the other or come back later
    assert r.execute_command("MSET", "a", "1", "a", "1", "a", "2", "b", "3", "a", "2") is True
    assert r.mget("a", "b") == [b"2", b"3"]
    assert r.execute_command("MSET", "n", "x", "n", "x", "n", "x") is True
    assert r.get("n") == b"x"
    assert r.execute_command("MSET", "a", "4", "b", "5", "a", "6", "a", "6", "b", "5") is True
    assert r.mget("a", "b") == [b"6", b"5"]
    r.expire("a", 100)
    assert r.execute_command("MSET", "a", "7", "a", "7") is True
    assert r.get("a") == b"7" and r.ttl("a") == -1
    assert r.object("encoding", "n") == b"embstr"
    assert r.execute_command("MSET", "n", "12", "n", "12") is True
    assert r.object("encoding", "n") == b"int"
    assert r.dbsize() == 3


def test_append_strlen(r):
    assert r.append("k", "hello") == 5
    r.expire("k", 100)
    assert r.append("k", " world") == 11
    assert r.get("k") == b"hello world"
    assert r.ttl("k") > 0
    assert r.strlen("k") == 11
    assert r.strlen("nokey") == 0
    assert r.append("k", "") == 11


# ---------------------------------------------------------------- counters

def test_incr_decr(r):
    assert r.incr("n") == 1
    assert r.incr("n") == 2
    assert r.decr("n") == 1
    assert r.incrby("n", 10) == 11
    assert r.decrby("n", 5) == 6
    assert r.decr("m") == -1
    assert r.get("n") == b"6"
    r.expire("n", 100)
    assert r.incr("n") == 7
    assert r.ttl("n") > 0
    r.set("big", "999999999999999999")
    assert r.incr("big") == 1000000000000000000
    r.set("neg", "-5")
    assert r.incr("neg") == -4


def test_incr_errors(r):
    for bad in (" 1", "01", "+1", "-0", "1.0", "abc", "", "99999999999999999999",
                "-9223372036854775809", "1 "):
        r.set("n", bad)
        assert err(r, "INCR", "n") == ERR_INT, bad
        assert r.get("n") == bad.encode()
    r.set("n", "9223372036854775807")
    assert err(r, "INCR", "n") == "increment or decrement would overflow"
    r.set("n", "-9223372036854775808")
    assert err(r, "DECR", "n") == "increment or decrement would overflow"
    assert err(r, "INCRBY", "n", "-1") == "increment or decrement would overflow"
    r.set("n", "5")
    assert err(r, "INCRBY", "n", "abc") == ERR_INT
    assert err(r, "INCRBY", "n", "01") == ERR_INT
    assert err(r, "INCRBY", "n", "9223372036854775808") == ERR_INT
    assert err(r, "DECRBY", "n", "-9223372036854775808") == "decrement would overflow"
    assert r.incrby("n", -9223372036854775808) == -9223372036854775803
    assert r.decrby("n", 5) == -9223372036854775808


@pytest.mark.parametrize("init,incr,expected", [
    ("10.5", "0.1", "10.6"),
    (None, "0.1", "0.1"),
    ("0.1", "0.2", "0.3"),
    ("3.0e3", "1.5", "3001.5"),
    (None, "5.0e3", "5000"),
    ("1", "-1", "0"),
    (None, "-0.0000000000000000001", "0"),
    ("1", "0x1p-3", "1.125"),
    (None, "3.14159265358979323846", "3.14159265358979324"),
    ("1e17", "1", "100000000000000001"),
    ("-5", "2.5", "-2.5"),
    (None, "1e200", "10000000000000000000245858653416102566150806804005000288732750048732"
                    "57854323839262083728907361291987398136581473596522385665929606178545"
                    "87787845326097835852628442219969983473365844529789269081145212928"),
])
def test_incrbyfloat_formatting(r, init, incr, expected):
    """Values measured on redis-server 7.0 (x87 long double, %.17Lf)."""
    if init is not None:
        r.set("f", init)
    assert raw(r, "INCRBYFLOAT", "f", incr) == expected.encode()
    assert r.get("f") == expected.encode()


def test_incrbyfloat_errors(r):
    for bad in ("abc", "nan", "1e", ".", "1/2", "1_0", " 1", "1 ", "1e5000", "1e-5000", ""):
        assert err(r, "INCRBYFLOAT", "f", bad) == ERR_FLOAT, bad
    assert r.exists("f") == 0
    assert err(r, "INCRBYFLOAT", "f", "inf") == "increment would produce NaN or Infinity"
    assert err(r, "INCRBYFLOAT", "f", "-Infinity") == \
        "increment would produce NaN or Infinity"
    r.set("f", "1.18e4932")
    assert err(r, "INCRBYFLOAT", "f", "1.18e4932") == "increment would produce NaN or Infinity"
    r.set("f", "abc")
    assert err(r, "INCRBYFLOAT", "f", "1") == ERR_FLOAT
    r.set("f", "1.5")
    r.expire("f", 100)
    assert r.incrbyfloat("f", 1) == 2.5
    assert r.ttl("f") > 0


# ---------------------------------------------------------------- ranges

def test_getrange(r):
    r.set("k", "Hello World")
    assert r.getrange("k", 0, 4) == b"Hello"
    assert r.getrange("k", -5, -1) == b"World"
    assert r.getrange("k", -1, -5) == b""
    assert r.getrange("k", 5, 2) == b""
    assert r.getrange("k", 0, 100) == b"Hello World"
    assert r.getrange("k", -100, 2) == b"Hel"
    assert r.getrange("k", -100, -50) == b"H"
    assert r.getrange("k", 3, -100) == b""
    assert r.getrange("k", 0, 9223372036854775807) == b"Hello World"
    assert r.getrange("nokey", 0, 1) == b""
    assert r.execute_command("SUBSTR", "k", "0", "3") == b"Hell"
    assert err(r, "GETRANGE", "k", "a", "1") == ERR_INT
    r.set("e", "")
    assert r.getrange("e", 0, -1) == b""


def test_setrange(r):
    assert r.setrange("k", 5, "abc") == 8
    assert r.get("k") == b"\x00" * 5 + b"abc"
    assert r.setrange("k", 0, "X") == 8
    assert r.get("k") == b"X\x00\x00\x00\x00abc"
    assert r.setrange("k", 6, "ZZZZ") == 10
    assert r.get("k") == b"X\x00\x00\x00\x00aZZZZ"
    assert r.setrange("k", 20, "") == 10
    assert r.setrange("nokey", 20, "") == 0
    assert r.exists("nokey") == 0
    assert err(r, "SETRANGE", "k", "-1", "a") == "offset is out of range"
    assert err(r, "SETRANGE", "k", "abc", "a") == ERR_INT
    assert err(r, "SETRANGE", "k", "536870912", "a") == \
        "string exceeds maximum allowed size (proto-max-bulk-len)"
    assert err(r, "SETRANGE", "k", "536870911", "ab") == \
        "string exceeds maximum allowed size (proto-max-bulk-len)"
    r.expire("k", 100)
    r.setrange("k", 0, "Y")
    assert r.ttl("k") > 0


# ---------------------------------------------------------------- LCS

def test_lcs(r):
    r.mset({"a": "ohmytext", "b": "mynewtext"})
    assert r.execute_command("LCS", "a", "b") == b"mytext"
    assert r.execute_command("LCS", "a", "b", "LEN") == 6
    assert r.execute_command("LCS", "a", "nokey") == b""
    assert r.execute_command("LCS", "a", "nokey", "LEN") == 0
    idx = r.execute_command("LCS", "a", "b", "IDX")
    assert idx == [b"matches", [[[4, 7], [5, 8]], [[2, 3], [0, 1]]], b"len", 6]
    idx = r.execute_command("LCS", "a", "b", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN")
    assert idx == [b"matches", [[[4, 7], [5, 8], 4]], b"len", 6]
    idx = r.execute_command("LCS", "a", "b", "IDX", "WITHMATCHLEN", "MINMATCHLEN", "-3")
    assert idx == [b"matches", [[[4, 7], [5, 8], 4], [[2, 3], [0, 1], 2]], b"len", 6]
    r.mset({"c": "ABCBDAB", "d": "BDCABA"})
    assert r.execute_command("LCS", "c", "d") == b"BDAB"
    assert r.execute_command("LCS", "c", "d", "IDX", "WITHMATCHLEN") == \
        [b"matches", [[[5, 6], [3, 4], 2], [[3, 4], [0, 1], 2]], b"len", 4]
    # WITHMATCHLEN / MINMATCHLEN without IDX just return the string
    assert r.execute_command("LCS", "a", "b", "WITHMATCHLEN") == b"mytext"


def test_lcs_errors(r):
    r.mset({"a": "ohmytext", "b": "mynewtext"})
    assert err(r, "LCS", "a", "b", "IDX", "LEN") == \
        "If you want both the length and indexes, please just use IDX."
    assert err(r, "LCS", "a", "b", "MINMATCHLEN") == "syntax error"
    assert err(r, "LCS", "a", "b", "MINMATCHLEN", "x") == ERR_INT
    assert err(r, "LCS", "a", "b", "foo") == "syntax error"


def test_lcs_resp3(server):
    c = redis.Redis(host="127.0.0.1", port=server.port, protocol=3, socket_timeout=10)
    try:
        c.mset({"a": "ohmytext", "b": "mynewtext"})
        res = c.execute_command("LCS", "a", "b", "IDX", "WITHMATCHLEN")
        assert res == {b"matches": [[[4, 7], [5, 8], 4], [[2, 3], [0, 1], 2]], b"len": 6}
        assert c.execute_command("LCS", "a", "b") == b"mytext"
    finally:
        c.close()


def test_lcs_resp3_wire(server):
    """The RESP3 reply is a map (%2), RESP2 a flat array (*4)."""
    from tests.helpers import raw_command
    raw_command(server.port, b"SET a ab\r\nSET b ab\r\n")
    out = raw_command(server.port, b"HELLO 3\r\nLCS a b IDX\r\n")
    assert out.endswith(b"%2\r\n$7\r\nmatches\r\n*1\r\n*2\r\n*2\r\n:0\r\n:1\r\n"
                        b"*2\r\n:0\r\n:1\r\n$3\r\nlen\r\n:2\r\n")
    out = raw_command(server.port, b"LCS a b IDX\r\n")
    assert out == (b"*4\r\n$7\r\nmatches\r\n*1\r\n*2\r\n*2\r\n:0\r\n:1\r\n"
                   b"*2\r\n:0\r\n:1\r\n$3\r\nlen\r\n:2\r\n")


# ---------------------------------------------------------------- RESP3 nulls, stats

def test_resp3_null_replies(server):
    from tests.helpers import raw_command
    out = raw_command(server.port, b"HELLO 3\r\nDEL nokey\r\nGET nokey\r\n"
                      b"SET nokey v NX GET\r\nDEL nokey\r\n")
    assert out.endswith(b":0\r\n_\r\n_\r\n:1\r\n")


# ---------------------------------------------------------------- handler level:
# WRONGTYPE (no other type exists at the wire level yet) and AOF propagation.

class _Cfg:
    def bool(self, name):
        return False


class _Srv:
    def __init__(self):
        self.ks = Keyspace()
        self.dirty = 0
        self.stats = Stats()
        self.proto_max_bulk_len = 512 * 1024 * 1024
        self.notify_flags = 0
        self.cfg = _Cfg()


class _Client:
    def __init__(self):
        self.srv = _Srv()
        self.db = self.srv.ks.db(0)
        self.resp = 2
        self.nil = NIL2
        self.rewrite = None


def call(c, fn, *args):
    c.rewrite = None
    c.srv.ks.tick()
    return fn(c, [a.encode() if isinstance(a, str) else a for a in args])


def test_wrongtype_handlers():
    c = _Client()
    c.db.set(b"h", {"not": "a string"})
    cases = [
        (strings.get, "GET", "h"), (strings.set_, "SET", "h", "v", "GET"),
        (strings.getset, "GETSET", "h", "v"), (strings.getdel, "GETDEL", "h"),
        (strings.getex, "GETEX", "h", "EX", "10"), (strings.append, "APPEND", "h", "x"),
        (strings.strlen, "STRLEN", "h"), (strings.incr, "INCR", "h"),
        (strings.decr, "DECR", "h"), (strings.incrby, "INCRBY", "h", "2"),
        (strings.decrby, "DECRBY", "h", "2"), (strings.incrbyfloat, "INCRBYFLOAT", "h", "1"),
        (strings.getrange, "GETRANGE", "h", "0", "1"),
        (strings.setrange, "SETRANGE", "h", "0", "x"),
    ]
    for fn, *args in cases:
        with pytest.raises(CommandError) as ei:
            call(c, fn, *args)
        assert ei.value.msg.startswith("WRONGTYPE "), args
    with pytest.raises(CommandError) as ei:
        call(c, strings.lcs, "LCS", "h", "x")
    assert ei.value.msg == "ERR The specified keys must contain string values"
    # SET without GET overwrites any type; MGET answers nil for other types
    assert call(c, strings.mget, "MGET", "h") == b"*1\r\n$-1\r\n"
    assert call(c, strings.set_, "SET", "h", "v", "XX") == b"+OK\r\n"
    assert c.db.get(b"h") == b"v"
    assert c.srv.dirty == 1


def test_propagation_rewrites():
    c = _Client()
    now = c.srv.ks.tick()
    call(c, strings.set_, "SET", "k", "v", "EX", "10")
    [[cmd, k, v, opt, when]] = c.rewrite
    assert (cmd, k, v, opt) == (b"SET", b"k", b"v", b"PXAT")
    assert now + 10000 <= int(when) <= now + 11000
    assert c.db.get_expire(b"k") == int(when)
    call(c, strings.set_, "SET", "k", "v", "EXAT", "2000000000")
    assert c.rewrite == [[b"SET", b"k", b"v", b"PXAT", b"2000000000000"]]
    call(c, strings.set_, "SET", "k", "v", "PXAT", "2000000000123", "GET")
    assert c.rewrite == [[b"SET", b"k", b"v", b"PXAT", b"2000000000123"]]
    call(c, strings.set_, "SET", "k", "v2", "XX", "GET")
    assert c.rewrite == [[b"SET", b"k", b"v2", b"XX"]]   # GET dropped
    call(c, strings.set_, "SET", "k", "v3", "get", "PX", "5000")
    assert c.rewrite[0][:4] == [b"SET", b"k", b"v3", b"PXAT"]
    call(c, strings.setex, "SETEX", "s", "100", "v")
    assert c.rewrite[0][:4] == [b"SET", b"s", b"v", b"PXAT"]
    assert int(c.rewrite[0][4]) >= now + 100000
    call(c, strings.psetex, "PSETEX", "s", "100", "v")
    assert c.rewrite[0][:4] == [b"SET", b"s", b"v", b"PXAT"]
    call(c, strings.getex, "GETEX", "s", "EX", "50")
    assert c.rewrite[0][:2] == [b"PEXPIREAT", b"s"] and int(c.rewrite[0][2]) >= now + 50000
    call(c, strings.getex, "GETEX", "s", "PXAT", "2000000000123")
    assert c.rewrite == [[b"PEXPIREAT", b"s", b"2000000000123"]]
    call(c, strings.getex, "GETEX", "s", "PERSIST")
    assert c.rewrite == [[b"PERSIST", b"s"]]
    dirty = c.srv.dirty
    call(c, strings.getex, "GETEX", "s", "PERSIST")  # no TTL: nothing changes
    assert c.rewrite is None and c.srv.dirty == dirty
    call(c, strings.getex, "GETEX", "s", "PXAT", "1")
    assert c.rewrite == [[b"DEL", b"s"]]
    call(c, strings.getset, "GETSET", "g", "v")
    assert c.rewrite == [[b"SET", b"g", b"v"]]
    call(c, strings.getdel, "GETDEL", "g")
    assert c.rewrite == [[b"DEL", b"g"]]
    call(c, strings.incrbyfloat, "INCRBYFLOAT", "f", "1.5")
    assert c.rewrite == [[b"SET", b"f", b"1.5", b"KEEPTTL"]]
    dirty = c.srv.dirty
    call(c, strings.set_, "SET", "k", "x", "NX")     # not set: not dirty
    call(c, strings.setnx, "SETNX", "k", "x")
    call(c, strings.msetnx, "MSETNX", "k", "x", "z", "y")
    assert c.srv.dirty == dirty
    call(c, strings.mset, "MSET", "a", "1", "b", "2")
    assert c.srv.dirty == dirty + 2


def test_keyspace_hits_misses():
    c = _Client()
    call(c, strings.set_, "SET", "k", "v")
    call(c, strings.get, "GET", "k")
    call(c, strings.get, "GET", "nokey")
    call(c, strings.mget, "MGET", "k", "nokey", "nokey2")
    call(c, strings.strlen, "STRLEN", "k")
    call(c, strings.getrange, "GETRANGE", "nokey", "0", "1")
    call(c, strings.set_, "SET", "k", "w", "GET")
    call(c, strings.incr, "INCR", "n")               # writes do not count
    call(c, strings.append, "APPEND", "k", "x")
    assert (c.srv.stats.keyspace_hits, c.srv.stats.keyspace_misses) == (4, 4)


def test_aof_propagation_absolute_times():
    """What reaches the AOF is what Redis 7.0.15 writes (checked against its AOF)."""
    import glob
    import os

    from pynode.resp import RequestParser
    from tests.helpers import Proc

    p = Proc(["--appendonly", "yes", "--appendfsync", "always",
              "--aof-use-rdb-preamble", "no"]).start()
    try:
        c = p.client()
        now = int(time.time() * 1000)
        c.set("a", "1", ex=100)
        c.execute_command("SETEX", "b", "100", "v")
        c.execute_command("GETEX", "a", "PERSIST")
        c.execute_command("GETEX", "a", "PX", "5000")
        c.set("f", "1.5")
        c.incrbyfloat("f", "1")
        c.getset("f", "x")
        c.getdel("f")
        raw(c, "SET", "g", "1", "NX", "GET")
        raw(c, "SET", "g", "2", "NX")                 # not set: not propagated
        c.execute_command("SETBIT", "h", "1", "0")
        c.close()
        deadline = time.monotonic() + 10
        cmds = []
        while time.monotonic() < deadline:
            files = glob.glob(os.path.join(p.dir, "appendonlydir", "*.incr.aof"))
            if files:
                with open(files[0], "rb") as fh:
                    cmds = RequestParser().feed(fh.read())
                if cmds and cmds[-1][0].lower() == b"setbit":
                    break
            time.sleep(0.05)
    finally:
        p.cleanup()
    cmds = [x for x in cmds if x[0].upper() != b"SELECT"]
    assert [x[0].upper() for x in cmds] == [b"SET", b"SET", b"PERSIST", b"PEXPIREAT", b"SET",
                                            b"SET", b"SET", b"DEL", b"SET", b"SETBIT"]
    assert cmds[0][:4] == [b"SET", b"a", b"1", b"PXAT"]
    assert now + 100000 <= int(cmds[0][4]) <= now + 110000
    assert cmds[1][:4] == [b"SET", b"b", b"v", b"PXAT"]
    assert cmds[2] == [b"PERSIST", b"a"]
    assert cmds[3][:2] == [b"PEXPIREAT", b"a"] and int(cmds[3][2]) >= now + 5000
    assert cmds[5] == [b"SET", b"f", b"2.5", b"KEEPTTL"]
    assert cmds[6] == [b"SET", b"f", b"x"]
    assert cmds[7] == [b"DEL", b"f"]
    assert [a.upper() for a in cmds[8]] == [b"SET", b"G", b"1", b"NX"]

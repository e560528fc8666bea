"""Hashes: commands against a pynode process (redis-py), the same scripts
against redis-server (raw RESP2/RESP3 replies, keyspace events, AOF), a
model-based test, and RDB/DUMP compatibility."""

from __future__ import annotations

import time
from decimal import Decimal
from fractions import Fraction

import pytest
import redis
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from storage import rdb, rewrite
from storage.hashes import Hash, zipmap_decode
from storage.values import LIMITS
from tests import compare
from tests.helpers import Proc
from tests.inproc import InProc, ReplyError

LONG_FIELD = "f" * 65
LONG_VALUE = "v" * 65


def err(fn, *args):
    with pytest.raises(redis.ResponseError) as ei:
        fn(*args)
    return str(ei.value)


def raw(r, *args) -> bytes:
    """The exact reply bytes of one command on r's server."""
    c = compare.Conn(r.connection_pool.connection_kwargs["port"])
    try:
        return c.call(*args)
    finally:
        c.close()


@pytest.fixture(autouse=True)
def _default_limits():
    """In-process servers set the (process-wide) encoding limits: each test
    starts and ends with the defaults."""
    LIMITS.__init__()
    yield
    LIMITS.__init__()


# ------------------------------------------------------------------ redis-py
def test_hset_hget_hmset_hsetnx(r):
    assert r.hset("h", "a", "1") == 1
    assert r.hset("h", mapping={"a": "2", "b": "3"}) == 1
    assert r.hget("h", "a") == b"2"
    assert r.hget("h", "zz") is None
    assert r.hget("nokey", "a") is None
    assert r.execute_command("HMSET", "h", "c", "4") is True
    assert r.hsetnx("h", "c", "5") == 0
    assert r.hsetnx("h", "d", "5") == 1
    assert r.hsetnx("new", "f", "v") == 1
    assert r.hgetall("h") == {b"a": b"2", b"b": b"3", b"c": b"4", b"d": b"5"}
    assert r.hset("h", "bin\x00", b"\xff\x00") == 1
    assert r.hget("h", "bin\x00") == b"\xff\x00"
    assert err(r.execute_command, "HSET", "h", "a", "1", "b") == \
        "wrong number of arguments for 'hset' command"
    assert err(r.execute_command, "HMSET", "h", "a") == \
        "wrong number of arguments for 'hmset' command"


def test_reads(r):
    r.hset("h", mapping={"a": "1", "bb": "22", "c": "333"})
    assert r.hmget("h", "a", "x", "c") == [b"1", None, b"333"]
    assert r.hmget("nokey", "a", "b") == [None, None]
    assert r.hkeys("h") == [b"a", b"bb", b"c"]
    assert r.hvals("h") == [b"1", b"22", b"333"]
    assert r.hkeys("nokey") == [] and r.hvals("nokey") == [] and r.hgetall("nokey") == {}
    assert r.hlen("h") == 3 and r.hlen("nokey") == 0
    assert r.hstrlen("h", "c") == 3 and r.hstrlen("h", "x") == 0 and r.hstrlen("nokey", "a") == 0
    assert r.hexists("h", "bb") is True and r.hexists("h", "x") is False
    assert r.hexists("nokey", "a") is False


def test_hdel_removes_empty_key(r):
    r.hset("h", mapping={"a": "1", "b": "2"})
    assert r.hdel("h", "a", "nope", "a") == 1
    assert r.hdel("nokey", "a") == 0
    assert r.hdel("h", "b") == 1
    assert r.exists("h") == 0


def test_wrongtype(r):
    r.set("s", "x")
    wrong = "WRONGTYPE Operation against a key holding the wrong kind of value"
    for args in (("HSET", "s", "a", "1"), ("HGET", "s", "a"), ("HGETALL", "s"), ("HDEL", "s", "a"),
                 ("HINCRBY", "s", "a", "1"), ("HINCRBYFLOAT", "s", "a", "1"), ("HLEN", "s"),
                 ("HRANDFIELD", "s"), ("HSCAN", "s", "0"), ("HSETNX", "s", "a", "b"),
                 ("HMGET", "s", "a"), ("HKEYS", "s"), ("HSTRLEN", "s", "a")):
        assert err(r.execute_command, *args) == wrong, args
    r.hset("h", "a", "1")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.get("h")


def test_hincrby_and_float(r):
    assert r.hincrby("h", "n", 5) == 5
    assert r.hincrby("h", "n", -7) == -2
    r.hset("h", "s", "abc")
    assert err(r.hincrby, "h", "s", 1) == "hash value is not an integer"
    assert err(r.execute_command, "HINCRBY", "h", "n", "1.5") == \
        "value is not an integer or out of range"
    r.hset("h", "max", str(2 ** 63 - 1))
    assert err(r.hincrby, "h", "max", 1) == "increment or decrement would overflow"
    assert r.hincrbyfloat("h", "f", 10.5) == 10.5
    assert raw(r, "HINCRBYFLOAT", "h", "f", "0.1") == b"$4\r\n10.6\r\n"
    assert raw(r, "HINCRBYFLOAT", "h", "f", "-10.6") == b"$1\r\n0\r\n"
    assert raw(r, "HINCRBYFLOAT", "h", "n", "1e2") == b"$2\r\n98\r\n"
    assert err(r.execute_command, "HINCRBYFLOAT", "h", "s", "1") == "hash value is not a float"
    assert err(r.execute_command, "HINCRBYFLOAT", "h", "f", "x") == "value is not a valid float"
    assert err(r.execute_command, "HINCRBYFLOAT", "h", "f", "inf") == "value is NaN or Infinity"
    r.hset("h", "inf", "inf")
    assert err(r.execute_command, "HINCRBYFLOAT", "h", "inf", "1") == \
        "increment would produce NaN or Infinity"
    # long double precision, as Redis
    assert raw(r, "HINCRBYFLOAT", "h", "p", "1.1") == b"$3\r\n1.1\r\n"
    assert raw(r, "HINCRBYFLOAT", "h", "p", "2.2") == b"$3\r\n3.3\r\n"


def test_hrandfield(r):
    assert r.hrandfield("nokey") is None
    assert r.hrandfield("nokey", 3) == []
    fields = {b"f%d" % i: b"v%d" % i for i in range(10)}
    r.hset("h", mapping=fields)
    assert r.hrandfield("h") in fields
    got = r.hrandfield("h", 5)
    assert len(got) == 5 and len(set(got)) == 5 and set(got) <= set(fields)
    got = r.hrandfield("h", -30)
    assert len(got) == 30 and set(got) <= set(fields)
    got = r.hrandfield("h", 100, withvalues=True)
    assert len(got) == 20 and dict(zip(got[::2], got[1::2])) == fields
    got = r.hrandfield("h", -4, withvalues=True)
    assert len(got) == 8 and all(fields[got[i]] == got[i + 1] for i in range(0, 8, 2))
    assert r.hrandfield("h", 0) == []
    assert err(r.execute_command, "HRANDFIELD", "h", "1", "WITHVALUE") == "syntax error"
    # a uniform pick: every field shows up over many draws
    seen = set(r.hrandfield("h", -400))
    assert seen == set(fields)


def test_hscan_listpack_and_hashtable(r):
    r.hset("small", mapping={"a": "1", "b": "2", "c": "3"})
    assert r.hscan("small", 0, count=1) == (0, {b"a": b"1", b"b": b"2", b"c": b"3"})
    assert r.hscan("small", 0, match="b*") == (0, {b"b": b"2"})
    big = {b"field:%d" % i: b"%d" % i for i in range(1000)}
    r.hset("big", mapping=big)
    assert r.object("encoding", "big") == b"hashtable"
    assert dict(r.hscan_iter("big", count=7)) == big
    assert dict(r.hscan_iter("big", match="field:99*", count=50)) == {
        k: v for k, v in big.items() if k.startswith(b"field:99")}


def test_hscan_guarantee_under_changes(r):
    """Fields present for the whole scan come back; deleted ones never
    reappear after their deletion; additions may or may not show up."""
    r.hset("h", mapping={"k%d" % i: i for i in range(600)})
    cursor, seen, steps = 0, {}, 0
    while True:
        cursor, got = r.hscan("h", cursor, count=25)
        seen.update(got)
        steps += 1
        if steps == 3:
            r.hdel("h", *["k%d" % i for i in range(300, 400)])
            r.hset("h", mapping={"n%d" % i: i for i in range(200)})
        if cursor == 0:
            break
    assert steps > 10
    for i in list(range(300)) + list(range(400, 600)):
        assert seen[b"k%d" % i] == b"%d" % i


def test_hscan_cursor_outliving_its_snapshot():
    """More concurrent scans than snapshots kept: an old cursor still
    finishes, over the hash's current fields."""
    srv = InProc()
    c = srv.client()
    fields = {b"f%d" % i: b"%d" % i for i in range(300)}
    cursors = []
    for k in range(70):
        c.call("HSET", "h%d" % k, *[x for kv in fields.items() for x in kv])
        cur, items = c.call("HSCAN", "h%d" % k, 0, "COUNT", 50)
        cursors.append((int(cur), dict(zip(items[::2], items[1::2]))))
    for k, (cur, seen) in enumerate(cursors):
        while cur:
            cur, items = c.call("HSCAN", "h%d" % k, cur, "COUNT", 50)
            cur = int(cur)
            seen.update(zip(items[::2], items[1::2]))
        assert seen == fields, k


def test_encoding_conversions(r):
    r.hset("h", mapping={"f%d" % i: i for i in range(512)})
    assert r.object("encoding", "h") == b"listpack"
    r.hset("h", "one-more", 1)
    assert r.object("encoding", "h") == b"hashtable"
    r.hdel("h", *["f%d" % i for i in range(512)])
    assert r.object("encoding", "h") == b"hashtable"        # never back
    for cmd in (("HSET", "a", "x", LONG_VALUE), ("HSET", "b", LONG_FIELD, "1"),
                ("HSETNX", "c", LONG_FIELD, "1"), ("HINCRBY", "d", LONG_FIELD, "1"),
                ("HINCRBYFLOAT", "e", "f", "1e70")):
        r.execute_command(*cmd)
        assert r.object("encoding", cmd[1]) == b"hashtable", cmd
    r.hset("ok", "f" * 64, "v" * 64)
    assert r.object("encoding", "ok") == b"listpack"
    r.config_set("hash-max-listpack-entries", 0)
    try:
        r.hset("zero", "a", "1")
        assert r.object("encoding", "zero") == b"hashtable"
    finally:
        r.config_set("hash-max-listpack-entries", 512)


def test_watch_sees_hash_changes(server):
    c1, c2 = server.client(), server.client()
    try:
        c1.hset("w", "a", "1")
        p = c1.pipeline()
        p.watch("w")
        c2.hincrby("w", "n", 1)
        p.multi()
        p.hset("w", "a", "2")
        with pytest.raises(redis.WatchError):
            p.execute()
        p.reset()
        p.watch("w")
        c2.hdel("w", "nothing")              # no change: the transaction runs
        p.multi()
        p.hset("w", "a", "3")
        assert p.execute() == [0]
    finally:
        c1.close()
        c2.close()


def test_expiry(r):
    r.hset("h", "a", "1")
    r.pexpire("h", 50)
    r.hset("h", "b", "2")                     # changing a hash keeps its TTL
    assert r.pttl("h") > 0
    time.sleep(0.1)
    assert r.hgetall("h") == {}
    assert r.exists("h") == 0


# ------------------------------------------------------------------ against redis-server
BASIC = """
HSET h a 1 b 2 c 3
HSET h a 1
HSET h a
HSET h a 1 b
HMSET h a 1 b
HMSET h x 1
HSETNX h a 5
HSETNX h z 5
HSETNX nh z 5
HGET h a
HGET h nope
HGET nokey a
HMGET h a nope b
HMGET nokey a b
HGETALL h
HGETALL nokey
HKEYS h
HVALS h
HKEYS nokey
HVALS nokey
HLEN h
HLEN nokey
HSTRLEN h a
HSTRLEN h nope
HSTRLEN nokey a
HEXISTS h a
HEXISTS h nope
HEXISTS nokey a
HDEL h a nope
HDEL h nope
HDEL nokey a
HINCRBY h cnt 5
HINCRBY h cnt -12
HINCRBY h cnt 1.5
HINCRBY h cnt abc
HINCRBY h cnt 007
HINCRBY h b 1
HSET h s abc sp " 1" lz 01
HINCRBY h s 1
HINCRBY h sp 1
HINCRBY h lz 1
HINCRBY h big 9223372036854775807
HINCRBY h big 1
HINCRBY h neg -9223372036854775808
HINCRBY h neg -1
HINCRBY h x 9223372036854775808
HINCRBYFLOAT h f 1.5
HINCRBYFLOAT h f 0.1
HINCRBYFLOAT h f -1.6
HINCRBYFLOAT h f 1e3
HINCRBYFLOAT h f abc
HINCRBYFLOAT h f inf
HINCRBYFLOAT h f -inf
HINCRBYFLOAT h f nan
HINCRBYFLOAT h f ""
HINCRBYFLOAT h s 1
HSET h inf inf
HINCRBYFLOAT h inf 1
HINCRBYFLOAT h cnt 2.5
HINCRBYFLOAT h f 5.0e3
HINCRBYFLOAT h f 0x10
HINCRBYFLOAT h f " 1"
HINCRBYFLOAT h g 1.23456789012345678901234567890
HINCRBYFLOAT h g2 -0.0
HINCRBYFLOAT h g3 3
HINCRBYFLOAT hf g4 1e400
HINCRBYFLOAT hf g5 1e-300
HINCRBYFLOAT hf g5 1e-300
HINCRBYFLOAT hf g6 17e4900
HINCRBYFLOAT hf g6 17e4900
HINCRBYFLOAT hf g6 1e4933
HINCRBYFLOAT hf g7 -1.5e-4940
HGET hf g4
OBJECT ENCODING hf
HGETALL h
OBJECT ENCODING h
HRANDFIELD h 0
HRANDFIELD h 100
HRANDFIELD h 100 WITHVALUES
HRANDFIELD h 100 withvalues
? HRANDFIELD h
? HRANDFIELD h 1
? HRANDFIELD h 1 WITHVALUES
? HRANDFIELD h -5
? HRANDFIELD h -5 WITHVALUES
? HRANDFIELD h 3
? HRANDFIELD h 3 WITHVALUES
HRANDFIELD h 3 WITHVALUE
HRANDFIELD h 3 WITHVALUES x
HRANDFIELD h x
HRANDFIELD h -9223372036854775808
HRANDFIELD h 9223372036854775807 WITHVALUES
HRANDFIELD h 4611686018427387904 WITHVALUES
HRANDFIELD nokey
HRANDFIELD nokey 5
HRANDFIELD nokey 5 WITHVALUES
HRANDFIELD nokey x
HSCAN h 0
HSCAN h 123
HSCAN h 0 MATCH a*
HSCAN h 0 MATCH g? COUNT 1
HSCAN h 0 match *
HSCAN h 0 MATCH
HSCAN h 0 COUNT 0
HSCAN h 0 COUNT -1
HSCAN h 0 COUNT x
HSCAN h 0 COUNT 1
HSCAN h 0 TYPE string
HSCAN h 0 NOVALUES
HSCAN h 0 FOO bar
HSCAN h x
HSCAN h -1
HSCAN h 18446744073709551616
HSCAN nokey 0
HSCAN nokey 0 COUNT 0
HSCAN nokey x
SET str x
HSET str a 1
HMSET str a 1
HGET str a
HMGET str a
HGETALL str
HLEN str
HDEL str a
HINCRBY str a 1
HINCRBY str a x
HINCRBYFLOAT str a 1
HINCRBYFLOAT str a x
HSETNX str a 1
HEXISTS str a
HSTRLEN str a
HKEYS str
HVALS str
HRANDFIELD str
HRANDFIELD str 1
HRANDFIELD str x
HSCAN str 0
HSCAN str x
HSCAN str 0 COUNT 0
HDEL h a b c x z s sp lz cnt big neg f inf g g2 g3
EXISTS h
HDEL h a
"""

# encodings at the thresholds (with small limits to keep the scripts short)
ENCODINGS = """
CONFIG SET hash-max-listpack-entries 3
CONFIG SET hash-max-listpack-value 4
HSET e1 a 1 b 2 c 3
OBJECT ENCODING e1
HSET e1 d 4
OBJECT ENCODING e1
HDEL e1 a b c
OBJECT ENCODING e1
HSET e2 a 1 b 2 c 3 d 4
OBJECT ENCODING e2
HSET e3 abcd 1234
OBJECT ENCODING e3
HSET e3 abcde 1
OBJECT ENCODING e3
HSET e4 a 12345
OBJECT ENCODING e4
HSET e5 a 1 b 2 c 3
HSETNX e5 d 4
OBJECT ENCODING e5
HSETNX e6 abcde 1
OBJECT ENCODING e6
HINCRBY e7 abcde 1
OBJECT ENCODING e7
HINCRBY e8 a 99999
OBJECT ENCODING e8
HINCRBY e8 a 1
OBJECT ENCODING e8
HINCRBYFLOAT e9 a 1.5
OBJECT ENCODING e9
HINCRBYFLOAT e9 a 100
OBJECT ENCODING e9
HSET e10 a 1 abcdefgh 2
OBJECT ENCODING e10
HGETALL e1
CONFIG SET hash-max-listpack-entries 0
HSET e11 a 1
OBJECT ENCODING e11
CONFIG SET hash-max-listpack-entries 512
CONFIG SET hash-max-listpack-value 64
"""


def _script(text):
    return ["FLUSHALL", "CONFIG RESETSTAT"] + [line for line in text.strip().splitlines()
                                              if line.strip()]


@pytest.mark.parametrize("resp", [2, 3])
@pytest.mark.parametrize("name", ["BASIC", "ENCODINGS"])
def test_same_replies_as_redis(server, real, resp, name):
    script = _script(globals()[name])
    if name == "ENCODINGS":
        script = [(("~2 " + l) if l.startswith("HGETALL") else l) for l in script]
    assert compare.mismatches([real.port, server.port], script, resp) == []
    # the same keyspace hits and misses
    assert compare.keyspace_stats(server.port) == compare.keyspace_stats(real.port)


def test_same_replies_for_hashtable_hashes(server, real):
    """Order-insensitive where Redis's order is unspecified (hashtable)."""
    fill = " ".join("f%d %d" % (i, i) for i in range(200))
    script = _script("""
HSET big %s
OBJECT ENCODING big
~2 HGETALL big
~ HKEYS big
~ HVALS big
HLEN big
HMGET big f1 f199 nope
~2 HRANDFIELD big 1000 WITHVALUES
~ HRANDFIELD big 1000
? HRANDFIELD big 10 WITHVALUES
? HRANDFIELD big -10
HSET big2 %s f x
~2 HGETALL big2
""" % (fill, LONG_VALUE))
    for resp in (2, 3):
        assert compare.mismatches([real.port, server.port], script, resp) == []


def test_same_keyspace_events_as_redis(server, real):
    script = _script("""
HSET h a 1 b 2
HSET h a 1
HMSET h c 3
HSETNX h c 4
HSETNX h d 4
HDEL h nope
HDEL h a b
HINCRBY h n 1
HINCRBYFLOAT h f 1.5
HINCRBY h c x
HDEL h c d n f
HSETNX h2 a 1
HINCRBY h3 a 1
HINCRBYFLOAT h4 a 1
HGET h2 a
HGETALL h2
HRANDFIELD h2 2
HSCAN h2 0
HDEL nokey a
""")
    events = compare.notifications(real.port, script)
    assert events and compare.notifications(server.port, script) == events


def test_same_propagation_as_redis():
    """What reaches the AOF (and replicas): HINCRBYFLOAT becomes HSET with
    the result, the rest is propagated as sent."""
    args = ["--appendonly", "yes", "--appendfsync", "always"]
    script = ["HSET h a 1 b 2", "HMSET h c 3", "HSETNX h c 9", "HSETNX h d 4",
              "HDEL h nope", "HDEL h a", "HINCRBY h n 5", "HINCRBYFLOAT h f 1.1",
              "HINCRBYFLOAT h f 2e1", "HINCRBYFLOAT h f x", "HINCRBY h s x",
              "HGET h a", "HDEL h b c d n f", "MULTI", "HINCRBYFLOAT h x 1", "HSET h y 2",
              "EXEC"]
    with Proc(args, redis_server=True) as real, Proc(args) as mine:
        for p in (real, mine):
            c = compare.Conn(p.port)
            for line in script:
                c.call(*compare.split_line(line)[1])
            c.close()
        want = compare.aof_commands(real.dir)
        assert [b"HSET", b"h", b"f", b"21.1"] in want
        assert compare.aof_commands(mine.dir) == want


# ------------------------------------------------------------------ model-based
_FIELDS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"n", b"long-field"])
_VALUES = st.sampled_from([b"1", b"-2", b"x", b"", b"10", b"long-value", b"3.5"])
_KEYS = st.sampled_from([b"h1", b"h2", b"h3"])
ENTRIES, VALUE_LEN = 4, 8


def _fmt(x: Fraction) -> bytes:
    """ld2string LD_STR_HUMAN for the dyadic values the model produces."""
    d = Decimal(x.numerator) / Decimal(x.denominator)
    s = format(d.normalize(), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return b"0" if s in ("-0", "") else s.encode()


class HashModel(RuleBasedStateMachine):
    """pynode (in-process, controllable clock) against dicts of dicts."""

    def __init__(self):
        super().__init__()
        self.srv = InProc(hash_max_listpack_entries=str(ENTRIES),
                          hash_max_listpack_value=str(VALUE_LEN))
        self.c = self.srv.client()
        self.model: dict[bytes, dict] = {}
        self.enc: dict[bytes, str] = {}
        self.expire: dict[bytes, int] = {}
        self.strings: set[bytes] = set()

    # -- model helpers
    def _live(self):
        now = self.srv.now
        for k, when in list(self.expire.items()):
            if when <= now:
                del self.expire[k]
                self.model.pop(k, None)
                self.enc.pop(k, None)
                self.strings.discard(k)

    def _write(self, key, fields):
        h = self.model.setdefault(key, {})
        if key not in self.enc:
            self.enc[key] = "listpack"
        if any(len(x) > VALUE_LEN for x in fields):
            self.enc[key] = "hashtable"
        return h

    def _after(self, key):
        h = self.model[key]
        if len(h) > ENTRIES:
            self.enc[key] = "hashtable"
        if not h:
            del self.model[key]
            del self.enc[key]
            self.expire.pop(key, None)

    def _wrongtype(self, key):
        return key in self.strings

    # -- rules
    @rule(key=_KEYS, pairs=st.lists(st.tuples(_FIELDS, _VALUES), min_size=1, max_size=6))
    def hset(self, key, pairs):
        self._live()
        args = [x for p in pairs for x in p]
        got = self.c.call("HSET", key, *args)
        if self._wrongtype(key):
            assert isinstance(got, ReplyError)
            return
        h = self._write(key, args)
        new = 0
        for f, v in pairs:
            if f not in h:
                new += 1
            h[f] = v
        self._after(key)
        assert got == new

    @rule(key=_KEYS, f=_FIELDS, v=_VALUES)
    def hsetnx(self, key, f, v):
        self._live()
        got = self.c.call("HSETNX", key, f, v)
        if self._wrongtype(key):
            assert isinstance(got, ReplyError)
            return
        if f in self.model.get(key, {}):
            assert got == 0
            return
        self._write(key, [f, v])[f] = v
        self._after(key)
        assert got == 1

    @rule(key=_KEYS, fields=st.lists(_FIELDS, min_size=1, max_size=4))
    def hdel(self, key, fields):
        self._live()
        got = self.c.call("HDEL", key, *fields)
        if self._wrongtype(key):
            assert isinstance(got, ReplyError)
            return
        h = self.model.get(key)
        n = 0
        if h is not None:
            for f in fields:
                if f in h:
                    del h[f]
                    n += 1
                    if not h:
                        break
            self._after(key)
        assert got == n

    @rule(key=_KEYS, f=_FIELDS, incr=st.integers(-1000, 1000))
    def hincrby(self, key, f, incr):
        self._live()
        got = self.c.call("HINCRBY", key, f, incr)
        if self._wrongtype(key):
            assert isinstance(got, ReplyError)
            return
        cur = self.model.get(key, {}).get(f, b"0")
        try:
            v = int(cur)
            ok = b"%d" % v == cur
        except ValueError:
            ok = False
        if not ok:
            assert got == "ERR hash value is not an integer"
            return
        new = b"%d" % (v + incr)
        self._write(key, [f, new])[f] = new
        self._after(key)
        assert got == v + incr

    @rule(key=_KEYS, f=_FIELDS, incr=st.sampled_from(["0.5", "-1.25", "3", "1e1", "-0.125"]))
    def hincrbyfloat(self, key, f, incr):
        self._live()
        got = self.c.call("HINCRBYFLOAT", key, f, incr)
        if self._wrongtype(key):
            assert isinstance(got, ReplyError)
            return
        cur = self.model.get(key, {}).get(f, b"0")
        try:
            v = Fraction(Decimal(cur.decode()))
        except Exception:
            assert got == "ERR hash value is not a float"
            return
        new = _fmt(v + Fraction(Decimal(incr)))
        self._write(key, [f, new])[f] = new
        self._after(key)
        assert got == new

    @rule(key=_KEYS)
    def make_string(self, key):
        self._live()
        self.c.call("SET", key, "str")
        self.model.pop(key, None)
        self.enc.pop(key, None)
        self.expire.pop(key, None)
        self.strings.add(key)

    @rule(key=_KEYS)
    def delete(self, key):
        self._live()
        existed = key in self.model or key in self.strings
        assert self.c.call("DEL", key) == int(existed)
        self.model.pop(key, None)
        self.enc.pop(key, None)
        self.expire.pop(key, None)
        self.strings.discard(key)

    @rule(key=_KEYS, ms=st.integers(1, 2000), seconds=st.booleans())
    def expire_key(self, key, ms, seconds):
        self._live()
        if seconds:
            got = self.c.call("EXPIRE", key, max(1, ms // 1000))
            ms = max(1, ms // 1000) * 1000
        else:
            got = self.c.call("PEXPIRE", key, ms)
        exists = key in self.model or key in self.strings
        assert got == int(exists)
        if exists:
            self.expire[key] = self.srv.now + ms

    @rule(ms=st.integers(0, 1500))
    def advance_clock(self, ms):
        self.srv.now += ms

    @rule(key=_KEYS, count=st.integers(-8, 8), withvalues=st.booleans())
    def hrandfield(self, key, count, withvalues):
        self._live()
        if self._wrongtype(key):
            return
        h = self.model.get(key, {})
        args = ["HRANDFIELD", key, count] + (["WITHVALUES"] if withvalues else [])
        got = self.c.call(*args)
        fields = got[::2] if withvalues else got
        if withvalues:
            assert all(h[got[i]] == got[i + 1] for i in range(0, len(got), 2))
        assert set(fields) <= set(h)
        if count >= 0:
            assert len(fields) == min(count, len(h)) and len(set(fields)) == len(fields)
        else:
            assert len(fields) == (-count if h else 0)

    @rule(key=_KEYS, count=st.integers(1, 5))
    def hscan_all(self, key, count):
        self._live()
        if self._wrongtype(key):
            return
        cursor, seen = 0, {}
        for _ in range(100):
            cursor, items = self.c.call("HSCAN", key, cursor, "COUNT", count)
            cursor = int(cursor)
            seen.update(zip(items[::2], items[1::2]))
            if cursor == 0:
                break
        assert cursor == 0 and seen == self.model.get(key, {})

    @invariant()
    def same_contents(self):
        self._live()
        for key in (b"h1", b"h2", b"h3"):
            if key in self.strings:
                assert self.c.call("TYPE", key) == b"string"
                continue
            h = self.model.get(key)
            got = self.c.call("HGETALL", key)
            pairs = list(zip(got[::2], got[1::2]))
            if h is None:
                assert pairs == [] and self.c.call("EXISTS", key) == 0
                continue
            enc = self.c.call("OBJECT", "ENCODING", key)
            assert enc == self.enc[key].encode()
            if enc == b"listpack":
                assert pairs == list(h.items())          # listpack order is Redis's
            else:
                assert sorted(pairs) == sorted(h.items())
            assert self.c.call("HLEN", key) == len(h)
            # the RDB form round-trips with the same encoding
            value = self.srv.srv.ks.db(0).get(key)
            rtype, payload = rdb.encode_value(value)
            back = rdb.decoder(rtype)(rdb.Reader(payload))
            small = len(h) <= ENTRIES and all(len(x) <= VALUE_LEN for kv in h.items()
                                              for x in kv)
            # a hashtable hash that shrank loads as a listpack, as in Redis
            assert dict(back) == h and back.encoding == ("listpack" if small else "hashtable")


TestHashModel = HashModel.TestCase
TestHashModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ RDB / DUMP
def _payload(dump: bytes):
    """(rdb type, value bytes) of a DUMP payload (minus version and CRC)."""
    return dump[0], dump[1:-10]


@pytest.fixture(scope="module")
def real_debug():
    """A redis-server with DEBUG enabled (DIGEST-VALUE)."""
    p = Proc(["--enable-debug-command", "yes"], redis_server=True).start()
    yield p
    p.cleanup()


DUMP_CASES = [
    ("one", ["a", "1"]),
    ("ints", ["1", "100", "-5", "70000", "big", str(2 ** 62), "neg", str(-2 ** 40)]),
    ("text", [x for i in range(40) for x in ("field%d" % i, "value%d" % i)]),   # LZF
    ("mixed", ["", "", "x" * 64, "y" * 64, "01", "+1", "-0", "1.5"]),
    ("ordered", ["z", "1", "a", "2", "m", "3"]),
    ("ht", ["f", "v" * 100]),                       # one field: a defined order
]


def test_dump_restore_digest_against_redis(real_debug):
    """DUMP bytes equal redis-server's for listpack hashes (and a one-field
    hashtable one); payloads RESTORE both ways; DEBUG DIGEST-VALUE agrees."""
    rc = real_debug.client()
    srv = InProc(enable_debug_command="yes")
    c = srv.client()
    try:
        rc.flushall()
        for key, items in DUMP_CASES:
            rc.hset(key, mapping=dict(zip(items[::2], items[1::2])))
            c.call("HSET", key, *items)
        rc.hset("ordered", "a", "new")     # an update keeps its place, a delete closes up
        rc.hdel("ordered", "z")
        c.call("HSET", "ordered", "a", "new")
        c.call("HDEL", "ordered", "z")
        keys = [k for k, _ in DUMP_CASES]
        for key in keys:
            assert c.call("DUMP", key) == rc.dump(key), key
        assert c.call("DEBUG", "DIGEST-VALUE", *keys) == rc.execute_command(
            "DEBUG", "DIGEST-VALUE", *keys)
        rc.hset("bigh", mapping={"f%d" % i: "v" * i for i in range(600)})
        c.call("RESTORE", "bigh", 0, rc.dump("bigh"))
        c.call("RESTORE", "lp", 0, rc.dump("text"))
        assert c.call("OBJECT", "ENCODING", "bigh") == b"hashtable"
        assert c.call("OBJECT", "ENCODING", "lp") == b"listpack"
        assert c.call("DEBUG", "DIGEST-VALUE", "bigh") == \
            rc.execute_command("DEBUG", "DIGEST-VALUE", "bigh")
        rconn = compare.Conn(real_debug.port)
        assert c.raw("HGETALL", "lp") == rconn.call("HGETALL", "text")
        rconn.close()
        c.call("HSET", "mine", *[x for i in range(600) for x in ("k%d" % i, "%d" % i)])
        rc.restore("mine", 0, c.call("DUMP", "mine"))
        assert rc.object("encoding", "mine") == b"hashtable"
        assert rc.execute_command("DEBUG", "DIGEST-VALUE", "mine") == \
            c.call("DEBUG", "DIGEST-VALUE", "mine")
        c.call("DEL", "lp")
        assert rc.execute_command("DEBUG", "DIGEST") == c.call("DEBUG", "DIGEST")
        # an empty hash payload is refused as Redis refuses it
        from storage.listpack import lp_encode
        from storage.dump import dumps
        bad = rdb.encode_blob(lp_encode([]))
        body = bytes((16,)) + bad + b"\x0a\x00"
        payload = body + rdb.crc64(0, body).to_bytes(8, "little")
        assert str(c.call("RESTORE", "e", 0, payload)) == "ERR Bad data format"
        with pytest.raises(redis.ResponseError, match="Bad data format"):
            rc.restore("e", 0, payload)
        assert dumps(Hash({b"a": b"1"})) == rc.dump("one")
    finally:
        rc.close()


def test_redis_dump_payloads_load(real):
    rc = real.client()
    try:
        rc.flushall()
        rc.hset("lp", mapping={"a": "1", "b": "x" * 30, "c": "-12345678901"})
        rc.hset("ht", mapping={"f%d" % i: "v" * i for i in range(200)})
        for key, enc in (("lp", "listpack"), ("ht", "hashtable")):
            rtype, payload = _payload(rc.dump(key))
            value = rdb.decoder(rtype)(rdb.Reader(payload))
            assert isinstance(value, Hash) and value.encoding == enc
            assert value == rc.hgetall(key)
    finally:
        rc.close()


def _ziplist(items):
    """A ziplist (the hash encoding of Redis < 7) of string entries."""
    import struct
    body = b""
    prev = 0
    for it in items:
        assert len(it) < 64
        entry = (bytes((prev,)) if prev < 254 else b"\xfe" + struct.pack("<I", prev)) \
            + bytes((len(it),)) + it
        body += entry
        prev = len(entry)
    total = 10 + len(body) + 1
    return struct.pack("<IIH", total, 10 + len(body) - prev, len(items)) + body + b"\xff"


def test_load_ziplist_and_zipmap_hashes():
    blob = _ziplist([b"a", b"1", b"bb", b"22"])
    h = rdb.decoder(13)(rdb.Reader(rdb.encode_blob(blob)))
    assert h == {b"a": b"1", b"bb": b"22"} and h.encoding == "listpack"
    zm = b"\x02\x03foo\x03\x00bar\x05hello\x05\x02world!!\xff"
    assert zipmap_decode(zm) == [b"foo", b"bar", b"hello", b"world"]
    h = rdb.decoder(9)(rdb.Reader(rdb.encode_blob(zm)))
    assert h == {b"foo": b"bar", b"hello": b"world"} and h.encoding == "listpack"
    long_value = b"\x01\x01k\x41\x00" + b"v" * 65 + b"\xff"
    h = rdb.decoder(9)(rdb.Reader(rdb.encode_blob(long_value)))
    assert h == {b"k": b"v" * 65} and h.encoding == "hashtable"


@pytest.mark.parametrize("blob,why", [
    (b"\x02\x03foo\x03\x00bar\xff", "count"),
    (b"\x01\x03foo\x09\x00bar\xff", "past the end"),
    (b"\x01\x03foo\xff", "without a value"),
    (b"\x01\x03foo\x03\x00bar", "0xFF"),
])
def test_damaged_zipmap_is_refused(blob, why):
    with pytest.raises(rdb.RDBError, match=why):
        rdb.decoder(9)(rdb.Reader(rdb.encode_blob(blob)))


def test_damaged_hash_payloads_are_refused():
    from storage.listpack import lp_encode
    for blob, why in ((lp_encode([b"a", b"1", b"b"]), "odd number"),
                      (lp_encode([b"a", b"1", b"a", b"2"]), "duplicate"),
                      (lp_encode([]), "empty"),
                      (lp_encode([b"a", b"1"])[:-1] + b"\x00", "integrity")):
        with pytest.raises(rdb.RDBError, match=why):
            rdb.decoder(16)(rdb.Reader(rdb.encode_blob(blob)))
    dup = rdb.encode_length(2) + b"\x01a\x011\x01a\x012"
    with pytest.raises(rdb.RDBError, match="duplicate"):
        rdb.decoder(4)(rdb.Reader(dup))
    with pytest.raises(rdb.RDBError):
        rdb.decoder(4)(rdb.Reader(rdb.encode_length(3) + b"\x01a\x011"))


def test_rdb_type4_converts_like_redis():
    LIMITS.__init__()
    small = rdb.encode_length(1) + b"\x01a\x011"
    assert rdb.decoder(4)(rdb.Reader(small)).encoding == "listpack"
    long_value = rdb.encode_length(1) + b"\x01a" + rdb.encode_blob(b"v" * 65)
    assert rdb.decoder(4)(rdb.Reader(long_value)).encoding == "hashtable"


def test_aof_rewrite_round_trip():
    srv = InProc()
    c = srv.client()
    c.call("HSET", "small", "a", "1", "b", "2")
    c.call("HSET", "big", *[x for i in range(150) for x in (b"f%d" % i, b"%d" % i)])
    c.call("PEXPIRE", "small", 100000)
    out = []
    rewrite.rewrite_keyspace(srv.srv.ks, out.append, srv.now)
    cmds = compare.parse_commands(b"".join(out))
    hm = [a for a in cmds if a[0] == b"HMSET"]
    assert [len(a) for a in hm if a[1] == b"big"] == [2 + 128, 2 + 128, 2 + 44]
    fresh = InProc()
    fc = fresh.client()
    fresh.now = srv.now
    for a in cmds:
        fc.call(*a)
    for key in ("small", "big"):
        assert fc.call("HGETALL", key) == c.call("HGETALL", key)
        assert fc.call("OBJECT", "ENCODING", key) == c.call("OBJECT", "ENCODING", key)
    assert fc.call("PEXPIRETIME", "small") == c.call("PEXPIRETIME", "small")


def test_full_sync_to_redis_replica_and_back():
    """A redis-server replica of a pynode primary loads our hashes (RDB), then
    a pynode replica of that redis-server loads Redis's."""
    from tests.test_replication import link_up, wait_until
    fast = ["--repl-diskless-sync-delay", "0"]
    with Proc(fast) as p, Proc(fast, redis_server=True) as rs, Proc() as p2:
        pc, rsc, p2c = p.client(), rs.client(), p2.client()
        pc.hset("small", mapping={"a": "1", "b": "-2", "c": "x" * 40})
        pc.hset("big", mapping={"f%d" % i: "v%d" % i for i in range(300)})
        pc.hset("ttl", "a", "1")
        pc.pexpire("ttl", 3600000)
        rsc.replicaof("127.0.0.1", p.port)
        wait_until(lambda: link_up(rsc), what="redis-server link up")
        pc.hincrbyfloat("small", "n", 1.5)
        assert pc.execute_command("WAIT", 1, 5000) == 1
        for key in ("small", "big", "ttl"):
            assert rsc.hgetall(key) == pc.hgetall(key)
            assert rsc.object("encoding", key) == pc.object("encoding", key)
        assert rsc.pexpiretime("ttl") == pc.pexpiretime("ttl")
        p2c.replicaof("127.0.0.1", rs.port)
        wait_until(lambda: link_up(p2c), what="pynode link up")
        for key in ("small", "big", "ttl"):
            assert p2c.hgetall(key) == pc.hgetall(key)
            assert p2c.object("encoding", key) == pc.object("encoding", key)
        for c in (pc, rsc, p2c):
            c.close()

"""Sets: commands against a pynode process (redis-py), the same scripts
against redis-server (raw RESP2/RESP3 replies, keyspace events, AOF), a
model-based test, and RDB/DUMP compatibility."""

from __future__ import annotations

import time

import pytest
import redis
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from storage import rdb, rewrite
from storage.sets import Set
from storage.values import LIMITS
from tests import compare
from tests.helpers import Proc
from tests.inproc import InProc

WRONG = "WRONGTYPE Operation against a key holding the wrong kind of value"


def raw(r, *args) -> bytes:
    """The exact reply bytes of one command on r's server."""
    c = compare.Conn(r.connection_pool.connection_kwargs["port"])
    try:
        return c.call(*args)
    finally:
        c.close()


def err(fn, *args):
    with pytest.raises(redis.ResponseError) as ei:
        fn(*args)
    return str(ei.value)


@pytest.fixture(autouse=True)
def _default_limits():
    """In-process servers set the (process-wide) encoding limits: each test
    starts and ends with the defaults."""
    LIMITS.__init__()
    yield
    LIMITS.__init__()


# ------------------------------------------------------------------ redis-py
def test_sadd_srem_smembers(r):
    assert r.sadd("s", "a", "b", "a") == 2
    assert r.sadd("s", "b") == 0
    assert r.smembers("s") == {b"a", b"b"}
    assert r.srem("s", "a", "zz") == 1
    assert r.srem("nokey", "a") == 0
    assert r.srem("s", "b") == 1
    assert r.exists("s") == 0
    assert r.smembers("nokey") == set()


def test_membership_and_card(r):
    r.sadd("s", 1, 2, "x")
    assert r.sismember("s", 1) == 1 and r.sismember("s", 9) == 0
    assert r.sismember("nokey", 1) == 0
    assert r.smismember("s", 1, 9, "x") == [1, 0, 1]
    assert r.smismember("nokey", 1, 2) == [0, 0]
    assert r.scard("s") == 3 and r.scard("nokey") == 0


def test_intset_order_and_encoding(r):
    r.sadd("s", 30, -5, 7, 9223372036854775807, -9223372036854775808)
    assert r.object("encoding", "s") == b"intset"
    assert compare.parse(raw(r, "SMEMBERS", "s"))[0][1] == [(b"$", m) for m in (
        b"-9223372036854775808", b"-5", b"7", b"30", b"9223372036854775807")]
    r.sadd("s", "07")                       # not canonical: a string
    assert r.object("encoding", "s") == b"hashtable"
    r.srem("s", "07")
    assert r.object("encoding", "s") == b"hashtable"     # never back
    r.sadd("many", *range(512))
    assert r.object("encoding", "many") == b"intset"
    r.sadd("many", 512)
    assert r.object("encoding", "many") == b"hashtable"
    r.sadd("str", "a")
    assert r.object("encoding", "str") == b"hashtable"


def test_spop_and_srandmember(r):
    members = {b"%d" % i for i in range(20)}
    r.sadd("s", *members)
    got = r.spop("s")
    assert got in members and r.scard("s") == 19 and not r.sismember("s", got)
    got = r.spop("s", 5)
    assert len(got) == 5 and len(set(got)) == 5 and r.scard("s") == 14
    got = r.spop("s", 12)                   # most of the set: the other strategy
    assert len(set(got)) == 12 and r.scard("s") == 2
    rest = r.smembers("s")
    assert set(r.spop("s", 10)) == rest and r.exists("s") == 0
    assert r.spop("nokey") is None and r.spop("nokey", 2) == []
    r.sadd("s", *members)
    assert r.srandmember("s") in members
    assert r.srandmember("nokey") is None and r.srandmember("nokey", 5) == []
    got = r.srandmember("s", 7)
    assert len(set(got)) == 7 and set(got) <= members
    got = r.srandmember("s", -50)
    assert len(got) == 50 and set(got) <= members
    assert set(r.srandmember("s", 100)) == members
    assert set(r.srandmember("s", -2000)) == members            # uniform enough
    assert err(r.spop, "s", -1) == "value is out of range, must be positive"


def test_spop_large_set_is_uniform(r):
    r.sadd("big", *range(2000))
    seen = set()
    for _ in range(200):
        seen.add(int(r.spop("big")))
    assert len(seen) == 200 and max(seen) - min(seen) > 1000
    assert r.scard("big") == 1800


def test_smove(r):
    r.sadd("a", 1, 2)
    r.sadd("b", 3)
    assert r.smove("a", "b", 1) is True
    assert r.smembers("a") == {b"2"} and r.smembers("b") == {b"1", b"3"}
    assert r.smove("a", "b", 9) is False
    assert r.smove("nokey", "b", 1) is False
    assert r.smove("a", "a", 2) is True and r.smove("a", "a", 9) is False
    assert r.smove("a", "c", 2) is True
    assert r.exists("a") == 0 and r.smembers("c") == {b"2"}
    r.set("str", "x")
    assert err(r.smove, "str", "c", 2) == WRONG
    assert err(r.smove, "c", "str", 2) == WRONG
    assert r.smove("nokey", "str", 2) is False


def test_algebra(r):
    r.sadd("a", 1, 2, 3, "x")
    r.sadd("b", 2, 3, 4, "x")
    r.sadd("c", 3, "x", "y")
    assert r.sinter("a", "b", "c") == {b"3", b"x"}
    assert r.sinter("a", "nokey") == set()
    assert r.sunion("a", "b", "nokey") == {b"1", b"2", b"3", b"4", b"x"}
    assert r.sdiff("a", "b") == {b"1"} and r.sdiff("a", "nokey") == r.smembers("a")
    assert r.sdiff("nokey", "a") == set()
    assert r.sintercard(3, ["a", "b", "c"]) == 2
    assert r.sintercard(2, ["a", "b"], limit=1) == 1
    assert r.sinterstore("d", "a", "b") == 3 and r.smembers("d") == {b"2", b"3", b"x"}
    assert r.sunionstore("d", "a", "c") == 5
    assert r.sdiffstore("d", "a", "b", "c") == 1 and r.smembers("d") == {b"1"}
    r.expire("d", 100)
    assert r.sinterstore("d", "a", "nokey") == 0 and r.exists("d") == 0
    r.set("d", "string")                     # a store overwrites any type
    assert r.sunionstore("d", "a") == 4 and r.type("d") == b"set" and r.ttl("d") == -1
    r.set("str", "x")
    for args in (("SINTER", "a", "str"), ("SINTER", "nokey", "str"), ("SUNION", "str"),
                 ("SDIFF", "nokey", "str"), ("SINTERCARD", 2, "a", "str")):
        assert err(r.execute_command, *args) == WRONG, args


def test_store_results_encoding(r):
    r.sadd("i1", 1, 2, 3)
    r.sadd("h1", 2, 3, "x")
    r.sinterstore("d", "i1", "h1")
    assert r.object("encoding", "d") == b"intset"
    r.sunionstore("d", "i1", "h1")
    assert r.object("encoding", "d") == b"hashtable"
    r.sdiffstore("d", "h1", "i1")
    assert r.object("encoding", "d") == b"hashtable"


def test_sscan(r):
    r.sadd("small", 3, 1, 2)
    assert r.sscan("small", 0, count=1) == (0, [b"1", b"2", b"3"])
    assert r.sscan("small", 0, match="2") == (0, [b"2"])
    big = {b"m%d" % i for i in range(1000)}
    r.sadd("big", *big)
    assert set(r.sscan_iter("big", count=9)) == big
    assert set(r.sscan_iter("big", match="m99*", count=100)) == {
        m for m in big if m.startswith(b"m99")}


def test_sscan_guarantee_under_changes(r):
    r.sadd("s", *["k%d" % i for i in range(600)])
    cursor, seen, steps = 0, set(), 0
    while True:
        cursor, got = r.sscan("s", cursor, count=20)
        seen.update(got)
        steps += 1
        if steps == 4:
            for i in range(300, 400):
                r.spop("s")                  # random removals move members around
            r.sadd("s", *["n%d" % i for i in range(300)])
        if cursor == 0:
            break
    assert steps > 10
    still = {m for m in r.smembers("s") if m.startswith(b"k")}
    assert still <= seen


def test_expiry_and_watch(server, r):
    r.sadd("s", 1)
    r.pexpire("s", 50)
    r.sadd("s", 2)
    assert r.pttl("s") > 0
    time.sleep(0.1)
    assert r.smembers("s") == set() and r.exists("s") == 0
    c2 = server.client()
    try:
        r.sadd("w", 1)
        p = r.pipeline()
        p.watch("w")
        c2.srem("w", "nothing")                # no change: the transaction runs
        p.multi()
        p.sadd("w", 2)
        assert p.execute() == [1]
        p.watch("w")
        c2.spop("w")
        p.multi()
        p.sadd("w", 3)
        with pytest.raises(redis.WatchError):
            p.execute()
        p.reset()
    finally:
        c2.close()


# ------------------------------------------------------------------ against redis-server
BASIC = """
SADD s 3 1 2
SADD s 2 4
SADD s
SMEMBERS s
OBJECT ENCODING s
SADD t 2 3 x y
~ SMEMBERS t
SISMEMBER s 1
SISMEMBER s 9
SISMEMBER nokey 1
SMISMEMBER s 1 9 2
SMISMEMBER nokey 1 2
SMISMEMBER s
SCARD s
SCARD nokey
~ SINTER s t
~ SINTER t s
SINTER s
SINTER s nokey
SINTER nokey s
SINTERSTORE d s t
SMEMBERS d
SINTERSTORE d s nokey
EXISTS d
SINTERSTORE d s nokey
SINTERCARD 2 s t
SINTERCARD 2 s t LIMIT 1
SINTERCARD 2 s t LIMIT 0
SINTERCARD 2 s t limit 5
SINTERCARD 1 s
SINTERCARD 2 s nokey
SINTERCARD 0 s
SINTERCARD -1 s
SINTERCARD x s
SINTERCARD 3 s t
SINTERCARD 2 s t LIMIT -1
SINTERCARD 2 s t LIMIT x
SINTERCARD 2 s t LIMIT
SINTERCARD 2 s t FOO
~ SUNION s t
SUNION s nokey
SUNION nokey
SUNION nokey s
SUNIONSTORE u s t
~ SMEMBERS u
SUNIONSTORE u nokey
EXISTS u
SDIFF s t
~ SDIFF t s
~ SDIFF t nokey
SDIFF nokey s
SDIFF s s
SDIFFSTORE d2 s t
SMEMBERS d2
SDIFFSTORE d2 s s
EXISTS d2
SDIFFSTORE d2 nokey
SPOP nokey
SPOP nokey 3
SPOP s 0
SPOP s -1
SPOP s x
SPOP s 1 2
SRANDMEMBER nokey
SRANDMEMBER nokey 5
SRANDMEMBER nokey -5
SRANDMEMBER s 0
SRANDMEMBER s 100
SRANDMEMBER s x
SRANDMEMBER s 1 2
SRANDMEMBER s -9223372036854775808
? SRANDMEMBER s
? SRANDMEMBER s 1
? SRANDMEMBER s 2
? SRANDMEMBER s -7
~ SRANDMEMBER t 100
SMOVE s t 1
SMOVE s t 1
SMOVE nokey t 1
SMOVE s s 2
SMOVE s s 99
SMOVE s newset 2
SMEMBERS newset
SMOVE newset s 2
EXISTS newset
SREM s 4 99
SREM s 99
SREM nokey 1
SMEMBERS s
SSCAN s 0
SSCAN s 77
SSCAN s 0 MATCH 3*
SSCAN s 0 COUNT 0
SSCAN s 0 TYPE x
SSCAN s 0 MATCH
SSCAN s x
SSCAN nokey 0
SSCAN nokey 0 COUNT 0
~s1 SSCAN t 0
~s1 SSCAN t 0 MATCH x*
SET str v
SADD str 1
SREM str 1
SMEMBERS str
SISMEMBER str 1
SMISMEMBER str 1
SCARD str
SPOP str
SPOP str 2
SPOP str x
SRANDMEMBER str
SRANDMEMBER str 2
SMOVE str s 1
SMOVE s str 3
SMOVE nokey str 3
SINTER s str
SINTER nokey str
SINTERSTORE d s str
SINTERCARD 2 s str
SUNION s str
SDIFF nokey str
SDIFF s str
SUNIONSTORE str s
TYPE str
SSCAN str 0
SADD big 1 2 3 4 5 6 7 8 9 10
SPOP big 10
EXISTS big
SADD one 7
SPOP one
EXISTS one
SADD one a
SPOP one 5
EXISTS one
SADD m -5 10 -100 7 9223372036854775807 -9223372036854775808
SMEMBERS m
SUNION m s
SADD m 01
OBJECT ENCODING m
SREM m 01
OBJECT ENCODING m
"""

ENCODINGS = """
CONFIG SET set-max-intset-entries 3
SADD e1 1 2 3
OBJECT ENCODING e1
SADD e1 4
OBJECT ENCODING e1
SREM e1 1 2 3
OBJECT ENCODING e1
SADD e2 1 2 3 4
OBJECT ENCODING e2
SADD e3 a
OBJECT ENCODING e3
SADD e4 1 -0
OBJECT ENCODING e4
SADD e5 9223372036854775808
OBJECT ENCODING e5
SADD e6 1 2
SADD e7 2 3 x
SINTERSTORE d e6 e7
OBJECT ENCODING d
SUNIONSTORE d e6 e7
OBJECT ENCODING d
SADD e8 1 2 3
SADD e9 4
SUNIONSTORE d e8 e9
OBJECT ENCODING d
SMOVE e9 e10 4
OBJECT ENCODING e10
SADD e11 1 2 3 4 5 6 7 8 9 10
OBJECT ENCODING e11
? SPOP e11 8
OBJECT ENCODING e11
SCARD e11
CONFIG SET set-max-intset-entries 0
SADD e12 1
OBJECT ENCODING e12
CONFIG SET set-max-intset-entries 512
"""


def _script(text):
    return ["FLUSHALL", "CONFIG RESETSTAT"] + [line for line in text.strip().splitlines()
                                              if line.strip()]


@pytest.mark.parametrize("resp", [2, 3])
@pytest.mark.parametrize("name", ["BASIC", "ENCODINGS"])
def test_same_replies_as_redis(server, real, resp, name):
    assert compare.mismatches([real.port, server.port], _script(globals()[name]), resp) == []
    # the same keyspace hits and misses
    assert compare.keyspace_stats(server.port) == compare.keyspace_stats(real.port)


def test_spop_case3_keeps_intset_order(server, real):
    """SPOP taking most of an intset set replies in ascending order (Redis's
    CASE 3); what remains is random, so only the order is compared."""
    for p in (real, server):
        c = p.client()
        c.flushall()
        c.sadd("s", *range(100, 0, -1))
        got = [int(x) for x in c.execute_command("SPOP", "s", 95)]
        assert got == sorted(got) and len(got) == 95 and c.scard("s") == 5
        c.close()


def test_same_keyspace_events_as_redis(server, real):
    script = _script("""
SADD s 1 2 3
SADD s 1
SREM s 9
SREM s 1
SMOVE s t 2
SMOVE s t 9
SMOVE s s 3
SADD t 3
SMOVE s t 3
SADD a 1 2 3
SADD b 2 3 4
SINTERSTORE d a b
SUNIONSTORE d a b
SDIFFSTORE d a b
SINTERSTORE d a nokey
SINTERSTORE d a nokey
SDIFFSTORE d a a
SADD d x
SUNIONSTORE d nokey
SADD one x
SPOP one
SADD two x y
SPOP two 5
SPOP nokey
SPOP nokey 2
SADD e 1
SPOP e 0
SREM a 1 2 3
SMEMBERS b
SINTER a b
SINTERCARD 2 a b
""")
    events = compare.notifications(real.port, script)
    assert events and compare.notifications(server.port, script) == events


def test_spop_events_with_count(server, real):
    for p in (real, server):
        script = ["FLUSHALL", "SADD s 1 2 3 4 5 6 7 8 9 10", "SPOP s 3", "SPOP s 6"]
        assert compare.notifications(p.port, script)[-4:] == [
            (b"__keyspace@0__:s", b"spop"), (b"__keyevent@0__:spop", b"s"),
            (b"__keyspace@0__:s", b"spop"), (b"__keyevent@0__:spop", b"s")]


def test_same_propagation_as_redis():
    """SPOP becomes SREM(s) (in MULTI/EXEC when several, inside a transaction's
    MULTI when in one), or DEL when it takes the whole set."""
    args = ["--appendonly", "yes", "--appendfsync", "always"]
    script = ["SADD s 1 2", "SPOP s 5", "SADD s 1", "SPOP s", "SADD s 1 2 3",
              "SINTERSTORE s nokey", "SADD s2 1", "SMOVE s2 s3 1", "SREM s3 9",
              "SREM s3 1", "SADD q 1", "SUNIONSTORE q nokey", "SADD q2 x",
              "SDIFFSTORE q3 q2 nokey", "SADD z 1 2", "MULTI", "SPOP z 1", "SPOP z 1", "EXEC",
              "SADD one x", "SPOP one 1", "SADD w 1 2 3 4 5 6", "MULTI", "SPOP w 2",
              "SADD w 7", "EXEC", "SPOP w 3"]
    with Proc(args, redis_server=True) as real, Proc(args) as mine:
        for p in (real, mine):
            c = compare.Conn(p.port)
            for line in script:
                c.call(*compare.split_line(line)[1])
            c.close()
        want = compare.aof_commands(real.dir)
        assert [b"DEL", b"s"] in want
        got = compare.aof_commands(mine.dir)
        # the members SPOP takes are random
        def mask(cmds):
            return [a[:2] + [b"?"] if a[0] == b"SREM" and a[1] in (b"z", b"w") else a
                    for a in cmds]
        assert mask(got) == mask(want)
        assert [b"MULTI"] in want[-12:-8]     # one transaction, no nested MULTI


def test_spop_count_propagates_srems_in_multi():
    srv = InProc(appendonly="no")
    c = srv.client()
    sent = []
    srv.srv.propagate = lambda dbid, argv: sent.append(argv)
    c.call("SADD", "s", *range(1, 21))
    sent.clear()
    popped = c.call("SPOP", "s", 3)
    assert sent[0] == [b"MULTI"] and sent[-1] == [b"EXEC"]
    assert [a[2] for a in sent[1:-1]] == popped and all(a[:2] == [b"SREM", b"s"]
                                                      for a in sent[1:-1])
    sent.clear()
    popped = c.call("SPOP", "s", 15)           # 2 left: the CASE 3 strategy
    assert [a[2] for a in sent[1:-1]] == popped == sorted(popped, key=int)
    sent.clear()
    assert c.call("SPOP", "s", 1)
    assert len(sent) == 1 and sent[0][0] == b"SREM"


# ------------------------------------------------------------------ model-based
_MEMBERS = st.sampled_from([b"1", b"2", b"3", b"-7", b"10", b"a", b"b", b"01"])
_KEYS = st.sampled_from([b"s1", b"s2", b"s3"])
INTSET_MAX = 4


def _intset_ok(members) -> bool:
    from storage.values import string_int
    return len(members) <= INTSET_MAX and all(string_int(m) is not None for m in members)


class SetModel(RuleBasedStateMachine):
    """pynode (in-process, controllable clock) against Python sets."""

    def __init__(self):
        super().__init__()
        self.srv = InProc(set_max_intset_entries=str(INTSET_MAX))
        self.c = self.srv.client()
        self.model: dict[bytes, set] = {}
        self.enc: dict[bytes, str] = {}
        self.expire: dict[bytes, int] = {}
        self.strings: set[bytes] = set()

    def _live(self):
        now = self.srv.now
        for k, when in list(self.expire.items()):
            if when <= now:
                del self.expire[k]
                self._drop(k)

    def _drop(self, k):
        self.model.pop(k, None)
        self.enc.pop(k, None)
        self.expire.pop(k, None)
        self.strings.discard(k)

    def _added(self, key, members):
        s = self.model.setdefault(key, set())
        if key not in self.enc:
            self.enc[key] = "intset"
        for m in members:
            if m not in s:
                s.add(m)
                if not _intset_ok([m]) or len(s) > INTSET_MAX:
                    self.enc[key] = "hashtable"

    def _stored(self, key, members):
        self._drop(key)
        if members:
            self.model[key] = set(members)
            self.enc[key] = "intset" if _intset_ok(members) else "hashtable"

    def _after(self, key):
        if key in self.model and not self.model[key]:
            self._drop(key)

    def _check_wrong(self, got, *keys) -> bool:
        if any(k in self.strings for k in keys):
            assert got == WRONG
            return True
        return False

    @rule(key=_KEYS, members=st.lists(_MEMBERS, min_size=1, max_size=6))
    def sadd(self, key, members):
        self._live()
        got = self.c.call("SADD", key, *members)
        if self._check_wrong(got, key):
            return
        new = len(set(members) - self.model.get(key, set()))
        self._added(key, members)
        assert got == new

    @rule(key=_KEYS, members=st.lists(_MEMBERS, min_size=1, max_size=4))
    def srem(self, key, members):
        self._live()
        got = self.c.call("SREM", key, *members)
        if self._check_wrong(got, key):
            return
        s = self.model.get(key, set())
        n = len(set(members) & s)
        s -= set(members)
        self._after(key)
        assert got == n

    @rule(key=_KEYS, count=st.one_of(st.none(), st.integers(0, 8)))
    def spop(self, key, count):
        self._live()
        got = self.c.call("SPOP", key) if count is None else self.c.call("SPOP", key, count)
        if self._check_wrong(got, key):
            return
        s = self.model.get(key, set())
        if count is None:
            if not s:
                assert got is None
                return
            assert got in s
            got = [got]
        else:
            assert len(got) == min(count, len(s)) and len(set(got)) == len(got)
        assert set(got) <= s
        before = set(s)
        s -= set(got)
        if key in self.model and 0 < len(s) < len(before) and count is not None \
                and (len(before) - count) * 5 <= count:
            # Redis's CASE 3 rebuilds the set from what remains
            self.enc[key] = "intset" if _intset_ok(s) else "hashtable"
        self._after(key)

    @rule(src=_KEYS, dst=_KEYS, m=_MEMBERS)
    def smove(self, src, dst, m):
        self._live()
        got = self.c.call("SMOVE", src, dst, m)
        if src not in self.model and src not in self.strings:
            assert got == 0
            return
        if self._check_wrong(got, src, dst):
            return
        if m not in self.model[src]:
            assert got == 0
            return
        assert got == 1
        if src != dst:
            self.model[src].discard(m)
            self._after(src)
            self._added(dst, [m])

    @rule(op=st.sampled_from(["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]), dst=_KEYS,
          keys=st.lists(_KEYS, min_size=1, max_size=3))
    def store(self, op, dst, keys):
        self._live()
        got = self.c.call(op, dst, *keys)
        if self._check_wrong(got, *keys):
            return
        sets = [self.model.get(k, set()) for k in keys]
        if op == "SINTERSTORE":
            res = set.intersection(*sets)
        elif op == "SUNIONSTORE":
            res = set.union(*sets)
        else:
            res = sets[0].difference(*sets[1:])
        assert got == len(res)
        self._stored(dst, res)

    @rule(keys=st.lists(_KEYS, min_size=1, max_size=3), limit=st.integers(0, 3))
    def reads(self, keys, limit):
        self._live()
        got = self.c.call("SINTER", *keys)
        if self._check_wrong(got, *keys):
            return
        sets = [self.model.get(k, set()) for k in keys]
        assert set(got) == set.intersection(*sets)
        card = len(set.intersection(*sets))
        assert self.c.call("SINTERCARD", len(keys), *keys, "LIMIT", limit) == \
            (min(card, limit) if limit else card)
        assert set(self.c.call("SUNION", *keys)) == set.union(*sets)
        assert set(self.c.call("SDIFF", *keys)) == sets[0].difference(*sets[1:])

    @rule(key=_KEYS, count=st.integers(-8, 8))
    def srandmember(self, key, count):
        self._live()
        got = self.c.call("SRANDMEMBER", key, count)
        if self._check_wrong(got, key):
            return
        s = self.model.get(key, set())
        assert set(got) <= s
        if count >= 0:
            assert len(got) == min(count, len(s)) and len(set(got)) == len(got)
        else:
            assert len(got) == (-count if s else 0)

    @rule(key=_KEYS, count=st.integers(1, 4))
    def sscan_all(self, key, count):
        self._live()
        if key in self.strings:
            return
        cursor, seen = 0, set()
        for _ in range(100):
            cursor, items = self.c.call("SSCAN", key, cursor, "COUNT", count)
            cursor = int(cursor)
            seen.update(items)
            if cursor == 0:
                break
        assert cursor == 0 and seen == self.model.get(key, set())

    @rule(key=_KEYS)
    def make_string(self, key):
        self._live()
        self.c.call("SET", key, "str")
        self._drop(key)
        self.strings.add(key)

    @rule(key=_KEYS, ms=st.integers(1, 2000))
    def pexpire(self, key, ms):
        self._live()
        exists = key in self.model or key in self.strings
        assert self.c.call("PEXPIRE", key, ms) == int(exists)
        if exists:
            self.expire[key] = self.srv.now + ms

    @rule(ms=st.integers(0, 1500))
    def advance_clock(self, ms):
        self.srv.now += ms

    @invariant()
    def same_contents(self):
        self._live()
        for key in (b"s1", b"s2", b"s3"):
            if key in self.strings:
                assert self.c.call("TYPE", key) == b"string"
                continue
            s = self.model.get(key)
            got = self.c.call("SMEMBERS", key)
            if s is None:
                assert got == [] and self.c.call("EXISTS", key) == 0
                continue
            assert set(got) == s and len(got) == len(s)
            enc = self.c.call("OBJECT", "ENCODING", key).decode()
            assert enc == self.enc[key]
            if enc == "intset":
                assert got == sorted(got, key=int)
            assert self.c.call("SCARD", key) == len(s)
            value = self.srv.srv.ks.db(0).get(key)
            rtype, payload = rdb.encode_value(value)
            back = rdb.decoder(rtype)(rdb.Reader(payload))
            assert set(back) == s
            assert back.encoding == ("intset" if _intset_ok(s) else "hashtable")


TestSetModel = SetModel.TestCase
TestSetModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                 suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ RDB / DUMP
def _payload(dump: bytes):
    return dump[0], dump[1:-10]


@pytest.fixture(scope="module")
def real_debug():
    """A redis-server with DEBUG enabled (DIGEST-VALUE)."""
    p = Proc(["--enable-debug-command", "yes"], redis_server=True).start()
    yield p
    p.cleanup()


DUMP_CASES = [
    ("one", [5]),
    ("small", [3, 1, 2]),
    ("wide", [1, 70000, -5]),
    ("widest", [1, 2 ** 40, -2 ** 63]),
    ("many", list(range(0, 3000, 7))),                      # LZF-compressed
    ("str", ["only-one-member-long-enough-to-compress-" * 2]),
]


def test_dump_restore_digest_against_redis(real_debug):
    """DUMP bytes equal redis-server's for intset sets (and a one-member
    hashtable one); payloads RESTORE both ways; DEBUG DIGEST-VALUE agrees."""
    rc = real_debug.client()
    srv = InProc(enable_debug_command="yes")
    c = srv.client()
    try:
        rc.flushall()
        for key, members in DUMP_CASES:
            rc.sadd(key, *members)
            c.call("SADD", key, *members)
        keys = [k for k, _ in DUMP_CASES]
        for key in keys:
            assert c.call("DUMP", key) == rc.dump(key), key
        assert c.call("DEBUG", "DIGEST-VALUE", *keys) == rc.execute_command(
            "DEBUG", "DIGEST-VALUE", *keys)
        rc.sadd("bigs", *["m%d" % i for i in range(700)])
        c.call("RESTORE", "bigs", 0, rc.dump("bigs"))
        c.call("RESTORE", "is", 0, rc.dump("many"))
        assert c.call("OBJECT", "ENCODING", "bigs") == b"hashtable"
        assert c.call("OBJECT", "ENCODING", "is") == b"intset"
        assert c.call("DEBUG", "DIGEST-VALUE", "bigs") == \
            rc.execute_command("DEBUG", "DIGEST-VALUE", "bigs")
        rconn = compare.Conn(real_debug.port)
        assert c.raw("SMEMBERS", "is") == rconn.call("SMEMBERS", "many")
        rconn.close()
        c.call("SADD", "mine", *range(1000))
        rc.restore("mine", 0, c.call("DUMP", "mine"))
        assert rc.object("encoding", "mine") == b"hashtable"
        assert rc.smembers("mine") == {b"%d" % i for i in range(1000)}
        c.call("DEL", "is")
        assert rc.execute_command("DEBUG", "DIGEST") == c.call("DEBUG", "DIGEST")
    finally:
        rc.close()


def test_redis_dump_payloads_load(real):
    rc = real.client()
    try:
        rc.flushall()
        rc.sadd("is", *range(-50, 50))
        rc.sadd("ht", *["m%d" % i for i in range(300)], 5)
        for key, enc in (("is", "intset"), ("ht", "hashtable")):
            rtype, payload = _payload(rc.dump(key))
            value = rdb.decoder(rtype)(rdb.Reader(payload))
            assert isinstance(value, Set) and value.encoding == enc
            assert set(value) == rc.smembers(key)
    finally:
        rc.close()


def test_damaged_set_payloads_are_refused():
    import struct
    LIMITS.__init__()
    for blob, why in ((struct.pack("<IIhh", 2, 2, 5, 1), "sorted"),
                      (struct.pack("<II", 2, 0), "empty"),
                      (struct.pack("<IIh", 4, 1, 1), "size")):
        with pytest.raises(rdb.RDBError, match=why):
            rdb.decoder(11)(rdb.Reader(rdb.encode_blob(blob)))
    with pytest.raises(rdb.RDBError, match="duplicate"):
        rdb.decoder(2)(rdb.Reader(rdb.encode_length(2) + b"\x01a\x01a"))
    with pytest.raises(rdb.RDBError, match="empty"):
        rdb.decoder(2)(rdb.Reader(rdb.encode_length(0)))
    with pytest.raises(rdb.RDBError):
        rdb.decoder(2)(rdb.Reader(rdb.encode_length(2) + b"\x01a"))
    s = rdb.decoder(2)(rdb.Reader(rdb.encode_length(2) + b"\x012\x011"))
    assert s.encoding == "intset" and s.members() == [b"1", b"2"]


def test_aof_rewrite_round_trip():
    srv = InProc()
    c = srv.client()
    c.call("SADD", "small", 3, 1, 2)
    c.call("SADD", "big", *["m%d" % i for i in range(150)])
    c.call("PEXPIRE", "big", 100000)
    out = []
    rewrite.rewrite_keyspace(srv.srv.ks, out.append, srv.now)
    cmds = compare.parse_commands(b"".join(out))
    assert [len(a) for a in cmds if a[:2] == [b"SADD", b"big"]] == [66, 66, 24]
    fresh = InProc()
    fc = fresh.client()
    fresh.now = srv.now
    for a in cmds:
        fc.call(*a)
    for key in ("small", "big"):
        assert sorted(fc.call("SMEMBERS", key)) == sorted(c.call("SMEMBERS", key))
        assert fc.call("OBJECT", "ENCODING", key) == c.call("OBJECT", "ENCODING", key)
    assert fc.call("PEXPIRETIME", "big") == c.call("PEXPIRETIME", "big")


def test_full_sync_to_redis_replica_and_back():
    from tests.test_replication import link_up, wait_until
    fast = ["--repl-diskless-sync-delay", "0"]
    with Proc(fast) as p, Proc(fast, redis_server=True) as rs, Proc() as p2:
        pc, rsc, p2c = p.client(), rs.client(), p2.client()
        pc.sadd("ints", *range(100))
        pc.sadd("strs", *["member-%d" % i for i in range(700)])
        pc.sadd("ttl", "x")
        pc.pexpire("ttl", 3600000)
        rsc.replicaof("127.0.0.1", p.port)
        wait_until(lambda: link_up(rsc), what="redis-server link up")
        pc.spop("strs", 3)
        assert pc.execute_command("WAIT", 1, 5000) == 1
        for key in ("ints", "strs", "ttl"):
            assert rsc.smembers(key) == pc.smembers(key)
            assert rsc.object("encoding", key) == pc.object("encoding", key)
        assert rsc.pexpiretime("ttl") == pc.pexpiretime("ttl")
        p2c.replicaof("127.0.0.1", rs.port)
        wait_until(lambda: link_up(p2c), what="pynode link up")
        for key in ("ints", "strs", "ttl"):
            assert p2c.smembers(key) == pc.smembers(key)
            assert p2c.object("encoding", key) == pc.object("encoding", key)
        for c in (pc, rsc, p2c):
            c.close()


def test_set_class_invariants():
    s = Set()
    for m in (b"5", b"1", b"x", b"3"):
        assert s.add(m)
    assert not s.add(b"x")
    assert s.discard(b"1") and not s.discard(b"1")
    assert sorted(s.arr) == sorted(s) and all(s.arr[i] == m for m, i in s.items())
    while s:
        m = s.pop_random()
        assert m not in s and all(s.arr[i] == k for k, i in s.items())
    assert s.arr == []

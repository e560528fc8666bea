"""Lists: every command against a pynode process (redis-py), raw replies
compared byte for byte with redis-server 7.0 (RESP2 and RESP3), keyspace
events and AOF propagation compared with redis-server, a hypothesis model of
lists in-process (tests/inproc.py, with a controllable clock), and the
quicklist itself: node layout and DUMP payload byte-identical to Redis's,
RDB loading of every list encoding Redis wrote, AOF rewrite round trips."""

from __future__ import annotations

import glob
import os
import random
import socket
import struct
import time

import pytest
import redis
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from storage import lists as qlists
from storage import digest, rdb, rewrite
from storage.listpack import lp_decode, lp_encode
from tests.helpers import Proc, enc
from tests.inproc import InProc, ReplyError


# ----------------------------------------------------------------------------- raw replies

class RawConn:
    """One connection that sends commands and returns each reply's exact bytes."""

    def __init__(self, port: int, resp3: bool = False, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()
        if resp3:
            self.call("HELLO", "3")

    def close(self) -> None:
        self.sock.close()

    def send(self, *args) -> None:
        self.sock.sendall(enc(*args))

    def _fill(self) -> None:
        d = self.sock.recv(65536)
        if not d:
            raise ConnectionError("connection closed")
        self.buf += d

    def _line_end(self, pos: int) -> int:
        while True:
            i = self.buf.find(b"\r\n", pos)
            if i >= 0:
                return i
            self._fill()

    def _skip(self, pos: int) -> int:
        """Position after the reply starting at pos."""
        end = self._line_end(pos)
        t = self.buf[pos:pos + 1]
        head = bytes(self.buf[pos + 1:end])
        nxt = end + 2
        if t in (b"$", b"=", b"!"):
            n = int(head)
            if n < 0:
                return nxt
            while len(self.buf) < nxt + n + 2:
                self._fill()
            return nxt + n + 2
        if t in (b"*", b"~", b">", b"%", b"|"):
            n = int(head)
            if t in (b"%", b"|"):
                n *= 2
            for _ in range(max(n, 0)):
                nxt = self._skip(nxt)
            return nxt
        return nxt                      # + - : _ , # (

    def read(self) -> bytes:
        end = self._skip(0)
        out = bytes(self.buf[:end])
        del self.buf[:end]
        return out

    def call(self, *args) -> bytes:
        self.send(*args)
        return self.read()


def compare_script(port_a: int, port_b: int, script, resp3: bool = False) -> None:
    """Run script (a list of commands) on both servers after FLUSHALL; every
    reply must be the same bytes."""
    a = RawConn(port_a, resp3)
    b = RawConn(port_b, resp3)
    try:
        a.call("FLUSHALL")
        b.call("FLUSHALL")
        for cmd in script:
            ra = a.call(*cmd)
            rb = b.call(*cmd)
            assert ra == rb, "%r (resp%d): pynode %r, redis %r" % (cmd, 3 if resp3 else 2,
                                                                   ra, rb)
    finally:
        a.close()
        b.close()


def _cmds(text: str):
    """One command per line, arguments separated by spaces ('' for empty)."""
    out = []
    for line in text.strip().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append([("" if a == "''" else a) for a in line.split()])
    return out


SCRIPTS = {
    "push_pop": """
        LPUSH l a b c
        RPUSH l d 1 -2 300 70000 -9000000000 e
        LPUSHX nol a
        RPUSHX nol a
        LPUSHX l x
        RPUSHX l y z
        LLEN l
        LLEN nol
        LRANGE l 0 -1
        LPOP l
        RPOP l
        LPOP l 2
        RPOP l 3
        LPOP l 0
        RPOP l 0
        LPOP nol
        RPOP nol
        LPOP nol 2
        RPOP nol 0
        LPOP l 100
        EXISTS l
        LPOP l -1
        LPOP l x
        LPOP l 1 2
        RPOP l 9223372036854775808
        RPUSH one v
        RPOP one 5
        EXISTS one
    """,
    "index_range": """
        RPUSH l a b c d e f g
        LINDEX l 0
        LINDEX l -1
        LINDEX l 6
        LINDEX l 7
        LINDEX l -7
        LINDEX l -8
        LINDEX l x
        LINDEX nol x
        LINDEX nol 0
        LRANGE l 0 -1
        LRANGE l 2 4
        LRANGE l -3 -1
        LRANGE l -100 100
        LRANGE l 5 2
        LRANGE l 7 10
        LRANGE l -1 -3
        LRANGE l 0 0
        LRANGE nol 0 -1
        LRANGE l a 1
        LRANGE nol 0 b
        LRANGE l 9223372036854775807 -9223372036854775808
    """,
    "set_trim_rem": """
        RPUSH l a b a c a d a
        LSET l 0 A
        LSET l -1 Z
        LSET l 7 x
        LSET l -8 x
        LSET l x v
        LSET nol 0 v
        LSET nol x v
        LRANGE l 0 -1
        LREM l 1 a
        LREM l -1 a
        LREM l 0 a
        LREM l 0 nothing
        LREM nol 0 a
        LREM l x a
        LRANGE l 0 -1
        RPUSH m 1 2 3 4 5 6 7 8 9 10
        LTRIM m 2 -3
        LRANGE m 0 -1
        LTRIM m -100 100
        LTRIM m 1 1
        LRANGE m 0 -1
        LTRIM m 5 2
        EXISTS m
        LTRIM nol 0 1
        LTRIM l x 1
        RPUSH r a a a
        LREM r 0 a
        EXISTS r
    """,
    "insert_pos": """
        RPUSH l a b c b a
        LINSERT l BEFORE b X
        LINSERT l after b Y
        LINSERT l AFTER nothing Z
        LINSERT l middle a Z
        LINSERT nol BEFORE a b
        LINSERT nol middle a b
        LRANGE l 0 -1
        LPOS l b
        LPOS l b RANK 2
        LPOS l b RANK -1
        LPOS l b RANK -2
        LPOS l b RANK 3
        LPOS l b COUNT 0
        LPOS l b COUNT 1
        LPOS l a COUNT 0 RANK -1
        LPOS l a COUNT 0 MAXLEN 3
        LPOS l a MAXLEN 3 RANK -1
        LPOS l a COUNT 2 MAXLEN 1
        LPOS l nothing
        LPOS l nothing COUNT 2
        LPOS nol a
        LPOS nol a COUNT 1
        LPOS l a RANK 0
        LPOS l a RANK x
        LPOS l a COUNT -1
        LPOS l a COUNT x
        LPOS l a MAXLEN -1
        LPOS l a RANK
        LPOS l a FOO 1
        LPOS l a RANK -9223372036854775808
        LPOS l a RANK -9223372036854775808 COUNT 1
        LPOS l a RANK 9223372036854775807
    """,
    "move_mpop": """
        RPUSH s a b c
        LMOVE s d LEFT RIGHT
        LMOVE s d right left
        LMOVE s d LEFT LEFT
        LMOVE s d LEFT LEFT
        EXISTS s
        LRANGE d 0 -1
        RPOPLPUSH d d
        RPOPLPUSH nol d
        LMOVE nol d LEFT LEFT
        LMOVE d d UP LEFT
        LMOVE d d LEFT DOWN
        SET str x
        LMOVE d str LEFT LEFT
        RPOPLPUSH str d
        LRANGE d 0 -1
        RPUSH m1 1 2 3
        RPUSH m2 4 5
        LMPOP 2 nol m1 LEFT
        LMPOP 2 m1 m2 RIGHT COUNT 10
        LMPOP 2 m1 m2 LEFT COUNT 1
        LMPOP 1 nol LEFT
        LMPOP 2 str m2 LEFT
        LMPOP 2 m2 str LEFT
        LMPOP 0 m1 LEFT
        LMPOP x m1 LEFT
        LMPOP 1 m1 LEFT COUNT 0
        LMPOP 1 m1 LEFT COUNT x
        LMPOP 1 m1 LEFT COUNT 1 COUNT 1
        LMPOP 1 m1 LEFT FOO
        LMPOP 3 m1 LEFT
        LMPOP 1 m1 UP
    """,
    "wrongtype": """
        SET s v
        LPUSH s a
        RPUSHX s a
        LPOP s
        RPOP s 2
        LLEN s
        LINDEX s 0
        LINDEX s x
        LRANGE s 0 1
        LSET s 0 v
        LTRIM s 0 1
        LREM s 0 a
        LINSERT s BEFORE a b
        LPOS s a
        LMOVE s d LEFT LEFT
        BLPOP s 0.01
        BRPOP nol s 0.01
        BLMPOP 0.01 1 s LEFT
        BLMOVE s d LEFT LEFT 0.01
        BRPOPLPUSH s d 0.01
    """,
    "blocking_immediate": """
        RPUSH l a b c
        BLPOP nol l 0
        BRPOP l 0
        BLMPOP 0 2 nol l RIGHT COUNT 5
        RPUSH l a b c
        BLMOVE l d RIGHT LEFT 0
        BRPOPLPUSH l d 0
        BLMPOP 0 1 l LEFT
        EXISTS l
        LRANGE d 0 -1
        BLPOP nol 0.01
        BRPOP nol 0.01
        BLMPOP 0.01 1 nol LEFT
        BLMOVE nol d LEFT LEFT 0.01
        BRPOPLPUSH nol d 0.01
        BLPOP nol x
        BLPOP nol -1
        BLPOP nol inf
        BLPOP nol nan
        BLPOP nol 1e5000
        BLPOP nol 9223372036854775808
        BLMPOP x 1 nol LEFT
        BLMPOP 0 0 nol LEFT
        BLMOVE nol d UP LEFT x
        BLMOVE nol d LEFT LEFT x
        BRPOPLPUSH nol d x
        MULTI
        BLPOP nol 0
        BRPOP nol 0
        BLMPOP 0 1 nol LEFT
        BLMOVE nol d LEFT LEFT 0
        BRPOPLPUSH nol d 0
        RPUSH nol v
        BLPOP nol 0
        EXEC
    """,
    "encodings": """
        RPUSH l a
        OBJECT ENCODING l
        TYPE l
        RPUSH big 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20
        OBJECT ENCODING big
        CONFIG SET list-max-listpack-size 4
        RPUSH small a b c d e f g h i
        OBJECT ENCODING small
        LRANGE small 0 -1
        LINSERT small BEFORE e X
        LRANGE small 0 -1
        CONFIG SET list-max-listpack-size -2
        COPY big big2
        LRANGE big2 0 -1
        OBJECT ENCODING big2
    """,
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("resp3", [False, True])
def test_raw_replies_match_redis(server, real, name, resp3):
    compare_script(server.port, real.port, _cmds(SCRIPTS[name]), resp3)


def _random_script(rng: random.Random, n: int):
    keys = ["a", "b", "c"]
    vals = ["x", "y", "z", "1", "22", "-3", "", "x" * 70]

    def v():
        return rng.choice(vals)

    def i():
        return str(rng.randrange(-8, 8))

    out = []
    for _ in range(n):
        k = rng.choice(keys)
        op = rng.randrange(16)
        if op < 3:
            out.append([rng.choice(["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"]), k]
                       + [v() for _ in range(rng.randrange(1, 4))])
        elif op == 3:
            out.append([rng.choice(["LPOP", "RPOP"]), k] + ([str(rng.randrange(0, 4))]
                                                            if rng.random() < 0.5 else []))
        elif op == 4:
            out.append(["LRANGE", k, i(), i()])
        elif op == 5:
            out.append(["LINDEX", k, i()])
        elif op == 6:
            out.append(["LSET", k, i(), v()])
        elif op == 7:
            out.append(["LTRIM", k, i(), i()])
        elif op == 8:
            out.append(["LREM", k, str(rng.randrange(-2, 3)), v()])
        elif op == 9:
            out.append(["LINSERT", k, rng.choice(["BEFORE", "AFTER"]), v(), v()])
        elif op == 10:
            cmd = ["LPOS", k, v()]
            if rng.random() < 0.5:
                cmd += ["RANK", str(rng.choice([-2, -1, 1, 2]))]
            if rng.random() < 0.5:
                cmd += ["COUNT", str(rng.randrange(0, 3))]
            if rng.random() < 0.3:
                cmd += ["MAXLEN", str(rng.randrange(0, 4))]
            out.append(cmd)
        elif op == 11:
            out.append(["LMOVE", k, rng.choice(keys), rng.choice(["LEFT", "RIGHT"]),
                        rng.choice(["LEFT", "RIGHT"])])
        elif op == 12:
            out.append(["RPOPLPUSH", k, rng.choice(keys)])
        elif op == 13:
            out.append(["LMPOP", "2", k, rng.choice(keys), rng.choice(["LEFT", "RIGHT"])]
                       + (["COUNT", str(rng.randrange(1, 4))] if rng.random() < 0.5 else []))
        elif op == 14:
            out.append(["LLEN", k])
        else:
            out.append(["LRANGE", k, "0", "-1"])
    return out


@pytest.mark.parametrize("seed", range(4))
def test_random_scripts_match_redis(server, real, seed):
    rng = random.Random(seed)
    compare_script(server.port, real.port, _random_script(rng, 250), resp3=seed % 2 == 1)


# ----------------------------------------------------------------------------- redis-py

def test_push_pop_len(r):
    assert r.lpush("l", "a", "b") == 2
    assert r.rpush("l", "c") == 3
    assert r.lrange("l", 0, -1) == [b"b", b"a", b"c"]
    assert r.lpushx("none", "x") == 0 and r.rpushx("none", "x") == 0
    assert not r.exists("none")
    assert r.lpushx("l", "x") == 4 and r.rpushx("l", "y") == 5
    assert r.llen("l") == 5 and r.llen("none") == 0
    assert r.lpop("l") == b"x" and r.rpop("l") == b"y"
    assert r.lpop("l", 2) == [b"b", b"a"]
    assert r.rpop("l", 5) == [b"c"]
    assert not r.exists("l")
    assert r.lpop("l") is None and r.lpop("l", 3) is None
    with pytest.raises(redis.ResponseError, match="must be positive"):
        r.lpop("l", -1)


def test_index_set_range(r):
    r.rpush("l", *range(10))
    assert r.lindex("l", 0) == b"0" and r.lindex("l", -1) == b"9"
    assert r.lindex("l", 10) is None and r.lindex("none", 0) is None
    assert r.lset("l", 3, "three")
    assert r.lrange("l", 2, 4) == [b"2", b"three", b"4"]
    with pytest.raises(redis.ResponseError, match="index out of range"):
        r.lset("l", 10, "x")
    with pytest.raises(redis.ResponseError, match="no such key"):
        r.lset("none", 0, "x")
    assert r.lrange("l", -2, 100) == [b"8", b"9"]
    assert r.lrange("l", 5, 1) == []


def test_trim_rem_insert_pos(r):
    r.rpush("l", "a", "b", "a", "c", "a")
    assert r.lrem("l", 1, "a") == 1
    assert r.lrange("l", 0, -1) == [b"b", b"a", b"c", b"a"]
    assert r.lrem("l", -1, "a") == 1
    assert r.lrange("l", 0, -1) == [b"b", b"a", b"c"]
    assert r.linsert("l", "BEFORE", "c", "X") == 4
    assert r.linsert("l", "AFTER", "nothing", "X") == -1
    assert r.linsert("none", "AFTER", "a", "X") == 0
    assert r.lpos("l", "X") == 2
    assert r.lpos("l", "nothing") is None
    r.rpush("p", "a", "b", "a", "b", "a")
    assert r.lpos("p", "a", rank=-1) == 4
    assert r.lpos("p", "a", count=0) == [0, 2, 4]
    assert r.lpos("p", "a", rank=2, count=2) == [2, 4]
    assert r.lpos("p", "a", count=0, maxlen=3) == [0, 2]
    assert r.ltrim("l", 1, -2)
    assert r.lrange("l", 0, -1) == [b"a", b"X"]
    assert r.ltrim("l", 5, 10)
    assert not r.exists("l")


def test_move_and_mpop(r):
    r.rpush("s", "a", "b", "c")
    assert r.lmove("s", "d", "LEFT", "RIGHT") == b"a"
    assert r.rpoplpush("s", "d") == b"c"
    assert r.lrange("d", 0, -1) == [b"c", b"a"]
    assert r.lmove("none", "d") is None
    assert r.lmove("d", "d", "LEFT", "RIGHT") == b"c"      # rotation
    assert r.lrange("d", 0, -1) == [b"a", b"c"]
    r.rpush("m", 1, 2, 3)
    assert r.lmpop(2, "none", "m", direction="RIGHT", count=2) == [b"m", [b"3", b"2"]]
    assert r.lmpop(1, "none", direction="LEFT") is None
    r.set("str", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.lmove("d", "str")
    assert r.lrange("d", 0, -1) == [b"a", b"c"]               # nothing popped


def test_blocking_commands_when_data_is_there(r):
    r.rpush("l", "a", "b", "c", "d")
    assert r.blpop(["none", "l"], 1) == (b"l", b"a")
    assert r.brpop(["l"], 1) == (b"l", b"d")
    assert r.blmove("l", "d", 1, "LEFT", "LEFT") == b"b"
    assert r.brpoplpush("l", "d", 1) == b"c"
    assert not r.exists("l")
    assert r.blmpop(1, 1, "d", direction="LEFT", count=5) == [b"d", [b"c", b"b"]]
    t0 = time.monotonic()
    assert r.blpop(["none"], 0.2) is None
    assert time.monotonic() - t0 >= 0.15


def test_type_encoding_big_values_and_config(r):
    r.rpush("l", "x" * 100000, "y")
    assert r.type("l") == b"list"
    assert r.object("encoding", "l") == b"quicklist"
    assert r.lindex("l", 0) == b"x" * 100000
    r.config_set("list-max-listpack-size", "3")
    try:
        r.rpush("small", *range(10))
        assert r.lrange("small", 0, -1) == [b"%d" % i for i in range(10)]
        assert r.linsert("small", "AFTER", "4", "x") == 11
        assert r.lrange("small", 4, 6) == [b"4", b"x", b"5"]
    finally:
        r.config_set("list-max-listpack-size", "-2")


def test_copy_and_rename_keep_the_list(r):
    r.rpush("l", *range(300))
    assert r.copy("l", "c")
    r.rpush("c", "more")
    assert r.llen("l") == 300 and r.llen("c") == 301
    r.rename("c", "d")
    assert r.lindex("d", -1) == b"more"


def test_watch_sees_list_changes(server):
    a = server.client()
    b = server.client()
    try:
        a.flushall()
        a.rpush("l", "x")
        with a.pipeline() as p:
            p.watch("l")
            b.lset("l", 0, "y")
            p.multi()
            p.lpop("l")
            with pytest.raises(redis.WatchError):
                p.execute()
        assert a.lrange("l", 0, -1) == [b"y"]
    finally:
        a.close()
        b.close()


# ----------------------------------------------------------------------------- events

EVENT_SCRIPT = """
    RPUSH l a b c d e f
    LPUSH l z
    RPUSHX l y
    LPUSHX nol y
    LPOP l
    RPOP l 2
    LSET l 0 A
    LINSERT l BEFORE A B
    LINSERT l BEFORE nothing B
    LREM l 1 c
    LREM l 1 nothing
    LTRIM l 0 -1
    LTRIM l 1 2
    LMOVE l m LEFT RIGHT
    RPOPLPUSH l m
    RPUSH one v
    LMOVE one one LEFT RIGHT
    LMOVE one two LEFT RIGHT
    LMPOP 1 m LEFT COUNT 5
    RPUSH b 1 2
    BLPOP b 0
    BRPOP b 0
    RPUSH b 1
    BLMPOP 0 1 b LEFT COUNT 3
    RPUSH b 1 2
    BLMOVE b c LEFT RIGHT 0
    BRPOPLPUSH b c 0
    RPUSH r 1 1 1
    LREM r 0 1
    LLEN nol
    LRANGE nol 0 1
"""


def _events(port: int, script, blocked=()) -> list:
    c = redis.Redis(port=port, socket_timeout=5)
    c.flushall()
    c.config_set("notify-keyspace-events", "KEA")
    p = c.pubsub()
    p.psubscribe("__key*__:*")
    p.get_message(timeout=2)
    d = redis.Redis(port=port, socket_timeout=5)
    waiters = []
    for cmd in blocked:
        w = RawConn(port)
        w.send(*cmd)
        waiters.append(w)
        deadline = time.monotonic() + 5
        while int(d.info("clients")["blocked_clients"]) < len(waiters):
            assert time.monotonic() < deadline, "client did not block"
            time.sleep(0.01)
    for cmd in script:
        d.execute_command(*cmd)
    for w in waiters:
        w.read()
        w.close()
    d.rpush("end-marker", "1")
    out = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        m = p.get_message(timeout=1)
        if m is None:
            continue
        out.append((m["channel"], m["data"]))
        if m["channel"].endswith(b"end-marker") and m["channel"].startswith(b"__keyspace"):
            break
    c.config_set("notify-keyspace-events", "")
    p.close()
    c.close()
    d.close()
    return out


def test_keyspace_events_match_redis(server, real):
    script = _cmds(EVENT_SCRIPT)
    mine = _events(server.port, script)
    theirs = _events(real.port, script)
    assert len(theirs) > 40
    assert mine == theirs


def test_keyspace_events_of_served_clients_match_redis(server, real):
    blocked = [["BLPOP", "q1", "0"], ["BLMPOP", "0", "1", "q2", "RIGHT", "COUNT", "5"],
               ["BLMOVE", "q3", "dst", "RIGHT", "LEFT", "0"], ["BRPOPLPUSH", "q4", "q4", "0"],
               ["BLMOVE", "q5", "str", "LEFT", "LEFT", "0"]]
    script = [["RPUSH", "q1", "a", "b"], ["RPUSH", "q2", "1", "2"], ["SET", "str", "x"],
              ["RPUSH", "q3", "m"], ["RPUSH", "q4", "n"], ["RPUSH", "q5", "o"]]
    mine = _events(server.port, script, blocked)
    theirs = _events(real.port, script, blocked)
    assert [e for e in theirs if b"str" not in e[0] + e[1]] == \
        [e for e in mine if b"str" not in e[0] + e[1]]        # SET's events are not ours
    assert (b"__keyevent@0__:lpop", b"q1") in mine and (b"__keyevent@0__:del", b"q3") in mine


def test_keymiss_events(server):
    c = server.client()
    c.config_set("notify-keyspace-events", "Km")
    try:
        p = c.pubsub()
        p.psubscribe("__keyspace@0__:*")
        p.get_message(timeout=2)
        c.lrange("nokey", 0, 1)
        m = p.get_message(timeout=2)
        assert m is not None and m["data"] == b"keymiss"
        p.close()
    finally:
        c.config_set("notify-keyspace-events", "")


# ----------------------------------------------------------------------------- propagation

def _aof_commands(dirpath: str) -> list:
    """The commands of the incr AOF files of a Redis 7 appendonlydir."""
    out = []
    for path in sorted(glob.glob(os.path.join(dirpath, "appendonlydir", "*.incr.aof"))):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            if data[pos:pos + 1] == b"#":            # timestamp annotation
                pos = data.index(b"\n", pos) + 1
                continue
            assert data[pos:pos + 1] == b"*", data[pos:pos + 40]
            nl = data.index(b"\r\n", pos)
            n = int(data[pos + 1:nl])
            pos = nl + 2
            argv = []
            for _ in range(n):
                nl = data.index(b"\r\n", pos)
                ln = int(data[pos + 1:nl])
                argv.append(data[nl + 2:nl + 2 + ln])
                pos = nl + 2 + ln + 2
            out.append(argv)
    return out


def _propagated(proc: Proc, script, blocked_script) -> list:
    """Run script; blocked_script's clients block first, then script wakes them."""
    c = proc.client()
    c.config_set("appendfsync", "always")
    waiters = []
    for cmd in blocked_script:
        w = proc.client(socket_timeout=10)
        conn = w.connection_pool.get_connection()
        conn.send_command(*cmd)
        waiters.append((w, conn))
        deadline = time.monotonic() + 5
        while int(c.info("clients")["blocked_clients"]) < len(waiters):
            assert time.monotonic() < deadline, "client did not block"
            time.sleep(0.01)
    for cmd in script:
        c.execute_command(*cmd)
    for w, conn in waiters:
        conn.read_response()
        w.connection_pool.release(conn)
        w.close()
    c.set("end", "1")
    cmds = _aof_commands(proc.dir)
    c.close()
    return [a for a in cmds if a[0].upper() != b"SELECT"]


def test_propagation_matches_redis(tmp_path):
    blocked = [["BLPOP", "q1", "0"], ["BRPOP", "q1", "q2", "0"], ["BLMPOP", "0", "1", "q3",
                                                                    "RIGHT", "COUNT", "2"],
               ["BLMOVE", "q4", "d", "RIGHT", "LEFT", "0"], ["BRPOPLPUSH", "q5", "d", "0"]]
    script = [["RPUSH", "l", "a", "b", "c", "d", "e"], ["LMPOP", "1", "l", "LEFT"],
              ["LMPOP", "1", "l", "RIGHT", "COUNT", "10"], ["RPUSH", "l", "a", "b"],
              ["BLPOP", "l", "0"], ["BRPOP", "l", "0"], ["RPUSH", "l", "a", "b", "c"],
              ["BLMPOP", "0", "1", "l", "LEFT", "COUNT", "2"],
              ["BLMOVE", "l", "x", "left", "right", "0"], ["LTRIM", "nol", "0", "1"],
              ["LTRIM", "x", "0", "-1"], ["LREM", "x", "0", "nothing"],
              ["RPUSH", "q1", "1", "2"], ["RPUSH", "q2", "3"], ["RPUSH", "q3", "1", "2", "3"],
              ["MULTI"], ["RPUSH", "q4", "a"], ["RPUSH", "q5", "b", "c"], ["EXEC"],
              ["LPOP", "q5", "5"], ["RPOPLPUSH", "d", "d"], ["LMOVE", "d", "e", "LEFT", "LEFT"]]
    got = {}
    for name, redis_server in (("pynode", False), ("redis", True)):
        d = tmp_path / name
        d.mkdir()
        p = Proc(["--appendonly", "yes"], redis_server=redis_server, workdir=str(d))
        p.start()
        try:
            got[name] = _propagated(p, script, blocked)
        finally:
            p.stop()
    assert got["pynode"] == got["redis"]
    assert [b"LPOP", b"q1"] in got["redis"]


# ----------------------------------------------------------------------------- model (hypothesis)

KEYS = ["a", "b", "c"]
VALUES = st.sampled_from([b"x", b"y", b"z", b"1", b"-20", b"300", b"", b"v" * 70])


class ListModel(RuleBasedStateMachine):
    """pynode (in-process, with a clock we control) against a dict of Python lists."""

    @initialize(fill=st.sampled_from([-2, -1, 1, 2, 3, 5]))
    def setup(self, fill):
        self.srv = InProc(list_max_listpack_size=str(fill))
        self.c = self.srv.client()
        self.model: dict[str, list] = {}
        self.expires: dict[str, int] = {}

    def _live(self, k):
        if k in self.expires and self.expires[k] <= self.srv.now:
            del self.expires[k]
            self.model.pop(k, None)
        return self.model.get(k)

    def _store(self, k, lst):
        if lst:
            self.model[k] = lst
        else:
            self.model.pop(k, None)
            self.expires.pop(k, None)

    @rule(k=st.sampled_from(KEYS), vs=st.lists(VALUES, min_size=1, max_size=5),
          head=st.booleans(), xx=st.booleans())
    def push(self, k, vs, head, xx):
        cur = self._live(k)
        name = ("L" if head else "R") + "PUSH" + ("X" if xx else "")
        got = self.c.call(name, k, *vs)
        if cur is None and xx:
            assert got == 0
            return
        lst = list(cur or [])
        for v in vs:
            if head:
                lst.insert(0, v)
            else:
                lst.append(v)
        if cur is None:
            self.expires.pop(k, None)
        self._store(k, lst)
        assert got == len(lst)

    @rule(k=st.sampled_from(KEYS), head=st.booleans(),
          count=st.one_of(st.none(), st.integers(0, 4)))
    def pop(self, k, head, count):
        cur = self._live(k)
        args = [k] if count is None else [k, count]
        got = self.c.call("LPOP" if head else "RPOP", *args)
        if cur is None:
            assert got is None
            return
        lst = list(cur)
        if count is None:
            want = lst.pop(0) if head else lst.pop()
        else:
            n = min(count, len(lst))
            want = lst[:n] if head else lst[::-1][:n]
            lst = lst[n:] if head else lst[:len(lst) - n]
        assert got == want
        self._store(k, lst)

    @rule(k=st.sampled_from(KEYS), start=st.integers(-8, 8), end=st.integers(-8, 8))
    def lrange(self, k, start, end):
        lst = self._live(k) or []
        n = len(lst)
        s = start + n if start < 0 else start
        e = end + n if end < 0 else end
        s = max(s, 0)
        want = [] if s > e or s >= n else lst[s:min(e, n - 1) + 1]
        assert self.c.call("LRANGE", k, start, end) == want

    @rule(k=st.sampled_from(KEYS), i=st.integers(-8, 8))
    def lindex(self, k, i):
        lst = self._live(k) or []
        want = lst[i] if -len(lst) <= i < len(lst) else None
        assert self.c.call("LINDEX", k, i) == want

    @rule(k=st.sampled_from(KEYS), i=st.integers(-8, 8), v=VALUES)
    def lset(self, k, i, v):
        lst = self._live(k)
        got = self.c.call("LSET", k, i, v)
        if lst is None:
            assert got == ReplyError("ERR no such key")
        elif -len(lst) <= i < len(lst):
            assert got == b"OK"
            lst[i] = v
        else:
            assert got == ReplyError("ERR index out of range")

    @rule(k=st.sampled_from(KEYS), start=st.integers(-8, 8), end=st.integers(-8, 8))
    def ltrim(self, k, start, end):
        lst = self._live(k)
        assert self.c.call("LTRIM", k, start, end) == b"OK"
        if lst is None:
            return
        n = len(lst)
        s = start + n if start < 0 else start
        e = end + n if end < 0 else end
        s = max(s, 0)
        self._store(k, [] if s > e or s >= n else lst[s:min(e, n - 1) + 1])

    @rule(k=st.sampled_from(KEYS), count=st.integers(-3, 3), v=VALUES)
    def lrem(self, k, count, v):
        lst = self._live(k)
        got = self.c.call("LREM", k, count, v)
        if lst is None:
            assert got == 0
            return
        idx = [i for i, x in enumerate(lst) if x == v]
        if count < 0:
            idx = idx[::-1][:-count]
        elif count > 0:
            idx = idx[:count]
        for i in sorted(idx, reverse=True):
            del lst[i]
        assert got == len(idx)
        self._store(k, lst)

    @rule(k=st.sampled_from(KEYS), pivot=VALUES, v=VALUES, after=st.booleans())
    def linsert(self, k, pivot, v, after):
        lst = self._live(k)
        got = self.c.call("LINSERT", k, "AFTER" if after else "BEFORE", pivot, v)
        if lst is None:
            assert got == 0
        elif pivot not in lst:
            assert got == -1
        else:
            i = lst.index(pivot)
            lst.insert(i + 1 if after else i, v)
            assert got == len(lst)

    @rule(k=st.sampled_from(KEYS), v=VALUES, rank=st.sampled_from([1, 2, -1, -2]),
          count=st.one_of(st.none(), st.integers(0, 3)), maxlen=st.integers(0, 5))
    def lpos(self, k, v, rank, count, maxlen):
        lst = self._live(k) or []
        args = ["LPOS", k, v, "RANK", rank, "MAXLEN", maxlen]
        if count is not None:
            args += ["COUNT", count]
        got = self.c.call(*args)
        n = len(lst)
        scan = range(n) if rank > 0 else range(n - 1, -1, -1)
        if maxlen:
            scan = list(scan)[:maxlen]
        matches = [i for i in scan if lst[i] == v][abs(rank) - 1:]
        if count is None:
            assert got == (matches[0] if matches else None)
        else:
            assert got == (matches if count == 0 else matches[:count])

    @rule(src=st.sampled_from(KEYS), dst=st.sampled_from(KEYS), left=st.booleans(),
          right=st.booleans())
    def lmove(self, src, dst, left, right):
        s = self._live(src)
        d = self._live(dst)
        got = self.c.call("LMOVE", src, dst, "LEFT" if left else "RIGHT",
                          "LEFT" if right else "RIGHT")
        if s is None:
            assert got is None
            return
        v = s.pop(0) if left else s.pop()
        if src == dst:
            d = s
        if d is None:
            d = []
            self.expires.pop(dst, None)
        if right:
            d.insert(0, v)
        else:
            d.append(v)
        assert got == v
        self._store(src, s)
        self._store(dst, d)

    @rule(k=st.sampled_from(KEYS), ms=st.integers(1, 50))
    def pexpire(self, k, ms):
        lst = self._live(k)
        got = self.c.call("PEXPIRE", k, ms)
        assert got == (1 if lst is not None else 0)
        if lst is not None:
            self.expires[k] = self.srv.now + ms

    @rule(ms=st.integers(1, 40))
    def tick(self, ms):
        self.srv.now = self.srv.now + ms

    @invariant()
    def same_lists(self):
        if not hasattr(self, "c"):
            return
        for k in KEYS:
            lst = self._live(k)
            assert self.c.call("LRANGE", k, 0, -1) == (lst or [])
            assert self.c.call("LLEN", k) == len(lst or [])
            v = self.srv.srv.ks.db(0).get(k.encode())
            if v is not None:
                # the quicklist's own bookkeeping agrees with its nodes (the
                # head node's elements pushed at the head included: `front`)
                front = (v.front or [])[::-1]
                assert v.count == sum(len(n) for n in v.nodes) + len(front)
                assert all(v.nodes)
                assert v.sizes == [len(lp_encode(front + n if i == 0 else n))
                                   for i, n in enumerate(v.nodes)]


ListModel.TestCase.settings = settings(max_examples=120, stateful_step_count=40,
                                       deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
TestListModel = ListModel.TestCase


# ----------------------------------------------------------------------------- quicklist / RDB

def _dump_layout(payload: bytes) -> list[int]:
    """Node sizes (element counts) of a DUMP payload of a list."""
    r = rdb.Reader(payload[1:])
    out = []
    for _ in range(r.plain_length()):
        assert r.plain_length() == qlists.CONTAINER_PACKED
        out.append(len(lp_decode(r.string())))
    return out


def _same_ops(rng, fill, real_client, steps):
    """Random list commands on redis-server and on an in-process pynode; the
    pynode value of key L."""
    srv = InProc(list_max_listpack_size=str(fill))
    c = srv.client()
    real_client.config_set("list-max-listpack-size", fill)
    real_client.delete("L")

    def elem():
        k = rng.randrange(5)
        if k == 0:
            return b"%d" % rng.randrange(-300, 300)
        if k == 1:
            return b"%d" % rng.randrange(-10 ** 12, 10 ** 12)
        if k == 2:
            return b"w" * rng.randrange(0, 12)
        if k == 3:
            return b"q" * rng.randrange(60, 900)
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))

    for _ in range(steps):
        cur = real_client.lrange("L", 0, -1)
        op = rng.randrange(9)
        if not cur or op < 3:
            cmd = [rng.choice([b"LPUSH", b"RPUSH"]), b"L"] + [elem() for _ in range(
                rng.randrange(1, 12))]
        elif op == 3:
            cmd = [rng.choice([b"LPOP", b"RPOP"]), b"L", b"%d" % rng.randrange(1, 4)]
        elif op in (4, 5):
            cmd = [b"LINSERT", b"L", rng.choice([b"BEFORE", b"AFTER"]), rng.choice(cur), elem()]
        elif op == 6:
            cmd = [b"LSET", b"L", b"%d" % rng.randrange(-len(cur), len(cur)), elem()]
        elif op == 7:
            cmd = [b"LREM", b"L", b"%d" % rng.randrange(-2, 3), rng.choice(cur)]
        else:
            n = len(cur)
            cmd = [b"LTRIM", b"L", b"%d" % rng.randrange(0, max(1, n // 5)),
                   b"%d" % -(1 + rng.randrange(0, max(1, n // 5)))]
        want = real_client.execute_command(*cmd)
        got = c.call(*cmd)
        if cmd[0] not in (b"LSET", b"LTRIM"):          # redis-py turns +OK into True
            assert got == want, (cmd, got, want)
    return srv.srv.ks.db(0).get(b"L")


@pytest.mark.parametrize("fill", [-2, -1, 1, 4, 16])
def test_node_layout_and_dump_bytes_match_redis(real, fill):
    """The same commands give the same quicklist nodes and the same DUMP
    payload bytes (LZF compression of the listpacks included)."""
    rc = real.client()
    rng = random.Random(fill)
    checked = 0
    try:
        for _ in range(12):
            q = _same_ops(rng, fill, rc, rng.randrange(10, 120))
            if q is None:
                continue
            d = rc.dump("L")
            q.settle()
            assert [len(n) for n in q.nodes] == _dump_layout(d)
            t, payload = rdb.encode_value(q)
            assert bytes([t]) + payload == d[:-10]
            checked += 1
    finally:
        rc.config_set("list-max-listpack-size", -2)
        rc.close()
    assert checked >= 8


@pytest.mark.parametrize("fill", [-2, 3])
def test_dump_and_restore_between_pynode_and_redis(server, real, fill):
    """DUMP on pynode gives redis-server's bytes for a list built by the same
    commands; each side RESTOREs the other's payload to the same list."""
    r = server.client()
    rc = real.client()
    rng = random.Random(100 + fill)
    try:
        for c in (r, rc):
            c.config_set("list-max-listpack-size", fill)
            c.delete("L", "copy")
        for _ in range(150):
            vals = [b"%d" % rng.randrange(-5000, 5000) if rng.random() < 0.5 else
                    b"v" * rng.randrange(1, 300) for _ in range(rng.randrange(1, 6))]
            op = rng.randrange(4)
            cmd = (["RPUSH", "L"] + vals if op == 0 else ["LPUSH", "L"] + vals if op == 1 else
                   ["LINSERT", "L", "BEFORE", vals[0], vals[-1]] if op == 2 else
                   ["LPOP", "L", 1])
            assert r.execute_command(*cmd) == rc.execute_command(*cmd)
        mine = r.dump("L")
        theirs = rc.dump("L")
        assert mine == theirs
        assert r.restore("copy", 0, theirs) and rc.restore("copy", 0, mine)
        assert r.lrange("copy", 0, -1) == rc.lrange("copy", 0, -1) == rc.lrange("L", 0, -1)
        assert r.dump("copy") == theirs
        with pytest.raises(redis.ResponseError, match="Bad data format"):
            # a list whose only node is empty: Redis's "empty key"
            body = bytes([18]) + rdb.encode_length(1) + b"\x02" + rdb.encode_blob(
                lp_encode([])) + struct.pack("<H", 10)
            r.restore("empty", 0, body + struct.pack("<Q", rdb.crc64(0, body)))
    finally:
        for c in (r, rc):
            c.config_set("list-max-listpack-size", -2)
            c.close()


def test_big_lists_split_into_nodes_like_redis(real):
    rc = real.client()
    try:
        rc.delete("L")
        srv = InProc()
        c = srv.client()
        for i in range(0, 3000, 100):
            vals = [b"%d" % (i * 7 + j) * (1 + j % 5) for j in range(100)]
            rc.rpush("L", *vals[:50])
            rc.lpush("L", *vals[50:])
            c.call("RPUSH", "L", *vals[:50])
            c.call("LPUSH", "L", *vals[50:])
        q = srv.srv.ks.db(0).get(b"L")
        d = rc.dump("L")
        q.settle()
        assert len(q.nodes) > 3
        assert [len(n) for n in q.nodes] == _dump_layout(d)
        assert bytes([18]) + rdb.encode_value(q)[1] == d[:-10]
    finally:
        rc.close()


def test_lzf_matches_redis_for_strings(real):
    """The LZF compressor against redis-server's DUMP of strings (which go
    through the same rdbSaveRawString)."""
    rc = real.client()
    rng = random.Random(3)
    try:
        for _ in range(150):
            kind = rng.randrange(3)
            if kind == 0:
                s = bytes(rng.choice(b"ab") for _ in range(rng.randrange(12, 2000)))
            elif kind == 1:
                s = (b"pattern %d " % rng.randrange(99)) * rng.randrange(2, 120)
            else:
                s = bytes(rng.randrange(256) for _ in range(rng.randrange(12, 300)))
            rc.set("s", s)
            assert rc.dump("s")[:-10] == b"\x00" + rdb.encode_blob(s)
    finally:
        rc.close()


def test_lzf_compiled_and_python_agree():
    """The compiled liblzf (python-lzf) used when installed and the Python
    fallback give the same bytes, and fail at the same output limits."""
    rng = random.Random(5)
    for _ in range(300):
        n = rng.randrange(21, 3000)
        alpha = bytes(rng.sample(range(256), rng.randrange(1, 30)))
        s = bytes(rng.choice(alpha) for _ in range(n))
        for out_len in (n - 4, n // 2, n + 64):
            assert rdb.lzf_compress(s, out_len) == rdb.lzf_compress_python(s, out_len)


def test_redis_loads_pynode_rdb_and_pynode_loads_redis_dump(tmp_path):
    """A snapshot written by pynode loads in redis-server with the same
    lists (and the same DUMP bytes); redis-server's DUMP payloads load here."""
    srv = InProc()
    c = srv.client()
    c.call("RPUSH", "small", "a", "1", "-70000")
    c.call("RPUSH", "big", *[b"elem-%d" % i for i in range(2000)])
    c.call("LPUSH", "big", *[b"%d" % i for i in range(500)])
    c.call("LINSERT", "big", "BEFORE", "elem-1000", "inserted")
    c.call("SELECT", 3)
    c.call("RPUSH", "other", "x" * 20000)
    c.call("PEXPIRE", "other", 10 ** 13)      # the in-process clock is in 2023
    path = tmp_path / "dump.rdb"
    with open(path, "wb") as fh:
        rdb.dump(srv.srv.ks.dbs, fh.write, {"redis-ver": "7.0.15", "redis-bits": 64})
    p = Proc(["--dbfilename", "dump.rdb", "--enable-debug-command", "yes"], redis_server=True,
             workdir=str(tmp_path))
    p.start()
    try:
        rc = p.client()
        assert rc.lrange("small", 0, -1) == [b"a", b"1", b"-70000"]
        big = rc.lrange("big", 0, -1)
        assert len(big) == 2501 and big[0] == b"499" and b"inserted" in big
        db0 = srv.srv.ks.db(0)
        for key in (b"small", b"big"):
            d = rc.dump(key)
            assert bytes([18]) + rdb.encode_value(db0.get(key))[1] == d[:-10]
            # and back: redis-server's payload decodes to the same list
            q = rdb.DECODERS[d[0]](rdb.Reader(d[1:-10]))
            assert q.to_list() == db0.get(key).to_list()
            assert [len(n) for n in q.nodes] == [len(n) for n in db0.get(key).nodes]
            # DEBUG DIGEST-VALUE agrees (redis-cli --cluster fix compares them)
            assert rc.execute_command("DEBUG", "DIGEST-VALUE", key) == \
                [digest.value_digest(db0.get(key), False).hex().encode()]
        rc.close()
        rc = p.client(db=3)
        assert rc.lindex("other", 0) == b"x" * 20000 and rc.pttl("other") > 0
        rc.close()
    finally:
        p.cleanup()


def _ziplist(items) -> bytes:
    """A ziplist as Redis < 7 wrote it (strings and small ints)."""
    body = b""
    prev = 0
    entries = []
    for it in items:
        if isinstance(it, int):
            e = b"\xfe" + struct.pack("<b", it) if not 0 <= it <= 12 else bytes((0xF1 + it,))
        else:
            e = bytes((len(it),)) + it
        entries.append(e)
    for e in entries:
        body += bytes((prev,)) + e
        prev = len(e) + 1
    return struct.pack("<IIH", 10 + len(body) + 1, 0, len(items)) + body + b"\xff"


def test_loads_old_list_encodings():
    # type 1: a plain list of strings
    plain = rdb.encode_length(3) + b"".join(rdb.encode_string(s) for s in (b"a", b"12", b"c"))
    q = rdb.DECODERS[1](rdb.Reader(plain))
    assert q.to_list() == [b"a", b"12", b"c"]
    # type 10: one ziplist (pushed one by one, as Redis 7 converts it)
    zl = _ziplist([b"x", 5, -100, b"yy"])
    q = rdb.DECODERS[10](rdb.Reader(rdb.encode_string(zl)))
    assert q.to_list() == [b"x", b"5", b"-100", b"yy"]
    # type 14: a quicklist of ziplists keeps its nodes
    ql = rdb.encode_length(2) + rdb.encode_string(_ziplist([b"a", b"b"])) + \
        rdb.encode_string(_ziplist([7]))
    q = rdb.DECODERS[14](rdb.Reader(ql))
    assert q.to_list() == [b"a", b"b", b"7"] and [len(n) for n in q.nodes] == [2, 1]
    assert q.sizes == [len(lp_encode(n)) for n in q.nodes]
    # type 18 with an empty listpack node: skipped, as Redis does
    q2 = rdb.encode_length(2) + b"\x02" + rdb.encode_string(lp_encode([])) + b"\x02" + \
        rdb.encode_string(lp_encode([b"k"]))
    assert rdb.DECODERS[18](rdb.Reader(q2)).to_list() == [b"k"]
    # a list with no elements at all is skipped by the loader
    empty = b"REDIS0010" + b"\xfe\x00" + b"\x12" + rdb.encode_string(b"k") + \
        rdb.encode_length(0) + b"\xff"
    got = []
    assert rdb.load(empty + b"\0" * 8, lambda *a: got.append(a)) == 0 and got == []


def test_damaged_list_payloads_fail_clearly():
    good = lp_encode([b"a", b"b"])
    bad = bytearray(good)
    bad[-2] ^= 0x55                                  # a broken back-length
    payload = rdb.encode_length(1) + b"\x02" + rdb.encode_string(bytes(bad))
    with pytest.raises(rdb.RDBError, match="quicklist node 0"):
        rdb.DECODERS[18](rdb.Reader(payload))
    payload = rdb.encode_length(1) + b"\x05" + rdb.encode_string(good)
    with pytest.raises(rdb.RDBError, match="container 5"):
        rdb.DECODERS[18](rdb.Reader(payload))
    payload = rdb.encode_length(2) + b"\x02" + rdb.encode_string(good)       # truncated
    with pytest.raises(rdb.RDBError):
        rdb.DECODERS[18](rdb.Reader(payload))
    with pytest.raises(rdb.RDBError, match="ziplist"):
        rdb.DECODERS[10](rdb.Reader(rdb.encode_string(b"\x01\x02\x03" * 5)))


def test_rewrite_chunks_of_64():
    q = qlists.QuickList()
    q.extend_tail([b"%d" % i for i in range(200)])
    cmds = rewrite.REWRITERS[qlists.QuickList](b"k", q)
    assert [len(c) - 2 for c in cmds] == [64, 64, 64, 8]
    assert all(c[0] == b"RPUSH" and c[1] == b"k" for c in cmds)
    assert [x for c in cmds for x in c[2:]] == q.to_list()


def test_aof_rewrite_round_trip(tmp_path):
    p = Proc(["--appendonly", "yes"], workdir=str(tmp_path))
    p.start()
    try:
        c = p.client()
        c.rpush("l", *range(150))
        c.lpush("l", "head")
        c.rpush("t", "x")
        c.pexpire("t", 10 ** 8)
        c.bgrewriteaof()
        deadline = time.monotonic() + 20
        while c.info("persistence")["aof_rewrite_in_progress"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        c.close()
        base = glob.glob(os.path.join(str(tmp_path), "appendonlydir", "*.base.aof"))
        assert base and b"RPUSH" in open(base[0], "rb").read()
    finally:
        p.stop()
    p2 = Proc(["--appendonly", "yes"], workdir=str(tmp_path), port=p.port)
    p2.start()
    try:
        c = p2.client()
        assert c.lrange("l", 0, -1) == [b"head"] + [b"%d" % i for i in range(150)]
        assert c.lrange("t", 0, -1) == [b"x"] and c.pttl("t") > 0
        c.close()
    finally:
        p2.cleanup()

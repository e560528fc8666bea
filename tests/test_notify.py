"""Keyspace notifications (notify-keyspace-events) against a real redis-server.

The same command script runs on pynode and on redis-server 7.0.15, each with
a subscriber on __key*__:*; the streams of messages (pattern, channel,
payload, in order) must be identical. Scripts cover every string, bit, key
and HyperLogLog command that emits events, lazy and active expiry, key-miss
and new-key events, each class letter alone, and RESP3 push delivery.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import tempfile
import time

import hiredis

import pytest

from tests.helpers import Proc, enc
from tests.inproc import InProc
from pynode import notify

# ------------------------------------------------------------------ harness


class Conn:
    """A raw RESP connection (replies read and parsed with hiredis)."""

    def __init__(self, port: int, resp3: bool = False) -> None:
        import hiredis
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.r = hiredis.Reader()
        if resp3:
            self.call("HELLO", "3")

    def send(self, *args) -> None:
        self.s.sendall(enc(*args))

    def read(self, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            v = self.r.gets()
            if v is not False:
                return v
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.s.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.r.feed(data)

    def call(self, *args):
        self.send(*args)
        return self.read()

    def drain(self, quiet: float = 0.3) -> list:
        """Everything that arrives until the connection is quiet."""
        out = []
        while True:
            v = self.r.gets()
            if v is not False:
                out.append(v)
                continue
            self.s.settimeout(quiet)
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                return out
            if not data:
                return out
            self.r.feed(data)

    def close(self) -> None:
        self.s.close()


@pytest.fixture(scope="module")
def servers():
    args = ["--enable-debug-command", "yes"]
    p = Proc(args).start()
    r = Proc(args, redis_server=True).start()
    yield p, r
    p.cleanup()
    r.cleanup()


def run_events(port: int, flags: str, script, pattern: str = "__key*__:*",
               pause: float = 0.0) -> tuple[list, list]:
    """Run script (a list of argv tuples, or ("SLEEP", seconds)) with
    notify-keyspace-events flags; the replies and the messages seen by a
    pattern subscriber."""
    c = Conn(port)
    c.call("FLUSHALL")
    c.call("CONFIG", "SET", "notify-keyspace-events", flags)
    sub = Conn(port)
    sub.send("PSUBSCRIBE", pattern)
    assert sub.read()[0] == b"psubscribe"
    replies = []
    try:
        for cmd in script:
            if cmd[0] == "SLEEP":
                time.sleep(cmd[1])
                continue
            replies.append(c.call(*cmd))
            if pause:
                time.sleep(pause)
        c.call("PING")
        msgs = sub.drain()
    finally:
        c.call("CONFIG", "SET", "notify-keyspace-events", "")
        c.close()
        sub.close()
    return replies, msgs


def norm(v):
    """Replies comparable with ==: errors become ("error", text)."""
    if isinstance(v, Exception):
        return ("error", str(v))
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v


def compare(servers, flags: str, script, ordered: bool = True, **kw) -> list:
    p, r = servers
    ours = run_events(p.port, flags, script, **kw)
    theirs = run_events(r.port, flags, script, **kw)
    assert norm(ours[0]) == norm(theirs[0]), "replies differ"
    if ordered:
        assert ours[1] == theirs[1]
    else:       # the active expiry cycle visits keys in its own order
        assert sorted(ours[1]) == sorted(theirs[1])
    return ours[1]


def events(msgs) -> list[tuple[bytes, bytes]]:
    return [(m[2], m[3]) for m in msgs]


# ------------------------------------------------------------------ scripts

STRINGS = [
    ("SET", "s", "1"),
    ("SET", "s", "2", "EX", "100"),
    ("SET", "s", "3", "KEEPTTL"),
    ("SET", "s", "4", "GET"),
    ("SET", "s", "5", "NX"),
    ("SET", "s", "6", "XX", "PX", "100000"),
    ("SET", "nx", "1", "NX"),
    ("SETNX", "nx", "2"),
    ("SETNX", "nx2", "2"),
    ("SETEX", "ex", "100", "v"),
    ("PSETEX", "pex", "100000", "v"),
    ("GETSET", "s", "7"),
    ("GETSET", "new-getset", "1"),
    ("MSET", "m1", "a", "m2", "b", "m1", "c"),
    ("MSETNX", "m3", "a", "m4", "b"),
    ("MSETNX", "m3", "a", "m5", "b"),
    ("APPEND", "ap", "x"),
    ("APPEND", "ap", "yz"),
    ("SETRANGE", "sr", "3", "abc"),
    ("SETRANGE", "sr", "0", ""),
    ("SETRANGE", "sr", "1", "Q"),
    ("SETRANGE", "sr-empty", "0", ""),
    ("INCR", "n"),
    ("INCR", "n"),
    ("INCRBY", "n", "10"),
    ("DECR", "n"),
    ("DECRBY", "n", "3"),
    ("INCRBYFLOAT", "f", "1.5"),
    ("INCRBYFLOAT", "f", "2"),
    ("INCR", "ap"),
    ("GETEX", "s", "EX", "1000"),
    ("GETEX", "s", "PERSIST"),
    ("GETEX", "s", "PERSIST"),
    ("GETEX", "s"),
    ("GETEX", "s", "PXAT", "1"),
    ("GETEX", "nokey", "EX", "10"),
    ("GETDEL", "m1"),
    ("GETDEL", "m1"),
    ("GET", "missing"),
    ("MGET", "m2", "missing1", "missing2"),
    ("STRLEN", "missing"),
    ("GETRANGE", "missing", "0", "1"),
    ("LCS", "missing", "m2"),
    ("SET", "big", "x" * 100),
]

BITS = [
    ("SETBIT", "b", "7", "1"),
    ("SETBIT", "b", "7", "1"),
    ("SETBIT", "b", "100", "0"),
    ("GETBIT", "nob", "1"),
    ("BITCOUNT", "nob"),
    ("BITPOS", "nob", "1"),
    ("SET", "b2", "ab"),
    ("BITOP", "AND", "dest", "b", "b2"),
    ("BITOP", "OR", "dest", "b", "b2"),
    ("BITOP", "NOT", "dest2", "b"),
    ("BITOP", "AND", "dest", "nob1", "nob2"),
    ("BITOP", "AND", "dest", "nob1", "nob2"),
    ("BITFIELD", "bf", "SET", "u8", "0", "200"),
    ("BITFIELD", "bf", "GET", "u8", "0"),
    ("BITFIELD", "bf", "INCRBY", "u8", "0", "100", "OVERFLOW", "FAIL", "INCRBY", "u8",
     "0", "100"),
    ("BITFIELD", "bf", "OVERFLOW", "FAIL", "INCRBY", "u8", "0", "250"),
    ("BITFIELD", "nobf", "GET", "u8", "0"),
    ("BITFIELD_RO", "nobf", "GET", "u8", "0"),
]

KEYS = [
    ("SET", "a", "1"),
    ("SET", "b", "2"),
    ("SET", "c", "3"),
    ("DEL", "a", "nokey", "b"),
    ("UNLINK", "c", "c"),
    ("SET", "r", "1"),
    ("RENAME", "r", "r2"),
    ("RENAME", "r2", "r2"),
    ("SET", "r3", "x"),
    ("RENAME", "r2", "r3"),
    ("RENAMENX", "r3", "r4"),
    ("SET", "r5", "y"),
    ("RENAMENX", "r4", "r5"),
    ("COPY", "r5", "cp"),
    ("COPY", "r5", "cp"),
    ("COPY", "r5", "cp", "REPLACE"),
    ("COPY", "r5", "cp-db3", "DB", "3"),
    ("MOVE", "cp", "2"),
    ("MOVE", "cp", "2"),
    ("SELECT", "2"),
    ("SET", "in2", "x"),
    ("DEL", "cp"),
    ("SELECT", "0"),
    ("EXPIRE", "r5", "100"),
    ("PEXPIRE", "r5", "200000", "GT"),
    ("PEXPIRE", "r5", "1000", "GT"),
    ("EXPIREAT", "r5", "4000000000"),
    ("PEXPIREAT", "r5", "4000000000000"),
    ("PERSIST", "r5"),
    ("PERSIST", "r5"),
    ("EXPIRE", "r5", "-1"),
    ("EXPIRE", "nokey", "10"),
    ("SET", "t", "1"),
    ("TTL", "t"), ("PTTL", "missing"), ("EXPIRETIME", "missing"),
    ("TYPE", "missing"),
    ("EXISTS", "missing", "t"),
    ("TOUCH", "missing", "t"),
    ("OBJECT", "ENCODING", "missing"),
    ("OBJECT", "REFCOUNT", "missing"),
    ("DBSIZE",),
    ("SWAPDB", "0", "1"),
    ("SWAPDB", "0", "1"),
    ("FLUSHDB",),
    # misses: which lookups report keymiss (the write and NONOTIFY ones do not)
    ("COPY", "nokey", "d"), ("RENAME", "nokey", "x"), ("MOVE", "nokey", "1"),
    ("EXPIRE", "nokey", "10"), ("PERSIST", "nokey"), ("DEL", "nokey"),
    ("OBJECT", "FREQ", "nokey"), ("GETDEL", "nokey"), ("SETRANGE", "nokey2", "0", "x"),
    ("BITCOUNT", "nokey"), ("TOUCH", "nokey"), ("LCS", "nokey", "nokey2"),
]

HLL = [
    ("PFADD", "h", "a", "b", "c"),
    ("PFADD", "h", "a"),
    ("PFADD", "h2"),
    ("PFADD", "h2"),
    ("PFCOUNT", "h"),
    ("PFCOUNT", "h", "h2", "missing"),
    ("PFMERGE", "h3", "h", "h2"),
    ("PFMERGE", "h3"),
    ("PFCOUNT", "missing"),
    ("PFDEBUG", "TODENSE", "h"),
]


@pytest.mark.parametrize("name,script", [("strings", STRINGS), ("bits", BITS),
                                         ("keys", KEYS), ("hll", HLL)])
def test_event_stream_matches_redis(servers, name, script):
    msgs = compare(servers, "KEA", script)
    assert msgs, "the script produced events"


@pytest.mark.parametrize("name,script", [("strings", STRINGS), ("keys", KEYS)])
def test_new_and_keymiss_events_match_redis(servers, name, script):
    msgs = compare(servers, "KEAnm", script)
    got = {e for e, _ in events(msgs)}
    assert b"new" in got or any(m[2].startswith(b"__keyevent@0__:new") for m in msgs)


@pytest.mark.parametrize("flags", ["K$", "Eg", "Ex", "Kn", "Em", "KE$g", "Kd", "Ke", "E"])
def test_each_class_alone(servers, flags):
    script = STRINGS[:12] + KEYS[:20] + [("GET", "nothing"), ("SET", "z", "1", "PX", "1"),
                                         ("SLEEP", 0.05), ("GET", "z")]
    compare(servers, flags, script)


def test_lazy_expiry_events_and_order(servers):
    script = [
        ("DEBUG", "SET-ACTIVE-EXPIRE", "0"),
        ("SET", "e1", "v", "PX", "1"),
        ("SET", "e2", "v", "PX", "1"),
        ("SET", "e3", "v", "PX", "1"),
        ("SET", "e4", "v", "PX", "1"),
        ("SET", "e5", "v", "PX", "1"),
        ("SET", "e6", "v", "PX", "1"),
        ("SLEEP", 0.05),
        ("GET", "e1"),              # expired, keymiss
        ("SET", "e2", "new"),       # expired, new, set
        ("INCR", "e3"),             # expired, new, incrby
        ("EXISTS", "e4"),
        ("DEL", "e5"),              # expired only
        ("MSET", "e6", "1", "x", "2"),
        ("DEBUG", "SET-ACTIVE-EXPIRE", "1"),
    ]
    msgs = compare(servers, "KEAnm", script)
    assert (b"__keyevent@0__:expired", b"e1") in [(m[2], m[3]) for m in msgs]


def _aof_log(args, actions) -> list:
    """The incr AOF of pynode and of redis-server after actions(client)."""
    out = []
    for redis_server in (False, True):
        d = tempfile.mkdtemp(prefix="expire-aof-")
        p = Proc(["--appendonly", "yes", "--appendfsync", "always",
                  "--enable-debug-command", "yes"] + args,
                 redis_server=redis_server, workdir=d).start()
        try:
            actions(p.client())
        finally:
            p.stop()
        data = b"".join(open(f, "rb").read() for f in
                        sorted(glob.glob(os.path.join(d, "appendonlydir", "*.incr.aof"))))
        r = hiredis.Reader()
        r.feed(data)
        cmds = []
        while True:
            v = r.gets()
            if v is False:
                break
            if not (v[0] == b"SET" and b"PXAT" in v):     # the PXAT times differ
                cmds.append([a.upper() if i == 0 else a for i, a in enumerate(v)])
        out.append(cmds)
        shutil.rmtree(d, ignore_errors=True)
    return out


@pytest.mark.parametrize("lazy", ["no", "yes"])
def test_lazy_expiry_propagation_matches_redis(lazy):
    """A key found expired by a read is propagated as DEL (UNLINK with
    lazyfree-lazy-expire); by a write, wrapped with the write in MULTI/EXEC."""
    def actions(c):
        c.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        for k in "kjxmdgw":
            c.set(k, "1", px=1)
        time.sleep(0.05)
        c.set("k", "v2")
        c.get("j")
        c.incr("x")
        c.mset({"m": "2"})
        c.delete("d")
        p = c.pipeline(transaction=True)
        p.get("g")
        p.set("g", "3")
        p.execute()
        c.set("w", "1", nx=True)
    ours, theirs = _aof_log(["--lazyfree-lazy-expire", lazy], actions)
    assert ours == theirs
    assert [b"MULTI"] in ours


def test_active_expiry_events(servers):
    script = [("SET", "a1", "v", "PX", "50"), ("SET", "a2", "v", "PX", "50"),
              ("SET", "keep", "v"), ("SLEEP", 1.0)]
    msgs = compare(servers, "Ex", script, ordered=False)
    assert sorted(events(msgs)) == [(b"__keyevent@0__:expired", b"a1"),
                                    (b"__keyevent@0__:expired", b"a2")]


def test_scan_and_randomkey_expire_what_they_meet(servers):
    script = [("DEBUG", "SET-ACTIVE-EXPIRE", "0"),
              ("SET", "a", "v", "PX", "1"), ("SET", "b", "v", "PX", "1"),
              ("SET", "c", "v", "PX", "1"), ("SLEEP", 0.05),
              ("SCAN", "0", "COUNT", "100000"), ("DBSIZE",), ("RANDOMKEY",),
              ("DEBUG", "SET-ACTIVE-EXPIRE", "1")]
    msgs = compare(servers, "Ex", script, ordered=False)
    assert len(msgs) == 3


def test_config_set_normalizes_and_applies(servers):
    p, _ = servers
    c = Conn(p.port)
    try:
        assert c.call("CONFIG", "SET", "notify-keyspace-events", "KEA") == b"OK"
        assert c.call("CONFIG", "GET", "notify-keyspace-events") == \
            [b"notify-keyspace-events", b"AKE"]
        assert c.call("CONFIG", "SET", "notify-keyspace-events", "") == b"OK"
        sub = Conn(p.port)
        sub.send("PSUBSCRIBE", "*")
        sub.read()
        c.call("SET", "quiet", "1")
        assert sub.drain(0.2) == []      # off: nothing published
        sub.close()
    finally:
        c.close()


def test_resp3_subscriber_gets_push_messages_in_order(servers):
    """A RESP3 client subscribed to its own key's events gets the push
    before the reply of the command that caused it, as with redis-server."""
    outs = []
    for port in (s.port for s in servers):
        c = Conn(port, resp3=True)
        c.call("CONFIG", "SET", "notify-keyspace-events", "K$")
        c.call("SUBSCRIBE", "__keyspace@0__:own")
        c.send("SET", "own", "1")
        outs.append(c.drain(0.3))
        c.close()
        a = Conn(port)
        a.call("CONFIG", "SET", "notify-keyspace-events", "")
        a.close()
    assert outs[0] == outs[1]
    assert outs[0][0] == [b"message", b"__keyspace@0__:own", b"set"]


def test_events_stay_on_this_database_and_node():
    """notify() publishes locally with the database number; with
    notify-keyspace-events off nothing is built (notify_flags == 0)."""
    s = InProc()
    srv = s.srv
    sub = s.client()
    sub.call("PSUBSCRIBE", "*")
    c = s.client()
    c.call("SELECT", "5")
    c.call("SET", "k", "v")
    assert sub.take() == []
    assert srv.notify_flags == 0
    c.call("CONFIG", "SET", "notify-keyspace-events", "E$")
    assert srv.notify_flags == notify.KEYEVENT | notify.STRING
    c.call("SET", "k", "v")
    assert sub.take() == [[b"pmessage", b"*", b"__keyevent@5__:set", b"k"]]


def test_parse_flags():
    assert notify.parse_flags("") == 0
    assert notify.parse_flags("A") == notify.ALL
    assert not notify.parse_flags("A") & (notify.KEY_MISS | notify.NEW)
    assert notify.parse_flags("KEnm") == (notify.KEYSPACE | notify.KEYEVENT | notify.NEW
                                          | notify.KEY_MISS)


def test_debug_reload_is_silent():
    s = InProc(enable_debug_command="yes")
    sub = s.client()
    sub.call("PSUBSCRIBE", "*")
    c = s.client()
    c.call("SET", "a", "1")
    c.call("CONFIG", "SET", "notify-keyspace-events", "KEA")
    assert c.call("DEBUG", "RELOAD") == b"OK"
    assert sub.take() == []
    assert s.srv.notify_flags and c.call("GET", "a") == b"1"

"""Client-side caching (CLIENT TRACKING) against redis-server 7.0.15.

Each scenario runs on a pynode and a redis-server side by side over raw
sockets: several named connections (RESP2 or RESP3) send pipelined steps and
everything each connection receives (replies, RESP3 invalidate pushes,
`__redis__:invalidate` messages of a RESP2 redirect) is compared byte for
byte, client ids replaced by the connection's name. Then redis-py's own
client-side cache (RESP3, CacheConfig) is run against pynode.
"""

from __future__ import annotations

import re
import socket
import time

import pytest
import redis

from tests.helpers import Proc, enc, wait_until

SERVER_ARGS = ["--enable-debug-command", "yes"]


@pytest.fixture(scope="module")
def servers():
    procs = [Proc(SERVER_ARGS), Proc(SERVER_ARGS, redis_server=True)]
    try:
        for p in procs:
            p.start()
            # client ids past 100, so no small integer reply is taken for one
            for _ in range(100):
                socket.create_connection(("127.0.0.1", p.port), timeout=5).close()
        yield procs
    finally:
        for p in procs:
            p.cleanup()


@pytest.fixture
def ports(servers):
    for p in servers:
        c = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        # a clean slate: no data, default limit, active expiry on
        c.sendall(enc("FLUSHALL") + enc("CONFIG", "SET", "tracking-table-max-keys", "0")
                  + enc("DEBUG", "SET-ACTIVE-EXPIRE", "1") + enc("PING", "ready"))
        _read_until(c, b"$5\r\nready\r\n")
        c.close()
    return [p.port for p in servers]


def _read_until(sock, marker: bytes, timeout: float = 5.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(marker):
        left = deadline - time.monotonic()
        assert left > 0, "no %r within %.0fs, got %r" % (marker, timeout, buf)
        sock.settimeout(left)
        data = sock.recv(65536)
        assert data, "connection closed after %r" % buf
        buf += data
    return buf[:-len(marker)]


class Session:
    """Named connections to one server; `{name}` in an argument is that
    connection's client id, and ids in what comes back become `<name>`."""

    def __init__(self, port: int, conns: dict) -> None:
        self.port = port
        self.socks: dict[str, socket.socket] = {}
        self.ids: dict[str, int] = {}
        self.marks = 0
        for name, resp in conns.items():
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            self.socks[name] = s
            s.sendall((enc("HELLO", "3") if resp == 3 else b"") + enc("CLIENT", "ID")
                      + enc("PING", "hi"))
            got = _read_until(s, b"$2\r\nhi\r\n")
            self.ids[name] = int(got.rsplit(b":", 1)[1].split(b"\r\n")[0])

    def _arg(self, a: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: str(self.ids[m.group(1)]), a)

    def _norm(self, data: bytes) -> bytes:
        for name, cid in self.ids.items():
            # a RESP integer line holding the id (not a key such as "ev:103")
            data = re.sub(rb"(?:(?<=\r\n)|^):%d\r\n" % cid,
                          b":<" + name.encode() + b">\r\n", data)
        return data

    def mark(self, name: str) -> bytes:
        self.marks += 1
        m = "m%d" % self.marks
        self.socks[name].sendall(enc("PING", m))
        # PING in a RESP2 subscribed context answers [pong, m]
        return _read_until(self.socks[name], b"$%d\r\n%s\r\n" % (len(m), m.encode()))

    def step(self, name: str, cmds, pause: float = 0.0) -> dict:
        """Send cmds (pipelined) on one connection; then what every
        connection received, up to a PING sent after the step's replies."""
        s = self.socks[name]
        s.sendall(b"".join(enc(*[self._arg(a) for a in cmd]) for cmd in cmds))
        self.marks += 1
        m = "m%d" % self.marks
        s.sendall(enc("PING", m))
        got = {name: _read_until(s, b"$%d\r\n%s\r\n" % (len(m), m.encode()))}
        if pause:
            time.sleep(pause)
        for other in self.socks:
            got[other] = got.get(other, b"") + self.mark(other)
        return {k: self._norm(v) for k, v in got.items() if v}

    def close(self, name: str) -> None:
        self.socks.pop(name).close()

    def close_all(self) -> None:
        for s in self.socks.values():
            s.close()


def run(ports, conns: dict, steps) -> list:
    """The transcripts of a scenario on each server."""
    out = []
    for port in ports:
        sess = Session(port, conns)
        trace = []
        try:
            for st in steps:
                if st[0] == "close":
                    cid = sess.ids[st[1]]
                    sess.close(st[1])
                    _wait_gone(port, cid)
                    continue
                if st[0] == "sleep":
                    time.sleep(st[1])
                    continue
                name, cmds = st[0], st[1]
                trace.append((name, cmds, sess.step(name, cmds, *st[2:])))
        finally:
            sess.close_all()
        out.append(trace)
    return out


def same(ports, conns, steps) -> list:
    mine, theirs = run(ports, conns, steps)
    for a, b in zip(mine, theirs):
        assert a == b, "pynode:\n%r\nredis-server:\n%r" % (a, b)
    return mine


def push(*keys: bytes) -> bytes:
    return b">2\r\n$10\r\ninvalidate\r\n*%d\r\n" % len(keys) + b"".join(
        b"$%d\r\n%s\r\n" % (len(k), k) for k in keys)


# ---------------------------------------------------------------- scenarios
def test_default_mode_resp3(ports):
    t = same(ports, {"a": 3, "w": 2}, [
        ("a", [["CLIENT", "TRACKING", "on"], ["GET", "k"], ["SET", "k", "1"], ["GET", "k"]]),
        # another client's write: the push reaches a at once
        ("w", [["SET", "k", "2"], ["SET", "k", "3"]]),
        ("a", [["MGET", "k", "m1", "m2"], ["EXISTS", "e"], ["TTL", "t"], ["STRLEN", "s"],
               ["HGET", "h", "f"], ["LRANGE", "l", "0", "-1"], ["SISMEMBER", "st", "x"],
               ["ZSCORE", "z", "x"], ["GETRANGE", "g", "0", "1"]]),
        # deleting missing keys changes nothing: no invalidation
        ("w", [["DEL", "m1", "m2"]]),
        ("w", [["MSET", "k", "1", "m1", "1"], ["INCR", "e"], ["INCR", "e"], ["APPEND", "s", "x"],
               ["HSET", "h", "f", "v"], ["RPUSH", "l", "a"], ["SADD", "st", "x"],
               ["ZADD", "z", "1", "x"], ["SETRANGE", "g", "0", "ab"]]),
        ("a", [["GET", "k"], ["GET", "m1"]]),
        ("w", [["EXPIRE", "k", "100"], ["RENAME", "m1", "k"]]),
        ("a", [["GET", "k"], ["GET", "m2"], ["CLIENT", "TRACKING", "off"], ["SET", "k", "9"]]),
        ("w", [["SET", "m2", "1"], ["PERSIST", "k"]]),
    ])
    assert push(b"k") in t[0][2]["a"]


def test_keys_across_databases_and_type_errors(ports):
    # tracking is by key name, whatever the database; SWAPDB says nothing;
    # a read that fails (WRONGTYPE) still tracks its key
    same(ports, {"a": 3}, [
        ("a", [["CLIENT", "TRACKING", "on"], ["GET", "k"], ["SWAPDB", "0", "1"],
               ["SET", "k", "1"], ["SELECT", "1"], ["GET", "k"], ["SET", "k", "2"],
               ["MOVE", "k", "0"], ["COPY", "k", "k2"], ["GET", "k2"], ["SELECT", "0"],
               ["COPY", "k", "k2"]]),
        ("a", [["GET", "h"], ["HSET", "h", "f", "v"], ["GET", "h"], ["HSET", "h", "f", "v"],
               ["GET", "h"], ["HSETNX", "h", "f", "v"], ["SADD", "s", "a"], ["GET", "s"],
               ["SADD", "s", "a"], ["SET", "h", "1"]]),
    ])


def test_own_writes_follow_the_reply_multi_and_scripts(ports):
    same(ports, {"a": 3}, [
        ("a", [["CLIENT", "TRACKING", "on"], ["GET", "k"], ["MULTI"], ["SET", "k", "2"],
               ["GET", "k"], ["SET", "k", "3"], ["EXEC"], ["GET", "k"]]),
        ("a", [["EVAL", "redis.call('set', KEYS[1], '5') return 1", "1", "k"], ["GET", "k"]]),
        # a script's reads remember the script's declared keys
        ("a", [["EVAL", "return redis.call('get', 'undeclared')", "1", "decl"],
               ["EVAL_RO", "return 1", "1", "ro1"],
               ["EVAL_RO", "return redis.call('exists', 'x')", "1", "ro2"],
               ["SET", "undeclared", "1"], ["SET", "decl", "1"], ["SET", "ro1", "1"],
               ["SET", "ro2", "1"]]),
        ("a", [["GET", "k"], ["DEL", "k"], ["SET", "k", "1"]]),
        ("a", [["GET", "k"], ["MULTI"], ["CLIENT", "TRACKING", "off"], ["SET", "k", "1"],
               ["EXEC"]]),
    ])


def test_flush_sends_null(ports):
    same(ports, {"a": 3, "b": 2, "c": 2, "w": 2}, [
        ("b", [["SUBSCRIBE", "__redis__:invalidate"]]),
        ("a", [["CLIENT", "TRACKING", "on"], ["GET", "k"]]),
        ("c", [["CLIENT", "TRACKING", "on", "REDIRECT", "{b}"], ["GET", "k"]]),
        ("w", [["FLUSHDB"]]),
        ("a", [["FLUSHALL"], ["PING"], ["SET", "k", "1"]]),
        ("w", [["SELECT", "3"], ["FLUSHDB", "ASYNC"], ["FLUSHALL", "SYNC"]]),
        ("w", [["FLUSHALL", "bad"]]),
    ])


def test_optin_optout_and_caching(ports):
    same(ports, {"a": 3, "w": 2}, [
        ("a", [["CLIENT", "CACHING", "yes"], ["CLIENT", "TRACKING", "on", "OPTIN"],
               ["CLIENT", "CACHING", "no"], ["CLIENT", "CACHING", "maybe"],
               ["CLIENT", "CACHING", "yes"], ["CLIENT", "TRACKINGINFO"], ["GET", "o1"],
               ["CLIENT", "TRACKINGINFO"], ["GET", "o2"],
               # another CLIENT subcommand keeps the flag for the command after it
               ["CLIENT", "CACHING", "yes"], ["CLIENT", "ID"], ["GET", "o3"],
               # any other command, even a refused one, uses it up (a refused
               # CLIENT subcommand does not, an unknown one does)
               ["CLIENT", "CACHING", "yes"], ["NOSUCHCMD"], ["GET", "o4"],
               ["CLIENT", "CACHING", "yes"], ["CLIENT", "SETNAME"], ["GET", "o9"],
               ["CLIENT", "CACHING", "yes"], ["CLIENT", "FOO"], ["GET", "o10"],
               ["CLIENT", "CACHING", "yes"], ["GET"], ["GET", "o5"],
               # in MULTI it lasts for the whole transaction
               ["MULTI"], ["CLIENT", "CACHING", "yes"], ["GET", "o6"], ["GET", "o7"], ["EXEC"],
               ["GET", "o8"]]),
        ("w", [["MSET", "o1", "1", "o2", "1", "o3", "1", "o4", "1", "o5", "1", "o6", "1",
                "o7", "1", "o8", "1", "o9", "1", "o10", "1"]]),
        ("a", [["CLIENT", "TRACKING", "on", "OPTOUT"], ["CLIENT", "TRACKING", "off"],
               ["CLIENT", "TRACKING", "on", "OPTOUT"], ["CLIENT", "CACHING", "yes"],
               ["GET", "q1"], ["CLIENT", "CACHING", "no"], ["CLIENT", "TRACKINGINFO"],
               ["GET", "q2"], ["MULTI"], ["CLIENT", "CACHING", "no"], ["GET", "q3"], ["EXEC"],
               ["GET", "q4"]]),
        ("w", [["MSET", "q1", "1", "q2", "1", "q3", "1", "q4", "1"]]),
        ("a", [["CLIENT", "TRACKING", "on", "OPTIN"], ["CLIENT", "TRACKING", "on", "NOLOOP"],
               ["CLIENT", "TRACKINGINFO"]]),
    ])


def test_noloop(ports):
    same(ports, {"a": 3, "w": 3}, [
        ("a", [["CLIENT", "TRACKING", "on", "NOLOOP"], ["GET", "p"], ["SET", "p", "1"],
               ["GET", "p"], ["MULTI"], ["SET", "p", "2"], ["EXEC"], ["GET", "p"]]),
        ("w", [["SET", "p", "3"]]),
        # NOLOOP hides what changed while the client's own command ran: its
        # scripts' writes, and keys its reads found expired
        ("a", [["GET", "p"], ["EVAL", "return redis.call('set', 'p', '4')", "0"],
               ["GET", "p"], ["DEBUG", "SET-ACTIVE-EXPIRE", "0"], ["PEXPIRE", "p", "20"]]),
        ("sleep", 0.1),
        ("a", [["GET", "p"], ["DEBUG", "SET-ACTIVE-EXPIRE", "1"]]),
        ("w", [["SET", "p", "5"]]),
    ])


def test_bcast(ports):
    t = same(ports, {"a": 3, "n": 3, "w": 2}, [
        ("a", [["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "b", "PREFIX", "a"],
               ["CLIENT", "TRACKINGINFO"], ["GET", "a1"]]),
        ("n", [["CLIENT", "TRACKING", "on", "BCAST", "NOLOOP"], ["CLIENT", "TRACKINGINFO"]]),
        # keys of one prefix gathered in one message, in order, per prefix
        ("w", [["SET", "b2", "x"], ["SET", "a1", "x"], ["SET", "b1", "x"], ["SET", "a1", "y"],
               ["SET", "c", "x"]]),
        ("n", [["SET", "a9", "1"], ["SET", "zz", "1"]]),
        ("a", [["SET", "a5", "1"], ["FLUSHALL"]]),
        ("w", [["INFO", "keyspace"]]),
        ("a", [["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "c"], ["CLIENT", "TRACKINGINFO"],
               ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "bb"],
               ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "x", "PREFIX", "x"],
               ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "d", "PREFIX", "e",
                "PREFIX", "ef"],
               ["CLIENT", "TRACKINGINFO"], ["CLIENT", "TRACKING", "on", "BCAST"],
               ["CLIENT", "TRACKINGINFO"]]),
        ("w", [["SET", "q", "1"], ["SET", "ef1", "1"]]),
        ("a", [["CLIENT", "TRACKING", "off"], ["CLIENT", "TRACKINGINFO"]]),
        ("w", [["SET", "a1", "1"]]),
    ])
    assert push(b"a1", b"a5") not in t[4][2]["a"]     # its own changes too, unless NOLOOP
    assert push(b"b1", b"b2") in t[2][2]["a"]


def test_redirect(ports):
    same(ports, {"b": 2, "c": 2, "d": 3, "x": 2, "e": 3, "f": 2, "w": 2}, [
        ("b", [["SUBSCRIBE", "__redis__:invalidate"]]),
        ("c", [["CLIENT", "TRACKING", "on", "REDIRECT", "{b}"], ["GET", "k"],
               ["CLIENT", "GETREDIR"], ["SET", "k", "1"], ["GET", "k"], ["GET", "j"],
               ["CLIENT", "TRACKINGINFO"]]),
        ("w", [["SET", "k", "2"], ["SET", "j", "2"]]),
        # a RESP3 target gets pushes, subscribed or not
        ("c", [["CLIENT", "TRACKING", "on", "REDIRECT", "{d}"], ["GET", "k"],
               ["SET", "k", "3"]]),
        # a RESP2 target not in pub/sub mode gets nothing
        ("c", [["CLIENT", "TRACKING", "on", "REDIRECT", "{x}"], ["GET", "k"],
               ["SET", "k", "4"]]),
        ("e", [["CLIENT", "TRACKING", "on", "REDIRECT", "{d}"], ["GET", "m"], ["GET", "n"]]),
        ("f", [["CLIENT", "TRACKING", "on", "REDIRECT", "{d}"], ["GET", "m"]]),
        ("close", "d"),
        ("e", [["SET", "m", "1"], ["CLIENT", "TRACKINGINFO"], ["CLIENT", "GETREDIR"],
               ["SET", "n", "1"], ["SET", "m", "2"]]),
        ("w", [["SET", "m", "3"]]),
        ("f", [["CLIENT", "TRACKINGINFO"], ["GET", "m"]]),
        ("w", [["SET", "m", "4"]]),
        ("f", [["CLIENT", "TRACKINGINFO"]]),
        ("e", [["CLIENT", "TRACKING", "on"], ["CLIENT", "TRACKINGINFO"]]),
    ])


def test_errors_keep_state(ports):
    same(ports, {"a": 2, "b": 3}, [
        ("a", [["SET", "keep", "v"], ["CLIENT", "TRACKING", "on", "REDIRECT", "1", "REDIRECT", "2"],
               ["CLIENT", "TRACKING", "on", "REDIRECT", "999999"],
               ["CLIENT", "TRACKING", "on", "REDIRECT", "0"],
               ["CLIENT", "TRACKING", "on", "REDIRECT", "x"],
               ["CLIENT", "TRACKING", "on", "REDIRECT"], ["CLIENT", "TRACKING", "on", "PREFIX"],
               ["CLIENT", "TRACKING", "maybe"], ["CLIENT", "TRACKING", "off", "foo"],
               ["CLIENT", "TRACKING", "on", "PREFIX", "p"],
               ["CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"],
               ["CLIENT", "TRACKING", "on", "BCAST", "OPTIN"],
               ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a\r\nb", "PREFIX", "a"],
               ["CLIENT", "TRACKING"], ["CLIENT", "CACHING"], ["CLIENT", "GETREDIR", "x"],
               ["CLIENT", "TRACKINGINFO", "x"], ["CLIENT", "TRACKINGINFO"],
               ["CLIENT", "GETREDIR"], ["GET", "keep"]]),
        ("a", [["CLIENT", "TRACKING", "on", "OPTIN", "NOLOOP"],
               ["CLIENT", "TRACKING", "on", "OPTOUT"], ["CLIENT", "TRACKING", "on", "BCAST"],
               ["CLIENT", "TRACKINGINFO"], ["CLIENT", "CACHING", "no"], ["GET", "keep"]]),
        ("b", [["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "x"],
               ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "xy"],
               ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "y"],
               ["CLIENT", "TRACKING", "on", "OPTIN"], ["CLIENT", "TRACKINGINFO"]]),
        ("b", [["RESET"], ["CLIENT", "TRACKINGINFO"], ["CLIENT", "GETREDIR"]]),
    ])


def test_double_reply_counts_a_failed_call(ports):
    """A clash between two later PREFIXes: Redis 7.0 replies the error, then
    OK, with tracking on; the error counts in errorstats and failed_calls."""
    stats = []
    for port in ports:
        s = Session(port, {"a": 2})
        try:
            s.step("a", [["CONFIG", "RESETSTAT"]])
            got = s.step("a", [["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a",
                                "PREFIX", "b", "PREFIX", "bc"], ["CLIENT", "TRACKINGINFO"]])
            r = redis.Redis(port=port, socket_timeout=5)
            try:
                cs = r.info("commandstats")["cmdstat_client|tracking"]
                stats.append((got, cs["calls"], cs["failed_calls"],
                              r.info("errorstats")["errorstat_ERR"]["count"]))
            finally:
                r.close()
        finally:
            s.close_all()
    assert stats[0] == stats[1], stats
    assert stats[0][1:3] == (1, 1)      # (errorstats also count redis-py's CLIENT SETINFO)


def test_expiry_invalidates(ports):
    same(ports, {"a": 3, "w": 2}, [
        ("w", [["DEBUG", "SET-ACTIVE-EXPIRE", "0"], ["SET", "t", "1", "PX", "50"],
               ["SET", "u", "1", "PX", "50"]]),
        ("a", [["CLIENT", "TRACKING", "on"], ["GET", "t"], ["GET", "u"], ["GET", "v"]]),
        ("sleep", 0.15),
        # lazy expiry by the tracking client's own read: after the reply,
        # and the key is tracked again
        ("a", [["GET", "t"], ["GET", "t"]]),
        ("w", [["SET", "t", "2"]]),
        ("w", [["DEBUG", "SET-ACTIVE-EXPIRE", "1"]], 0.5),
        ("w", [["PING"]]),
    ])


def test_trackinginfo_shapes_resp2(ports):
    same(ports, {"a": 2, "b": 2}, [
        ("a", [["CLIENT", "TRACKINGINFO"], ["CLIENT", "GETREDIR"],
               ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "z", "PREFIX", "a",
                "NOLOOP", "REDIRECT", "{b}"],
               ["CLIENT", "TRACKINGINFO"], ["CLIENT", "GETREDIR"]]),
        ("a", [["CLIENT", "TRACKING", "off"], ["CLIENT", "TRACKING", "on", "OPTOUT"],
               ["CLIENT", "CACHING", "no"], ["CLIENT", "TRACKINGINFO"]]),
    ])


def _client_field(port, cid: int, field: str) -> str:
    r = redis.Redis(port=port, socket_timeout=5)
    try:
        for c in r.client_list():
            if int(c["id"]) == cid:
                return c[field]
    finally:
        r.close()
    raise AssertionError("no client %d" % cid)


def _wait_gone(port, cid: int) -> None:
    r = redis.Redis(port=port, socket_timeout=5)
    try:
        wait_until(lambda: all(int(c["id"]) != cid for c in r.client_list()), timeout=5,
                   what="client %d gone" % cid)
    finally:
        r.close()


def _info(port) -> dict:
    r = redis.Redis(port=port, socket_timeout=5)
    try:
        info = r.info("everything")
    finally:
        r.close()
    return {k: info[k] for k in ("tracking_clients", "tracking_total_keys",
                                 "tracking_total_items", "tracking_total_prefixes")}


def test_client_list_flags_and_info(ports):
    views = []
    for port in ports:
        s = Session(port, {"a": 3, "b": 3, "c": 2, "d": 3})
        try:
            s.step("a", [["CLIENT", "TRACKING", "on", "REDIRECT", "{d}"], ["GET", "k1"],
                         ["MGET", "k1", "k2", "k3"]])
            s.step("b", [["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "p", "PREFIX", "q"],
                         ["GET", "k1"]])
            s.step("c", [["CLIENT", "TRACKING", "on"], ["GET", "k1"], ["GET", "k4"]])
            v = [_info(port)]
            d = str(s.ids["d"])
            v += [(_client_field(port, s.ids[n], "flags"),
                   _client_field(port, s.ids[n], "redir").replace(d, "<d>")) for n in "abc"]
            s.close("d")
            _wait_gone(port, s.ids["d"])
            s.step("c", [["SET", "k1", "x"]])            # a's redirect is found broken
            v.append(_info(port))
            v.append((_client_field(port, s.ids["a"], "flags"),
                      _client_field(port, s.ids["a"], "redir").replace(d, "<d>")))
            s.close("b")
            s.step("a", [["CLIENT", "TRACKING", "off"]])
            # the table keeps c's keys, dropped lazily; k4 was read by c only
            v.append(wait_until(lambda: _info(port), timeout=5))
            s.step("c", [["SET", "k4", "x"], ["SET", "k2", "x"]])
            v.append(_info(port))
            s.close("c")
            time.sleep(0.1)
            v.append(_info(port))
        finally:
            s.close_all()
        views.append(v)
    assert views[0] == views[1], views
    assert views[0][1][0] == "t" and views[0][2][0] == "tB" and views[0][4]["tracking_clients"]
    assert views[0][5] == ("tR", "<d>") and views[0][1] == ("t", "<d>")


def test_table_limit_evicts_with_invalidation(ports):
    for port in ports:
        s = Session(port, {"a": 3})
        try:
            got = s.step("a", [["CONFIG", "SET", "tracking-table-max-keys", "2"],
                               ["CLIENT", "TRACKING", "on"], ["GET", "x"], ["GET", "y"],
                               ["GET", "z"], ["PING"]])["a"]
            pushes = re.findall(rb">2\r\n\$10\r\ninvalidate\r\n\*1\r\n\$1\r\n([xyz])\r\n", got)
            assert len(pushes) == 1, got
            assert _info(port)["tracking_total_keys"] == 2
            # the evicted key is no longer tracked: changing it says nothing
            got = s.step("a", [["SET", pushes[0].decode(), "1"]])["a"]
            assert b"invalidate" not in got, got
            got = s.step("a", [["CONFIG", "SET", "tracking-table-max-keys", "bad"]])["a"]
            assert got.startswith(b"-ERR CONFIG SET failed"), got
        finally:
            s.close_all()


def test_hooks_unset_when_nothing_is_tracked(servers, ports):
    """Once no client tracks and the table is empty the keyspace hook is
    removed again (nothing to pay on writes)."""
    port = ports[0]
    s = Session(port, {"a": 3})
    try:
        s.step("a", [["CLIENT", "TRACKING", "on"], ["GET", "k"], ["CLIENT", "TRACKING", "off"]])
        assert _info(port)["tracking_total_keys"] == 1
        s.step("a", [["SET", "k", "1"]])
        assert _info(port) == {"tracking_clients": 0, "tracking_total_keys": 0,
                               "tracking_total_items": 0, "tracking_total_prefixes": 0}
    finally:
        s.close_all()


# ---------------------------------------------------------------- redis-py
# redis-py's own client-side cache (cache_config=CacheConfig()) refuses any
# server older than 7.4, redis-server 7.0.15 included; what a 7.0 client-side
# cache is built on is tested instead: redis-py's RESP3 invalidation push
# handler, and its PubSub on __redis__:invalidate for a RESP2 redirect.
@pytest.mark.parametrize("which", ["pynode", "redis-server"])
def test_redis_py_invalidation_push_handler(ports, which):
    port = ports[0 if which == "pynode" else 1]
    got = []
    conn = redis.Connection(port=port, protocol=3, socket_timeout=5)
    other = redis.Redis(port=port, socket_timeout=5)
    try:
        conn.connect()
        conn._parser.set_invalidation_push_handler(got.append)
        conn.send_command("CLIENT", "TRACKING", "on")
        assert conn.read_response() == b"OK"
        conn.send_command("GET", "pyk")
        assert conn.read_response() is None
        other.set("pyk", "1")
        conn.send_command("SET", "pyk", "2")      # its own write: push after the reply
        assert conn.read_response() == b"OK"
        conn.send_command("PING")
        assert conn.read_response() == b"PONG"
        assert got == [[b"invalidate", [b"pyk"]]], got
        conn.send_command("GET", "pyk")
        assert conn.read_response() == b"2"
        other.flushall()
        conn.send_command("PING")
        assert conn.read_response() == b"PONG"
        assert got[1:] == [[b"invalidate", None]], got
    finally:
        conn.disconnect()
        other.close()


@pytest.mark.parametrize("which", ["pynode", "redis-server"])
def test_redis_py_resp2_redirect_pubsub(ports, which):
    port = ports[0 if which == "pynode" else 1]
    sub_client = redis.Redis(port=port, socket_timeout=5, protocol=2)
    tracker = redis.Redis(port=port, socket_timeout=5, single_connection_client=True,
                          protocol=2)
    ps = sub_client.pubsub()
    try:
        ps.subscribe("__redis__:invalidate")
        msg = ps.get_message(timeout=5)
        assert msg["type"] == "subscribe", msg
        subs = [int(c["id"]) for c in sub_client.client_list() if c["cmd"] == "subscribe"]
        assert len(subs) == 1, subs
        sub_id = subs[0]
        tracker.execute_command("CLIENT", "TRACKING", "on", "REDIRECT", sub_id)
        assert tracker.execute_command("CLIENT", "GETREDIR") == sub_id
        tracker.get("rk")
        tracker.set("rk", "1")
        msgs = []

        def invalidation():
            m = ps.get_message(timeout=0.2)
            if m is not None and m["type"] == "message":
                msgs.append(m)
            return msgs
        wait_until(invalidation, timeout=5, what="invalidation message")
        assert msgs[0]["channel"] == b"__redis__:invalidate" and msgs[0]["data"] == [b"rk"]
    finally:
        ps.close()
        tracker.close()
        sub_client.close()


@pytest.mark.parametrize("which", ["pynode", "redis-server"])
def test_evicted_keys_are_invalidated(ports, which):
    """maxmemory eviction signals the key: exactly the tracked keys that were
    evicted get an invalidation."""
    port = ports[0 if which == "pynode" else 1]
    r = redis.Redis(port=port, socket_timeout=10, protocol=2)
    s = Session(port, {"a": 3})
    try:
        r.mset({"ev:%d" % i: "x" * 100 for i in range(200)})
        s.step("a", [["CLIENT", "TRACKING", "on"]]
               + [["GET", "ev:%d" % i] for i in range(200)])
        used = r.info("memory")["used_memory"]
        r.config_set("maxmemory-policy", "allkeys-random")
        r.config_set("maxmemory", used + 2 * 1024 * 1024)
        pipe = r.pipeline(transaction=False)
        for i in range(400):
            pipe.set("fill:%d" % i, "y" * 20000)
        pipe.execute()
        assert r.info("stats")["evicted_keys"] > 0
        # no more evictions from here on: a command run while over the limit
        # (the EXISTS below) would evict keys after the pushes were read
        r.config_set("maxmemory", 0)
        got = s.step("a", [["PING"]])["a"]
        pushed = set(re.findall(rb">2\r\n\$10\r\ninvalidate\r\n\*1\r\n\$\d+\r\n(ev:\d+)\r\n",
                                got))
        gone = {b"ev:%d" % i for i in range(200) if not r.exists("ev:%d" % i)}
        assert gone and pushed == gone, (len(pushed), len(gone))
    finally:
        r.config_set("maxmemory", 0)
        r.config_set("maxmemory-policy", "noeviction")
        s.close_all()
        r.close()
